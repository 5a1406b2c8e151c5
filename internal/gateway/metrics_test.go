package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// metricsConfig has an admin listener (so metrics are collected), a gRPC
// upstream and a plain HTTP upstream behind a uri route.
const metricsConfig = `
listeners:
  - address: "127.0.0.1:0"
admin:
  address: "localhost:0" # not 127.0.0.1:0: validation wants another address than the listener's
upstreams:
  test:
    targets: ["$BACKEND"]
  web:
    kind: http
    targets: ["$WEB"]
routes:
  - selector: rosetta.testing.v1.EchoService.*
    timeout: 10s
  - uri: /web/*
    service: web
`

// scrape fetches /metrics from the gateway's admin listener.
func scrape(t *testing.T, g *Gateway) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: HTTP %d: %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// sumOf adds the values (counts, for histograms) of the series of name
// whose labels include want.
func sumOf(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	total := 0.0
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if have[k] != v {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// seriesOf lists the label sets of name, for failure messages.
func seriesOf(fams map[string]*dto.MetricFamily, name string) string {
	var out []string
	for _, m := range fams[name].GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		out = append(out, fmt.Sprintf("{%s} %g", strings.Join(ls, ","), v))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// startMetricsGateway starts a backend, a plain HTTP backend and a
// gateway with metricsConfig on the given gRPC path.
func startMetricsGateway(t *testing.T, path string) (string, *Gateway, *testkit.Backend, string) {
	t.Helper()
	be := testkit.StartBackend(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "web "+r.URL.Path)
	}))
	t.Cleanup(web.Close)
	webAddr := web.Listener.Addr().String()
	url, g := startGatewayOn(t, path, be.Addr, strings.ReplaceAll(metricsConfig, "$WEB", webAddr))
	return url, g, be, webAddr
}

