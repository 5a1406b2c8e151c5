package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The tests of this file run real EchoService backends (a, b, c; see
// namedBackend) behind real gateways and call them with real clients:
// REST (GET /v1/echo/x), Connect and gRPC-Web (connect-go), WebSocket
// (coder/websocket) and gRPC (grpc-go) over the frame relay and over the
// handler path (upCells). Every answer names the backend that gave it,
// so calls are counted per backend on the client side. Tests that count
// what health checks decide are not parallel: on a busy machine (-race,
// two cores) a parallel test's load delays checks past their timeout.

// upstreamWorkers is how many clients call at once in the spread tests.
const upstreamWorkers = 4

// TestUpstreamBalance: round_robin and random spread the calls of every
// protocol over targets ["a", "b", {address: "c", weight: 3}] by weight.
// round_robin is exact within a few calls on each protocol; random is
// checked over the calls of all protocols together within six standard
// deviations, and on each protocol within six of its own. (least_request:
// TestUpstreamLeastRequest and TestUpstreamLeastRequestWeights.)
func TestUpstreamBalance(t *testing.T) {
	t.Parallel()
	bes := upstreamTrio(t)
	targets := fmt.Sprintf(`["%s", "%s", {address: "%s", weight: 3}]`, bes[0].Addr, bes[1].Addr, bes[2].Addr)
	shares := map[string]float64{"a": .2, "b": .2, "c": .6}
	const n = 100 // calls per protocol
	sixSigma := func(n int) func(p float64) float64 {
		return func(p float64) float64 { return 6 * math.Sqrt(float64(n)*p*(1-p)) }
	}
	for _, alg := range []string{"round_robin", "random"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			gws := startUpGateways(t, gatewayConfig(targets, "balance: "+alg, ""))
			all := &tally{}
			for _, c := range upCells {
				p := gws[c.path].protocol(c.proto)
				t.Run(p.name, func(t *testing.T) {
					got := spread(t, p, n, upstreamWorkers, nil)
					t.Logf("%s: %s", alg, got)
					tol := sixSigma(n)
					if alg == "round_robin" {
						tol = func(float64) float64 { return 3 }
					}
					wantShares(t, got, n, shares, tol)
					all.merge(got)
				})
			}
			total := n * len(upCells)
			t.Logf("%s, all protocols: %s", alg, all)
			wantShares(t, all, total, shares, sixSigma(total))
		})
	}
}

// TestUpstreamLeastRequestWeights: least_request over two backends of
// equal speed (5 ms a call), a and c of weight 9, called by 2 clients at
// a time, sends c about 90 % of the calls (at least 75 % of 160): an idle
// a must not beat c with one call in flight (the pair is weighed on
// weight / (in flight + 1), as Envoy weighs it).
func TestUpstreamLeastRequestWeights(t *testing.T) {
	t.Parallel()
	a, c := startSlowBackend(t, "a", 5*time.Millisecond), startSlowBackend(t, "c", 5*time.Millisecond)
	targets := fmt.Sprintf(`["%s", {address: "%s", weight: 9}]`, a.Addr, c.Addr)
	gws := startUpGateways(t, gatewayConfig(targets, "balance: least_request", ""))
	const n = 160
	for _, c := range upCells {
		p := gws[c.path].protocol(c.proto)
		t.Run(p.name, func(t *testing.T) {
			got := spread(t, p, n, 2, nil)
			t.Logf("%s", got)
			if heavy := got.by["c"]; heavy*4 < n*3 {
				t.Errorf("c (weight 9 of 10) got %d of %d calls; want about 90 %%, at least 75 %% (%s)", heavy, n, got)
			}
		})
	}
}

