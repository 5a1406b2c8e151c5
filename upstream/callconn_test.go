package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// startResetServer starts an h2c server that resets every stream once
// its request head arrived (RST_STREAM INTERNAL_ERROR: the stream broke
// after the request was sent) and returns its address.
func startResetServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// healthCheck builds a grpc.health.v1.Health/Check request (one empty
// message) for u's round tripper, with ci in its context; replayable sets
// GetBody.
func healthCheck(t *testing.T, u *Upstream, ci *CallInfo, replayable bool) *http.Request {
	t.Helper()
	msg := []byte{0, 0, 0, 0, 0}
	req, err := http.NewRequestWithContext(WithCallInfo(context.Background(), ci), http.MethodPost,
		"http://"+u.Name+"/grpc.health.v1.Health/Check", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !replayable {
		req.GetBody = nil
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	return req
}

// TestRoundTripRetry: over a healthy backend and one that resets every
// stream, a round trip whose body can be sent again (GetBody) of an
// idempotent call is sent again to the healthy one and succeeds every
// time; the same request of a call that may not run twice, or without
// GetBody, is not retried once sent, so some fail.
func TestRoundTripRetry(t *testing.T) {
	good := testkit.StartBackend(t)
	bad := startResetServer(t)
	u := newTestUpstream(t, &config.Upstream{Name: "rt", Targets: config.TargetsOf(good.Addr, bad),
		Retry: &config.Retry{Attempts: 2, On: []string{"reset"}}})
	const n = 20
	send := func(ci *CallInfo, replayable bool) (failed int) {
		for range n {
			resp, err := u.RoundTripper().RoundTrip(healthCheck(t, u, ci, replayable))
			if err != nil {
				failed++
				continue
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			// HealthCheckResponse{status: SERVING} is 08 01, after the 5-byte prefix.
			if want := []byte{0, 0, 0, 0, 2, 8, 1}; err != nil || !bytes.Equal(body, want) || resp.Trailer.Get("Grpc-Status") != "0" {
				t.Errorf("answer: body %x, %v, grpc-status %q; want %x, status 0", body, err, resp.Trailer.Get("Grpc-Status"), want)
			}
		}
		return failed
	}
	if f := send(&CallInfo{Idempotent: true}, true); f > 0 {
		t.Errorf("idempotent, body replayable: %d of %d round trips failed; want 0 (sent again to the healthy target)", f, n)
	}
	if f := send(&CallInfo{}, true); f == 0 {
		t.Errorf("not idempotent: no round trip of %d failed; want some (a reset after sending is not retried)", n)
	}
	if f := send(&CallInfo{Idempotent: true}, false); f == 0 {
		t.Errorf("idempotent, no GetBody: no round trip of %d failed; want some (the body streamed through)", n)
	}
}

// TestBreakerRefusalNotRetried: a full circuit breaker refuses a call at
// once with its refusal (UNAVAILABLE "circuit breaker of upstream cb is
// open", call.Error.Refusal), on Invoke and on a round trip that could be
// sent again alike, and neither retries it.
func TestBreakerRefusalNotRetried(t *testing.T) {
	be := testkit.StartBackend(t)
	zero := 0
	u := newTestUpstream(t, &config.Upstream{Name: "cb", Targets: config.TargetsOf(be.Addr),
		CircuitBreaker: &config.CircuitBreaker{MaxRequests: 1, MaxPending: &zero},
		Retry:          &config.Retry{Attempts: 3, On: []string{"connect-failure", "unavailable"}}})
	brk := u.Breaker()
	if ok, _ := brk.TryAcquire(); !ok {
		t.Fatal("the breaker's one slot is taken")
	}
	defer brk.Release()
	check := func(what string, err error) {
		t.Helper()
		var ce *call.Error
		if !errors.As(err, &ce) || !ce.Refusal || ce.Code != codes.Unavailable || !strings.HasPrefix(ce.Msg, "circuit breaker of upstream cb is open") {
			t.Errorf("%s: got %v; want the breaker's refusal", what, err)
		}
	}
	rejected := brk.Stats().Rejected
	ctx := WithCallInfo(context.Background(), &CallInfo{Idempotent: true})
	var resp healthpb.HealthCheckResponse
	check("Invoke", u.CallConn().Invoke(ctx, "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{}, &resp))
	_, err := u.RoundTripper().RoundTrip(healthCheck(t, u, &CallInfo{Idempotent: true}, true))
	check("RoundTrip", err)
	if got := brk.Stats().Rejected - rejected; got != 2 {
		t.Errorf("breaker rejections: %d; want 2 (one a call, none retried)", got)
	}
}
