package grpc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/upstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrUnknownMethod is the cause of [Proxy.Match]'s error when the
// snapshot has no such service or method; branch on it with errors.Is (the
// gateway refreshes descriptors once and matches again).
var ErrUnknownMethod = errors.New("unknown gRPC method")

// Params configures [New].
type Params struct {
	// Snapshot is the descriptor snapshot whose services are routed.
	Snapshot *registry.Snapshot
	// Upstreams returns the upstream of a name from the snapshot.
	Upstreams func(name string) (*upstream.Upstream, bool)
	// Logger receives upstream failures (nil: discard).
	Logger *slog.Logger
	// RouteTimeout returns the configured route timeout of a method (0:
	// none). It caps a client's grpc-timeout and applies when the client
	// sets none. Nil: no route timeouts.
	RouteTimeout func(protoreflect.MethodDescriptor) time.Duration
	// Policies finds each method's policy chain (nil: no policies).
	Policies transcoder.Policies
	// Cache returns, for a unary method of the named upstream, the
	// connection whose response cache may answer its gRPC calls
	// (transcoder.CacheConn), nil when none may. Such calls take the
	// handler path. Nil: no caching.
	Cache func(md protoreflect.MethodDescriptor, upstream string) grpc.ClientConnInterface
	// Idempotent reports whether a config route says a method's calls
	// may run twice (idempotent: true). Nil: only the methods'
	// idempotency_level counts.
	Idempotent func(protoreflect.MethodDescriptor) bool
}

// Proxy is the gRPC pass-through adapter: it forwards gRPC requests
// to the upstream serving the method as HTTP/2 requests (h2c, or h2 over
// TLS) without decoding a message. Headers (metadata, grpc-timeout,
// grpc-encoding, te...), both body streams and the trailers go through as
// they are, flushed as they arrive, so every streaming shape is full
// duplex. It only reads the 5-byte length prefixes, to enforce the
// upstream's max_message_bytes in both directions.
//
// A Proxy belongs to one snapshot; build a new one per snapshot. It is
// safe for concurrent use.
type Proxy struct {
	routes map[string]*Route
	logger *slog.Logger
}

// Route is one method that [Proxy.Match] resolved.
type Route struct {
	// Service and Method are the names from the request path.
	Service, Method string
	// Upstream serves the method.
	Upstream *upstream.Upstream
	// unary is true for methods that stream neither way; they get the
	// upstream's default timeout when the client sets no deadline, and
	// their one-message answer is not flushed piecemeal.
	unary bool
	// timeout is the route's timeout (0: none). limitField is the
	// grpc-timeout of the limit that caps a client's deadline (the route's
	// timeout, else the upstream's for unary calls), formatted once per
	// snapshot.
	timeout    time.Duration
	limitField string
	// md is the method; chain is its policy chain (nil when it has no
	// plugin) and route the config route it comes from.
	md    protoreflect.MethodDescriptor
	chain *policy.Chain
	route string
	// cache is the caching connection of a unary method whose gRPC
	// calls a response cache may answer (cache.go); nil: none.
	cache grpc.ClientConnInterface
	// replayable: a unary call that may run twice, which the relay keeps
	// until its answer starts so that it can send it to another target.
	replayable bool
}

// New builds the proxy of one snapshot: a table from every
// "/pkg.Service/Method" path to its upstream, so that matching a request
// costs one map lookup. Services whose upstream is not in Upstreams are
// left out (they answer UNIMPLEMENTED).
func New(p Params) *Proxy {
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Proxy{routes: map[string]*Route{}, logger: logger}
	if p.Snapshot == nil || p.Upstreams == nil {
		return g
	}
	for _, svc := range p.Snapshot.Services() {
		u, ok := p.Upstreams(svc.Upstream)
		if !ok {
			continue
		}
		name := string(svc.Desc.FullName())
		methods := svc.Desc.Methods()
		for i := 0; i < methods.Len(); i++ {
			md := methods.Get(i)
			rt := &Route{
				Service:  name,
				Method:   string(md.Name()),
				Upstream: u,
				unary:    !md.IsStreamingClient() && !md.IsStreamingServer(),
				md:       md,
			}
			rt.replayable = rt.unary && (transcoder.Idempotent(md) || p.Idempotent != nil && p.Idempotent(md))
			if p.Policies != nil {
				if chain, route := p.Policies.ForMethod(string(md.FullName())); !chain.Empty() {
					rt.chain, rt.route = chain, route
				}
			}
			if p.RouteTimeout != nil {
				rt.timeout = p.RouteTimeout(md)
			}
			if p.Cache != nil && rt.unary {
				rt.cache = p.Cache(md, svc.Upstream)
			}
			if limit := rt.limit(); limit > 0 {
				rt.limitField = formatGRPCTimeout(limit)
			}
			g.routes["/"+name+"/"+string(md.Name())] = rt
		}
	}
	return g
}

