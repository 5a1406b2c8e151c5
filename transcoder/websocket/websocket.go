package websocket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Params are the inputs of [New].
type Params struct {
	// Params are the snapshot, route table, backends and transcoding
	// options, the same as for every dialect.
	transcoder.Params
	// WebSocket tunes origins, keepalive and the message size limit.
	// Zero durations disable pings and the idle timeout; the config
	// package fills the documented defaults.
	WebSocket config.WebSocket
	// Context ends every open socket when it is canceled (status frame
	// UNAVAILABLE, close 1001): the gateway cancels it on shutdown. Nil
	// means never.
	Context context.Context
}

// Bridge bridges WebSocket connections to gRPC methods of every kind
// (unary, server, client and bidi streaming): each frame is one message.
// The wire protocol is described in README.md ("WebSocket bridge"). A
// Bridge is built once per snapshot, is immutable and is safe for
// concurrent use.
type Bridge struct {
	resolver *transcoder.TypeResolver
	backends func(string) (transcoder.Backend, bool)
	forward  transcoder.HeaderAllowList
	policies transcoder.Policies
	strict   bool
	table    *router.Table
	routes   map[*router.Route]*binding.Plan // binding plans, without a body
	methods  map[string]wsMethod             // by "/pkg.Service/Method"
	origins  originPolicy
	ping     time.Duration
	idle     time.Duration
	maxBytes int64
	base     context.Context
	logger   *slog.Logger
}

// wsMethod is a method reachable on its gRPC path.
type wsMethod struct {
	plan     *binding.Plan
	upstream string
}

// Target is what [Bridge.Match] resolved a request to: a
// method, its upstream and the path variable values.
type Target struct {
	plan     *binding.Plan
	upstream string
	values   []string
}

// New builds the WebSocket bridge of one snapshot.
func New(p Params) *Bridge {
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	base := p.Context
	if base == nil {
		base = context.Background()
	}
	res := transcoder.NewTypeResolver(p.Snapshot)
	bindings := binding.NewBuilder(res)
	h := &Bridge{
		resolver: res,
		backends: p.Backends,
		forward:  transcoder.NewHeaderAllowList(p.Transcoding.ForwardHeaders),
		policies: p.Policies,
		strict:   p.Transcoding.StrictQuery,
		table:    p.Table,
		routes:   make(map[*router.Route]*binding.Plan),
		methods:  make(map[string]wsMethod),
		origins:  newOriginPolicy(p.WebSocket.AllowedOrigins),
		maxBytes: p.WebSocket.MaxMessageBytes,
		base:     base,
		logger:   logger,
	}
	if d := p.WebSocket.PingInterval; d != nil {
		h.ping = time.Duration(*d)
	}
	if d := p.WebSocket.IdleTimeout; d != nil {
		h.idle = time.Duration(*d)
	}
	if h.maxBytes <= 0 {
		h.maxBytes = 1 << 20
	}
	json := p.Transcoding.JSON
	for _, rt := range p.Table.Routes() {
		// Over a WebSocket the messages come in frames, not in an HTTP
		// body: the query may fill every field the path does not bind.
		cp := *rt
		cp.Body, cp.BodyField = "", nil
		cp.ResponseBody, cp.ResponseBodyField = "", nil
		h.routes[rt] = bindings.Plan(&cp, json)
	}
	if p.Snapshot != nil {
		for _, svc := range p.Snapshot.Services() {
			methods := svc.Desc.Methods()
			for i := 0; i < methods.Len(); i++ {
				md := methods.Get(i)
				path := "/" + string(svc.Desc.FullName()) + "/" + string(md.Name())
				rt := &router.Route{Method: md, Upstream: svc.Upstream, HTTPMethod: http.MethodGet, Pattern: path}
				if bound := p.Table.RouteFor(md.FullName()); len(bound) > 0 {
					rt.Config = bound[0].Config
				}
				h.methods[path] = wsMethod{plan: bindings.Plan(rt, json), upstream: svc.Upstream}
			}
		}
	}
	return h
}

