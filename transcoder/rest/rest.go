package transcoder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

// Backend is what the REST adapter needs of an upstream: a connection to
// call methods on and the default deadline of a call.
type Backend struct {
	Conn    grpc.ClientConnInterface
	Timeout time.Duration
	// MaxMessageBytes caps one message from the backend, and
	// MaxRequestMessageBytes one message from the client, for the
	// enveloped protocols (gRPC-Web, Connect). 0: 4 MiB, and
	// MaxMessageBytes.
	MaxMessageBytes, MaxRequestMessageBytes int
}

// Params are the inputs of [NewREST].
type Params struct {
	// Snapshot is the descriptor snapshot the table was built from.
	Snapshot *registry.Snapshot
	// Table is the route table of that snapshot.
	Table *router.Table
	// Backends returns the backend serving an upstream name.
	Backends func(upstream string) (Backend, bool)
	// Transcoding holds the gateway-wide options.
	Transcoding config.Transcoding
	// Logger receives one line per 5xx answer. Nil discards.
	Logger *slog.Logger
}

// REST serves REST/JSON requests by google.api.http rules. A REST is built
// once per snapshot (all per-route work is precomputed then) and is
// immutable and safe for concurrent use.
type REST struct {
	table    *router.Table
	backends func(string) (Backend, bool)
	plans    map[*router.Route]*plan
	resolver *typeResolver
	logger   *slog.Logger
	strict   bool
	forward  headerAllowList
	// compilers holds the wirejson plans of the snapshot.
	compilers compilers
}

// plan is everything about one route that does not change per request.
type plan struct {
	route      *router.Route
	fullMethod string
	input      protoreflect.MessageDescriptor
	output     protoreflect.MessageDescriptor
	unmarshal  protojson.UnmarshalOptions
	marshal    protojson.MarshalOptions
	resolver   *typeResolver
	// int64Numbers writes 64-bit integers as JSON numbers (the client may
	// also ask per request).
	int64Numbers bool
	timeout      time.Duration // 0: the upstream's default
	bodyRaw      bool          // request body is a google.api.HttpBody
	respRaw      bool          // response (or response_body) is a google.api.HttpBody
	maskField    protoreflect.FieldDescriptor
	bound        [][]protoreflect.FieldDescriptor // path and body fields, skipped in the query
	fast         *fastPlan                        // the wire-level path; nil: dynamicpb
}

const httpBodyName = "google.api.HttpBody"

// NewREST builds the REST adapter of one snapshot.
func NewREST(p Params) *REST {
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &REST{
		table:    p.Table,
		backends: p.Backends,
		plans:    make(map[*router.Route]*plan),
		resolver: newTypeResolver(p.Snapshot),
		logger:   logger,
		strict:   p.Transcoding.StrictQuery,
		forward:  newHeaderAllowList(p.Transcoding.ForwardHeaders),
	}
	for _, rt := range p.Table.Routes() {
		h.plans[rt] = h.newPlan(rt, p.Transcoding.JSON)
	}
	return h
}

