package rpc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/wirejson"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Base is what the RPC-shaped adapters (gRPC-Web and Connect) share:
// they route by the "/pkg.Service/Method" path through the snapshot, not
// by HTTP rules, and forward request metadata as it came.
type Base struct {
	// Snap, Table, Backends and Policies are the snapshot's, as given
	// in transcoder.Params.
	Snap     *registry.Snapshot
	Table    *router.Table
	Backends func(string) (transcoder.Backend, bool)
	Policies transcoder.Policies
	// Resolver resolves the snapshot's types (Any, error details).
	Resolver *transcoder.TypeResolver
	// Logger receives 5xx-class failures.
	Logger *slog.Logger
	// JSONIn and JSONOut are the protojson options of the JSON codecs.
	JSONIn  protojson.UnmarshalOptions
	JSONOut protojson.MarshalOptions
	wire    *wirejson.Compiler // JSON ⇄ wire plans, compiled once per message type
	plans   *sync.Map          // protoreflect.FullName → *wirejson.Plan, read without locking
	// Max is the default largest request message (4 MiB).
	Max int
}

// NewBase builds the shared part of one snapshot's RPC-path adapter.
func NewBase(p transcoder.Params) Base {
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res := transcoder.NewTypeResolver(p.Snapshot)
	discard := p.Transcoding.JSON.DiscardUnknown != nil && *p.Transcoding.JSON.DiscardUnknown
	return Base{
		Snap:     p.Snapshot,
		Table:    p.Table,
		Backends: p.Backends,
		Policies: p.Policies,
		Resolver: res,
		Logger:   logger,
		JSONIn:   protojson.UnmarshalOptions{DiscardUnknown: discard, Resolver: res},
		JSONOut:  protojson.MarshalOptions{Resolver: res},
		wire:     wirejson.NewCompiler(wirejson.Options{DiscardUnknown: discard, Resolver: res}),
		plans:    new(sync.Map),
		Max:      MaxMessageBytes,
	}
}

// Target is one resolved RPC: its method, gRPC path and backend.
type Target struct {
	Path    string
	Method  protoreflect.MethodDescriptor
	Backend transcoder.Backend
	Timeout time.Duration // the route's timeout, else the backend's for unary calls; 0: none
	Max     int           // the largest message accepted, from the upstream's config
	// Upstream is the upstream's name.
	Upstream string
	// Route is the config route that covers the method (nil: none).
	Route *config.Route
	// Adm is the call's policy decision, set by [Base.Admit]; nil when no
	// plugin applies.
	Adm *transcoder.Admission
}

// Admit is the policy seam of gRPC-Web and Connect: it describes the call
// t resolved, as protocol p, and runs its policy chain (which may block
// on I/O), keeping the decision in t.Adm. A refusal releases what the
// chain held at once; the caller still renders t.Adm's response fields,
// and defers t.Adm.Done for an admitted call.
func (b *Base) Admit(r *http.Request, t *Target, p call.Protocol) *call.Error {
	adm, ce := transcoder.Admit(r.Context(), b.Policies, p, t.Method, t.Upstream, r, "")
	t.Adm = adm
	if ce != nil {
		adm.Done()
	}
	return ce
}

// Knows reports whether the snapshot has the method a "/pkg.Service/Method"
// path names, so the gateway can refresh descriptors before answering
// UNIMPLEMENTED.
func (b *Base) Knows(path string) bool {
	if b.Snap == nil {
		return false
	}
	_, _, ok := b.Snap.Method(path)
	return ok
}

// Resolve finds the method of a "/pkg.Service/Method" path and its backend.
func (b *Base) Resolve(path string) (*Target, *call.Error) {
	if b.Snap == nil || !looksLikeRPCPath(path) {
		return nil, call.Errorf(codes.Unimplemented, "%s is not a gRPC method path: want /package.Service/Method", path)
	}
	md, upstream, ok := b.Snap.Method(path)
	if !ok {
		return nil, call.Errorf(codes.Unimplemented, "unknown method %s: no upstream serves it (check the service name and that its backend is up)", path)
	}
	be, ok := b.Backends(upstream)
	if !ok {
		return nil, call.Errorf(codes.Unavailable, "upstream %q of method %s is not available", upstream, path)
	}
	t := &Target{Path: path, Method: md, Backend: be, Max: b.Max, Upstream: upstream}
	if be.MaxRequestMessageBytes > 0 {
		t.Max = be.MaxRequestMessageBytes
	} else if be.MaxMessageBytes > 0 {
		t.Max = be.MaxMessageBytes
	}
	streaming := md.IsStreamingClient() || md.IsStreamingServer()
	if !streaming {
		t.Timeout = be.Timeout
	}
	if routes := b.Table.RouteFor(md.FullName()); len(routes) > 0 && routes[0].Config != nil {
		t.Route = routes[0].Config
		if routes[0].Config.Timeout > 0 {
			t.Timeout = time.Duration(routes[0].Config.Timeout)
		}
	}
	return t, nil
}

