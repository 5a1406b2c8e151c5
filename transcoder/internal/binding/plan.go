package binding

import (
	"net/http"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Plan is everything about one route that does not change per request.
type Plan struct {
	Route      *router.Route
	FullMethod string
	Input      protoreflect.MessageDescriptor
	Output     protoreflect.MessageDescriptor
	Unmarshal  protojson.UnmarshalOptions
	Marshal    protojson.MarshalOptions
	Resolver   *transcoder.TypeResolver
	// Int64Numbers writes 64-bit integers as JSON numbers (the client may
	// also ask per request).
	Int64Numbers bool
	Timeout      time.Duration // 0: the upstream's default
	BodyRaw      bool          // request body is a google.api.HttpBody
	RespRaw      bool          // response (or response_body) is a google.api.HttpBody
	MaskField    protoreflect.FieldDescriptor
	Bound        [][]protoreflect.FieldDescriptor // path and body fields, skipped in the query
	Fast         *FastPlan                        // the wire-level path; nil: dynamicpb
}

const httpBodyName = "google.api.HttpBody"

// Builder compiles the [Plan]s of one snapshot's routes, sharing compiled
// JSON plans among them. It is safe for concurrent use.
type Builder struct {
	resolver  *transcoder.TypeResolver
	compilers compilers
}

// NewBuilder returns a Builder resolving message types with res.
func NewBuilder(res *transcoder.TypeResolver) *Builder { return &Builder{resolver: res} }

// Plan compiles the plan of route rt with the JSON options base, merged
// with the route's own.
func (h *Builder) Plan(rt *router.Route, base config.JSONOptions) *Plan {
	md := rt.Method
	opts := base
	p := &Plan{
		Route:      rt,
		FullMethod: "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
		Input:      md.Input(),
		Output:     md.Output(),
	}
	if rt.Config != nil {
		opts = base.Merge(rt.Config.JSON)
		p.Timeout = time.Duration(rt.Config.Timeout)
	}
	p.Resolver = h.resolver
	p.Int64Numbers = isSet(opts.Int64AsNumbers)
	p.Unmarshal = protojson.UnmarshalOptions{DiscardUnknown: isSet(opts.DiscardUnknown), Resolver: h.resolver}
	p.Marshal = protojson.MarshalOptions{
		UseProtoNames:   isSet(opts.UseProtoNames),
		EmitUnpopulated: isSet(opts.EmitUnpopulated),
		UseEnumNumbers:  isSet(opts.UseEnumNumbers),
		Resolver:        h.resolver,
	}
	switch {
	case rt.Body == "*":
		p.BodyRaw = p.Input.FullName() == httpBodyName
	case rt.BodyField != nil:
		p.BodyRaw = rt.BodyField.Message() != nil && rt.BodyField.Message().FullName() == httpBodyName
		p.Bound = append(p.Bound, []protoreflect.FieldDescriptor{rt.BodyField})
	}
	if rt.ResponseBodyField != nil {
		p.RespRaw = rt.ResponseBodyField.Message() != nil && rt.ResponseBodyField.Message().FullName() == httpBodyName
	} else {
		p.RespRaw = p.Output.FullName() == httpBodyName
	}
	for _, v := range rt.Vars {
		p.Bound = append(p.Bound, v.Fields)
	}
	// PATCH with a message body and an empty FieldMask gets the mask from the
	// JSON keys present, as grpc-gateway's generated code does.
	if rt.HTTPMethod == http.MethodPatch && rt.BodyField != nil && rt.BodyField.Message() != nil && !p.BodyRaw {
		p.MaskField = fieldMaskField(p.Input)
	}
	p.Fast = h.newFastPlan(p, rt, opts)
	return p
}

func isSet(b *bool) bool { return b != nil && *b }

// fieldMaskField finds the request's update mask: a top-level
// google.protobuf.FieldMask field named update_mask, or else the only
// FieldMask field.
func fieldMaskField(md protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	var only protoreflect.FieldDescriptor
	n := 0
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Message() == nil || fd.Message().FullName() != "google.protobuf.FieldMask" || fd.IsList() {
			continue
		}
		if fd.Name() == "update_mask" {
			return fd
		}
		only = fd
		n++
	}
	if n == 1 {
		return only
	}
	return nil
}