// Match resolves an upgrade request to a method: its gRPC path
// "/pkg.Service/Method" first, then its HTTP bindings (GET, or the first
// method the path allows when GET is not one of them). It returns a 404
// error when nothing matches.
func (h *Bridge) Match(r *http.Request) (Target, error) {
	if m, ok := h.methods[r.URL.Path]; ok {
		return Target{plan: m.plan, upstream: m.upstream}, nil
	}
	path := r.URL.EscapedPath()
	m, allow, ok := h.table.Match(http.MethodGet, path)
	if !ok && len(allow) > 0 {
		m, _, ok = h.table.Match(allow[0], path)
	}
	if ok {
		if p := h.routes[m.Route]; p != nil {
			return Target{plan: p, upstream: m.Route.Upstream, values: m.Values}, nil
		}
	}
	return Target{}, &transcoder.HTTPError{
		Err:    call.Errorf(codes.NotFound, "no WebSocket route matches %s: use a method's HTTP binding path or /<package.Service>/<Method>", r.URL.Path),
		Status: http.StatusNotFound,
	}
}

// writeError answers a problem found before the upgrade as REST does.
func (h *Bridge) writeError(w http.ResponseWriter, r *http.Request, err error) {
	transcoder.WriteJSONError(w, r, err, h.resolver, h.logger)
}

// ServeHTTP matches the upgrade request and serves it.
func (h *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, err := h.Match(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.Serve(w, r, t)
}

// Serve upgrades a request already matched to a method and bridges the
// socket to the method until either side ends. Problems found before the
// upgrade (origin, subprotocol, path or query values, upstream) are
// answered as REST errors; after it, as a status frame and a close code.
func (h *Bridge) Serve(w http.ResponseWriter, r *http.Request, t Target) {
	if !h.origins.allows(r) {
		h.writeError(w, r, call.Errorf(codes.PermissionDenied,
			"origin %q may not open WebSockets on this gateway: add it to websocket.allowed_origins", r.Header.Get("Origin")))
		return
	}
	neg, cerr := negotiate(r.Header)
	if cerr != nil {
		h.writeError(w, r, cerr)
		return
	}
	be, ok := h.backends(t.upstream)
	if !ok {
		h.writeError(w, r, call.Errorf(codes.Unavailable, "upstream %q is not available", t.upstream))
		return
	}
	q, err := transcoder.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	token := q.Get(AccessTokenParam)
	q.Del(AccessTokenParam)
	if neg.bearer != "" {
		token = neg.bearer
	}
	// The policy seam: refusals are answered before the upgrade, as REST
	// answers them.
	adm, cerr := transcoder.Admit(r.Context(), h.policies, call.WebSocket, t.plan.Route.Method, t.upstream, r, token)
	adm.SetHeaders(w.Header(), true)
	defer adm.Done()
	if cerr != nil {
		h.writeError(w, r, cerr)
		return
	}
	if adm != nil {
		for _, name := range adm.Chain().CredentialQuery() {
			q.Del(name)
		}
	}
	req, cerr := h.newRequest(t, neg.mode, q)
	if cerr != nil {
		h.writeError(w, r, cerr)
		return
	}
	md := transcoder.OutgoingMetadata(r, h.forward)
	addBearer(md, token)
	adm.Metadata(md)

	opts := &websocket.AcceptOptions{InsecureSkipVerify: true} // origins checked above
	if neg.selected != "" {
		opts.Subprotocols = []string{neg.selected}
	}
	if r.Method == http.MethodConnect {
		// RFC 8441: the socket is an HTTP/2 stream. coder/websocket
		// accepts HTTP/1.1 upgrades; present the request as one.
		r, w = asUpgrade(r, w)
	}
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept answered the client
	}
	s := newWSSession(h, conn, r, t.plan, be, req, md, adm)
	s.run()
}

// wsRequest builds request messages from frames: the frame's message
// merged over the query values, then the path values, which win.
type wsRequest struct {
	p    *binding.Plan
	mode wsMode
	// base holds the query and path values and path only the path values
	// (nil when there are none); proto mode keeps them encoded.
	base, path           *dynamicpb.Message
	baseBytes, pathBytes []byte
	unmarshal            proto.UnmarshalOptions
	// fast is JSON mode on the precompiled wirejson plans: frames become
	// wire bytes and travel with the pass-through codec.
	fast bool
}

