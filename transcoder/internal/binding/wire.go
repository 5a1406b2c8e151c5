package binding

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/wirejson"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The fast path transcodes a route's JSON straight to and from the
// protobuf wire format with precompiled [wirejson] plans and calls the
// backend with the raw codec, so no dynamicpb message is built. Whether a
// route takes it is decided once, in newPlan: routes with a
// google.api.HttpBody request or response, a PATCH update mask derived
// from the body, a scalar, repeated or map body or response_body field,
// or a path variable inside a oneof keep the dynamicpb path.
//
// The fast path must answer exactly as the dynamicpb path does. Where the
// two could differ it defers to the dynamicpb path for that request: a
// body the fast decoder rejects is decoded again the slow way (so a 400
// carries protojson's own message), a query parameter that sets a oneof
// member builds the request the slow way, and a response the fast encoder
// rejects is encoded the slow way.

// FastPlan is the wire-level part of a route's plan.
type FastPlan struct {
	In      *wirejson.Plan // the request message
	Body    *wirejson.Plan // the body field's message (body: "field"); nil otherwise
	BodyTag []byte         // the body field's tag
	Out     *wirejson.Plan // the response message, or its response_body field's
	Out64   *wirejson.Plan // out, writing 64-bit integers as JSON numbers
	OutNum  protowire.Number
}

// compilers shares wirejson plans among the routes of one snapshot, one
// compiler per set of JSON options.
type compilers struct {
	mu sync.Mutex
	m  map[wirejson.Options]*wirejson.Compiler
}

func (c *compilers) get(opts wirejson.Options) *wirejson.Compiler {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[wirejson.Options]*wirejson.Compiler{}
	}
	if wc := c.m[opts]; wc != nil {
		return wc
	}
	wc := wirejson.NewCompiler(opts)
	c.m[opts] = wc
	return wc
}

// newFastPlan compiles the fast path of a route, or returns nil when the
// route keeps the dynamicpb path.
func (h *Builder) newFastPlan(p *Plan, rt *router.Route, opts config.JSONOptions) *FastPlan {
	if p.BodyRaw || p.RespRaw || p.MaskField != nil {
		return nil
	}
	singularMessage := func(fd protoreflect.FieldDescriptor) bool {
		return fd.Message() != nil && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap()
	}
	if rt.BodyField != nil && !singularMessage(rt.BodyField) {
		return nil
	}
	if rt.ResponseBodyField != nil && !singularMessage(rt.ResponseBodyField) {
		return nil
	}
	for _, v := range rt.Vars {
		for _, fd := range v.Fields {
			if of := fd.ContainingOneof(); (of != nil && !of.IsSynthetic()) || fd.Kind() == protoreflect.GroupKind {
				return nil
			}
		}
	}
	wo := wirejson.Options{
		UseProtoNames:   isSet(opts.UseProtoNames),
		EmitUnpopulated: isSet(opts.EmitUnpopulated),
		UseEnumNumbers:  isSet(opts.UseEnumNumbers),
		DiscardUnknown:  isSet(opts.DiscardUnknown),
		Resolver:        h.resolver,
	}
	wc := h.compilers.get(wo)
	wo.Int64AsNumbers = true
	wc64 := h.compilers.get(wo)
	f := &FastPlan{In: wc.Compile(p.Input), Out: wc.Compile(p.Output), Out64: wc64.Compile(p.Output)}
	if fd := rt.BodyField; fd != nil {
		f.Body = f.In.Field(fd)
		f.BodyTag = protowire.AppendTag(nil, fd.Number(), protowire.BytesType)
	}
	if fd := rt.ResponseBodyField; fd != nil {
		f.Out = f.Out.Field(fd)
		f.Out64 = f.Out64.Field(fd)
		f.OutNum = fd.Number()
	}
	if f.Out == nil || f.Out64 == nil || (rt.BodyField != nil && f.Body == nil) {
		return nil
	}
	return f
}

// errSlowPath makes a request leave the fast path.
var errSlowPath = errors.New("use the dynamicpb path")