// TestMetricsByProtocol drives known traffic on every protocol, on both
// gRPC paths (the frame relay and the handler), and checks the exact
// counts /metrics reports.
func TestMetricsByProtocol(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		url, g, be, webAddr := startMetricsGateway(t, path)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()

		// rest: two echoes and a NOT_FOUND.
		for range 2 {
			expect(t, do(t, "POST", url+"/v1/echo", `{"stringValue": "hi"}`), 200, "")
		}
		expect(t, do(t, "POST", url+"/v1/fail", `{"code": 5, "message": "nope"}`), 404, "")
		// sse: one stream of two items.
		if r := do(t, "GET", url+"/v1/stream?count=2", "", "Accept: text/event-stream"); r.status != 200 || len(parseSSE(t, r.body)) != 3 {
			t.Fatalf("sse: %d %q", r.status, r.body)
		}
		// grpc: three echoes, an INTERNAL failure and a server stream.
		cl := testingv1.NewEchoServiceClient(dialGateway(t, url))
		for range 3 {
			if _, err := cl.Echo(ctx, &testingv1.Everything{StringValue: "hi"}); err != nil {
				t.Fatalf("grpc echo: %v", err)
			}
		}
		if _, err := cl.Fail(ctx, &testingv1.FailRequest{Code: int32(codes.Internal), Message: "boom"}); status.Code(err) != codes.Internal {
			t.Fatalf("grpc fail: got %v; want INTERNAL", err)
		}
		ss, err := cl.ServerStream(ctx, &testingv1.StreamRequest{Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := ss.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("grpc stream: %v", err)
			}
		}
		// grpc_web: one echo.
		msg, _ := proto.Marshal(&testingv1.Everything{StringValue: "web"})
		if r := doWeb(t, url+"/rosetta.testing.v1.EchoService/Echo", "application/grpc-web+proto", webFrame(0, msg)); r.status != 200 || len(r.messages) != 1 {
			t.Fatalf("grpc-web: %+v", r)
		}
		// connect: one unary call.
		expect(t, do(t, "POST", url+"/rosetta.testing.v1.EchoService/Echo", `{"stringValue": "c"}`, "Connect-Protocol-Version: 1"), 200, `{"stringValue": "c"}`)
		// websocket: one unary call through the bridge.
		c := dialWS(t, wsURL(url, "/v1/echo"), nil)
		wsSend(t, c, `{"stringValue": "ws"}`)
		wsRead(t, c, websocket.MessageText)
		wsExpectOK(t, c)
		// http: two requests on the uri route.
		for range 2 {
			if r := do(t, "GET", url+"/web/page", ""); r.status != 200 || r.body != "web /web/page" {
				t.Fatalf("uri route: %d %q", r.status, r.body)
			}
		}

		want := map[string]float64{"rest": 3, "sse": 1, "grpc": 5, "grpc_web": 1, "connect": 1, "websocket": 1, "http": 2}
		total := 0.0
		for _, n := range want {
			total += n
		}
		// A call is counted when the gateway's side of it ends, which may
		// be just after the client has its answer.
		var fams map[string]*dto.MetricFamily
		waitUntil(t, func() bool {
			fams = scrape(t, g)
			return sumOf(fams, "rosetta_requests_total", nil) >= total && sumOf(fams, "rosetta_requests_in_flight", nil) == 0
		}, "every call counted")
		if testing.Verbose() {
			t.Logf("%s", seriesOf(fams, "rosetta_requests_total"))
		}
		for proto, n := range want {
			if got := sumOf(fams, "rosetta_requests_total", map[string]string{"protocol": proto}); got != n {
				t.Errorf("rosetta_requests_total{protocol=%q}: got %v; want %v\n%s", proto, got, n, seriesOf(fams, "rosetta_requests_total"))
			}
			if got := sumOf(fams, "rosetta_request_duration_seconds", map[string]string{"protocol": proto}); got != n {
				t.Errorf("rosetta_request_duration_seconds{protocol=%q} count: got %v; want %v", proto, got, n)
			}
		}
		if got := sumOf(fams, "rosetta_requests_total", nil); got != total {
			t.Errorf("rosetta_requests_total: got %v; want %v\n%s", got, total, seriesOf(fams, "rosetta_requests_total"))
		}
		const echo = "/rosetta.testing.v1.EchoService/Echo"
		route := "rosetta.testing.v1.EchoService.*"
		series := []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"rosetta_requests_total", map[string]string{"protocol": "grpc", "http_version": "2", "route": route, "method": echo,
				"upstream": "test", "status_class": "2xx", "grpc_code": "OK"}, 3},
			{"rosetta_requests_total", map[string]string{"protocol": "grpc", "method": "/rosetta.testing.v1.EchoService/Fail", "grpc_code": "Internal"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "grpc", "method": "/rosetta.testing.v1.EchoService/ServerStream", "grpc_code": "OK"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "rest", "http_version": "1.1", "route": route, "method": echo,
				"upstream": "test", "status_class": "2xx", "grpc_code": "OK"}, 2},
			{"rosetta_requests_total", map[string]string{"protocol": "rest", "status_class": "4xx", "grpc_code": "NotFound"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "sse", "method": "/rosetta.testing.v1.EchoService/ServerStream", "status_class": "2xx", "grpc_code": "OK"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "grpc_web", "method": echo, "grpc_code": "OK"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "connect", "method": echo, "grpc_code": "OK"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "websocket", "method": echo, "grpc_code": "OK"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "http", "route": "/web/*", "method": "", "upstream": "web",
				"status_class": "2xx", "grpc_code": ""}, 2},
			{"rosetta_request_errors_total", map[string]string{"protocol": "grpc", "grpc_code": "Internal"}, 1},
			{"rosetta_request_errors_total", nil, 1},
			// Every call that reached a target, by target.
			{"rosetta_upstream_requests_total", map[string]string{"upstream": "test", "target": be.Addr}, 12},
			{"rosetta_upstream_requests_total", map[string]string{"upstream": "web", "target": webAddr}, 2},
			{"rosetta_upstream_request_duration_seconds", map[string]string{"upstream": "test", "target": be.Addr}, 12},
			{"rosetta_open_streams", nil, 0},
			{"rosetta_requests_in_flight", nil, 0},
			{"rosetta_upstream_target_healthy", map[string]string{"upstream": "test", "target": be.Addr}, 1},
			{"rosetta_upstream_target_available", map[string]string{"upstream": "web", "target": webAddr}, 1},
			{"rosetta_upstream_target_in_flight", nil, 0},
			{"rosetta_descriptor_snapshot_version", nil, 1},
			{"rosetta_descriptor_refresh_errors_total", nil, 0},
			{"rosetta_config_generation", nil, 1},
			{"rosetta_config_reloads_total", nil, 0},
			{"rosetta_config_last_reload_successful", nil, 1},
			{"rosetta_policy_refusals_total", nil, 0},
		}
		for _, s := range series {
			if got := sumOf(fams, s.name, s.labels); got != s.want {
				t.Errorf("%s%v: got %v; want %v\n%s", s.name, s.labels, got, s.want, seriesOf(fams, s.name))
			}
		}
	})
}