func (h *REST) newPlan(rt *router.Route, base config.JSONOptions) *plan {
	md := rt.Method
	opts := base
	p := &plan{
		route:      rt,
		fullMethod: "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
		input:      md.Input(),
		output:     md.Output(),
	}
	if rt.Config != nil {
		opts = base.Merge(rt.Config.JSON)
		p.timeout = time.Duration(rt.Config.Timeout)
	}
	p.resolver = h.resolver
	p.int64Numbers = isSet(opts.Int64AsNumbers)
	p.unmarshal = protojson.UnmarshalOptions{DiscardUnknown: isSet(opts.DiscardUnknown), Resolver: h.resolver}
	p.marshal = protojson.MarshalOptions{
		UseProtoNames:   isSet(opts.UseProtoNames),
		EmitUnpopulated: isSet(opts.EmitUnpopulated),
		UseEnumNumbers:  isSet(opts.UseEnumNumbers),
		Resolver:        h.resolver,
	}
	switch {
	case rt.Body == "*":
		p.bodyRaw = p.input.FullName() == httpBodyName
	case rt.BodyField != nil:
		p.bodyRaw = rt.BodyField.Message() != nil && rt.BodyField.Message().FullName() == httpBodyName
		p.bound = append(p.bound, []protoreflect.FieldDescriptor{rt.BodyField})
	}
	if rt.ResponseBodyField != nil {
		p.respRaw = rt.ResponseBodyField.Message() != nil && rt.ResponseBodyField.Message().FullName() == httpBodyName
	} else {
		p.respRaw = p.output.FullName() == httpBodyName
	}
	for _, v := range rt.Vars {
		p.bound = append(p.bound, v.Fields)
	}
	// PATCH with a message body and an empty FieldMask gets the mask from the
	// JSON keys present, as grpc-gateway's generated code does.
	if rt.HTTPMethod == http.MethodPatch && rt.BodyField != nil && rt.BodyField.Message() != nil && !p.bodyRaw {
		p.maskField = fieldMaskField(p.input)
	}
	p.fast = h.newFastPlan(p, rt, opts)
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

// Match resolves a request to a route. It returns a 404 or a 405 (with the
// allowed methods) as an error when nothing matches.
func (h *REST) Match(r *http.Request) (router.Match, error) {
	m, allow, ok := h.table.Match(r.Method, r.URL.EscapedPath())
	if ok {
		return m, nil
	}
	if len(allow) > 0 {
		return m, &httpError{
			err:    call.Errorf(codes.Unimplemented, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")),
			status: http.StatusMethodNotAllowed,
			allow:  allow,
		}
	}
	return m, &httpError{err: call.Errorf(codes.NotFound, "no route matches %s %s", r.Method, r.URL.Path), status: http.StatusNotFound}
}

// StatusError wraps err so that the REST error writer answers with the
// given HTTP status instead of the one mapped from err's code.
func StatusError(status int, err *call.Error) error {
	return &httpError{err: err, status: status}
}

// IsNotFound reports whether err is Match's "no route" answer.
func IsNotFound(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == http.StatusNotFound
}

// ServeHTTP matches the request and serves it.
func (h *REST) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, err := h.Match(r)
	if err != nil {
		h.WriteError(w, r, err)
		return
	}
	h.Serve(w, r, m)
}

// WriteError writes err the way the REST adapter writes every error: a
// google.rpc.Status JSON body with the mapped HTTP status.
func (h *REST) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	h.writeError(w, r, err)
}

// Serve serves a request already matched to a route.
func (h *REST) Serve(w http.ResponseWriter, r *http.Request, m router.Match) {
	p := h.plans[m.Route]
	if p == nil {
		h.writeError(w, r, call.Errorf(codes.Internal, "route %s %s has no plan", m.Route.HTTPMethod, m.Route.Pattern))
		return
	}
	be, ok := h.backends(m.Route.Upstream)
	if !ok {
		h.writeError(w, r, call.Errorf(codes.Unavailable, "upstream %q is not available", m.Route.Upstream))
		return
	}
	md := m.Route.Method
	// A client stream's messages are read from the body as the call runs;
	// any other call's single request is built first.
	var req any
	var err error
	switch {
	case md.IsStreamingClient():
		err = checkJSONContentType(r.Header.Get("Content-Type"))
	case p.fast != nil:
		req, err = h.decodeWireRequest(r, p, m.Values)
	default:
		req, err = h.decodeRequest(r, p, m.Values)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel, err := h.callContext(r, p, be)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer cancel()
	if md.IsStreamingClient() || md.IsStreamingServer() {
		h.stream(ctx, w, r, p, be, m.Values, req)
		return
	}
	h.unary(ctx, w, r, p, be, req)
}

// callContext derives the backend call's context: a Grpc-Timeout request
// header's deadline capped by the route's (or the upstream's) timeout, or
// that timeout alone, enforced but not announced (see callDeadline); and
// the outgoing metadata.
func (h *REST) callContext(r *http.Request, p *plan, be Backend) (context.Context, context.CancelFunc, error) {
	limit := p.timeout
	if limit == 0 && !p.route.Method.IsStreamingServer() {
		limit = be.Timeout
	}
	var client time.Duration
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		d, err := parseGRPCTimeout(v)
		if err != nil {
			return nil, nil, call.BadField("Grpc-Timeout", fmt.Sprintf("invalid Grpc-Timeout header %q: %v", v, err))
		}
		client = d
	}
	c, cancel := callDeadline(metadata.NewOutgoingContext(r.Context(), h.outgoingMetadata(r)), limit, client)
	return c, cancel, nil
}