// TestUpstreamLeastRequest: with one of three equal targets slow (every
// call to b waits 50 ms) and 6 calls in flight, least_request sends b far
// fewer calls than its third (under 20 % of 90), where round_robin would
// give it a third.
func TestUpstreamLeastRequest(t *testing.T) {
	// Not parallel: other tests' load would slow the fast backends too.
	a, b, c := startNamedBackend(t, "a"), startSlowBackend(t, "b", 50*time.Millisecond), startNamedBackend(t, "c")
	cfg := gatewayConfig(fmt.Sprintf(`["%s", "%s", "%s"]`, a.Addr, b.Addr, c.Addr), "balance: least_request", "")
	gws := startUpGateways(t, cfg)
	const n = 90
	for _, c := range upCells {
		p := gws[c.path].protocol(c.proto)
		t.Run(p.name, func(t *testing.T) {
			got := spread(t, p, n, 6, nil)
			t.Logf("%s", got)
			if got.failed > 0 {
				t.Errorf("%d calls failed: %s", got.failed, got)
			}
			if b := got.by["b"]; b*5 >= n {
				t.Errorf("slow backend b got %d of %d calls; want under 20 %% (%s)", b, n, got)
			}
		})
	}
}

// TestUpstreamRingHash: with ring_hash on header:x-user-id, every call of
// a key reaches the same backend, on every protocol and both gateways
// (the key's FNV hash decides, not the gateway instance or the dialect),
// and the keys spread by weight (within 15 points of 20/20/60 %). The
// ring is built from the backends' addresses, so its shares vary from run
// to run by a few points (160 points per weight unit); 250 keys keep the
// sampling error near 2.5 points, well inside the margin (with 100 keys a
// run failed: a 7 % share for b).
func TestUpstreamRingHash(t *testing.T) {
	t.Parallel()
	bes := upstreamTrio(t)
	targets := fmt.Sprintf(`["%s", "%s", {address: "%s", weight: 3}]`, bes[0].Addr, bes[1].Addr, bes[2].Addr)
	cfg := gatewayConfig(targets, "balance: ring_hash\nhash_on: header:x-user-id", "")
	gws := startUpGateways(t, cfg)
	const keys = 250
	var first map[string]string // key → backend, of the first protocol
	for _, c := range upCells {
		p := gws[c.path].protocol(c.proto)
		t.Run(p.name, func(t *testing.T) {
			m := keyMap(t, p, keys)
			again := keyMap(t, p, 30)
			for k, b := range again {
				if m[k] != b {
					t.Errorf("key %s reached %s, then %s", k, m[k], b)
				}
			}
			count := map[string]int{}
			for _, b := range m {
				count[b]++
			}
			t.Logf("keys per backend: %v", count)
			for name, share := range map[string]float64{"a": .2, "b": .2, "c": .6} {
				if got := float64(count[name]) / keys; math.Abs(got-share) > .15 {
					t.Errorf("backend %s has %.0f %% of the keys; want %.0f %% ± 15", name, 100*got, 100*share)
				}
			}
			if first == nil {
				first = m
			} else if d := mapDiff(first, m); d != "" {
				t.Errorf("keys map to other backends than on the first protocol: %s", d)
			}
		})
	}
}

// TestUpstreamRingHashTargetLeaves: with ring_hash over three equal
// targets, when b fails its health check only b's keys move (about a
// third of them), each to a or c; the keys of a and c stay. When b passes
// again every key is back where it was. The keys are mapped before,
// while b is down and after, over REST and over the gRPC frame relay
// (which pick apart; TestUpstreamRingHash shows the other protocols hash
// alike).
func TestUpstreamRingHashTargetLeaves(t *testing.T) {
	// Not parallel: see the top of the file.
	bes := upstreamTrio(t)
	cfg := gatewayConfig(fmt.Sprintf(`["%s", "%s", "%s"]`, bes[0].Addr, bes[1].Addr, bes[2].Addr),
		"balance: ring_hash\nhash_on: header:x-user-id\n"+upstreamHealthCheck, "")
	gws := startUpGateways(t, cfg)
	const keys = 90
	cells := []upCell{{"relay", "rest"}, {"relay", "grpc-relay"}}
	mapAll := func() map[string]map[string]string {
		m := map[string]map[string]string{}
		for _, c := range cells {
			m[c.proto] = keyMap(t, gws[c.path].protocol(c.proto), keys)
		}
		return m
	}
	before := mapAll()
	setHealth(t, gws, false, bes[1])
	during := mapAll()
	setHealth(t, gws, true, bes[1])
	after := mapAll()
	for _, c := range cells {
		t.Run(c.proto, func(t *testing.T) {
			moved := 0
			for k, was := range before[c.proto] {
				now := during[c.proto][k]
				switch {
				case was != "b" && now != was:
					t.Errorf("key %s moved from %s to %s while only b left", k, was, now)
				case was == "b" && now == "b":
					t.Errorf("key %s still reached b while b was unhealthy", k)
				case was == "b":
					moved++
				}
			}
			t.Logf("%d of %d keys moved when b left", moved, keys)
			if moved*100 < keys*15 || moved*100 > keys*55 {
				t.Errorf("%d of %d keys moved; want about a third", moved, keys)
			}
			if d := mapDiff(before[c.proto], after[c.proto]); d != "" {
				t.Errorf("after b came back keys map elsewhere: %s", d)
			}
		})
	}
}

