package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
	"github.com/rosetta-gateway/rosetta/upstream/breaker"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
	"github.com/rosetta-gateway/rosetta/upstream/retry"
)

// CallInfo is what an upstream needs to know about a call beyond its
// method, put in the call's context by the dialect that makes it
// ([WithCallInfo]).
type CallInfo struct {
	// Idempotent: the call may run twice (the method's idempotency_level
	// is NO_SIDE_EFFECTS or IDEMPOTENT, its route says idempotent: true,
	// or it came as a REST GET or HEAD). Only such calls are retried
	// after they were sent.
	Idempotent bool
	// Route is the config route that covers the call (nil: none); its
	// retry block overrides the upstream's.
	Route *config.Route
	// Call and Claims feed hash_on for ring_hash (Call nil: key 0, the
	// same target for every such call; see [Cluster.HashKey]).
	Call   *call.Call
	Claims map[string]any
	// Cache and CacheAge are set by the response cache in front of the
	// upstream (transcoder.CacheConn) when it handled the call: where
	// the answer came from, and its age in seconds; the dialect renders
	// them (X-Cache, Age).
	Cache    call.CacheStatus
	CacheAge int64
}

type callInfoKey struct{}

// WithCallInfo returns ctx carrying ci for the upstream call made with it.
func WithCallInfo(ctx context.Context, ci *CallInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

func callInfoFrom(ctx context.Context) *CallInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*CallInfo)
	return ci
}

// CallConn returns the connection the dialects (REST, gRPC-Web, Connect,
// WebSocket) call the upstream's methods on: gRPC over the gateway's own
// HTTP/2 client ([h2call]), on the same connections as the relay, each
// attempt's target chosen by the cluster's balancer, bounded by the
// circuit breakers, and unary calls retried as the retry policy allows.
func (u *Upstream) CallConn() grpc.ClientConnInterface { return u.calls }

// RoundTripper returns the upstream's HTTP/2 round tripper for the gRPC
// handler path: requests forwarded whole, on the same connections and
// picked by the same balancer and breakers as every other call. The
// request's URL host is not used; the target is the balancer's.
//
// A request whose body streams through is not retried once sent. One
// whose body can be sent again (GetBody set: the handler path reads an
// idempotent unary call's small request whole) is sent again to another
// target when its attempt fails before any response head arrives, as the
// retry policy, the call's idempotency ([CallInfo]) and the retry budget
// allow: what the frame relay does for such calls.
func (u *Upstream) RoundTripper() http.RoundTripper { return u.calls }

// callConn is [Upstream.CallConn].
type callConn struct {
	u      *Upstream
	h      *h2call.Conn
	routes sync.Map // *config.Route → retry.Policy (its effective retry)
}

func newCallConn(u *Upstream) *callConn {
	c := &callConn{u: u}
	maxMsg, maxReq := u.Config.MaxMessageBytes, u.Config.MaxRequestMessageBytes
	if maxMsg <= 0 {
		maxMsg = 4 << 20
	}
	if maxReq <= 0 {
		maxReq = maxMsg
	}
	c.h = h2call.New(h2call.Options{
		Pick:           c.pick,
		MaxRecvMsgSize: maxMsg,
		MaxSendMsgSize: maxReq,
		UserAgent:      "rosetta",
	})
	return c
}

// attempt is one try's bookkeeping, passed from Invoke to pick through
// the attempt's context.
type attempt struct {
	avoid    *balance.Endpoint
	endpoint *balance.Endpoint
	picked   bool
	outcome  h2call.Outcome
	finished bool
}

type attemptKey struct{}

// policy returns the retry policy of a call: its route's override, else
// the upstream's.
func (c *callConn) policy(ci *CallInfo) retry.Policy {
	p, _ := c.u.Retry()
	if ci == nil || ci.Route == nil || ci.Route.Retry == nil {
		return p
	}
	if v, ok := c.routes.Load(ci.Route); ok {
		return v.(retry.Policy)
	}
	rp, err := RetryPolicy(ci.Route.EffectiveRetry(c.u.Config.Retry))
	if err != nil {
		rp = p
	}
	c.routes.Store(ci.Route, rp)
	return rp
}