// newRequest prepares the request mapping of one socket from the path
// variables and the query string.
func (h *Bridge) newRequest(t Target, mode wsMode, q url.Values) (*wsRequest, *call.Error) {
	p := t.plan
	req := &wsRequest{p: p, mode: mode, unmarshal: proto.UnmarshalOptions{Resolver: p.Resolver}}
	req.fast = mode == modeJSON && p.Fast != nil && p.Fast.OutNum == 0
	base := dynamicpb.NewMessage(p.Input)
	if len(q) > 0 {
		if err := binding.PopulateQuery(base, q, p.IsBound, h.strict); err != nil {
			return nil, err
		}
	}
	if len(p.Route.Vars) > 0 {
		path := dynamicpb.NewMessage(p.Input)
		for i, v := range p.Route.Vars {
			if err := binding.SetFieldPath(path, v.Fields, v.FieldPath, []string{t.values[i]}); err != nil {
				return nil, err
			}
		}
		proto.Merge(base, path)
		req.path = path
	}
	if proto.Size(base) > 0 {
		req.base = base
	}
	if mode == modeProto || req.fast {
		mo := proto.MarshalOptions{Deterministic: true}
		var err error
		if req.base != nil {
			if req.baseBytes, err = mo.Marshal(req.base); err != nil {
				return nil, call.Errorf(codes.Internal, "encode request fields: %v", err).WithCause(err)
			}
		}
		if req.path != nil {
			if req.pathBytes, err = mo.Marshal(req.path); err != nil {
				return nil, call.Errorf(codes.Internal, "encode path fields: %v", err).WithCause(err)
			}
		}
	}
	return req, nil
}

// decode turns a data frame into the message to send: a
// *dynamicpb.Message in JSON mode, a *[]byte of protobuf in proto mode.
func (q *wsRequest) decode(frame []byte) (any, *call.Error) {
	if q.mode == modeProto {
		// Check the frame against the request type, then send its bytes
		// as they are: protobuf concatenation is a merge, so the path
		// values appended last win.
		scratch := dynamicpb.NewMessage(q.p.Input)
		if err := q.unmarshal.Unmarshal(frame, scratch); err != nil {
			return nil, call.BadField("message", fmt.Sprintf("frame is not a valid %s protobuf message: %v", q.p.Input.FullName(), err))
		}
		b := make([]byte, 0, len(q.baseBytes)+len(frame)+len(q.pathBytes))
		b = append(append(append(b, q.baseBytes...), frame...), q.pathBytes...)
		return &b, nil
	}
	if q.fast {
		b := append([]byte(nil), q.baseBytes...)
		if b, err := q.p.Fast.In.AppendProto(b, frame); err == nil {
			b = append(b, q.pathBytes...)
			return &b, nil
		}
		// Not valid: the dynamicpb path below words the error as
		// protojson does.
	}
	msg := dynamicpb.NewMessage(q.p.Input)
	if err := q.p.Unmarshal.Unmarshal(frame, msg); err != nil {
		return nil, transcoder.DecodeJSONError(err, frame, "", "message")
	}
	if q.fast {
		// protojson accepted what wirejson did not: send its encoding.
		out := proto.Clone(msg)
		if q.base != nil {
			out = proto.Clone(q.base)
			proto.Merge(out, msg)
			if q.path != nil {
				proto.Merge(out, q.path)
			}
		}
		b, err := proto.Marshal(out)
		if err != nil {
			return nil, call.Errorf(codes.Internal, "encode request: %v", err).WithCause(err)
		}
		return &b, nil
	}
	if q.base == nil {
		return msg, nil
	}
	out := proto.Clone(q.base)
	proto.Merge(out, msg)
	if q.path != nil {
		proto.Merge(out, q.path)
	}
	return out, nil
}

// fieldsOnly is the request of a unary or server-streaming call whose
// client half-closed without sending a message: the query and path values
// alone.
func (q *wsRequest) fieldsOnly() any {
	if q.mode == modeProto || q.fast {
		b := append([]byte(nil), q.baseBytes...)
		return &b
	}
	if q.base == nil {
		return dynamicpb.NewMessage(q.p.Input)
	}
	return proto.Clone(q.base)
}

// newResponse returns an empty response message for RecvMsg.
func (q *wsRequest) newResponse() any {
	if q.mode == modeProto || q.fast {
		return new([]byte)
	}
	return dynamicpb.NewMessage(q.p.Output)
}