// deadlineGrace is how long past a call's deadline the gateway waits for
// the backend's own DEADLINE_EXCEEDED before ending the call itself, when
// the backend knows the deadline.
const deadlineGrace = 500 * time.Millisecond

// deadline applies the deadline rules of a pass-through call to the
// client's grpc-timeout value v ("" when none): the route's timeout caps
// the client's deadline, and unary calls without one get the upstream's
// timeout. The client's deadline, capped, is announced to the backend
// (field is the grpc-timeout to send instead of the client's; "" keeps
// it); a limit on a call without one is enforced by the gateway alone
// (announced false), as transcoder.CallDeadline does for the other protocols.
func (rt *Route) deadline(v string) (timeout time.Duration, field string, announced bool, err error) {
	var client time.Duration
	if v != "" {
		d, perr := transcoder.ParseGRPCTimeout(v)
		if perr != nil {
			return 0, "", false, call.Errorf(codes.Internal, "malformed grpc-timeout header %q: %v", v, perr)
		}
		client = d
	}
	timeout, announced = transcoder.Announce(rt.limit(), client)
	if announced && timeout != client {
		field = rt.limitField // limit < client: the limit is what caps it
	}
	return timeout, field, announced, nil
}

// limit is the gateway's own bound on the route's calls: the route's
// timeout, else the upstream's for unary calls (0: none).
func (rt *Route) limit() time.Duration {
	if rt.timeout == 0 && rt.unary {
		return time.Duration(rt.Upstream.Config.Timeout)
	}
	return rt.timeout
}

// gatewayBound is how long the gateway lets a call run: a little past a
// deadline the backend knows, so that its own DEADLINE_EXCEEDED (with its
// message and metadata) wins the race; exactly the deadline otherwise.
func gatewayBound(timeout time.Duration, announced bool) time.Duration {
	if announced {
		return timeout + deadlineGrace
	}
	return timeout
}

// errNeedHTTP2 answers gRPC requests that came over HTTP/1.x.
var errNeedHTTP2 = call.Errorf(codes.Unimplemented,
	"gRPC requires HTTP/2: use h2c (prior knowledge) or HTTP/2 over TLS; this request came over HTTP/1.x")

// Match resolves the request path "/pkg.Service/Method" to its route. Its
// errors are gRPC UNIMPLEMENTED statuses worded as grpc-go words them, with
// cause [ErrUnknownMethod] for names the snapshot lacks.
func (p *Proxy) Match(r *http.Request) (*Route, error) {
	if r.ProtoMajor < 2 {
		return nil, errNeedHTTP2
	}
	if r.Method != http.MethodPost {
		return nil, call.Errorf(codes.Unimplemented, "gRPC calls are POST requests, not %s", r.Method)
	}
	path := r.URL.Path
	if rt, ok := p.routes[path]; ok {
		return rt, nil
	}
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !strings.HasPrefix(path, "/") || !ok || svc == "" || method == "" || strings.Contains(method, "/") {
		return nil, call.Errorf(codes.Unimplemented, "malformed method name: %q", path).WithCause(ErrUnknownMethod)
	}
	for k, rt := range p.routes {
		if rt.Service == svc && strings.HasPrefix(k, "/"+svc+"/") {
			return nil, call.Errorf(codes.Unimplemented, "unknown method %s for service %s", method, svc).WithCause(ErrUnknownMethod)
		}
	}
	return nil, call.Errorf(codes.Unimplemented, "unknown service %s", svc).WithCause(ErrUnknownMethod)
}

// ServeHTTP matches the request and serves it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, err := p.Match(r)
	if err != nil {
		p.WriteError(w, r, err)
		return
	}
	p.Serve(w, r, rt)
}

// copyBufSize is the size of the pooled buffers that response bodies are
// copied through.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// grpcCall is the per-RPC state of one proxied call: one allocation that
// holds the request body wrapper.
type grpcCall struct {
	body    io.ReadCloser
	scan    frameScanner
	tooBig  atomic.Uint32 // size of the request message over the limit
	flusher *http.ResponseController
}