// Invoke runs a unary call, retrying it as the retry policy, the call's
// idempotency and the retry budget allow, each retry on another target
// when one exists (a circuit breaker's refusal is answered at once). The
// call's deadline covers every attempt.
func (c *callConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	ci := callInfoFrom(ctx)
	p := c.policy(ci)
	_, budget := c.u.Retry()
	if budget != nil {
		budget.Call()
	}
	var avoid *balance.Endpoint
	for n := 1; ; n++ {
		a := &attempt{avoid: avoid}
		actx := context.WithValue(ctx, attemptKey{}, a)
		var cancel context.CancelFunc
		if p.PerTryTimeout > 0 && p.Attempts > 1 {
			actx, cancel = context.WithTimeout(actx, p.PerTryTimeout)
		}
		err := c.h.Invoke(actx, method, args, reply, opts...)
		perTry := cancel != nil && errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		if cancel != nil {
			cancel()
		}
		if err == nil || p.Attempts <= 1 || budget == nil || refused(err) {
			return err
		}
		if !retryAfter(ctx, p, budget, ci, n, a, err, perTry, nil) {
			return err
		}
		avoid = a.endpoint
	}
}

// retryAfter decides whether attempt n (a, which failed with err;
// perTry when its per-try timeout ended it) is tried again under policy
// p and budget, and waits the decision's backoff. It reports false when
// the call ends with err: no retry, or ctx ended during the backoff.
// before, when not nil, runs once a retry is decided, before the
// backoff (it may veto the retry).
func retryAfter(ctx context.Context, p retry.Policy, budget *retry.Budget, ci *CallInfo, n int, a *attempt, err error, perTry bool, before func() bool) bool {
	var remaining time.Duration
	if dl, ok := ctx.Deadline(); ok {
		remaining = time.Until(dl)
		if remaining == 0 {
			remaining = -1
		}
	}
	d := p.Decide(retry.Attempt{
		Number:     n,
		Outcome:    retryOutcome(a, err, perTry),
		Sent:       a.outcome.Sent || (a.finished && a.outcome.Kind != h2call.NotStarted && a.outcome.Kind != h2call.Refused),
		Idempotent: ci != nil && ci.Idempotent,
		Remaining:  remaining,
	}, budget)
	if !d.Retry || before != nil && !before() {
		return false
	}
	if d.Backoff > 0 {
		t := time.NewTimer(d.Backoff)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// RoundTrip is the round trip of [Upstream.RoundTripper]: a request
// without GetBody goes straight to h2call.
func (c *callConn) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.GetBody == nil {
		return c.h.RoundTrip(req)
	}
	return c.roundTripRetry(req)
}

// roundTripRetry sends a request whose body GetBody gives again, retrying
// it as Invoke retries a call while no response head arrived: each retry
// on another target when one exists, with a fresh body, within the
// request context's deadline; a circuit breaker's refusal is not retried.
// (There is no per-try timeout: the attempt's context must outlive the
// round trip, for its response body.)
func (c *callConn) roundTripRetry(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	ci := callInfoFrom(ctx)
	p := c.policy(ci)
	_, budget := c.u.Retry()
	if p.Attempts <= 1 || budget == nil {
		return c.h.RoundTrip(req)
	}
	budget.Call()
	var avoid *balance.Endpoint
	body := req.Body
	for n := 1; ; n++ {
		a := &attempt{avoid: avoid}
		areq := req.WithContext(context.WithValue(ctx, attemptKey{}, a))
		areq.Body = body
		resp, err := c.h.RoundTrip(areq)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil || refused(err) {
			return nil, err
		}
		fresh := false // body is a new one from GetBody, not sent yet
		if !retryAfter(ctx, p, budget, ci, n, a, err, false, func() bool {
			b, berr := req.GetBody()
			body, fresh = b, berr == nil
			return fresh
		}) {
			if fresh {
				_ = body.Close() // ctx ended during the backoff
			}
			return nil, err
		}
		avoid = a.endpoint
	}
}

// refused reports whether err is a circuit breaker's refusal
// ([breaker.OpenError.CallError]): load shed at once, not retried (as
// Envoy does not retry an overflow).
func refused(err error) bool {
	var ce *call.Error
	return errors.As(err, &ce) && ce.Refusal
}

// NewStream opens a stream on a target chosen per stream. Streams are not
// retried here (a stream whose connection took no new stream at all is
// picked again by h2call, as nothing was sent).
func (c *callConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.h.NewStream(ctx, desc, method, opts...)
}

// retryOutcome classifies a failed attempt for the retry policy.
func retryOutcome(a *attempt, err error, perTry bool) retry.Outcome {
	switch {
	case perTry:
		return retry.PerTryTimeout
	case !a.picked:
		return retry.ConnectFailure // no connection to any target: nothing sent
	}
	switch a.outcome.Kind {
	case h2call.Refused, h2call.NotStarted:
		return retry.RefusedStream
	case h2call.Broken:
		return retry.Reset
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return retry.Unavailable
	}
	if s := a.outcome.HTTPStatus; s >= 500 && s != 503 {
		return retry.ServerError
	}
	return retry.Other
}

// pick is the h2call Pick hook: the cluster chooses the target, the
// circuit breakers admit the attempt (waiting for a slot when they may),
// and the relay's pool gives a connection (dialing one when needed).
func (c *callConn) pick(ctx context.Context, method string) (h2call.Attempt, error) {
	u := c.u
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		a = &attempt{} // a stream, or a call made without Invoke
	}
	var key uint64
	if ci := callInfoFrom(ctx); ci != nil {
		key = u.HashKey(ci.Call, ci.Claims)
	}
	e, err := u.PickEndpoint(key, a.avoid)
	if err != nil {
		return h2call.Attempt{}, status.Error(codes.Unavailable, err.Error())
	}
	addr := e.Addr()
	brk, tbrk := u.Breaker(), u.TargetBreaker(addr)
	if err := acquire(ctx, brk); err != nil {
		return h2call.Attempt{}, err
	}
	if err := acquire(ctx, tbrk); err != nil {
		release(brk)
		return h2call.Attempt{}, err
	}
	cc, err := u.ConnFor(ctx, addr)
	if err != nil {
		release(tbrk)
		release(brk)
		if ctx.Err() != nil {
			return h2call.Attempt{}, err
		}
		e.Start()
		e.Done(balance.ConnectFailure)
		return h2call.Attempt{}, status.Errorf(codes.Unavailable, "upstream %s is unavailable: %v", u.Name, err)
	}
	a.picked, a.endpoint = true, e
	if rep := call.ReportFrom(ctx); rep != nil {
		rep.Target = addr // metrics and traces: the target that took the call
	}
	e.Start()
	return h2call.Attempt{
		Conn:      cc,
		Authority: addr,
		Scheme:    u.Scheme(),
		Finish: func(o h2call.Outcome) {
			e.Done(balanceOutcome(o))
			release(tbrk)
			release(brk)
			a.outcome, a.finished = o, true
		},
	}, nil
}