// encode renders a response message as a frame.
func (q *wsRequest) encode(msg any, int64Numbers bool) (websocket.MessageType, []byte, error) {
	if q.mode == modeProto {
		return websocket.MessageBinary, *msg.(*[]byte), nil
	}
	if q.fast {
		enc := q.p.Fast.Out
		if int64Numbers {
			enc = q.p.Fast.Out64
		}
		wire := *msg.(*[]byte)
		if b, err := enc.AppendJSON(nil, wire); err == nil {
			return websocket.MessageText, b, nil
		}
		m := dynamicpb.NewMessage(q.p.Output)
		if err := q.unmarshal.Unmarshal(wire, m); err != nil {
			return 0, nil, call.Errorf(codes.Internal, "decode backend response: %v", err).WithCause(err)
		}
		msg = m
	}
	m := msg.(*dynamicpb.Message)
	b, err := q.p.Marshal.Marshal(m)
	if err == nil && int64Numbers {
		b, err = binding.Int64AsNumbers(b, q.p.Output, q.p.Resolver)
	}
	if err != nil {
		return 0, nil, call.Errorf(codes.Internal, "encode response: %v", err).WithCause(err)
	}
	return websocket.MessageText, b, nil
}

// callOptions are the grpc call options of a mode: proto mode passes
// bytes through unchanged.
func (q *wsRequest) callOptions() []grpc.CallOption {
	if q.mode == modeProto || q.fast {
		return []grpc.CallOption{transcoder.RawCall}
	}
	return nil
}

// newStream opens the backend stream of a socket's call.
func (q *wsRequest) newStream(ctx context.Context, be transcoder.Backend) (grpc.ClientStream, error) {
	md := q.p.Route.Method
	desc := &grpc.StreamDesc{ServerStreams: md.IsStreamingServer(), ClientStreams: md.IsStreamingClient()}
	return be.Conn.NewStream(ctx, desc, q.p.FullMethod, q.callOptions()...)
}

// callTimeout is a call's deadline: the route's timeout, else the
// upstream's for unary methods; streams get none unless the route sets one.
func callTimeout(p *binding.Plan, be transcoder.Backend, md protoreflect.MethodDescriptor) time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return be.Timeout
	}
	return 0
}

// errTooBig is returned by readFrame for a message over the size limit.
var errTooBig = errors.New("message too big")

// wsFailure is how a socket ends when something other than the backend
// call's own status ends it.
type wsFailure struct {
	err  *call.Error
	code websocket.StatusCode
	// quiet: the client is gone or unresponsive, so no status frame or
	// close handshake is attempted.
	quiet bool
}

// logFinish logs calls that ended with a server-side error, once.
func (h *Bridge) logFinish(ctx context.Context, method string, ce *call.Error) {
	if ce == nil || ce.Refusal || transcoder.HTTPStatus(ce.Code) < 500 || ce.Code == codes.Unavailable && ce.Msg == msgShutdown {
		return
	}
	h.logger.LogAttrs(ctx, slog.LevelError, "websocket call failed",
		slog.String("procedure", method), slog.String("code", ce.Code.String()), slog.Any("error", ce))
}

var _ http.Handler = (*Bridge)(nil)

// sampleKey is a valid Sec-WebSocket-Key (RFC 6455's sample), given to
// coder/websocket for a WebSocket over an HTTP/2 stream, which has none.
const sampleKey = "dGhlIHNhbXBsZSBub25jZQ=="

// asUpgrade presents an extended CONNECT (RFC 8441, :protocol websocket)
// as the HTTP/1.1 upgrade coder/websocket accepts: GET with the upgrade
// fields and a key. The HTTP/2 server answers its 101 with a 200 and
// lets it hijack the stream; the writer drops Sec-WebSocket-Accept,
// which RFC 8441 does not use.
func asUpgrade(r *http.Request, w http.ResponseWriter) (*http.Request, http.ResponseWriter) {
	r2 := r.Clone(r.Context())
	r2.Method = http.MethodGet
	h := r2.Header
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	h.Set("Sec-WebSocket-Key", sampleKey)
	if h.Get("Sec-WebSocket-Version") == "" {
		h.Set("Sec-WebSocket-Version", "13")
	}
	return r2, noAcceptKey{w}
}

// noAcceptKey drops Sec-WebSocket-Accept from the response head.
type noAcceptKey struct{ http.ResponseWriter }

// WriteHeader drops Sec-WebSocket-Accept and writes the head.
func (w noAcceptKey) WriteHeader(code int) {
	w.Header().Del("Sec-WebSocket-Accept")
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap returns the wrapped writer (for Hijack).
func (w noAcceptKey) Unwrap() http.ResponseWriter { return w.ResponseWriter }