// Read reads the client's request stream and checks its message sizes. A
// message over the limit ends the stream with an error, which aborts the
// upstream request; Serve then answers RESOURCE_EXHAUSTED.
func (c *grpcCall) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	if n > 0 {
		if size := c.scan.consume(p[:n]); size > 0 {
			c.tooBig.Store(size)
			return 0, errRequestTooBig
		}
	}
	return n, err
}

// Close closes the client's request stream.
func (c *grpcCall) Close() error { return c.body.Close() }

var errRequestTooBig = errors.New("request message over the size limit")

// maxReplay bounds the request the handler path reads whole to be able to
// send it again (one unary request message with its 5-byte prefix).
const maxReplay = 64 << 10

// readReplayable reads the request of a call that may be sent again
// through c (which checks its message size), up to maxReplay bytes: whole
// reports whether it ended within them; otherwise buf is its start and
// the rest is still to be read from c. size is the request's
// Content-Length (-1: unknown). When ctx ends first (the call's deadline)
// the client's body is closed, so that a client that stops sending does
// not hold the call past it.
func readReplayable(ctx context.Context, c *grpcCall, size int64) (buf []byte, whole bool, err error) {
	stop := context.AfterFunc(ctx, func() { _ = c.body.Close() })
	defer stop()
	n := 512
	if size >= 0 && size < maxReplay {
		n = int(size) + 1 // room for the read that reports the end
	}
	buf = make([]byte, 0, n)
	for len(buf) <= maxReplay {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), maxReplay+1-len(buf)))
		}
		k, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		switch {
		case err == io.EOF:
			return buf, len(buf) <= maxReplay, nil
		case err != nil:
			return nil, false, err
		}
	}
	return buf, false, nil
}

// replayBody is a request read whole, read from its start by each attempt.
type replayBody struct {
	b   []byte
	off int
}

func (b *replayBody) Read(p []byte) (int, error) {
	if b.off >= len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.off:])
	b.off += n
	return n, nil
}

func (b *replayBody) Close() error { return nil }

// prefixBody is a request too large to keep: the bytes readReplayable
// read, then the rest of the client's stream.
type prefixBody struct {
	head []byte
	rest io.ReadCloser
}

func (b *prefixBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	return b.rest.Read(p)
}

func (b *prefixBody) Close() error { return b.rest.Close() }

// teTrailers is the TE value of every upstream request; never modified.
var teTrailers = []string{"trailers"}