// balanceOutcome classifies a finished attempt for outlier detection.
func balanceOutcome(o h2call.Outcome) balance.Outcome {
	switch o.Kind {
	case h2call.NotStarted, h2call.Refused:
		return balance.Other
	case h2call.Broken:
		if o.Code == codes.Canceled || o.Code == codes.DeadlineExceeded {
			return balance.Other
		}
		return balance.ServerFailure
	}
	switch {
	case o.Code == codes.Unavailable, o.HTTPStatus >= 500:
		return balance.ServerFailure
	case o.Code == codes.Canceled || o.Code == codes.DeadlineExceeded:
		return balance.Other
	}
	return balance.Success
}

// acquire takes a slot of b (nil: no breaker), waiting while a pending
// slot is free; a full breaker is its refusal ([breaker.OpenError.CallError]:
// UNAVAILABLE naming it, a refusal rather than a failure), which every
// dialect and the gRPC handler path answer as the frame relay does.
func acquire(ctx context.Context, b *breaker.Breaker) error {
	if b == nil {
		return nil
	}
	if err := b.Acquire(ctx); err != nil {
		var oe *breaker.OpenError
		if errors.As(err, &oe) {
			return oe.CallError()
		}
		return status.FromContextError(err).Err()
	}
	return nil
}

func release(b *breaker.Breaker) {
	if b != nil {
		b.Release()
	}
}

var _ grpc.ClientConnInterface = (*callConn)(nil)
