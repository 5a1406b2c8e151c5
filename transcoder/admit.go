package transcoder

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// Policies finds the policy chain that covers an RPC method, and the
// config route it comes from ("" for the top-level plugins).
// *policy.Set implements it.
type Policies interface {
	ForMethod(fullName string) (chain *policy.Chain, route string)
}

// Admission is one call at the policy seam: the protocol-neutral
// description of the call ([call.Call]) that every dialect builds, in one
// place, before it talks to the upstream, and what the chain decided
// about it. The zero value is ready; a dialect fills it with
// [Admission.Describe] (or by hand), runs [Admission.Check], forwards
// [Admission.Metadata], renders [Admission.SetHeaders] on its answer, and
// calls [Admission.Done] when the call ends.
type Admission struct {
	// Call describes the call.
	Call call.Call
	// State is what the chain learned (response fields, rate limit,
	// fields to send upstream).
	State policy.State
	chain *policy.Chain
}

// Admit is the policy seam of a handler-path dialect: it finds the chain
// of method md (nil for plain HTTP routes) in pol, and when there is one
// describes the call and runs the chain, which may block on I/O. It
// bearer is a token the protocol carried outside Authorization (the
// WebSocket bridge's; "" otherwise). It returns nil and nil when no
// plugin applies, so calls without policies
// cost nothing. On a refusal it returns the admission too, for its
// response fields; either way the caller renders [Admission.SetHeaders]
// and calls [Admission.Done] (both nil-safe) when the call ends.
func Admit(ctx context.Context, pol Policies, p call.Protocol, md protoreflect.MethodDescriptor, upstream string, r *http.Request, bearer string) (*Admission, *call.Error) {
	// Every dialect passes here once it has routed the call: the edge's
	// report learns the protocol, method and upstream (metrics, traces).
	call.ReportFrom(ctx).Routed(p, md, "", upstream)
	if pol == nil || md == nil {
		return nil, nil
	}
	chain, route := pol.ForMethod(string(md.FullName()))
	if chain.Empty() {
		return nil, nil
	}
	a := &Admission{}
	a.Describe(nil, p, md, upstream, r)
	a.chain, a.Call.Route = chain, route
	a.Call.Bearer = bearer
	return a, a.Check(ctx)
}

// Describe fills a.Call for a call of method md (nil for plain HTTP
// routes) arriving as r over protocol p, and picks its chain from pol
// (nil: none).
func (a *Admission) Describe(pol Policies, p call.Protocol, md protoreflect.MethodDescriptor, upstream string, r *http.Request) {
	a.Call = call.Call{
		Protocol:   p,
		Method:     md,
		Upstream:   upstream,
		HTTPMethod: r.Method,
		Header:     call.HTTPHeader(r.Header),
		RawQuery:   r.URL.RawQuery,
		Peer:       call.ParsePeer(r.RemoteAddr),
		Procedure:  r.URL.Path,
	}
	if md != nil {
		a.Call.Procedure = "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
		if pol != nil {
			a.chain, a.Call.Route = pol.ForMethod(string(md.FullName()))
		}
	}
}

// SetChain sets the chain that decides on the call.
func (a *Admission) SetChain(c *policy.Chain) { a.chain = c }

// Chain returns the chain that decides on the call (nil: none).
func (a *Admission) Chain() *policy.Chain { return a.chain }

// Check runs the chain; it may block on I/O (a Redis decision, a JWKS
// fetch), so only handler goroutines call it. A refusal is a
// *call.Error for the dialect to render, with [Admission.SetHeaders].
func (a *Admission) Check(ctx context.Context) *call.Error {
	if a.chain.Empty() {
		return nil
	}
	err := Refusal(a.chain.Check(ctx, &a.Call, &a.State))
	if rep := call.ReportFrom(ctx); rep != nil {
		if a.Call.Consumer != "" {
			rep.Consumer = a.Call.Consumer
		}
		if err != nil {
			rep.Refusal = err
		}
	}
	return err
}

// Refusal returns ce marked as a deliberate refusal of the policy chain
// (call.Error.Refusal), so that no error is logged for it; nil stays nil.
// It copies ce: plugins may return shared errors.
func Refusal(ce *call.Error) *call.Error {
	if ce == nil || ce.Refusal {
		return ce
	}
	c := *ce
	c.Refusal = true
	return &c
}

// CheckMessage counts one more message of a stream against the chain's
// per-message limits (WebSocket frames).
func (a *Admission) CheckMessage(ctx context.Context) *call.Error {
	if a == nil || !a.chain.HasMessageLimits() {
		return nil
	}
	err := Refusal(a.chain.CheckMessage(ctx, &a.Call, &a.State))
	if err != nil {
		if rep := call.ReportFrom(ctx); rep != nil {
			rep.Refusal = err
		}
	}
	return err
}