// Serve forwards one call to rt's upstream and streams the answer back.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, rt *Route) {
	u := rt.Upstream
	// The policy seam of the handler path, where a decision may block (a
	// Redis round trip): the relay hands such calls here.
	var adm *transcoder.Admission
	if rt.chain != nil {
		adm = &transcoder.Admission{}
		adm.Describe(nil, call.GRPC, rt.md, u.Name, r)
		adm.SetChain(rt.chain)
		adm.Call.Route = rt.route
		cerr := adm.Check(r.Context())
		adm.SetHeaders(w.Header(), false)
		defer adm.Done()
		if cerr != nil {
			p.WriteError(w, r, cerr)
			return
		}
	}
	if rt.cache != nil && p.serveCached(w, r, rt, adm) {
		return
	}
	maxReq, maxResp := messageLimits(u)
	// The inbound header map becomes the upstream request's: nothing reads
	// it after this handler, and copying it costs a map per call. HTTP/2
	// already refuses connection-specific fields; drop the rest of the
	// hop-by-hop ones.
	header := r.Header
	if header == nil {
		header = http.Header{}
	}
	for _, k := range hopByHopNames {
		delete(header, k)
	}
	adm.Header(header)
	// gRPC requires "te: trailers"; it is the only TE value HTTP/2 allows.
	header["Te"] = teTrailers
	fwd := transcoder.ForwardedFor(r.RemoteAddr, r.TLS != nil, r.Host,
		strings.Join(header.Values("X-Forwarded-For"), ", "), header.Get("X-Forwarded-Host"), header.Get("X-Forwarded-Proto"))
	if fwd.For != "" {
		header["X-Forwarded-For"] = []string{fwd.For}
	}
	header["X-Forwarded-Host"] = []string{fwd.Host}
	header["X-Forwarded-Proto"] = []string{fwd.Proto}

	timeout, field, announced, err := rt.deadline(header.Get("Grpc-Timeout"))
	if err != nil {
		p.WriteError(w, r, err)
		return
	}
	if field != "" {
		header["Grpc-Timeout"] = []string{field}
	}
	// The request context ends when the client resets the stream, which
	// resets the upstream stream too. Nothing else needs to cancel: a
	// request message over the limit fails the body read (aborting the
	// upstream request) and closing resp.Body aborts the response.
	ctx := transcoder.WithUpstreamInfo(r.Context(), r, rt.md, nil, adm, false)
	var deadline time.Time // the call's deadline; zero: none
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, gatewayBound(timeout, announced))
		defer cancel()
	}

	c := &grpcCall{body: r.Body, scan: frameScanner{max: maxReq, gzip: r.Header.Get("Grpc-Encoding") == "gzip"}}
	var body io.ReadCloser = c
	length := r.ContentLength
	var getBody func() (io.ReadCloser, error)
	if rt.replayable && u.CanRetry() {
		// An idempotent unary call with a small request is read whole, so
		// that the upstream can send it again to another target when its
		// target breaks or refuses it before answering, as the frame relay
		// does (upstream.Upstream.RoundTripper). A larger one streams
		// through, not retried.
		buf, whole, err := readReplayable(ctx, c, r.ContentLength)
		if err != nil {
			p.fail(ctx, deadline, w, r, c, rt, false, err)
			return
		}
		if whole {
			if ci := upstream.CallInfoFrom(ctx); ci != nil {
				ci.Idempotent = true // the method's idempotency_level, or its route's idempotent: true
			}
			body, length = &replayBody{b: buf}, int64(len(buf))
			getBody = func() (io.ReadCloser, error) { return &replayBody{b: buf}, nil }
		} else {
			body = &prefixBody{head: buf, rest: c}
		}
	}
	out := (&http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Scheme: u.Scheme(), Host: u.Name, Path: r.URL.Path, RawPath: r.URL.RawPath},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		Body:          body,
		GetBody:       getBody,
		ContentLength: length,
	}).WithContext(ctx)
	out.Host = out.URL.Host

	resp, err := u.RoundTripper().RoundTrip(out)
	if err != nil {
		p.fail(ctx, deadline, w, r, c, rt, false, err)
		return
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK && resp.Header.Get("Grpc-Status") == "" {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		p.WriteError(w, r, call.Errorf(grpcCodeForHTTP(resp.StatusCode),
			"upstream %s answered HTTP %d instead of a gRPC response", u.Name, resp.StatusCode))
		return
	}
	dst := w.Header()
	for k, vv := range resp.Header {
		if !hopByHop[k] {
			dst[k] = vv
		}
	}
	if resp.Header.Get("Grpc-Status") != "" {
		// Trailers-only: the status came with the headers and there is
		// no body; answer the same way.
		w.WriteHeader(resp.StatusCode)
		return
	}
	w.WriteHeader(resp.StatusCode)
	if !rt.unary {
		// Streams flush the headers now and every write after them, so
		// each side sees the other's messages as they come. A unary
		// answer is one message: headers, message and trailers leave
		// together when the handler returns, saving two writes.
		c.flusher = http.NewResponseController(w)
		_ = c.flusher.Flush()
	}

	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	rs := frameScanner{max: maxResp}
	pending := 0 // bytes at buf[:pending]: a partial header held back
	for {
		n, rerr := resp.Body.Read(buf[pending:])
		if end := pending + n; end > pending {
			writable, tooBig := rs.boundary(buf[:end])
			if writable > 0 {
				if _, werr := w.Write(buf[:writable]); werr != nil {
					return // the client went away; closing resp.Body resets the upstream stream
				}
				if c.flusher != nil {
					_ = c.flusher.Flush()
				}
			}
			if tooBig > 0 {
				p.writeStatus(w, r, true, call.Errorf(codes.ResourceExhausted,
					"response message of %d bytes is larger than the limit of %d bytes (upstream %s max_message_bytes)", tooBig, maxResp, u.Name))
				return
			}
			pending = copy(buf, buf[writable:end])
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			p.fail(ctx, deadline, w, r, c, rt, true, rerr)
			return
		}
	}
	if pending > 0 {
		// The upstream ended inside a message header; pass it on as is
		// and let the client report the truncated stream.
		_, _ = w.Write(buf[:pending])
	}
	if size := c.tooBig.Load(); size > 0 {
		p.writeStatus(w, r, true, tooBigError(size, maxReq, u.Name))
		return
	}
	if len(resp.Trailer) == 0 || resp.Trailer.Get("Grpc-Status") == "" {
		p.writeStatus(w, r, true, call.Errorf(codes.Internal, "upstream %s ended the stream without a gRPC status", u.Name))
		return
	}
	for k, vv := range resp.Trailer {
		dst[trailerKey(k)] = vv
	}
}

