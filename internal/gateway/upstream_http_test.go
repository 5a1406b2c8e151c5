package gateway

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
)

// The tests of this file cover upstreams of kind http: plain HTTP
// backends behind a uri route, balanced, health checked and retried by
// the same cluster as gRPC upstreams.

// webTarget is an in-process plain HTTP backend on a real listener: GET
// /healthz answers its health status; anything else answers 200 with
// "X-Backend: <name>".
type webTarget struct {
	name   string
	addr   string
	health atomic.Int32 // the status /healthz answers
}

func startWebTarget(t *testing.T, name string) *webTarget {
	t.Helper()
	w := &webTarget{name: name}
	w.health.Store(http.StatusOK)
	lis := testkit.ListenLocal(t)
	w.addr = lis.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/healthz" {
			rw.WriteHeader(int(w.health.Load()))
			return
		}
		rw.Header().Set("X-Backend", name)
		_, _ = io.WriteString(rw, name)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return w
}

// webGateway is a gateway with one upstream of kind http, "web", behind
// the uri route /svc/* (prefix stripped).
type webGateway struct {
	g   *Gateway
	url string
	hc  *http.Client
}

func startWebGateway(t *testing.T, targets, upstreamKeys string) *webGateway {
	t.Helper()
	cfg := "listeners:\n  - address: \"127.0.0.1:0\"\nupstreams:\n  web:\n    kind: http\n    targets: " + targets + "\n"
	if upstreamKeys != "" {
		cfg += indent(upstreamKeys, 4) + "\n"
	}
	cfg += "routes:\n  - uri: /svc/*\n    service: web\n    strip_prefix: true\n"
	url, g := startGatewayOn(t, "", "", cfg)
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &webGateway{g: g, url: url, hc: &http.Client{Transport: tr}}
}

// endpoint returns the balancer state of addr in upstream web.
func (w *webGateway) endpoint(t *testing.T, addr string) balance.EndpointState {
	t.Helper()
	u, ok := w.g.gen().uri.ups.Get("web")
	if !ok {
		t.Fatal("no upstream web")
	}
	for _, e := range u.Balancer().Snapshot() {
		if e.Addr == addr {
			return e
		}
	}
	t.Fatalf("no endpoint %s", addr)
	return balance.EndpointState{}
}

// send makes one request to /svc/x (key, when not "", as X-User-Id) and
// returns the backend that answered.
func (w *webGateway) send(ctx context.Context, method, key string) (string, error) {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("payload")
	}
	req, err := http.NewRequestWithContext(ctx, method, w.url+"/svc/x", body)
	if err != nil {
		return "", err
	}
	if key != "" {
		req.Header.Set("X-User-Id", key)
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &httpError{status: resp.StatusCode, body: string(b)}
	}
	return resp.Header.Get("X-Backend"), nil
}

// protocol returns GET /svc/x as a protocol, for spread and keyMap.
func (w *webGateway) protocol() protocol {
	return protocol{name: "http", echo: func(ctx context.Context, key string) (string, error) {
		return w.send(ctx, http.MethodGet, key)
	}}
}

// TestUpstreamHTTPBalance: requests of a uri route to an upstream of kind
// http spread over ["a", "b", {address: "c", weight: 3}] by weight with
// round_robin (within 6 requests), random (six standard deviations) and
// least_request (six standard deviations plus 10 %), and ring_hash on
// header:x-user-id keeps each key on one backend and spreads the keys by
// weight.
func TestUpstreamHTTPBalance(t *testing.T) {
	t.Parallel()
	a, b, c := startWebTarget(t, "a"), startWebTarget(t, "b"), startWebTarget(t, "c")
	targets := fmt.Sprintf(`["%s", "%s", {address: "%s", weight: 3}]`, a.addr, b.addr, c.addr)
	shares := map[string]float64{"a": .2, "b": .2, "c": .6}
	const n = 200
	sigma := func(p float64) float64 { return math.Sqrt(float64(n) * p * (1 - p)) }
	tols := map[string]func(p float64) float64{
		"round_robin":   func(float64) float64 { return 6 },
		"random":        func(p float64) float64 { return 6 * sigma(p) },
		"least_request": func(p float64) float64 { return 6*sigma(p) + 0.1*float64(n) },
	}
	for _, alg := range []string{"round_robin", "random", "least_request"} {
		t.Run(alg, func(t *testing.T) {
			w := startWebGateway(t, targets, "balance: "+alg)
			got := spread(t, w.protocol(), n, upstreamWorkers, nil)
			t.Logf("%s", got)
			wantShares(t, got, n, shares, tols[alg])
		})
	}
	t.Run("ring_hash", func(t *testing.T) {
		w := startWebGateway(t, targets, "balance: ring_hash\nhash_on: header:x-user-id")
		// 300 keys: the sampling error of c's 60 % share is under 3 points
		// (with 120 it was 4.5, and a run failed with c at 44 %), beside
		// the ring's own variation, which the backends' random ports set.
		const keys = 300
		m := keyMap(t, w.protocol(), keys)
		if d := mapDiff(m, keyMap(t, w.protocol(), keys)); d != "" {
			t.Errorf("keys reached another backend on their second call: %s", d)
		}
		count := map[string]int{}
		for _, be := range m {
			count[be]++
		}
		t.Logf("keys per backend: %v", count)
		for name, share := range shares {
			if got := float64(count[name]) / keys; math.Abs(got-share) > .15 {
				t.Errorf("backend %s has %.0f %% of the keys; want %.0f %% ± 15", name, 100*got, 100*share)
			}
		}
	})
}