// metricsPolicyConfig has consumers, key-auth on EchoService.Metadata and
// on the uri route /keyed/*, a rate limit of one call on
// EchoService.Echo, and a proxy-cache on the uri route /cached/*.
const metricsPolicyConfig = `
listeners:
  - address: "127.0.0.1:0"
admin:
  address: "localhost:0"
upstreams:
  test:
    targets: ["$BACKEND"]
  web:
    kind: http
    targets: ["$WEB"]
consumers:
  - {name: alice, keys: [alice-key]}
  - {name: bob, keys: [bob-key]}
routes:
  - selector: rosetta.testing.v1.EchoService.Metadata
    plugins:
      - key-auth: {}
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - rate-limiting: {limit: 1, period: 3600, key: route}
  - uri: /cached/*
    service: web
    plugins:
      - proxy-cache: {ttl: 30s}
  - uri: /keyed/*
    service: web
    plugins:
      - key-auth: {}
`

// TestMetricsPolicies: policy refusals by plugin and reason, calls by
// consumer, and proxy-cache hits, misses and stale answers, on both gRPC
// paths.
func TestMetricsPolicies(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/swr") {
				w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
			}
			_, _ = io.WriteString(w, "web "+r.URL.Path)
		}))
		t.Cleanup(web.Close)
		g := newTestGateway(t, be.Addr, strings.ReplaceAll(metricsPolicyConfig, "$WEB", web.Listener.Addr().String()), nil)
		clock := newFakeClock()
		g.gen().caches.setClock(clock.Now)
		url := startTestGateway(t, g, path)
		ctx := testContext(t)
		cl := testingv1.NewEchoServiceClient(dialGateway(t, url))
		key := func(k string) context.Context { return metadata.AppendToOutgoingContext(ctx, "apikey", k) }

		// grpc: two calls without a key, one with a wrong key, two of
		// alice's and one of bob's.
		for range 2 {
			_, err := cl.Metadata(ctx, &testingv1.MetadataRequest{})
			wantStatus(t, err, codes.Unauthenticated, "")
		}
		_, err := cl.Metadata(key("nope"), &testingv1.MetadataRequest{})
		wantStatus(t, err, codes.Unauthenticated, "")
		for _, k := range []string{"alice-key", "alice-key", "bob-key"} {
			if _, err := cl.Metadata(key(k), &testingv1.MetadataRequest{}); err != nil {
				t.Fatalf("Metadata with %s: %v", k, err)
			}
		}
		// rest: one call without a key.
		expect(t, do(t, "POST", url+"/v1/metadata", `{}`), 401, "")
		// connect: two echoes, the second over the rate limit.
		expect(t, do(t, "POST", url+"/rosetta.testing.v1.EchoService/Echo", `{"stringValue": "c"}`, "Connect-Protocol-Version: 1"), 200, "")
		expect(t, do(t, "POST", url+"/rosetta.testing.v1.EchoService/Echo", `{"stringValue": "c"}`, "Connect-Protocol-Version: 1"), 429, "")
		// http: one call without a key, one of alice's.
		if r := do(t, "GET", url+"/keyed/x", ""); r.status != 401 {
			t.Fatalf("/keyed/x without a key: %d", r.status)
		}
		if r := do(t, "GET", url+"/keyed/x", "", "apikey: alice-key"); r.status != 200 {
			t.Fatalf("/keyed/x with alice's key: %d", r.status)
		}
		// cache: /cached/a a miss then a hit, /cached/swr a miss then,
		// past its max-age, a stale answer (refreshed in the background).
		for i, want := range []struct{ path, cache string }{
			{"/cached/a", "MISS"}, {"/cached/a", "HIT"}, {"/cached/swr", "MISS"}, {"/cached/swr", "STALE"},
		} {
			if i == 3 {
				clock.Add(20 * time.Second)
			}
			if r := do(t, "GET", url+want.path, ""); r.status != 200 || r.header.Get("X-Cache") != want.cache {
				t.Fatalf("GET %s: %d, X-Cache %q; want 200 %s", want.path, r.status, r.header.Get("X-Cache"), want.cache)
			}
		}

		const total = 6 + 1 + 2 + 2 + 4
		var fams map[string]*dto.MetricFamily
		waitUntil(t, func() bool {
			fams = scrape(t, g)
			return sumOf(fams, "rosetta_requests_total", nil) >= total && sumOf(fams, "rosetta_requests_in_flight", nil) == 0
		}, "every call counted")
		metadataRoute := "rosetta.testing.v1.EchoService.Metadata"
		for _, s := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"rosetta_requests_total", nil, total},
			{"rosetta_requests_total", map[string]string{"protocol": "grpc", "route": metadataRoute, "grpc_code": "Unauthenticated", "status_class": "2xx"}, 3},
			{"rosetta_requests_total", map[string]string{"protocol": "grpc", "route": metadataRoute, "grpc_code": "OK"}, 3},
			{"rosetta_requests_total", map[string]string{"protocol": "connect", "grpc_code": "ResourceExhausted", "status_class": "4xx"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "http", "route": "/keyed/*", "status_class": "4xx"}, 1},
			{"rosetta_requests_total", map[string]string{"protocol": "http", "route": "/cached/*", "status_class": "2xx"}, 4},
			// Refusals are answers, not errors.
			{"rosetta_request_errors_total", nil, 0},
			{"rosetta_policy_refusals_total", nil, 6},
			{"rosetta_policy_refusals_total", map[string]string{"plugin": "key-auth", "reason": "missing_credentials", "protocol": "grpc", "route": metadataRoute}, 2},
			{"rosetta_policy_refusals_total", map[string]string{"plugin": "key-auth", "reason": "unauthenticated", "protocol": "grpc", "route": metadataRoute}, 1},
			{"rosetta_policy_refusals_total", map[string]string{"plugin": "key-auth", "reason": "missing_credentials", "protocol": "rest", "route": metadataRoute}, 1},
			{"rosetta_policy_refusals_total", map[string]string{"plugin": "rate-limiting", "reason": "resource_exhausted", "protocol": "connect", "route": "rosetta.testing.v1.EchoService.Echo"}, 1},
			{"rosetta_policy_refusals_total", map[string]string{"plugin": "key-auth", "reason": "missing_credentials", "protocol": "http", "route": "/keyed/*"}, 1},
			{"rosetta_consumer_requests_total", nil, 4},
			{"rosetta_consumer_requests_total", map[string]string{"consumer": "alice", "protocol": "grpc", "route": metadataRoute, "grpc_code": "OK"}, 2},
			{"rosetta_consumer_requests_total", map[string]string{"consumer": "bob", "protocol": "grpc"}, 1},
			{"rosetta_consumer_requests_total", map[string]string{"consumer": "alice", "protocol": "http", "route": "/keyed/*", "status_class": "2xx"}, 1},
			// Refused calls reach no target; cache hits and stale answers
			// neither (the background refresh is not a call).
			{"rosetta_upstream_requests_total", map[string]string{"upstream": "test"}, 4},
			{"rosetta_upstream_requests_total", map[string]string{"upstream": "web"}, 3},
			{"rosetta_cache_requests_total", map[string]string{"result": "hit"}, 1},
			{"rosetta_cache_requests_total", map[string]string{"result": "miss"}, 2},
			{"rosetta_cache_requests_total", map[string]string{"result": "stale"}, 1},
		} {
			if got := sumOf(fams, s.name, s.labels); got != s.want {
				t.Errorf("%s%v: got %v; want %v\n%s", s.name, s.labels, got, s.want, seriesOf(fams, s.name))
			}
		}
	})
}

