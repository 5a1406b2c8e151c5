package grpc

import (
	"cmp"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
	"github.com/rosetta-gateway/rosetta/upstream/breaker"
	"github.com/rosetta-gateway/rosetta/upstream/retry"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// RelayResult is what the access log needs of a relayed call.
type RelayResult struct {
	// Code is the gRPC status the client got; HasCode is false when the
	// client reset the stream before any.
	Code    codes.Code
	HasCode bool
	// ErrorID is set when the gateway failed the call (see ErrorIDHeader).
	ErrorID string
	// BytesIn and BytesOut count request and response DATA bytes.
	BytesIn, BytesOut int64
	// Consumer is the identity the policy chain established ("" when
	// anonymous).
	Consumer string
	// Method is the call's method and Upstream its upstream's name;
	// Target is the address of the target that took it ("" when none
	// did: refused before a pick).
	Method   protoreflect.MethodDescriptor
	Upstream string
	Target   string
	// Refusal is the policy chain's refusal (nil when it allowed the
	// call or did not run).
	Refusal *call.Error
}

// RelayOptions are what the gateway's cross-cutting layers add to one
// relayed call.
type RelayOptions struct {
	// Fields are sent to the upstream in place of the client's fields of
	// the same names (lower case): x-request-id, traceparent,
	// tracestate. The relay keeps the slice until the call ends.
	Fields []hpack.HeaderField
	// Response are added to the client's response head (the first
	// header block, or a trailers-only answer) in place of the
	// upstream's fields of the same names: x-request-id. The relay
	// keeps the slice until the call ends.
	Response []hpack.HeaderField
	// Done, when not nil, runs once when the client's side of the call
	// is over.
	Done func(*RelayResult)
	// Start is when the call arrived (zero: when RelayWith runs); the
	// deadline and the target's answer time count from it.
	Start time.Time
}

// Relay takes a gRPC call over HTTP/2 frame by frame, when it can: the
// path names a method of the snapshot and the method's upstream has a
// relay connection ready (see upstream.Upstream.RelayConn). Otherwise it
// returns nil and the call goes to [Proxy.Serve] through net/http
// semantics, which also covers refreshing descriptors, malformed headers
// and upstreams still connecting. The two paths answer alike: same
// header handling, deadlines, size limits and error statuses.
//
// Relayed frames are forwarded as they arrive, without a goroutine per
// call; flow control is passed through (a client's window is granted back
// as its bytes reach the upstream connection, and the other way). done,
// when not nil, runs once when the client's side of the call is over.
func (p *Proxy) Relay(in *h2.Stream, head *h2.RequestHead, done func(*RelayResult)) h2.Events {
	return p.RelayWith(in, head, RelayOptions{Done: done})
}

// Method returns the method of a gRPC path ("/pkg.Service/Method") that
// the proxy routes, nil for others.
func (p *Proxy) Method(path string) protoreflect.MethodDescriptor {
	if rt, ok := p.routes[path]; ok {
		return rt.md
	}
	return nil
}

// RelayWith is [Proxy.Relay] with the fields the gateway adds to the
// call's upstream request and response head.
func (p *Proxy) RelayWith(in *h2.Stream, head *h2.RequestHead, o RelayOptions) h2.Events {
	rt, ok := p.routes[head.Path]
	if !ok || head.Method != "POST" {
		return nil
	}
	u := rt.Upstream
	done := o.Done
	c := &relayCall{p: p, rt: rt, in: in, path: head.Path, done: done, inEnded: head.EndStream, resp: o.Response}
	c.res.Method, c.res.Upstream = rt.md, u.Name
	var key uint64
	authed := false // the chain's authentication ran (TryAuthenticate)
	if u.Balancer().Algorithm() == balance.RingHash {
		// hash_on reads the call's headers and peer, or its consumer or
		// claims, which only the chain's authentication knows: it runs
		// first then, before the pick. It counts and holds nothing, so a
		// call that goes to the handler path below (which runs the whole
		// chain) has taken nothing twice; the limits run after the
		// breakers, as for other calls.
		if rt.chain != nil && u.HashOnCaller() {
			c.describe(head)
			cerr, pending := rt.chain.TryAuthenticate(&c.adm.Call, &c.adm.State)
			if pending {
				return nil
			}
			if cerr != nil {
				c.adm.Done()
				return p.refuse(in, head, c, cerr, true)
			}
			authed = true
		} else {
			c.adm.Call = call.Call{Header: head, Peer: peerOf(head)}
		}
		key = u.HashKey(&c.adm.Call, c.adm.State.Claims)
	}
	// Calls that arrived in one read go to one target together while
	// least_request allows (PickEndpointNear), one write for them all.
	prev, _ := in.BatchNote().(*balance.Endpoint)
	ep, err := u.PickEndpointNear(key, prev)
	if err != nil {
		return nil
	}
	in.SetBatchNote(ep)
	target := ep.Addr()
	c.res.Target = target
	cc := u.RelayConn(target)
	if cc == nil {
		return nil
	}
	timeout, timeoutField, announced, err := rt.deadline(head.Get("grpc-timeout"))
	if err != nil {
		return nil // malformed grpc-timeout: Serve answers it
	}
	// The circuit breakers, without waiting: a call that would wait for a
	// slot goes to the handler path, which may block.
	if brk := u.Breaker(); brk != nil {
		ok, wait := brk.TryAcquire()
		if !ok {
			if wait {
				return nil
			}
			return p.refuse(in, head, c, transcoder.Refusal(call.Errorf(codes.Unavailable, "%s", brk.OpenError().Error())), false)
		}
		c.brk = brk
	}
	if tb := u.TargetBreaker(target); tb != nil {
		ok, wait := tb.TryAcquire()
		if !ok {
			c.releaseBreakers()
			if wait {
				return nil
			}
			return p.refuse(in, head, c, transcoder.Refusal(call.Errorf(codes.Unavailable, "%s", tb.OpenError().Error())), false)
		}
		c.tbrk = tb
	}
	if rt.chain != nil {
		// The policy seam of the relay, once every other reason to leave
		// the call to the handler path is ruled out (so it is counted
		// once). Decisions that need no I/O are made here, on the
		// connection's reading goroutine, without a goroutine per call;
		// one that needs I/O (a Redis limit, a JWKS fetch) sends the call
		// to the handler path, which may block.
		var cerr *call.Error
		var pending bool
		if authed {
			cerr, pending = rt.chain.TryCheckRest(&c.adm.Call, &c.adm.State)
		} else {
			c.describe(head)
			cerr, pending = rt.chain.TryCheck(&c.adm.Call, &c.adm.State)
		}
		if pending {
			c.releaseBreakers()
			return nil
		}
		if cerr != nil {
			c.adm.Done()
			c.releaseBreakers()
			return p.refuse(in, head, c, cerr, true)
		}
		if n := len(c.adm.State.Response); n > 0 {
			// Fields the chain adds to every answer (a deprecated
			// route's Deprecation, Sunset and Link) join the response
			// head, before the request ID.
			resp := make([]hpack.HeaderField, 0, n+len(c.resp))
			for _, f := range c.adm.State.Response {
				resp = append(resp, hpack.HeaderField{Name: f.Name, Value: f.Value})
			}
			c.resp = append(resp, c.resp...)
		}
	}
	strip := rt.chain != nil && len(rt.chain.Strip()) > 0
	// The upstream head is encoded by NewStream and not kept: its array
	// can live on the stack (only an unusually long head grows it).
	var fieldsArray [24]hpack.HeaderField
	fields := fieldsArray[:0]
	fields = append(fields,
		hpack.HeaderField{Name: ":method", Value: "POST"},
		hpack.HeaderField{Name: ":scheme", Value: u.Scheme()},
		hpack.HeaderField{Name: ":path", Value: head.Path},
		hpack.HeaderField{Name: ":authority", Value: target})
	var prevFor, prevHost, prevProto string
	for _, f := range head.Fields {
		switch {
		case dropped(f.Name) || (f.Name == "grpc-timeout" && timeoutField != "") || (strip && rt.chain.Strips(f.Name)) || replaced(o.Fields, f.Name):
			continue
		case f.Name == "x-forwarded-for":
			prevFor = joinField(prevFor, f.Value)
			continue
		case f.Name == "x-forwarded-host":
			prevHost = cmp.Or(prevHost, f.Value)
			continue
		case f.Name == "x-forwarded-proto":
			prevProto = cmp.Or(prevProto, f.Value)
			continue
		}
		fields = append(fields, f)
	}
	fwd := transcoder.ForwardedFor(head.RemoteAddr, head.TLS != nil, head.Authority, prevFor, prevHost, prevProto)
	if fwd.For != "" {
		fields = append(fields, hpack.HeaderField{Name: "x-forwarded-for", Value: fwd.For})
	}
	fields = append(fields,
		hpack.HeaderField{Name: "x-forwarded-host", Value: fwd.Host},
		hpack.HeaderField{Name: "x-forwarded-proto", Value: fwd.Proto},
		hpack.HeaderField{Name: "te", Value: "trailers"})
	if timeoutField != "" {
		fields = append(fields, hpack.HeaderField{Name: "grpc-timeout", Value: timeoutField})
	}
	for _, f := range c.adm.State.Upstream {
		fields = append(fields, hpack.HeaderField{Name: f.Name, Value: f.Value})
	}
	fields = append(fields, o.Fields...)
	maxReq, maxResp := messageLimits(u)
	c.reqScan = frameScanner{max: maxReq, gzip: head.Get("grpc-encoding") == "gzip"}
	c.respScan = frameScanner{max: maxResp}
	if rt.replayable && u.CanRetry() {
		// An idempotent unary call is kept until its answer starts, so
		// that a target that breaks or refuses it can be replaced.
		c.replay = &relayReplay{fields: append([]hpack.HeaderField(nil), fields...), key: key}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	up, err := cc.NewStream(fields, head.EndStream, c, in)
	if err != nil {
		c.adm.Done()
		c.releaseBreakers()
		return nil
	}
	now := o.Start
	if now.IsZero() {
		now = time.Now()
	}
	c.ep, c.epStart = ep, now
	ep.Start()
	c.up = up
	in.SetCreditTo(up)
	if timeout > 0 {
		c.deadline = now.Add(timeout)
		c.timer = time.AfterFunc(gatewayBound(timeout, announced), c.onDeadline)
	}
	return c
}

// describe sets the call's policy chain and its description, for the
// chain of its route.
func (c *relayCall) describe(head *h2.RequestHead) {
	c.adm.SetChain(c.rt.chain)
	c.adm.Call = call.Call{
		Protocol:   call.GRPC,
		Procedure:  head.Path,
		Method:     c.rt.md,
		Route:      c.rt.route,
		Upstream:   c.rt.Upstream.Name,
		HTTPMethod: head.Method,
		Header:     head,
		Peer:       peerOf(head),
	}
}

// peerOf returns the client's address, parsed once per connection by
// the h2 server when it could (as call.ParsePeer parses it otherwise).
func peerOf(head *h2.RequestHead) netip.AddrPort {
	if head.Peer.IsValid() {
		return head.Peer
	}
	return call.ParsePeer(head.RemoteAddr)
}

// replaced reports whether fields has a field named name.
func replaced(fields []hpack.HeaderField, name string) bool {
	for i := range fields {
		if fields[i].Name == name {
			return true
		}
	}
	return false
}

// responseHead returns the client's response head: fields (the
// upstream's, filtered) with the gateway's response fields in place of
// the upstream's of the same names, built in buf when it fits.
func (c *relayCall) responseHead(buf *[24]hpack.HeaderField, fields []hpack.HeaderField) []hpack.HeaderField {
	if len(c.resp) == 0 {
		return fields
	}
	out := buf[:0]
	for _, f := range fields {
		if !replaced(c.resp, f.Name) {
			out = append(out, f)
		}
	}
	return append(out, c.resp...)
}

// joinField joins repeated values of a list-valued field, as
// http.Header.Get followed by the others would read them.
func joinField(prev, v string) string {
	if prev == "" {
		return v
	}
	return prev + ", " + v
}

// relayDropped are request fields not forwarded: hop-by-hop ones, te and
// host (set again), in HTTP/2's lower case.
var relayDropped = func() map[string]bool {
	m := map[string]bool{"te": true, "host": true}
	for k := range hopByHop {
		if k != "Content-Length" {
			m[strings.ToLower(k)] = true
		}
	}
	return m
}()

// relayDroppedLens has bit n set when relayDropped has a name of n
// bytes.
var relayDroppedLens = func() (m uint64) {
	for k := range relayDropped {
		m |= 1 << len(k)
	}
	return m
}()

// dropped reports whether relayDropped has name; most names are told
// apart by their length, without hashing them.
func dropped(name string) bool {
	return len(name) < 64 && relayDroppedLens&(1<<len(name)) != 0 && relayDropped[name]
}

// relayCall is one relayed call: the Events of both its streams.
type relayCall struct {
	p    *Proxy
	rt   *Route
	in   *h2.Stream // the client's
	up   *h2.Stream // the upstream's
	path string
	done func(*RelayResult)
	resp []hpack.HeaderField // RelayOptions.Response

	mu       sync.Mutex
	reqScan  frameScanner
	respScan frameScanner
	hold     []byte // a partial message header held back from the client
	deadline time.Time
	timer    *time.Timer
	started  bool // response headers sent to the client
	finished bool // the client's response is complete (or it reset)
	inEnded  bool // the client ended its request stream
	res      RelayResult
	// adm is the call's policy decision; Done runs in finishLocked.
	adm transcoder.Admission
	// ep is the target (in flight until the call ends, when Done gets
	// outcome); brk and tbrk are the breaker slots the call holds.
	ep        *balance.Endpoint
	epStart   time.Time // when the call went to ep; zero once its answer began
	outcome   balance.Outcome
	brk, tbrk *breaker.Breaker
	// replay keeps an idempotent unary call's request for a retry on
	// another target (nil: not retried).
	replay *relayReplay
}

// relayReplay is what a relayed call keeps to send itself again.
type relayReplay struct {
	fields []hpack.HeaderField // the upstream request head
	body   []byte              // the request bytes forwarded so far
	key    uint64              // the ring_hash key
	tries  int                 // attempts made
}

// releaseBreakers gives back the breaker slots the call holds.
func (c *relayCall) releaseBreakers() {
	if c.brk != nil {
		c.brk.Release()
		c.brk = nil
	}
	if c.tbrk != nil {
		c.tbrk.Release()
		c.tbrk = nil
	}
}

// Headers handles the upstream's response head and trailers, and
// (rarely) request trailers from the client.
func (c *relayCall) Headers(s *h2.Stream, fields []hpack.HeaderField, end bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != c.in && s != c.up {
		return // an upstream stream replaced by a replay
	}
	if s == c.in {
		c.inEnded = true
		if !c.finished {
			_ = c.up.WriteHeaders(filterFields(fields), true)
		}
		return
	}
	if c.finished {
		return
	}
	u := c.rt.Upstream
	if c.ep != nil && !c.epStart.IsZero() {
		// The target's answer time, for PickNear.
		c.ep.ObserveLatency(time.Since(c.epStart))
		c.epStart = time.Time{}
	}
	if !c.started {
		status, grpcStatus := "", ""
		for _, f := range fields {
			switch f.Name {
			case ":status":
				status = f.Value
			case "grpc-status":
				grpcStatus = f.Value
			}
		}
		if status != "200" && grpcStatus == "" {
			code, _ := strconv.Atoi(status)
			if code >= 500 {
				c.outcome = balance.ServerFailure
			}
			c.up.Reset(http2.ErrCodeCancel)
			c.failLocked(call.Errorf(grpcCodeForHTTP(code), "upstream %s answered HTTP %d instead of a gRPC response", u.Name, code))
			return
		}
		if !end {
			c.started = true
			var buf [24]hpack.HeaderField
			_ = c.in.WriteHeaders(c.responseHead(&buf, filterFields(fields)), false)
			return
		}
		// Trailers-only.
		c.endLocked(fields)
		return
	}
	if c.hold != nil {
		// The upstream ended inside a message header; pass it on and let
		// the client report the truncated stream.
		_ = c.in.WriteData(c.hold, false)
		c.hold = nil
	}
	for _, f := range fields {
		if f.Name == "grpc-status" {
			c.endLocked(fields)
			return
		}
	}
	c.failLocked(call.Errorf(codes.Internal, "upstream %s ended the stream without a gRPC status", u.Name))
}

// endLocked sends the upstream's final header block to the client.
func (c *relayCall) endLocked(fields []hpack.HeaderField) {
	out := filterFields(fields)
	var buf [24]hpack.HeaderField
	if !c.started {
		out = c.responseHead(&buf, out) // trailers-only: the response head too
	}
	for _, f := range out {
		if f.Name == "grpc-status" {
			n, _ := strconv.Atoi(f.Value)
			c.res.Code, c.res.HasCode = codes.Code(n), true
			if codes.Code(n) == codes.Unavailable {
				c.outcome = balance.ServerFailure
			}
		}
	}
	_ = c.in.WriteHeaders(out, true)
	c.finishLocked()
}

// filterFields drops hop-by-hop fields from a header block (in place).
func filterFields(fields []hpack.HeaderField) []hpack.HeaderField {
	out := fields[:0]
	for _, f := range fields {
		if !dropped(f.Name) {
			out = append(out, f)
		}
	}
	return out
}

// Data forwards message bytes, checking message sizes both ways.
func (c *relayCall) Data(s *h2.Stream, p []byte, end bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != c.in && s != c.up {
		s.Credit(len(p)) // an upstream stream replaced by a replay
		return
	}
	u := c.rt.Upstream
	if s == c.in {
		c.res.BytesIn += int64(len(p))
		if end {
			c.inEnded = true
		}
		if c.finished {
			s.Credit(len(p))
			return
		}
		if size := c.reqScan.consume(p); size > 0 {
			s.Credit(len(p))
			c.up.Reset(http2.ErrCodeCancel)
			c.failLocked(tooBigError(size, c.reqScan.max, u.Name))
			return
		}
		if r := c.replay; r != nil {
			if len(r.body)+len(p) <= int(c.reqScan.max)+grpcHeaderLen {
				r.body = append(r.body, p...)
			} else {
				c.replay = nil // too large to keep: not replayed
			}
		}
		_ = c.up.WriteData(p, end)
		return
	}
	if c.finished {
		s.Credit(len(p))
		return
	}
	chunk := p
	if len(c.hold) > 0 {
		chunk = append(c.hold, p...)
		c.hold = nil
	}
	writable, tooBig := c.respScan.boundary(chunk)
	if writable > 0 {
		c.res.BytesOut += int64(writable)
		_ = c.in.WriteData(chunk[:writable], false)
	}
	if tooBig > 0 {
		s.Credit(len(chunk) - writable)
		c.up.Reset(http2.ErrCodeCancel)
		c.failLocked(call.Errorf(codes.ResourceExhausted,
			"response message of %d bytes is larger than the limit of %d bytes (upstream %s max_message_bytes)", tooBig, c.respScan.max, u.Name))
		return
	}
	if rest := chunk[writable:]; len(rest) > 0 {
		c.hold = append([]byte(nil), rest...)
	}
	if end {
		if c.hold != nil {
			_ = c.in.WriteData(c.hold, false)
			c.hold = nil
		}
		c.failLocked(call.Errorf(codes.Internal, "upstream %s ended the stream without a gRPC status", u.Name))
	}
}

// Reset handles a stream that ended abnormally: the client's (it reset
// the call or went away: the upstream stream is canceled) or the
// upstream's (the client gets the status the net/http path would give).
func (c *relayCall) Reset(s *h2.Stream, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished || s != c.in && s != c.up {
		return
	}
	u := c.rt.Upstream
	if s == c.in {
		c.outcome = balance.Other
		c.up.Reset(http2.ErrCodeCancel)
		c.finishLocked()
		return
	}
	if c.replay != nil && !c.started && c.inEnded && c.replayLocked(err) {
		return
	}
	c.outcome = balance.ServerFailure
	if errors.Is(err, refusedStream) {
		c.outcome = balance.Other // not processed: no fault of the target's
	}
	switch {
	case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
		c.failLocked(call.Errorf(codes.DeadlineExceeded, "deadline exceeded while waiting for upstream %s", u.Name))
	case c.started:
		c.failLocked(call.Errorf(codes.Unavailable, "the stream from upstream %s broke", u.Name).WithCause(err))
	default:
		c.failLocked(call.Errorf(codes.Unavailable, "upstream %s is unavailable", u.Name).WithCause(err))
	}
}

// onDeadline ends a call the upstream did not end by its deadline.
func (c *relayCall) onDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished {
		return
	}
	c.outcome = balance.Other
	c.up.Reset(http2.ErrCodeCancel)
	c.failLocked(call.Errorf(codes.DeadlineExceeded, "deadline exceeded while waiting for upstream %s", c.rt.Upstream.Name))
}

// failLocked answers the client with err's status: trailers-only before
// the response started, else trailers. Server-side failures get an error
// ID, logged with the cause, as in writeGRPCStatus.
func (c *relayCall) failLocked(err error) {
	ce := call.FromError(err)
	fields := make([]hpack.HeaderField, 0, 6+len(c.resp))
	if !c.started {
		fields = append(fields,
			hpack.HeaderField{Name: ":status", Value: "200"},
			hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
		fields = append(fields, c.resp...)
	}
	switch ce.Code {
	case codes.Internal, codes.Unavailable, codes.Unknown, codes.DataLoss:
		id := transcoder.NewErrorID()
		c.res.ErrorID = id
		fields = append(fields, hpack.HeaderField{Name: "rosetta-error-id", Value: id})
		c.p.logger.LogAttrs(c.in.Context(), slog.LevelError, "grpc call failed",
			slog.String("path", c.path), slog.String("code", ce.Code.String()),
			slog.String("error_id", id), slog.Any("error", ce))
	}
	fields = appendGRPCStatusFields(fields, ce)
	c.res.Code, c.res.HasCode = ce.Code, true
	_ = c.in.WriteHeaders(fields, true)
	c.finishLocked()
}

// finishLocked ends the call on the gateway's side: a client still
// sending is told to stop (RST_STREAM NO_ERROR, RFC 9113 §8.1), the
// deadline timer stops and the access log runs.
func (c *relayCall) finishLocked() {
	if c.finished {
		return
	}
	c.finished = true
	if len(c.hold) > 0 {
		c.up.Credit(len(c.hold))
		c.hold = nil
	}
	if !c.inEnded {
		c.in.StopReceiving()
		c.up.Reset(http2.ErrCodeCancel)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.ep != nil {
		c.ep.Done(c.outcome)
		c.ep = nil
	}
	c.releaseBreakers()
	c.adm.Done()
	if c.done != nil {
		c.res.Consumer = c.adm.Call.Consumer
		c.done(&c.res)
	}
}

// refusedStream is how a stream the upstream did not process ends
// (REFUSED_STREAM, or above a GOAWAY's last stream).
var refusedStream = h2.StreamError{Code: http2.ErrCodeRefusedStream, Remote: true}

// replayLocked sends an idempotent unary call whose upstream stream broke
// (or was refused) before any answer to another target, when the retry
// policy and budget allow. It reports whether it did; the call then goes
// on on the new stream. The request was whole (the client ended it), so
// nothing more comes from the client to route.
func (c *relayCall) replayLocked(err error) bool {
	u := c.rt.Upstream
	r := c.replay
	r.tries++
	p, budget := u.Retry()
	o, sent, bo := retry.Reset, true, balance.ServerFailure
	if errors.Is(err, refusedStream) {
		o, sent, bo = retry.RefusedStream, false, balance.Other
	}
	var remaining time.Duration
	if !c.deadline.IsZero() {
		if remaining = time.Until(c.deadline); remaining == 0 {
			remaining = -1
		}
	}
	d := p.Decide(retry.Attempt{Number: r.tries, Outcome: o, Sent: sent, Idempotent: true, Remaining: remaining}, budget)
	if !d.Retry {
		return false
	}
	old := c.ep
	ep, perr := u.PickEndpoint(r.key, old)
	if perr != nil {
		return false
	}
	cc := u.RelayConn(ep.Addr())
	if cc == nil {
		return false
	}
	fields := append([]hpack.HeaderField(nil), r.fields...)
	for i := range fields {
		if fields[i].Name == ":authority" {
			fields[i].Value = ep.Addr()
		}
	}
	up, nerr := cc.NewStream(fields, len(r.body) == 0, c, nil)
	if nerr != nil {
		return false
	}
	if old != nil {
		old.Done(bo)
	}
	if c.tbrk != nil {
		c.tbrk.Release()
		c.tbrk = nil
	}
	if tb := u.TargetBreaker(ep.Addr()); tb != nil {
		if ok, _ := tb.TryAcquire(); ok {
			c.tbrk = tb
		}
	}
	c.ep, c.up, c.outcome, c.epStart = ep, up, balance.Success, time.Now()
	c.res.Target = ep.Addr()
	ep.Start()
	if len(r.body) > 0 {
		_ = up.WriteData(r.body, true)
	}
	return true
}

// refuse answers a call the policy chain (policy) or a circuit breaker
// refused, trailers-only, with the chain's response fields, and takes the
// rest of the client's stream (nothing is forwarded).
func (p *Proxy) refuse(in *h2.Stream, head *h2.RequestHead, c *relayCall, ce *call.Error, policy bool) h2.Events {
	adm := &c.adm
	fields := make([]hpack.HeaderField, 0, 6+len(adm.State.Response)+len(c.resp))
	fields = append(fields,
		hpack.HeaderField{Name: ":status", Value: "200"},
		hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	for _, f := range adm.State.Response {
		fields = append(fields, hpack.HeaderField{Name: f.Name, Value: f.Value})
	}
	fields = append(fields, c.resp...)
	// A refusal is an answer, not a failure: no error ID, nothing logged.
	res := RelayResult{Code: ce.Code, HasCode: true, Consumer: adm.Call.Consumer,
		Method: c.res.Method, Upstream: c.res.Upstream} // no target took it
	if policy {
		res.Refusal = ce
	}
	fields = appendGRPCStatusFields(fields, ce)
	_ = in.WriteHeaders(fields, true)
	if !head.EndStream {
		in.StopReceiving()
	}
	if c.done != nil {
		c.done(&res)
	}
	return refused{}
}

// refused takes what a client still sends on a refused call: its bytes
// are credited back and dropped.
type refused struct{}

func (refused) Headers(*h2.Stream, []hpack.HeaderField, bool) {}
func (refused) Data(s *h2.Stream, p []byte, _ bool)           { s.Credit(len(p)) }
func (refused) Reset(*h2.Stream, error)                       {}