// decodeRequest builds the request message from the body, the path
// variables and the query string, in that order (path values win over the
// body, as grpc-gateway does).
func (h *REST) decodeRequest(r *http.Request, p *plan, values []string) (*dynamicpb.Message, error) {
	var body []byte
	if p.route.Body != "" {
		var err error
		body, err = readBody(r, p.bodyRaw)
		if err != nil {
			return nil, err
		}
	}
	return h.buildRequest(r, p, values, body)
}

// decodeWireRequest is [REST.decodeRequest] for routes on the fast path:
// it returns the request as wire bytes (a *[]byte, for the raw codec).
func (h *REST) decodeWireRequest(r *http.Request, p *plan, values []string) (*[]byte, error) {
	var body []byte
	if p.route.Body != "" {
		var err error
		if body, err = readBody(r, false); err != nil {
			return nil, err
		}
	}
	b, err := h.buildWire(r, p, values, body, nil)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// buildRequest builds one request message from a body (already read), the
// path variables and the query string.
func (h *REST) buildRequest(r *http.Request, p *plan, values []string, body []byte) (*dynamicpb.Message, error) {
	msg := dynamicpb.NewMessage(p.input)
	rt := p.route
	if rt.Body != "" {
		if err := h.decodeBody(r, p, msg, body); err != nil {
			return nil, err
		}
	}
	for i, v := range rt.Vars {
		if err := setFieldPath(msg, v.Fields, v.FieldPath, []string{values[i]}); err != nil {
			return nil, err
		}
	}
	if rt.Body != "*" && r.URL.RawQuery != "" {
		q, err := parseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, err
		}
		if err := populateQuery(msg, q, p.isBound, h.strict); err != nil {
			return nil, err
		}
	}
	if p.maskField != nil && len(body) > 0 {
		if err := fillFieldMask(msg, p, body); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// isBound reports whether a query field path overlaps a field bound by the
// path or the body (a prefix either way).
func (p *plan) isBound(fields []protoreflect.FieldDescriptor) bool {
	for _, b := range p.bound {
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

// readBody reads the whole request body, checking its Content-Type unless
// the body is raw (google.api.HttpBody takes any type).
func readBody(r *http.Request, raw bool) ([]byte, error) {
	if !raw {
		if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
			return nil, err
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{
				err:    call.Errorf(codes.ResourceExhausted, "request body is larger than the limit of %d bytes", mbe.Limit),
				status: http.StatusRequestEntityTooLarge,
			}
		}
		return nil, call.Errorf(codes.InvalidArgument, "read request body: %v", err).WithCause(err)
	}
	return body, nil
}

// checkJSONContentType accepts application/json, any application/*+json
// type, and a missing Content-Type.
func checkJSONContentType(ct string) error {
	if ct == "" || ct == "application/json" || strings.HasPrefix(ct, "application/json;") {
		return nil // the common cases, without parsing
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil
	}
	return &httpError{
		err:    call.Errorf(codes.InvalidArgument, "unsupported Content-Type %q: send application/json", ct),
		status: http.StatusUnsupportedMediaType,
	}
}

func (h *REST) decodeBody(r *http.Request, p *plan, msg *dynamicpb.Message, body []byte) error {
	rt := p.route
	if p.bodyRaw {
		target := protoreflect.Message(msg)
		if rt.BodyField != nil {
			target = msg.Mutable(rt.BodyField).Message()
		}
		setHTTPBody(target, r.Header.Get("Content-Type"), body)
		return nil
	}
	if len(body) == 0 {
		return nil
	}
	if rt.Body == "*" {
		if err := p.unmarshal.Unmarshal(body, msg); err != nil {
			return jsonError(err, body, "")
		}
		return nil
	}
	fd := rt.BodyField
	name := string(fd.Name())
	if fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
		sub := dynamicpb.NewMessage(fd.Message())
		if err := p.unmarshal.Unmarshal(body, sub); err != nil {
			return jsonError(err, body, name)
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
	tmp := dynamicpb.NewMessage(p.input)
	if err := p.unmarshal.Unmarshal(wrapped, tmp); err != nil {
		return jsonError(err, wrapped, "")
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

// httpBodyOf reads a google.api.HttpBody message's content type and data.
func httpBodyOf(m protoreflect.Message) (string, []byte) {
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
