package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
	"github.com/rosetta-gateway/rosetta/upstream/breaker"
	"github.com/rosetta-gateway/rosetta/upstream/retry"
)

// clusterTransport is the round tripper of an http upstream's proxies: it
// sends each request to the target the cluster picks (the request's URL
// host is replaced), bounded by the circuit breakers, counts the request
// in flight until its response body is closed, feeds outlier ejection,
// takes a target whose connection is refused out of the pick at once, and
// retries as the retry policy allows: requests not sent (connect
// failures) always, sent ones only when idempotent (GET, HEAD, OPTIONS,
// PUT, DELETE) and their body can be sent again.
type clusterTransport struct {
	u    *HTTPUpstream
	next http.RoundTripper
}

// RoundTrip sends req to a picked target.
func (t *clusterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.u.Cluster
	p, budget := c.Retry()
	if budget != nil {
		budget.Call()
	}
	ctx := req.Context()
	idempotent := slices.Contains([]string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete}, req.Method)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	var key uint64
	if ci := callInfoFrom(ctx); ci != nil {
		key = c.HashKey(ci.Call, ci.Claims)
	}
	var avoid *balance.Endpoint
	for n := 1; ; n++ {
		e, err := c.PickEndpoint(key, avoid)
		if err != nil {
			return nil, err
		}
		addr := e.Addr()
		brk, tbrk := c.Breaker(), c.TargetBreaker(addr)
		if err := acquireBreaker(ctx, brk); err != nil {
			return nil, err
		}
		if err := acquireBreaker(ctx, tbrk); err != nil {
			release(brk)
			return nil, err
		}
		out := req
		if n > 1 {
			out = req.Clone(ctx)
			if req.GetBody != nil {
				if out.Body, err = req.GetBody(); err != nil {
					release(tbrk)
					release(brk)
					return nil, err
				}
			}
		}
		out.URL.Host = addr
		if rep := call.ReportFrom(ctx); rep != nil {
			rep.Target = addr // metrics and traces: the target that took the call
		}
		e.Start()
		resp, err := t.next.RoundTrip(out)
		o, ro, sent := httpOutcome(resp, err)
		if ro == retry.ConnectFailure {
			c.ConnFailed(addr)
		}
		if err == nil && (n >= p.Attempts || ro == retry.Success || ro == retry.Other) {
			// The answer goes to the client: the target and the slots
			// are released when its body is closed.
			resp.Body = &doneBody{ReadCloser: resp.Body, done: func() {
				e.Done(o)
				release(tbrk)
				release(brk)
			}}
			return resp, nil
		}
		var remaining time.Duration
		if dl, ok := ctx.Deadline(); ok {
			if remaining = time.Until(dl); remaining == 0 {
				remaining = -1
			}
		}
		d := retry.Decision{}
		if budget != nil && (replayable || !sent) {
			d = p.Decide(retry.Attempt{Number: n, Outcome: ro, Sent: sent, Idempotent: idempotent, Remaining: remaining}, budget)
		}
		if !d.Retry {
			if resp != nil {
				resp.Body = &doneBody{ReadCloser: resp.Body, done: func() {
					e.Done(o)
					release(tbrk)
					release(brk)
				}}
			} else {
				e.Done(o)
				release(tbrk)
				release(brk)
			}
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			_ = resp.Body.Close()
		}
		e.Done(o)
		release(tbrk)
		release(brk)
		avoid = e
		if d.Backoff > 0 {
			tm := time.NewTimer(d.Backoff)
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				return nil, ctx.Err()
			}
		}
	}
}

// httpOutcome classifies one attempt: for outlier ejection, for the retry
// policy, and whether the request may have reached the target.
func httpOutcome(resp *http.Response, err error) (balance.Outcome, retry.Outcome, bool) {
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return balance.ConnectFailure, retry.ConnectFailure, false
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return balance.Other, retry.Other, true
		}
		return balance.ServerFailure, retry.Reset, true
	}
	switch s := resp.StatusCode; {
	case s == http.StatusServiceUnavailable:
		return balance.ServerFailure, retry.Unavailable, true
	case s >= 500:
		return balance.ServerFailure, retry.ServerError, true
	}
	return balance.Success, retry.Success, true
}

// doneBody runs done once when the body is closed.
type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

// Close closes the body and runs done.
func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// Write lets an upgraded (101) body stay writable.
func (b *doneBody) Write(p []byte) (int, error) {
	if w, ok := b.ReadCloser.(io.Writer); ok {
		return w.Write(p)
	}
	return 0, errors.New("response body is not writable")
}

// acquireBreaker takes a breaker slot (nil: no breaker); a full breaker
// is a *breaker.OpenError, which the proxy answers 503.
func acquireBreaker(ctx context.Context, b *breaker.Breaker) error {
	if b == nil {
		return nil
	}
	return b.Acquire(ctx)
}

// checkHTTP runs one active health check of a target: a GET of the
// health_check path, which must answer one of the expected statuses.
func (u *HTTPUpstream) checkHTTP(ctx context.Context, addr string) error {
	hc := u.Config.HealthCheck
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.scheme+"://"+addr+hc.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "rosetta-health-check")
	resp, err := u.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	want := hc.ExpectedStatuses
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	if !slices.Contains(want, resp.StatusCode) {
		return fmt.Errorf("GET %s answered %d (want %v)", hc.Path, resp.StatusCode, want)
	}
	return nil
}