// TestUpstreamHTTPRingHashOn: ring_hash on an upstream of kind http over
// three equal targets, behind a uri route, with each hash_on source: ip
// (12 client addresses, 127.0.0.10 to .21), header:x-user-id on requests
// without the header (which hash on the client's ip) and with it (the
// route has a plugin), consumer (12 key-auth consumers) and claim:tenant
// (12 tenants in HS256 tokens). Each key reaches one backend, and the
// keys spread over more than one.
func TestUpstreamHTTPRingHashOn(t *testing.T) {
	t.Parallel()
	ws := []*webTarget{startWebTarget(t, "a"), startWebTarget(t, "b"), startWebTarget(t, "c")}
	targets := fmt.Sprintf(`["%s", "%s", "%s"]`, ws[0].addr, ws[1].addr, ws[2].addr)
	const n = 12
	var consumers strings.Builder
	consumers.WriteString("consumers:\n")
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		fmt.Fprintf(&consumers, "  - name: %s\n    keys: [%q]\n", name, hashConsumerKey(name))
	}
	cases := []struct {
		name, hashOn, rest, plugin string
		// field is the header field of key i; nil: key i is the client
		// address 127.0.0.(10+i).
		field func(t *testing.T, i int) (string, string)
	}{
		{name: "ip", hashOn: "ip"},
		{name: "header-missing", hashOn: "header:x-user-id"},
		{name: "header-with-plugin", hashOn: "header:x-user-id", plugin: "concurrency-limit: { max: 1000 }",
			field: func(_ *testing.T, i int) (string, string) { return "X-User-Id", fmt.Sprintf("user-%d", i) }},
		{name: "consumer", hashOn: "consumer", rest: consumers.String(), plugin: "key-auth: { header: apikey }",
			field: func(_ *testing.T, i int) (string, string) { return "Apikey", hashConsumerKey(fmt.Sprintf("c%d", i)) }},
		{name: "claim", hashOn: "claim:tenant", plugin: "jwt-auth: { secret: " + matrixSecret + " }",
			field: func(t *testing.T, i int) (string, string) {
				c := userClaims(fmt.Sprintf("user-%d", i))
				c["tenant"] = fmt.Sprintf("tenant-%d", i)
				return "Authorization", "Bearer " + hsSign(t, matrixSecret, c)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := "listeners:\n  - address: \"127.0.0.1:0\"\nupstreams:\n  web:\n    kind: http\n    targets: " + targets +
				"\n    balance: ring_hash\n    hash_on: " + tc.hashOn + "\n" + tc.rest +
				"routes:\n  - uri: /svc/*\n    service: web\n    strip_prefix: true\n"
			if tc.plugin != "" {
				cfg += "    plugins:\n      - " + tc.plugin + "\n"
			}
			url, _ := startGatewayOn(t, "", "", cfg)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			hc := &http.Client{Transport: tr}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			m := map[string]string{}
			for i := range n {
				key, c, name, value := fmt.Sprint(i), hc, "", ""
				if tc.field == nil {
					c = webClientFrom(t, fmt.Sprintf("127.0.0.%d", 10+i))
				} else {
					name, value = tc.field(t, i)
				}
				get := func() string {
					t.Helper()
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/svc/x", nil)
					if err != nil {
						t.Fatal(err)
					}
					if name != "" {
						req.Header.Set(name, value)
					}
					resp, err := c.Do(req)
					if err != nil {
						t.Fatalf("key %s: %v", key, err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("key %s: HTTP %d", key, resp.StatusCode)
					}
					return resp.Header.Get("X-Backend")
				}
				b1, b2 := get(), get()
				if b1 != b2 {
					t.Errorf("key %s reached %s, then %s", key, b1, b2)
				}
				m[key] = b1
			}
			spreadOver := map[string]bool{}
			for _, b := range m {
				spreadOver[b] = true
			}
			t.Logf("key → backend: %v", m)
			if len(spreadOver) < 2 {
				t.Errorf("all %d keys reached %v; want them spread over the targets", n, spreadOver)
			}
		})
	}
}