// BuildWire encodes one request message from a body (already read), the
// path variables and the query string, as [BuildRequest] builds it.
// Later fields win over earlier ones on the wire as Set does in
// BuildRequest: the body comes first, then the path, then the query.
func BuildWire(q Request, p *Plan, values []string, body, dst []byte) ([]byte, error) {
	f := p.Fast
	rt := p.Route
	if rt.Body != "" && len(body) > 0 {
		var err error
		if f.Body == nil {
			dst, err = f.In.AppendProto(dst, body)
		} else {
			dst = append(dst, f.BodyTag...)
			var start int
			dst, start = wirejson.BeginLen(dst)
			if dst, err = f.Body.AppendProto(dst, body); err == nil {
				dst = wirejson.EndLen(dst, start)
			}
		}
		if err != nil {
			return slowWire(q, p, values, body, dst[:0])
		}
	}
	for i, v := range rt.Vars {
		var cerr *call.Error
		if dst, cerr = appendFieldWire(dst, v.Fields, v.FieldPath, []string{values[i]}); cerr != nil {
			return nil, cerr
		}
	}
	if rt.Body != "*" && q.RawQuery != "" {
		vals, err := transcoder.ParseQuery(q.RawQuery)
		if err != nil {
			return nil, err
		}
		sink := &wireSink{dst: dst}
		if cerr := walkQuery(p.Input, vals, p.IsBound, q.Strict, sink); cerr != nil {
			if cerr == errSlowQuery {
				return slowWire(q, p, values, body, dst[:0])
			}
			return nil, cerr
		}
		dst = sink.dst
	}
	return dst, nil
}

// slowWire builds the request the dynamicpb way and marshals it.
func slowWire(q Request, p *Plan, values []string, body, dst []byte) ([]byte, error) {
	msg, err := BuildRequest(q, p, values, body)
	if err != nil {
		return nil, err
	}
	b, merr := proto.MarshalOptions{}.MarshalAppend(dst, msg)
	if merr != nil {
		return nil, call.Errorf(codes.Internal, "encode request: %v", merr).WithCause(merr)
	}
	return b, nil
}

// appendFieldWire encodes text values of the field at the end of the path
// fields (as [SetFieldPath] sets them) as wire bytes.
func appendFieldWire(dst []byte, fields []protoreflect.FieldDescriptor, name string, values []string) ([]byte, *call.Error) {
	fd := fields[len(fields)-1]
	if err := checkValueCount(fd, name, values); err != nil {
		return dst, err
	}
	var leaf []byte
	for _, s := range values {
		v, err := parseFieldValue(fd, name, s)
		if err != nil {
			return dst, err
		}
		var merr error
		if leaf, merr = appendValueWire(leaf, fd, v); merr != nil {
			return dst, call.BadField(name, fmt.Sprintf("invalid value %q for field %q: %v", s, name, merr))
		}
	}
	return appendNested(dst, fields[:len(fields)-1], leaf), nil
}

// errSlowQuery is walkQuery's signal that a query parameter needs the
// dynamicpb path.
var errSlowQuery = call.Errorf(codes.Internal, "query parameter needs the dynamicpb path")

// wireSink encodes query fields as wire bytes.
type wireSink struct{ dst []byte }

func (s *wireSink) setField(fields []protoreflect.FieldDescriptor, key string, values []string) *call.Error {
	for _, fd := range fields {
		if fd.Kind() == protoreflect.GroupKind {
			return errSlowQuery
		}
	}
	if of := fields[len(fields)-1].ContainingOneof(); of != nil && !of.IsSynthetic() {
		// setField checks the oneof against what is already set.
		return errSlowQuery
	}
	var err *call.Error
	s.dst, err = appendFieldWire(s.dst, fields, key, values)
	return err
}

func (s *wireSink) setMapEntry(fields []protoreflect.FieldDescriptor, key, mapKey string, values []string) *call.Error {
	for _, fd := range fields {
		if fd.Kind() == protoreflect.GroupKind {
			return errSlowQuery
		}
	}
	fd := fields[len(fields)-1]
	k, v, cerr := parseMapEntry(fd, key, mapKey, values)
	if cerr != nil {
		return cerr
	}
	entry, err := appendValueWire(nil, fd.MapKey(), k)
	if err == nil {
		entry, err = appendValueWire(entry, fd.MapValue(), v)
	}
	if err != nil {
		return call.BadField(key, fmt.Sprintf("invalid value %q for field %q: %v", values[0], key, err))
	}
	s.dst = appendNested(s.dst, fields, entry)
	return nil
}