// looksLikeRPCPath reports whether p has the "/pkg.Service/Method" shape.
func looksLikeRPCPath(p string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return ok && strings.HasPrefix(p, "/") && svc != "" && method != "" && !strings.Contains(method, "/")
}

// CallContext derives a backend call's context: the client's deadline
// (0: none) capped by the target's timeout, or the target's timeout alone
// (enforced, not announced: see transcoder.CallDeadline), with md as
// outgoing metadata, changed as the policy decision says.
func (t *Target) CallContext(r *http.Request, client time.Duration, md metadata.MD) (context.Context, context.CancelFunc) {
	t.Adm.Metadata(md)
	ctx := transcoder.WithUpstreamInfo(metadata.NewOutgoingContext(r.Context(), md), r, t.Method, t.Route, t.Adm, false)
	return transcoder.CallDeadline(ctx, t.Timeout, client)
}

// dropHeaders are request headers that never become backend metadata:
// hop-by-hop and transport headers, and the gRPC-Web, Connect and CORS
// protocol headers the adapters consume themselves.
var dropHeaders = map[string]bool{
	"accept-encoding":   true,
	"content-encoding":  true,
	"content-length":    true,
	"content-type":      true,
	"connection":        true,
	"host":              true,
	"keep-alive":        true,
	"proxy-connection":  true,
	"te":                true,
	"trailer":           true,
	"transfer-encoding": true,
	"upgrade":           true,
	"user-agent":        true,
	"x-grpc-web":        true,
	"x-user-agent":      true,
}

// RequestMetadata turns the request headers of a gRPC-Web or Connect call
// into backend metadata: every header except reserved (grpc-*), Connect
// (connect-*), CORS and hop-by-hop ones, with -bin values base64-decoded,
// plus X-Forwarded-For, -Host and -Proto.
func RequestMetadata(r *http.Request) (metadata.MD, *call.Error) {
	md := make(metadata.MD, len(r.Header)+3)
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if dropHeaders[lk] || strings.HasPrefix(lk, "connect-") || strings.HasPrefix(lk, "access-control-") ||
			strings.HasPrefix(lk, "x-forwarded-") || !transcoder.ValidMetadataKey(lk) {
			continue
		}
		if strings.HasSuffix(lk, "-bin") {
			for _, v := range vs {
				for _, part := range strings.Split(v, ",") {
					b, err := transcoder.DecodeBase64(strings.TrimSpace(part))
					if err != nil {
						return nil, call.BadField(k, "header "+k+" is binary metadata (its name ends in -bin) and must be base64")
					}
					md[lk] = append(md[lk], string(b))
				}
			}
			continue
		}
		md[lk] = append(md[lk], vs...)
	}
	transcoder.SetForwarded(md, r)
	return md, nil
}

// LogFailure logs an error answered with a 5xx-class code and returns the
// error ID to send with it; it returns "" for client errors.
func (b *Base) LogFailure(r *http.Request, protocol string, ce *call.Error) string {
	call.ReportFrom(r.Context()).SetCode(ce.Code) // the code travels in the body
	if transcoder.HTTPStatus(ce.Code) < 500 || ce.Refusal {
		return ""
	}
	id := transcoder.NewErrorID()
	b.Logger.LogAttrs(r.Context(), slog.LevelError, "request failed",
		slog.String("inbound", protocol), slog.String("procedure", r.URL.Path),
		slog.String("code", ce.Code.String()), slog.String("error_id", id), slog.Any("error", ce))
	return id
}

// plan returns the wirejson plan of md, compiling it on first use; later
// calls are a lock-free map read.
func (b *Base) plan(md protoreflect.MessageDescriptor) *wirejson.Plan {
	if p, ok := b.plans.Load(md.FullName()); ok {
		return p.(*wirejson.Plan)
	}
	p := b.wire.Compile(md)
	b.plans.Store(md.FullName(), p)
	return p
}