// upstreamHealthCheck is the health_check of these tests: short, but
// with room for slow checks on a busy machine (-race, parallel tests):
// three failures in a row take a target out.
const upstreamHealthCheck = "health_check: {interval: 200ms, timeout: 190ms, unhealthy: 3, healthy: 2}"

// setHealth sets the health status of bes and waits until every gateway
// of gws agrees.
func setHealth(t *testing.T, gws map[string]*upGateway, serving bool, bes ...*namedBackend) {
	t.Helper()
	for _, be := range bes {
		be.setServing(serving)
	}
	for _, be := range bes {
		for _, gw := range gws {
			waitFor(t, fmt.Sprintf("%s healthy = %v", be.name, serving), func() bool { return gw.endpoint(t, be.Addr).Healthy == serving })
		}
	}
}

// keyMap calls Echo once with each of n keys and returns key → backend.
func keyMap(t *testing.T, p protocol, n int) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := make(map[string]string, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, upstreamWorkers)
	for i := range n {
		key := fmt.Sprintf("user-%d", i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			b, err := p.echo(ctx, key)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			m[key] = b
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("call failed: %v", err)
	}
	return m
}

// mapDiff describes how key maps a (want) and b (got) differ: the
// number of keys that differ and a few of them; "" when equal.
func mapDiff(a, b map[string]string) string {
	var diffs []string
	for k, v := range a {
		if b[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: %s → %s", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: (none) → %s", k, v))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	sort.Strings(diffs)
	return fmt.Sprintf("%d of %d keys, e.g. %s", len(diffs), len(a), strings.Join(diffs[:min(len(diffs), 5)], ", "))
}

// TestUpstreamHealthCheck: a backend whose grpc.health.v1 status is
// NOT_SERVING gets no calls once the check marks it down, and calls
// return when it is SERVING again; when every backend is down the
// balancer is in panic mode and calls still spread over all of them.
// Each state is checked on every protocol.
func TestUpstreamHealthCheck(t *testing.T) {
	// Not parallel: see the top of the file.
	bes := upstreamTrio(t)
	cfg := gatewayConfig(fmt.Sprintf(`["%s", "%s", "%s"]`, bes[0].Addr, bes[1].Addr, bes[2].Addr), upstreamHealthCheck, "")
	gws := startUpGateways(t, cfg)
	const n = 30
	third := map[string]float64{"a": 1. / 3, "b": 1. / 3, "c": 1. / 3}
	within := func(float64) float64 { return 2 }
	phase := func(name string, shares map[string]float64, check func(t *testing.T, gw *upGateway, panics uint64)) {
		t.Run(name, func(t *testing.T) {
			for _, c := range upCells {
				gw := gws[c.path]
				t.Run(c.proto, func(t *testing.T) {
					panics := gw.upstream(t).Balancer().Stats().PanicPicks
					got := spread(t, gw.protocol(c.proto), n, upstreamWorkers, nil)
					t.Logf("%s", got)
					wantShares(t, got, n, shares, within)
					if check != nil {
						check(t, gw, panics)
					}
				})
			}
		})
	}
	setHealth(t, gws, false, bes[1])
	phase("b-down", map[string]float64{"a": .5, "c": .5}, nil)
	setHealth(t, gws, true, bes[1])
	phase("b-up", third, nil)
	setHealth(t, gws, false, bes...)
	phase("all-down", third, func(t *testing.T, gw *upGateway, panics uint64) {
		st := gw.upstream(t).Balancer().Stats()
		if !st.Panic || st.PanicPicks-panics < n {
			t.Errorf("balancer stats: got panic %v, %d panic picks during the calls; want panic mode, at least %d", st.Panic, st.PanicPicks-panics, n)
		}
	})
}