// trailerKey returns k with [http.TrailerPrefix], without allocating for
// the trailers every gRPC call has.
func trailerKey(k string) string {
	switch k {
	case "Grpc-Status":
		return http.TrailerPrefix + "Grpc-Status"
	case "Grpc-Message":
		return http.TrailerPrefix + "Grpc-Message"
	case "Grpc-Status-Details-Bin":
		return http.TrailerPrefix + "Grpc-Status-Details-Bin"
	}
	return http.TrailerPrefix + k
}

func tooBigError(size, limit uint32, name string) *call.Error {
	return call.Errorf(codes.ResourceExhausted,
		"request message of %d bytes is larger than the limit of %d bytes (upstream %s max_request_message_bytes)", size, limit, name)
}

// messageLimits returns the largest request and response messages of
// calls to u (max_request_message_bytes, max_message_bytes; 4 MiB when
// unset).
func messageLimits(u *upstream.Upstream) (req, resp uint32) {
	resp = 4 << 20
	if m := u.Config.MaxMessageBytes; m > 0 {
		resp = uint32(m)
	}
	req = resp
	if m := u.Config.MaxRequestMessageBytes; m > 0 {
		req = uint32(m)
	}
	return req, resp
}

// fail answers a call whose upstream request failed, before or after the
// response started: a request message over the limit, the client gone
// (nothing to answer), a circuit breaker's refusal, the deadline, or an
// unreachable or broken upstream.
func (p *Proxy) fail(ctx context.Context, deadline time.Time, w http.ResponseWriter, r *http.Request, c *grpcCall, rt *Route, started bool, err error) {
	u := rt.Upstream
	var ce *call.Error
	switch {
	case c.tooBig.Load() > 0:
		p.writeStatus(w, r, started, tooBigError(c.tooBig.Load(), c.scan.max, u.Name))
	case r.Context().Err() != nil:
		// The client canceled (RST_STREAM) or went away: the upstream
		// request was canceled with it and there is no one to answer.
	case errors.As(err, &ce) && ce.Refusal:
		// A full circuit breaker (breaker.OpenError.CallError): answered
		// as it is, a refusal not logged as a failure, as the relay
		// answers it.
		p.writeStatus(w, r, started, ce)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || (!deadline.IsZero() && !time.Now().Before(deadline)):
		// Past the deadline, a reset upstream stream is the backend
		// giving up on the deadline too.
		p.writeStatus(w, r, started, call.Errorf(codes.DeadlineExceeded, "deadline exceeded while waiting for upstream %s", u.Name))
	case started:
		p.writeStatus(w, r, started, call.Errorf(codes.Unavailable, "the stream from upstream %s broke", u.Name).WithCause(err))
	default:
		p.writeStatus(w, r, started, call.Errorf(codes.Unavailable, "upstream %s is unavailable", u.Name).WithCause(err))
	}
}

// WriteError answers err as a trailers-only gRPC response (the status in
// the response headers); nothing may have been written yet. Server-side
// failures (Internal, Unavailable, Unknown, DataLoss) get an error ID,
// logged with the cause and sent in the Rosetta-Error-Id header.
func (p *Proxy) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	writeGRPCStatus(w, r, p.logger, false, err)
}

func (p *Proxy) writeStatus(w http.ResponseWriter, r *http.Request, started bool, err error) {
	writeGRPCStatus(w, r, p.logger, started, err)
}

// writeGRPCStatus renders err as a gRPC status: in the response headers
// (trailers-only) when the response has not started, else in trailers.
func writeGRPCStatus(w http.ResponseWriter, r *http.Request, logger *slog.Logger, started bool, err error) {
	// logger is never nil: New defaults it.
	ce := call.FromError(err)
	h := w.Header()
	prefix := ""
	if started {
		prefix = http.TrailerPrefix
	}
	switch {
	case ce.Refusal:
		// A policy refusal is an answer, not a failure: nothing to log.
	case ce.Code == codes.Internal, ce.Code == codes.Unavailable, ce.Code == codes.Unknown, ce.Code == codes.DataLoss:
		id := transcoder.NewErrorID()
		h[prefix+transcoder.ErrorIDHeader] = []string{id}
		logger.LogAttrs(r.Context(), slog.LevelError, "grpc call failed",
			slog.String("path", r.URL.Path), slog.String("code", ce.Code.String()),
			slog.String("error_id", id), slog.Any("error", ce))
	}
	transcoder.SetGRPCStatus(h, prefix, ce)
	if !started {
		h.Set("Content-Type", "application/grpc")
		h.Del("Content-Length")
		w.WriteHeader(http.StatusOK)
	}
}