// JSONToProto decodes a JSON message of type md and encodes it as
// protobuf. An empty body is the empty message.
func (b *Base) JSONToProto(md protoreflect.MessageDescriptor, body []byte) ([]byte, error) {
	if len(body) == 0 {
		return []byte{}, nil
	}
	if out, err := b.plan(md).AppendProto(nil, body); err == nil {
		return out, nil
	}
	// The dynamicpb path words the 400 exactly as protojson does.
	msg := dynamicpb.NewMessage(md)
	if len(body) > 0 {
		if err := b.JSONIn.Unmarshal(body, msg); err != nil {
			return nil, transcoder.JSONError(err, body, "")
		}
	}
	out, err := proto.Marshal(msg)
	if err != nil {
		return nil, call.Errorf(codes.InvalidArgument, "encode request: %v", err).WithCause(err)
	}
	return out, nil
}

// ProtoToJSON decodes a protobuf message of type md from a backend and
// renders it as JSON.
func (b *Base) ProtoToJSON(md protoreflect.MessageDescriptor, raw []byte) ([]byte, error) {
	if out, err := b.plan(md).AppendJSON(nil, raw); err == nil {
		return out, nil
	}
	msg := dynamicpb.NewMessage(md)
	if err := (proto.UnmarshalOptions{Resolver: b.Resolver}).Unmarshal(raw, msg); err != nil {
		return nil, call.Errorf(codes.Internal, "decode backend response: %v", err).WithCause(err)
	}
	out, err := b.JSONOut.Marshal(msg)
	if err != nil {
		return nil, call.Errorf(codes.Internal, "encode response as JSON: %v", err).WithCause(err)
	}
	return out, nil
}

// ReadMessage reads one request message in codec ("proto" or "json") and
// returns it as protobuf bytes.
func (b *Base) ReadMessage(in *EnvelopeReader, t *Target, codec string) ([]byte, error) {
	msg, err := in.Next()
	if err != nil {
		return nil, err
	}
	if codec == "json" {
		return b.JSONToProto(t.Method.Input(), msg)
	}
	return msg, nil
}

// PumpDone tracks a pump goroutine; wait lets an HTTP/1.x handler keep
// its connection reusable.
type PumpDone struct {
	done  chan struct{}
	drain bool
}

// drainLimit and drainWait bound how much of a request body an HTTP/1.x
// handler still reads after its call ended, and for how long: a client
// that sends its whole request before reading the answer (as HTTP/1.1
// clients do) finishes sending, and the connection can carry the next
// request instead of being closed under it.
const (
	drainLimit = 1 << 20
	drainWait  = 5 * time.Second
)

// StartPump runs pump in its own goroutine for a client-streaming call.
// Over HTTP/1.x the request body must be read to its end before the
// handler returns, or net/http closes the connection after a response it
// has already sent as keep-alive; call wait before returning.
func (b *Base) StartPump(r *http.Request, in *EnvelopeReader, cs grpc.ClientStream, t *Target, codec string, abort context.CancelCauseFunc) *PumpDone {
	p := &PumpDone{done: make(chan struct{}), drain: r.ProtoMajor == 1}
	go func() {
		defer close(p.done)
		b.pump(in, cs, t, codec, abort)
		if p.drain {
			_, _ = io.CopyN(io.Discard, in.R, drainLimit)
		}
	}()
	return p
}

// Wait waits, over HTTP/1.x and for at most drainWait, for the pump to
// finish reading the request body.
func (p *PumpDone) Wait() {
	if p == nil || !p.drain {
		return
	}
	t := time.NewTimer(drainWait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
}

// pump forwards the client's messages to the backend and half-closes when
// the request body ends. A malformed request aborts the call with the
// reason as the context's cause.
func (b *Base) pump(in *EnvelopeReader, cs grpc.ClientStream, t *Target, codec string, abort context.CancelCauseFunc) {
	for {
		msg, err := b.ReadMessage(in, t, codec)
		if errors.Is(err, io.EOF) {
			_ = cs.CloseSend()
			return
		}
		if err != nil {
			abort(call.FromError(err))
			return
		}
		if err := cs.SendMsg(&msg); err != nil {
			return // the call ended; RecvMsg reports how
		}
	}
}

// CallError is the status of a call that failed with err: the reason a
// request the gateway could not read aborted it, else err's.
func (b *Base) CallError(ctx context.Context, err error) *call.Error {
	var cause *call.Error
	if errors.As(context.Cause(ctx), &cause) {
		return cause
	}
	return call.FromError(err)
}