// TestMetricsReload: config generation, reload counters (success and
// failure), the last reload's outcome and timestamp, and the descriptor
// snapshot's version.
func TestMetricsReload(t *testing.T) {
	t.Parallel()
	url, g, _, _ := startMetricsGateway(t, "")
	before := time.Now()
	fams := scrape(t, g)
	for name, want := range map[string]float64{
		"rosetta_config_generation":             1,
		"rosetta_config_last_reload_successful": 1,
		"rosetta_descriptor_snapshot_version":   float64(g.Snapshot().Version),
	} {
		if got := sumOf(fams, name, nil); got != want {
			t.Errorf("before reloads: %s = %v; want %v", name, got, want)
		}
	}
	if v := g.Snapshot().Version; v < 1 {
		t.Errorf("snapshot version %d", v)
	}
	if got := sumOf(fams, "rosetta_descriptor_refreshes_total", nil); got < 1 {
		t.Errorf("rosetta_descriptor_refreshes_total = %v; want at least the first load", got)
	}

	file := g.gen().cfg.File
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// A valid change (one more route), then an invalid file.
	changed := string(text) + "  - uri: /other/*\n    service: web\n"
	if err := os.WriteFile(file, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := g.Reload(); !st.OK {
		t.Fatalf("reload: %+v", st)
	}
	fams = scrape(t, g)
	for name, want := range map[string]float64{
		"rosetta_config_generation":             2,
		"rosetta_config_last_reload_successful": 1,
	} {
		if got := sumOf(fams, name, nil); got != want {
			t.Errorf("after a reload: %s = %v; want %v", name, got, want)
		}
	}
	if got := sumOf(fams, "rosetta_config_reloads_total", map[string]string{"result": "success"}); got != 1 {
		t.Errorf("reloads{success} = %v; want 1", got)
	}
	loaded := sumOf(fams, "rosetta_config_last_reload_success_timestamp_seconds", nil)
	if loaded < float64(before.Unix()) || loaded > float64(time.Now().Unix()+1) {
		t.Errorf("rosetta_config_last_reload_success_timestamp_seconds = %v; want about %d", loaded, time.Now().Unix())
	}
	if err := os.WriteFile(file, []byte(changed+"  - bogus: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := g.Reload(); st.OK {
		t.Fatalf("an invalid config was reloaded: %+v", st)
	}
	fams = scrape(t, g)
	for _, s := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"rosetta_config_generation", nil, 2},
		{"rosetta_config_reloads_total", map[string]string{"result": "success"}, 1},
		{"rosetta_config_reloads_total", map[string]string{"result": "failure"}, 1},
		{"rosetta_config_last_reload_successful", nil, 0},
		{"rosetta_config_last_reload_success_timestamp_seconds", nil, loaded},
		{"rosetta_descriptor_snapshot_version", nil, float64(g.Snapshot().Version)},
	} {
		if got := sumOf(fams, s.name, s.labels); got != s.want {
			t.Errorf("after a failed reload: %s%v = %v; want %v", s.name, s.labels, got, s.want)
		}
	}
	// Calls are counted with the new generation's routes.
	if r := do(t, "GET", url+"/other/x", ""); r.status != 200 {
		t.Fatalf("/other/x: %d", r.status)
	}
	waitUntil(t, func() bool {
		return sumOf(scrape(t, g), "rosetta_requests_total", map[string]string{"protocol": "http", "route": "/other/*"}) == 1
	}, "the call on the new route counted")
}