// TestUpstreamOutlierEjection: on every protocol, a backend that answers
// UNAVAILABLE is ejected after consecutive_failures (3) failed calls: the
// clients see exactly those 3 failures, then no call reaches it while it
// is ejected (base_ejection_time 30s outlasts the test).
func TestUpstreamOutlierEjection(t *testing.T) {
	t.Parallel()
	for _, c := range upCells {
		t.Run(c.proto, func(t *testing.T) {
			t.Parallel()
			bes := upstreamTrio(t)
			gw := startUpGateway(t, c.path, gatewayConfig(fmt.Sprintf(`["%s", "%s", "%s"]`, bes[0].Addr, bes[1].Addr, bes[2].Addr),
				"outlier_detection: {consecutive_failures: 3, base_ejection_time: 30s, max_ejection_percent: 50}", ""))
			p := gw.protocol(c.proto)
			b := bes[1]
			b.fail.Store(true)
			if failed := ejectByFailures(t, gw, p); failed != 3 {
				t.Errorf("calls failed before b's ejection: got %d; want 3 (consecutive_failures)", failed)
			}
			atEjection := b.calls.Load()
			got := spread(t, p, 60, 1, nil)
			t.Logf("b ejected: %s", got)
			wantShares(t, got, 60, map[string]float64{"a": .5, "c": .5}, func(float64) float64 { return 1 })
			if n := b.calls.Load() - atEjection; n != 0 {
				t.Errorf("ejected b got %d calls; want 0", n)
			}
		})
	}
}

// ejectByFailures makes calls one at a time with p until the upstream
// ejects a target, and returns how many failed (each must be
// UNAVAILABLE).
func ejectByFailures(t *testing.T, gw *upGateway, p protocol) int {
	t.Helper()
	bal := gw.upstream(t).Balancer()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	failed := 0
	for i := 0; bal.Stats().Ejections == 0; i++ {
		if i == 100 {
			t.Fatalf("no target ejected after 100 calls (%d failed)", failed)
		}
		if _, err := p.echo(ctx, ""); err != nil {
			failed++
			wantUnavailable(t, p.name, err)
		}
	}
	return failed
}

// TestUpstreamOutlierReadmittedAfterEjectionTime: an ejected backend that
// answers again comes back when base_ejection_time (200ms) has passed
// (there is no health check to readmit it sooner) and gets its share.
func TestUpstreamOutlierReadmittedAfterEjectionTime(t *testing.T) {
	t.Parallel()
	bes := upstreamTrio(t)
	gw := startUpGateway(t, "handler", gatewayConfig(fmt.Sprintf(`["%s", "%s", "%s"]`, bes[0].Addr, bes[1].Addr, bes[2].Addr),
		"outlier_detection: {consecutive_failures: 3, base_ejection_time: 200ms}", ""))
	p, b := gw.rest(), bes[1]
	b.fail.Store(true)
	ejectByFailures(t, gw, p)
	b.fail.Store(false)
	waitFor(t, "b readmitted", func() bool { return gw.endpoint(t, b.Addr).EjectedUntil.IsZero() })
	got := spread(t, p, 60, 1, nil)
	t.Logf("b readmitted: %s", got)
	wantShares(t, got, 60, map[string]float64{"a": 1. / 3, "b": 1. / 3, "c": 1. / 3}, func(float64) float64 { return 1 })
	if n := gw.upstream(t).Balancer().Stats().Ejections; n != 1 {
		t.Errorf("ejections: got %d; want 1", n)
	}
}