// appendNested appends inner as the content of the chain of message
// fields outer (outermost first).
func appendNested(dst []byte, outer []protoreflect.FieldDescriptor, inner []byte) []byte {
	var sizes [16]int
	if len(outer) > len(sizes) {
		panic("appendNested: field path too deep")
	}
	n := len(inner)
	for i := len(outer) - 1; i >= 0; i-- {
		sizes[i] = n
		n = protowire.SizeTag(outer[i].Number()) + protowire.SizeBytes(n)
	}
	for i, fd := range outer {
		dst = protowire.AppendTag(dst, fd.Number(), protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(sizes[i]))
	}
	return append(dst, inner...)
}

// appendValueWire appends one value of field fd with its tag.
func appendValueWire(dst []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	num := fd.Number()
	switch fd.Kind() {
	case protoreflect.BoolKind:
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, protowire.EncodeBool(v.Bool())), nil
	case protoreflect.EnumKind:
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, uint64(int64(v.Enum()))), nil
	case protoreflect.Int32Kind, protoreflect.Int64Kind:
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, uint64(v.Int())), nil
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, protowire.EncodeZigZag(v.Int())), nil
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, v.Uint()), nil
	case protoreflect.Sfixed32Kind:
		dst = protowire.AppendTag(dst, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(dst, uint32(v.Int())), nil
	case protoreflect.Fixed32Kind:
		dst = protowire.AppendTag(dst, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(dst, uint32(v.Uint())), nil
	case protoreflect.FloatKind:
		dst = protowire.AppendTag(dst, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(dst, math.Float32bits(float32(v.Float()))), nil
	case protoreflect.Sfixed64Kind:
		dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, uint64(v.Int())), nil
	case protoreflect.Fixed64Kind:
		dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, v.Uint()), nil
	case protoreflect.DoubleKind:
		dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, math.Float64bits(v.Float())), nil
	case protoreflect.StringKind:
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendString(dst, v.String()), nil
	case protoreflect.BytesKind:
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendBytes(dst, v.Bytes()), nil
	case protoreflect.MessageKind:
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v.Message().Interface())
		if err != nil {
			return dst, err
		}
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendBytes(dst, b), nil
	}
	return dst, fmt.Errorf("unsupported field kind %s", fd.Kind())
}

// EncodeWire renders a response message given as wire bytes (or its
// response_body field) as the JSON HTTP body, appended to dst.
func (p *Plan) EncodeWire(dst, resp []byte, int64Numbers bool) ([]byte, error) {
	f := p.Fast
	msg, ok := resp, true
	if f.OutNum != 0 {
		msg, ok = messageField(resp, f.OutNum)
	}
	out, err := dst, errSlowPath
	if ok {
		enc := f.Out
		if int64Numbers {
			enc = f.Out64
		}
		out, err = enc.AppendJSON(dst, msg)
	}
	if err != nil {
		// The dynamicpb path decides what the answer is.
		m := dynamicpb.NewMessage(p.Output)
		if uerr := proto.Unmarshal(resp, m); uerr != nil {
			return dst, call.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", uerr).WithCause(uerr)
		}
		_, b, err := p.Encode(m, int64Numbers)
		if err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	}
	return out, nil
}

// messageField returns the content of the message field num of the wire
// message b; ok is false when the field occurs more than once (its
// occurrences would have to be merged, which the dynamicpb path does)
// or b is malformed.
func messageField(b []byte, num protowire.Number) (content []byte, ok bool) {
	count := 0
	for len(b) > 0 {
		n, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return nil, false
		}
		b = b[m:]
		l := protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil, false
		}
		if n == num && typ == protowire.BytesType {
			content, _ = protowire.ConsumeBytes(b)
			count++
		}
		b = b[l:]
	}
	return content, count <= 1
}