// Request is what a REST request contributes to its request message
// besides the path values and the body.
type Request struct {
	// RawQuery is the query string, without "?".
	RawQuery string
	// ContentType is the body's media type (for google.api.HttpBody).
	ContentType string
	// Strict rejects unknown query parameters.
	Strict bool
}

// BuildRequest builds one request message from a body (already read), the
// path variables and the query string.
func BuildRequest(q Request, p *Plan, values []string, body []byte) (*dynamicpb.Message, error) {
	msg := dynamicpb.NewMessage(p.Input)
	rt := p.Route
	if rt.Body != "" {
		if err := decodeBody(q, p, msg, body); err != nil {
			return nil, err
		}
	}
	for i, v := range rt.Vars {
		if err := SetFieldPath(msg, v.Fields, v.FieldPath, []string{values[i]}); err != nil {
			return nil, err
		}
	}
	if rt.Body != "*" && q.RawQuery != "" {
		vals, err := transcoder.ParseQuery(q.RawQuery)
		if err != nil {
			return nil, err
		}
		if err := PopulateQuery(msg, vals, p.IsBound, q.Strict); err != nil {
			return nil, err
		}
	}
	if p.MaskField != nil && len(body) > 0 {
		if err := fillFieldMask(msg, p, body); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// IsBound reports whether a query field path overlaps a field bound by the
// path or the body (a prefix either way).
func (p *Plan) IsBound(fields []protoreflect.FieldDescriptor) bool {
	for _, b := range p.Bound {
		n := min(len(b), len(fields))
		same := true
		for i := 0; i < n; i++ {
			if b[i] != fields[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

func decodeBody(q Request, p *Plan, msg *dynamicpb.Message, body []byte) error {
	rt := p.Route
	if p.BodyRaw {
		target := protoreflect.Message(msg)
		if rt.BodyField != nil {
			target = msg.Mutable(rt.BodyField).Message()
		}
		setHTTPBody(target, q.ContentType, body)
		return nil
	}
	if len(body) == 0 {
		return nil
	}
	if rt.Body == "*" {
		if err := p.Unmarshal.Unmarshal(body, msg); err != nil {
			return transcoder.JSONError(err, body, "")
		}
		return nil
	}
	fd := rt.BodyField
	name := string(fd.Name())
	if fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
		sub := dynamicpb.NewMessage(fd.Message())
		if err := p.Unmarshal.Unmarshal(body, sub); err != nil {
			return transcoder.JSONError(err, body, name)
		}
		msg.Set(fd, protoreflect.ValueOfMessage(sub))
		return nil
	}
	// A scalar, repeated or map body field: decode it as that field of a
	// message holding only it.
	wrapped := make([]byte, 0, len(body)+len(fd.JSONName())+4)
	wrapped = append(wrapped, `{"`...)
	wrapped = append(wrapped, fd.JSONName()...)
	wrapped = append(wrapped, `":`...)
	wrapped = append(wrapped, body...)
	wrapped = append(wrapped, '}')
	tmp := dynamicpb.NewMessage(p.Input)
	if err := p.Unmarshal.Unmarshal(wrapped, tmp); err != nil {
		return transcoder.JSONError(err, wrapped, "")
	}
	if tmp.Has(fd) {
		msg.Set(fd, tmp.Get(fd))
	}
	return nil
}

// setHTTPBody fills a google.api.HttpBody message.
func setHTTPBody(m protoreflect.Message, contentType string, data []byte) {
	fields := m.Descriptor().Fields()
	if ct := fields.ByName("content_type"); ct != nil && contentType != "" {
		m.Set(ct, protoreflect.ValueOfString(contentType))
	}
	if d := fields.ByName("data"); d != nil && len(data) > 0 {
		m.Set(d, protoreflect.ValueOfBytes(data))
	}
}

// HTTPBodyOf reads a google.api.HttpBody message's content type and data.
func HTTPBodyOf(m protoreflect.Message) (string, []byte) {
	fields := m.Descriptor().Fields()
	var ct string
	var data []byte
	if fd := fields.ByName("content_type"); fd != nil {
		ct = m.Get(fd).String()
	}
	if fd := fields.ByName("data"); fd != nil {
		data = m.Get(fd).Bytes()
	}
	return ct, data
}