// TestMetricsDescriptorErrors: an upstream whose descriptors cannot be
// loaded counts refresh errors and problems.
func TestMetricsDescriptorErrors(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	dead := testkit.RefusingAddr(t)
	_, g := startGatewayOn(t, "", be.Addr, `
listeners:
  - address: "127.0.0.1:0"
admin:
  address: "localhost:0"
upstreams:
  test:
    targets: ["$BACKEND"]
  gone:
    targets: ["`+dead+`"]
`)
	fams := scrape(t, g)
	if got := sumOf(fams, "rosetta_descriptor_refresh_errors_total", nil); got < 1 {
		t.Errorf("rosetta_descriptor_refresh_errors_total = %v; want at least 1", got)
	}
	if got := sumOf(fams, "rosetta_descriptor_problems", nil); got < 1 {
		t.Errorf("rosetta_descriptor_problems = %v; want at least 1", got)
	}
	if got := sumOf(fams, "rosetta_upstream_target_available", map[string]string{"upstream": "test"}); got != 1 {
		t.Errorf("rosetta_upstream_target_available{upstream=test} = %v; want 1", got)
	}
}

// startRelayBenchGateway starts a gateway from yaml (no access log) in
// front of backendAddr for a benchmark, waits until its upstream has a
// relay connection (so that every call takes the frame relay) and
// returns its base URL.
func startRelayBenchGateway(b *testing.B, backendAddr, yaml string) (string, *Gateway) {
	b.Helper()
	g, url := newBenchGateway(b, backendAddr, yaml)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	up, _ := g.gen().ups.Get("test")
	for up.RelayConn(backendAddr) == nil {
		if ctx.Err() != nil {
			b.Fatal("no relay connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return url, g
}

// relayMetricsRuns counts the runs of BenchmarkRelayMetrics.
var relayMetricsRuns atomic.Int64

// BenchmarkRelayMetrics is a unary gRPC call (a ~100-byte message) taken
// by the frame relay, through a gateway without metrics (no admin block)
// and one with them, side by side; the access log is off in both, so
// that the difference is what metrics cost (the request ID is made on
// both). Calls run in parallel, as in BenchmarkGRPCUnary; cpu-ns/op is
// the process's CPU time per call (client, gateway and backend), which
// a busy machine disturbs less than ns/op.
func BenchmarkRelayMetrics(b *testing.B) {
	be := testkit.StartBackend(b)
	modes := []string{"off", "on"}
	clients := map[string]testingv1.EchoServiceClient{}
	for _, mode := range modes {
		yaml := basicConfig
		if mode == "on" {
			yaml += "admin:\n  address: \"localhost:0\"\n"
		}
		url, g := startRelayBenchGateway(b, be.Addr, yaml)
		if (g.Metrics() != nil) != (mode == "on") {
			b.Fatalf("metrics %s: gateway metrics %v", mode, g.Metrics())
		}
		clients[mode] = testingv1.NewEchoServiceClient(dialGateway(b, url))
	}
	req := &testingv1.Everything{StringValue: strings.Repeat("x", 100), Int64Value: 42}
	// With -count, every other run measures "on" first: a machine whose
	// load drifts does not favor one side.
	if relayMetricsRuns.Add(1)%2 == 0 {
		modes[0], modes[1] = modes[1], modes[0]
	}
	for _, mode := range modes {
		client := clients[mode]
		b.Run("metrics="+mode, func(b *testing.B) {
			b.ReportAllocs()
			start := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Echo(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestMetricsOpenStreams: streams count in rosetta_open_streams by
// protocol (and in rosetta_requests_in_flight) while they are open, on
// both gRPC paths.
func TestMetricsOpenStreams(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		url, g, _, _ := startMetricsGateway(t, path)
		ctx, cancel := context.WithCancel(testContext(t))
		defer cancel()
		cl := testingv1.NewEchoServiceClient(dialGateway(t, url))
		bidi, err := cl.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := bidi.Send(&testingv1.StreamItem{Text: "a"}); err != nil {
			t.Fatal(err)
		}
		if _, err := bidi.Recv(); err != nil {
			t.Fatal(err)
		}
		ws := dialWS(t, wsURL(url, "/v1/echo"), nil)
		wsSend(t, ws, `{"stringValue": "ws"}`) // routed once its first message is in
		wsRead(t, ws, websocket.MessageText)
		open := map[string]float64{"grpc": 1, "websocket": 1}
		waitUntil(t, func() bool {
			fams := scrape(t, g)
			for p, n := range open {
				if sumOf(fams, "rosetta_open_streams", map[string]string{"protocol": p}) != n {
					return false
				}
			}
			return sumOf(fams, "rosetta_open_streams", nil) == 2 && sumOf(fams, "rosetta_requests_in_flight", nil) == 2
		}, "two open streams")
		if err := bidi.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := bidi.Recv(); err != io.EOF {
			t.Fatalf("bidi end: %v", err)
		}
		wsExpectOK(t, ws)
		waitUntil(t, func() bool {
			fams := scrape(t, g)
			return sumOf(fams, "rosetta_open_streams", nil) == 0 && sumOf(fams, "rosetta_requests_in_flight", nil) == 0
		}, "no open stream")
	})
}

// TestMetricsResilience: retries made (to the other target, after a
// connection to a dead one failed) and circuit-breaker rejections.
func TestMetricsResilience(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "web")
	}))
	t.Cleanup(web.Close)
	dead := testkit.RefusingAddr(t)
	url, g := startGatewayOn(t, "", be.Addr, `
listeners:
  - address: "127.0.0.1:0"
admin:
  address: "localhost:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    circuit_breaker: {max_requests: 1, max_pending: 0}
  web:
    kind: http
    targets: ["`+dead+`", "`+web.Listener.Addr().String()+`"]
    retry: {attempts: 2, on: [connect-failure]}
routes:
  - uri: /web/*
    service: web
`)
	for range 4 {
		if r := do(t, "GET", url+"/web/x", ""); r.status != 200 {
			t.Fatalf("/web/x: %d %s", r.status, r.body)
		}
	}
	cl := testingv1.NewEchoServiceClient(dialGateway(t, url))
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	held := make(chan error, 1)
	go func() {
		_, err := cl.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
		held <- err
	}()
	waitUntil(t, func() bool {
		return sumOf(scrape(t, g), "rosetta_upstream_target_in_flight", map[string]string{"upstream": "test"}) == 1
	}, "the held call in flight")
	_, err := cl.Echo(testContext(t), &testingv1.Everything{})
	wantStatus(t, err, codes.Unavailable, "")
	cancel()
	<-held
	// The relay counts a call once its answer is written: the client can
	// see the refusal before the count lands.
	rejected := map[string]string{"protocol": "grpc", "method": "/rosetta.testing.v1.EchoService/Echo", "grpc_code": "Unavailable"}
	waitUntil(t, func() bool { return sumOf(scrape(t, g), "rosetta_requests_total", rejected) == 1 }, "the rejected call counted")
	fams := scrape(t, g)
	if got := sumOf(fams, "rosetta_upstream_retries_total", map[string]string{"upstream": "web"}); got < 1 {
		t.Errorf("rosetta_upstream_retries_total{web} = %v; want at least 1\n%s", got, seriesOf(fams, "rosetta_upstream_retries_total"))
	}
	if got := sumOf(fams, "rosetta_upstream_breaker_rejections_total", map[string]string{"upstream": "test", "target": ""}); got != 1 {
		t.Errorf("rosetta_upstream_breaker_rejections_total{test} = %v; want 1\n%s", got, seriesOf(fams, "rosetta_upstream_breaker_rejections_total"))
	}
	if got := sumOf(fams, "rosetta_requests_total", rejected); got != 1 {
		t.Errorf("the rejected call: %v; want 1\n%s", got, seriesOf(fams, "rosetta_requests_total"))
	}
	if got := sumOf(fams, "rosetta_requests_total", map[string]string{"protocol": "http", "status_class": "2xx"}); got != 4 {
		t.Errorf("http calls: %v; want 4", got)
	}
}
