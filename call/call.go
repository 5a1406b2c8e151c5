package call

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/rosetta-gateway/rosetta/internal/headerkey"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Call is the protocol-neutral description of one call: what every
// dialect resolves a request to before it talks to an upstream, and what
// the policy chain decides on. An adapter fills it once the request is
// routed; the chain then sets Consumer. It is not safe for concurrent
// writes; once the chain has run it is read-only.
type Call struct {
	// Protocol is how the client spoke.
	Protocol Protocol
	// Procedure is "/pkg.Service/Method" for RPCs and the request path
	// for plain HTTP (URI) routes.
	Procedure string
	// Method is the RPC method, nil for plain HTTP routes.
	Method protoreflect.MethodDescriptor
	// Route names the config route that covers the call: its selector
	// ("pkg.Service.*") or its uri ("/users/*"); "" when no config route
	// covers it.
	Route string
	// Upstream is the upstream's name.
	Upstream string
	// HTTPMethod is the request's HTTP method ("POST" for gRPC).
	HTTPMethod string
	// Header reads the request's headers (gRPC metadata included) by
	// lower-case name.
	Header Header
	// RawQuery is the request's query string, without "?".
	RawQuery string
	// Peer is the address of the connection's remote end (not
	// X-Forwarded-For; policies that trust proxies read that header).
	Peer netip.AddrPort
	// Bearer is a bearer token the protocol carried outside the
	// Authorization header: the WebSocket bridge's "rosetta.bearer.<token>"
	// subprotocol or its access_token query parameter. "" otherwise.
	Bearer string

	// Consumer is the identity the policy chain established: a
	// configured consumer's name, or a JWT's subject when no consumer
	// matches. "" when the call is anonymous.
	Consumer string
}

// Header reads request header fields (or gRPC metadata) by lower-case
// name. Get returns the first value, "" when absent, and must not
// allocate; Values returns every value in order, one per field line (a
// list-valued line such as "a, b" is one value), and may allocate.
type Header interface {
	Get(name string) string
	Values(name string) []string
}

// HTTPHeader adapts an [http.Header] to [Header]. Names are looked up as
// given and in their canonical form, so it works for both the
// canonicalized headers of net/http and the lower-case ones of gRPC
// metadata.
type HTTPHeader http.Header

// Get returns the first value of name. It does not allocate for names
// of up to 64 bytes.
func (h HTTPHeader) Get(name string) string { return headerkey.Get(h, name) }

// Values returns every value of name (the header's own slice). It does
// not allocate for names of up to 64 bytes.
func (h HTTPHeader) Values(name string) []string { return headerkey.Values(h, name) }

// ParsePeer parses an http.Request's RemoteAddr ("ip:port", or a
// bracketed IPv6 form) into an address. It returns the zero value when
// the address has no IP (a Unix socket, a test recorder).
func ParsePeer(remoteAddr string) netip.AddrPort {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if a, err := netip.ParseAddr(strings.Trim(remoteAddr, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 0)
	}
	return netip.AddrPort{}
}

var _ Header = HTTPHeader(nil)

// Report collects what the handling of one call learns that the edge's
// access log, metrics and trace span write: where the call was routed,
// the target that took it, the policy chain's consumer and refusal. The
// edge puts one in the request context ([WithReport]); whoever learns a
// fact sets it there. Only the call's own handler goroutines write it,
// before the edge reads it when the handler returns.
type Report struct {
	// Consumer is the call's identity, as in [Call.Consumer].
	Consumer string
	// Protocol is how the dialect served the call when the edge's
	// detection could not tell: [SSE] for a REST server stream with
	// Accept: text/event-stream, [HTTP] for a plain HTTP (uri) route.
	// ProtocolUnknown keeps the detected protocol.
	Protocol Protocol
	// Method is the RPC method the call was routed to; nil for uri
	// routes and for calls that were not routed.
	Method protoreflect.MethodDescriptor
	// Route is the config route that covers the call when the dialect
	// knows it (a uri route's uri); "" otherwise.
	Route string
	// Upstream is the name of the upstream the call was routed to.
	Upstream string
	// Target is the address of the upstream target that took the call
	// (the last one, when it was retried); "" when none did.
	Target string
	// Code is the gRPC status of the answer, when HasCode: set by
	// dialects whose answer carries it in the body (a REST error's
	// google.rpc.Status, a gRPC-Web trailer frame, a Connect end of
	// stream, a WebSocket status frame), not in a grpc-status field.
	Code    codes.Code
	HasCode bool
	// Refusal is the policy chain's refusal of the call (nil when the
	// chain allowed it or did not run).
	Refusal *Error
	// RequestID is the call's request ID (X-Request-Id).
	RequestID string
	// Observer, when set, is told when the call is routed ([Report.Routed]).
	Observer ReportObserver
	// MessageBytesIn and MessageBytesOut count the payload bytes of the
	// messages a WebSocket carried, which the bridge adds as it reads and
	// writes them ([Report.AddMessageBytes]): an upgraded HTTP/1.1
	// connection is no longer read or written through the handler, so
	// the edge cannot count them itself. They may be written by the
	// socket's two goroutines at once.
	MessageBytesIn, MessageBytesOut atomic.Int64
}

// AddMessageBytes counts a WebSocket message read (in) or written (out).
// It is nil-safe.
func (r *Report) AddMessageBytes(in, out int) {
	if r == nil {
		return
	}
	if in > 0 {
		r.MessageBytesIn.Add(int64(in))
	}
	if out > 0 {
		r.MessageBytesOut.Add(int64(out))
	}
}

// ReportObserver is told when a call's [Report] learns where the call
// goes. Routed runs on the call's handler goroutine and must not block.
type ReportObserver interface {
	Routed(r *Report)
}

// Routed records where a dialect routed the call: its protocol (as
// [Report.Protocol]), method and upstream, and tells the Observer. It is
// nil-safe.
func (r *Report) Routed(p Protocol, md protoreflect.MethodDescriptor, route, upstream string) {
	if r == nil {
		return
	}
	r.Protocol, r.Method, r.Upstream = p, md, upstream
	if route != "" {
		r.Route = route
	}
	if r.Observer != nil {
		r.Observer.Routed(r)
	}
}

// SetCode records the gRPC status of the answer (see [Report.Code]). It
// is nil-safe.
func (r *Report) SetCode(c codes.Code) {
	if r != nil {
		r.Code, r.HasCode = c, true
	}
}

type reportKey struct{}

// WithReport returns ctx carrying r.
func WithReport(ctx context.Context, r *Report) context.Context {
	return context.WithValue(ctx, reportKey{}, r)
}

// ValueSlot is a context that can take one more value itself, sparing
// the context.WithValue (and the copy of the request that carries it) a
// call would otherwise cost: the HTTP/1.1 lane's request context is one.
// SetValue reports whether the context took val; it refuses a second
// value, and must be called before the context is shared.
type ValueSlot interface {
	SetValue(key, val any) bool
}

// AttachReport makes ctx carry r when ctx is a [ValueSlot] with room,
// and reports whether it did; when it did not, the caller uses
// [WithReport].
func AttachReport(ctx context.Context, r *Report) bool {
	s, ok := ctx.(ValueSlot)
	return ok && s.SetValue(reportKey{}, r)
}

// ReportFrom returns the Report in ctx, or nil.
func ReportFrom(ctx context.Context) *Report {
	r, _ := ctx.Value(reportKey{}).(*Report)
	return r
}