// webClientFrom returns an HTTP/1.1 client whose connections come from
// the local address ip (any of 127.0.0.0/8), for hash_on: ip.
func webClientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestUpstreamHTTPHealthCheck: the health check GETs its path and
// accepts only expected_statuses ([200, 204]): a backend answering 503
// gets no requests, one answering 204 is healthy again, and when every
// backend fails the balancer is in panic mode and requests still spread
// over all of them.
func TestUpstreamHTTPHealthCheck(t *testing.T) {
	// Not parallel: see the top of upstream_test.go.
	ws := []*webTarget{startWebTarget(t, "a"), startWebTarget(t, "b"), startWebTarget(t, "c")}
	w := startWebGateway(t, fmt.Sprintf(`["%s", "%s", "%s"]`, ws[0].addr, ws[1].addr, ws[2].addr),
		"health_check: {path: /healthz, expected_statuses: [200, 204], interval: 200ms, timeout: 190ms, unhealthy: 3, healthy: 2}")
	healthy := func(x *webTarget) bool { return w.endpoint(t, x.addr).Healthy }
	const n = 60
	within := func(float64) float64 { return 4 }
	third := map[string]float64{"a": 1. / 3, "b": 1. / 3, "c": 1. / 3}

	ws[1].health.Store(http.StatusServiceUnavailable)
	waitFor(t, "b unhealthy", func() bool { return !healthy(ws[1]) })
	got := spread(t, w.protocol(), n, upstreamWorkers, nil)
	t.Logf("b answers 503: %s", got)
	wantShares(t, got, n, map[string]float64{"a": .5, "c": .5}, within)

	ws[1].health.Store(http.StatusNoContent)
	waitFor(t, "b healthy on 204", func() bool { return healthy(ws[1]) })
	got = spread(t, w.protocol(), n, upstreamWorkers, nil)
	t.Logf("b answers 204: %s", got)
	wantShares(t, got, n, third, within)

	for _, x := range ws {
		x.health.Store(http.StatusInternalServerError)
	}
	waitFor(t, "every backend unhealthy", func() bool { return !healthy(ws[0]) && !healthy(ws[1]) && !healthy(ws[2]) })
	got = spread(t, w.protocol(), n, upstreamWorkers, nil)
	t.Logf("all answer 500 (panic mode): %s", got)
	wantShares(t, got, n, third, within)
}

// TestUpstreamHTTPKillUnderLoad: three plain HTTP backend processes, each
// answering after 2 ms, under steady GET and POST load through a uri
// route; one is killed with SIGKILL. No GET fails (in flight on the dead
// target: sent again; new: the target is out of the pick or the
// connection is refused, which is retried). A POST may fail only if it
// started before the gateway took the target out of the pick.
func TestUpstreamHTTPKillUnderLoad(t *testing.T) {
	t.Parallel()
	opts := testkit.ProcessOptions{Kind: "http", Delay: 2 * time.Millisecond}
	procs := []*testkit.BackendProcess{
		testkit.StartBackendProcess(t, "a", opts),
		testkit.StartBackendProcess(t, "b", opts),
		testkit.StartBackendProcess(t, "c", opts),
	}
	victim := procs[1]
	w := startWebGateway(t, fmt.Sprintf(`["%s", "%s", "%s"]`, procs[0].Addr, procs[1].Addr, procs[2].Addr),
		`retry: {attempts: 3, on: [unavailable, connect-failure, refused-stream, reset]}
outlier_detection: {consecutive_failures: 3, base_ejection_time: 30s}
health_check: {path: /healthz, interval: 200ms, timeout: 190ms, unhealthy: 3, healthy: 2}`)
	streams := []*loadStream{
		{name: "GET", idempotent: true, gw: "web", call: func(ctx context.Context) (string, error) { return w.send(ctx, http.MethodGet, "") }},
		{name: "POST", gw: "web", call: func(ctx context.Context) (string, error) { return w.send(ctx, http.MethodPost, "") }},
	}
	isOut := func(string) bool { return !w.endpoint(t, victim.Addr).Available }
	killLoad(t, streams, 3, 40, 60, victim.Name, victim.Kill, isOut)
	for _, s := range streams {
		t.Run(s.name, func(t *testing.T) {
			t.Log(s)
			if s.victimAfter.Load() > 0 {
				t.Errorf("%d requests reached the dead target after it was out of the pick", s.victimAfter.Load())
			}
			if s.failedAfter.Load() > 0 {
				t.Errorf("%d requests that started after the target was out of the pick failed; want 0", s.failedAfter.Load())
			}
			if s.idempotent && s.failedBefore.Load() > 0 {
				t.Errorf("%d GETs failed when the target died; want 0 (sent again to another target)", s.failedBefore.Load())
			}
		})
	}
}