// TestUpstreamOutlierReadmittedByHealthCheck: an ejected backend comes
// back as soon as its active health check passes (healthy: 2 checks
// after the ejection), long before base_ejection_time (60s). The check
// never marks a target down here (unhealthy: 1000): what is counted is
// round robin's exact shares, which a check timing out on a starved
// machine would shift.
func TestUpstreamOutlierReadmittedByHealthCheck(t *testing.T) {
	t.Parallel()
	bes := upstreamTrio(t)
	gw := startUpGateway(t, "handler", gatewayConfig(fmt.Sprintf(`["%s", "%s", "%s"]`, bes[0].Addr, bes[1].Addr, bes[2].Addr),
		"outlier_detection: {consecutive_failures: 3, base_ejection_time: 60s}\n"+
			"health_check: {interval: 200ms, timeout: 190ms, unhealthy: 1000, healthy: 2}", ""))
	p, b := gw.rest(), bes[1]
	b.fail.Store(true)
	ejectByFailures(t, gw, p)
	b.fail.Store(false)
	waitFor(t, "b readmitted by its health check", func() bool { return gw.endpoint(t, b.Addr).EjectedUntil.IsZero() })
	got := spread(t, p, 60, 1, nil)
	t.Logf("b readmitted: %s", got)
	wantShares(t, got, 60, map[string]float64{"a": 1. / 3, "b": 1. / 3, "c": 1. / 3}, func(float64) float64 { return 1 })
}

// wantUnavailable checks that err is UNAVAILABLE (503 for REST).
func wantUnavailable(t *testing.T, proto string, err error) {
	t.Helper()
	if c := codeOf(err); c != codes.Unavailable {
		t.Errorf("%s: got %v; want UNAVAILABLE", proto, err)
	}
}

// codeOf returns the gRPC code of an error from any protocol client.
func codeOf(err error) codes.Code {
	var he *httpError
	var ce *connect.Error
	switch {
	case err == nil:
		return codes.OK
	case errors.As(err, &he):
		return httpToCode(he.status)
	case errors.As(err, &ce):
		return codes.Code(ce.Code())
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}

func httpToCode(s int) codes.Code {
	switch s {
	case 503:
		return codes.Unavailable
	case 504:
		return codes.DeadlineExceeded
	case 502:
		return codes.Unavailable
	}
	return codes.Unknown
}

// TestUpstreamCircuitBreaker: with circuit_breaker {max_requests: 2,
// max_pending: 1}, two calls held in EchoService.Sleep fill the upstream,
// a third waits for a slot, and a fourth fails at once with 503 /
// UNAVAILABLE "circuit breaker of upstream test is open"; when the held
// calls end, the waiting one runs and calls succeed again.
func TestUpstreamCircuitBreaker(t *testing.T) {
	t.Parallel()
	be := startNamedBackend(t, "a")
	cfg := gatewayConfig(fmt.Sprintf(`["%s"]`, be.Addr), "circuit_breaker: {max_requests: 2, max_pending: 1}", "")
	gws := startUpGateways(t, cfg)
	for _, c := range upCells {
		gw := gws[c.path]
		p := gw.protocol(c.proto)
		t.Run(p.name, func(t *testing.T) {
			brk := gw.upstream(t).Breaker()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			hold, release := context.WithCancel(ctx)
			defer release()
			var wg sync.WaitGroup
			defer wg.Wait()
			for range 2 {
				wg.Go(func() { _ = p.sleep(hold, time.Minute) })
			}
			waitFor(t, "two calls held in Sleep", func() bool { return be.active.Load() == 2 })
			waited := make(chan error, 1)
			wg.Go(func() { waited <- p.sleep(ctx, 0) })
			waitFor(t, "a call waiting for the breaker", func() bool { return brk.Stats().Waiting == 1 })
			rejected := brk.Stats().Rejected
			_, err := p.echo(ctx, "")
			wantUnavailable(t, p.name, err)
			t.Run("message", func(t *testing.T) {
				if err == nil || !strings.Contains(err.Error(), "circuit breaker of upstream test is open") {
					t.Errorf("over the limit: got %v; want \"circuit breaker of upstream test is open\"", err)
				}
			})
			if got := brk.Stats().Rejected - rejected; got != 1 {
				t.Errorf("breaker rejections: got %d; want 1", got)
			}
			release()
			if err := <-waited; err != nil {
				t.Errorf("the waiting call: %v", err)
			}
			waitFor(t, "held calls over", func() bool { return brk.Stats().InFlight == 0 })
			if _, err := p.echo(ctx, ""); err != nil {
				t.Errorf("after the breaker closed: %v", err)
			}
		})
	}
}