// Done releases what the chain held for the call. It is idempotent and
// nil-safe, as are Metadata, Header, SetHeaders and CheckMessage.
func (a *Admission) Done() {
	if a != nil && a.chain != nil {
		a.chain.Done(&a.State)
	}
}

// Metadata applies the decision to outgoing metadata: the names the
// chain sets itself are removed from what the client sent, then the
// chain's fields (x-consumer, claims_to_headers) are added.
func (a *Admission) Metadata(md metadata.MD) {
	if a == nil || a.chain == nil {
		return
	}
	if len(a.chain.Strip()) > 0 {
		for k := range md {
			if a.chain.Strips(k) {
				delete(md, k)
			}
		}
	}
	for _, f := range a.State.Upstream {
		md[f.Name] = []string{f.Value}
	}
}

// Header applies the decision to an outgoing HTTP header (the gRPC
// handler path and plain HTTP routes), as [Admission.Metadata] does.
func (a *Admission) Header(h http.Header) {
	if a == nil || a.chain == nil {
		return
	}
	if len(a.chain.Strip()) > 0 {
		for k := range h {
			if a.chain.Strips(k) {
				delete(h, k)
			}
		}
	}
	for _, f := range a.State.Upstream {
		h.Set(f.Name, f.Value)
	}
}

// StripCredentialQuery removes, from r's query, the parameters that carry
// credentials for the chain (key-auth's query:), before a protocol maps
// the query onto request fields.
func (a *Admission) StripCredentialQuery(r *http.Request) {
	if a == nil || r.URL.RawQuery == "" {
		return
	}
	if names := a.chain.CredentialQuery(); len(names) > 0 {
		r.URL.RawQuery, _ = StripQuery(r.URL.RawQuery, names...)
	}
}

// StripQuery removes the parameters named names from a raw query,
// keeping the others as they were sent (order and escaping), and returns
// the first removed value (unescaped).
func StripQuery(raw string, names ...string) (string, string) {
	if raw == "" {
		return raw, ""
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	first := ""
	found := false
	for _, p := range parts {
		name, value, _ := strings.Cut(p, "=")
		if un, err := url.QueryUnescape(name); err == nil {
			name = un
		}
		if !slices.Contains(names, name) {
			kept = append(kept, p)
			continue
		}
		if !found {
			found = true
			if un, err := url.QueryUnescape(value); err == nil {
				value = un
			}
			first = value
		}
	}
	return strings.Join(kept, "&"), first
}

// SetHeaders writes the decision's response fields on the answer's
// header: the plugins' fields (WWW-Authenticate, Retry-After) and, when
// rateLimit is set (REST, SSE, plain HTTP and WebSocket upgrades), the
// RateLimit-Limit, -Remaining and -Reset fields of the limit that counted
// the call.
func (a *Admission) SetHeaders(h http.Header, rateLimit bool) {
	if a == nil {
		return
	}
	for _, f := range a.State.Response {
		h.Set(f.Name, f.Value)
	}
	if rl := a.State.RateLimit; rateLimit && rl.Set {
		h.Set("RateLimit-Limit", strconv.FormatInt(rl.Limit, 10))
		h.Set("RateLimit-Remaining", strconv.FormatInt(rl.Remaining, 10))
		h.Set("RateLimit-Reset", strconv.FormatInt(rl.ResetSeconds, 10))
	}
}

// WithUpstreamInfo returns ctx carrying what the upstream needs to know
// about the call beyond its method ([upstream.CallInfo]): whether it may
// run twice (the method's idempotency_level, the route's idempotent: true,
// or a REST GET/HEAD, which get) for retries, its config route for the
// route's retry override, and the call itself for ring_hash's hash_on.
func WithUpstreamInfo(ctx context.Context, r *http.Request, md protoreflect.MethodDescriptor, route *config.Route, adm *Admission, get bool) context.Context {
	ci := &upstreamInfo{}
	ci.Idempotent = get || Idempotent(md) || (route != nil && route.Idempotent)
	ci.Route = route
	if adm != nil {
		ci.Call, ci.Claims = &adm.Call, adm.State.Claims
	} else {
		ci.own = call.Call{Method: md, HTTPMethod: r.Method, Header: call.HTTPHeader(r.Header), Peer: call.ParsePeer(r.RemoteAddr)}
		ci.Call = &ci.own
	}
	return upstream.WithCallInfo(ctx, &ci.CallInfo)
}

// upstreamInfo is an upstream.CallInfo with room for a call description
// of its own, so that it costs one allocation.
type upstreamInfo struct {
	upstream.CallInfo
	own call.Call
}

// Idempotent reports whether md's idempotency_level (NO_SIDE_EFFECTS or
// IDEMPOTENT) says its calls may run twice.
func Idempotent(md protoreflect.MethodDescriptor) bool {
	if md == nil {
		return false
	}
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	switch opts.GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
		return true
	}
	return false
}
