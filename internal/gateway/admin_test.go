package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/admin"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

const testAdminToken = "adm-0f1e2d3c4b5a69788796a5b4c3d2e1f0"

// adminConfig is reloadConfig with an admin listener (on 127.0.0.2, as
// the listener is on 127.0.0.1:0 and the addresses must differ) whose
// token is testAdminToken, then extra.
func adminConfig(extra string) string {
	return reloadConfig(`
admin:
  address: "127.0.0.2:0"
  token: ` + testAdminToken + `
` + extra)
}

// adminAPI calls a gateway's admin listener.
type adminAPI struct {
	base string
	hc   *http.Client
}

func newAdminAPI(t *testing.T, g *Gateway) *adminAPI {
	t.Helper()
	addr := g.AdminAddr()
	if addr == nil {
		t.Fatal("no admin listener")
	}
	return &adminAPI{base: "http://" + addr.String(), hc: newHTTP1Client(t)}
}

// call sends method path with the Authorization header auth ("" for
// none) and returns the answer.
func (a *adminAPI) call(t *testing.T, method, path, auth string) response {
	t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get sends GET path with the token.
func (a *adminAPI) get(t *testing.T, path string) response {
	t.Helper()
	return a.call(t, http.MethodGet, path, "Bearer "+testAdminToken)
}

// decode decodes a 200 answer's JSON body into v.
func decode(t *testing.T, r response, v any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d; want 200: %s", r.status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("body is not the JSON wanted: %v\n%s", err, r.body)
	}
}

// TestAdminAuth: /healthz and /readyz answer without a token (and
// whatever Authorization they get); every other path, known or not,
// answers 401 with a Bearer challenge without the token or with a wrong
// one, and its own answer with it.
func TestAdminAuth(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	r := startReloadGateway(t, "", map[string]string{"A": be.Addr}, adminConfig(""))
	api := newAdminAPI(t, r.g)

	for _, auth := range []string{"", "Bearer wrong", "Bearer " + testAdminToken} {
		expect(t, api.call(t, "GET", "/healthz", auth), 200, `{"status": "ok"}`)
		expect(t, api.call(t, "GET", "/readyz", auth), 200, `{"status": "ready"}`)
	}
	const (
		missing = "{\n  \"error\": \"missing admin token: send Authorization: Bearer <admin.token>\"\n}\n"
		wrong   = "{\n  \"error\": \"wrong admin token\"\n}\n"
	)
	paths := []struct{ method, path string }{
		{"GET", "/config"}, {"GET", "/config/status"}, {"GET", "/routes"}, {"GET", "/upstreams"},
		{"GET", "/descriptors"}, {"POST", "/reload"}, {"POST", "/cache/purge"}, {"GET", "/metrics"},
		{"GET", "/openapi.json"}, {"GET", "/nope"}, {"DELETE", "/config"}, {"GET", "/reload"},
		{"GET", "/analytics"}, {"GET", "/usage"}, {"GET", "/debug/pprof/"}, {"GET", "/debug/pprof/profile"},
	}
	for _, p := range paths {
		for _, c := range []struct{ auth, body string }{
			{"", missing},
			{"Basic " + testAdminToken, missing},
			{"bearer " + testAdminToken, missing},
			{testAdminToken, missing},
			{"Bearer wrong", wrong},
			{"Bearer " + testAdminToken + "x", wrong},
			{"Bearer " + testAdminToken[:len(testAdminToken)-1], wrong},
			{"Bearer  " + testAdminToken, wrong},
		} {
			got := api.call(t, p.method, p.path, c.auth)
			if got.status != http.StatusUnauthorized || got.body != c.body ||
				got.header.Get("WWW-Authenticate") != `Bearer realm="rosetta-admin"` || got.header.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s with Authorization %q: got %d %q (challenge %q); want 401 %q", p.method, p.path, c.auth, got.status, got.body, got.header.Get("WWW-Authenticate"), c.body)
			}
		}
	}
	// With the token.
	for _, p := range []string{"/config", "/config/status", "/routes", "/upstreams", "/descriptors"} {
		if got := api.get(t, p); got.status != http.StatusOK || !json.Valid([]byte(got.body)) {
			t.Errorf("GET %s with the token: %d %s", p, got.status, got.body)
		}
	}
	// Go's profiles, for an operator.
	if got := api.get(t, "/debug/pprof/goroutine?debug=1"); got.status != http.StatusOK || !strings.Contains(got.body, "goroutine profile: total") {
		t.Errorf("GET /debug/pprof/goroutine with the token: %d %.100s", got.status, got.body)
	}
	expect(t, api.call(t, "POST", "/cache/purge", "Bearer "+testAdminToken), 404, `{"error": "no proxy-cache is configured"}`)
	got := api.get(t, "/nope")
	if got.status != http.StatusNotFound || !strings.Contains(got.body, "no admin endpoint GET /nope") {
		t.Errorf("GET /nope with the token: %d %s; want 404", got.status, got.body)
	}
	if strings.Contains(r.logs.String(), testAdminToken) {
		t.Errorf("the admin token is in the log")
	}
}

// TestAdminTokenReload: a reload that changes admin.token applies it at
// once: the old token is refused, the new one accepted.
func TestAdminTokenReload(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	r := startReloadGateway(t, "", map[string]string{"A": be.Addr}, adminConfig(""))
	api := newAdminAPI(t, r.g)
	const next = "adm-rotated-token-000000000000000001"
	r.write(t, strings.Replace(adminConfig(""), testAdminToken, next, 1))
	var st admin.ConfigStatus
	decode(t, api.call(t, "POST", "/reload", "Bearer "+testAdminToken), &st)
	if !st.OK || st.Version != 2 {
		t.Fatalf("reload: %+v", st)
	}
	expect(t, api.get(t, "/config/status"), 401, `{"error": "wrong admin token"}`)
	if got := api.call(t, "GET", "/config/status", "Bearer "+next); got.status != http.StatusOK {
		t.Errorf("the new token: %d %s; want 200", got.status, got.body)
	}
}

// TestAdminRedaction: GET /config shows the running config with every
// secret redacted (a jwt-auth secret, consumers' keys, the admin token
// from ${ADMIN_TOKEN}, the Redis password), and no other admin answer,
// nor the log, shows them.
func TestAdminRedaction(t *testing.T) {
	// Not parallel: t.Setenv.
	const (
		envToken = "adm-from-env-5e5e5e5e5e5e5e5e5e5e5e5e"
		jwtKey   = "jwt-secret-7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c"
		aliceKey = "alice-key-3a3a3a3a3a3a3a3a"
		bobKey   = "bob-key-4b4b4b4b4b4b4b4b"
		redisPW  = "redis-pw-9d9d9d9d9d9d9d9d"
	)
	t.Setenv("ADMIN_TOKEN", envToken)
	secrets := []string{envToken, jwtKey, aliceKey, bobKey, redisPW}
	be := testkit.StartBackend(t)
	redis := testkit.ListenLocal(t).Addr().String() // never dialled: no plugin uses Redis
	r := startReloadGateway(t, "", map[string]string{"A": be.Addr, "REDIS": redis}, reloadConfig(`
admin:
  address: "127.0.0.2:0"
  token: ${ADMIN_TOKEN}
redis:
  address: "$REDIS"
  username: gateway
  password: `+redisPW+`
consumers:
  - {name: alice, keys: [`+aliceKey+`, `+aliceKey+`-2]}
  - {name: bob, keys: `+bobKey+`}
plugins:
  - key-auth: {}
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - jwt-auth:
          secret: `+jwtKey+`
`))
	api := &adminAPI{base: "http://" + r.g.AdminAddr().String(), hc: newHTTP1Client(t)}
	tokenAuth := "Bearer " + envToken
	if got := api.call(t, "GET", "/config", tokenAuth); got.status != http.StatusOK {
		t.Fatalf("GET /config with ${ADMIN_TOKEN}: %d %s", got.status, got.body)
	}
	check := func(when string) {
		t.Helper()
		got := api.call(t, "GET", "/config", tokenAuth)
		var cfg struct {
			Admin struct {
				Address, Token string
			}
			Redis struct {
				Address, Username, Password string
			}
			Consumers []struct {
				Name string
				Keys []string
			}
			Routes []struct {
				Plugins []map[string]map[string]any
			}
		}
		decode(t, got, &cfg)
		if cfg.Admin.Token != "<redacted>" || cfg.Admin.Address != "127.0.0.2:0" {
			t.Errorf("%s: admin %+v; want the token redacted", when, cfg.Admin)
		}
		if cfg.Redis.Password != "<redacted>" || cfg.Redis.Username != "gateway" || cfg.Redis.Address != redis {
			t.Errorf("%s: redis %+v; want the password redacted, the rest shown", when, cfg.Redis)
		}
		if len(cfg.Consumers) != 2 || !slices.Equal(cfg.Consumers[0].Keys, []string{"<redacted>", "<redacted>"}) || !slices.Equal(cfg.Consumers[1].Keys, []string{"<redacted>"}) {
			t.Errorf("%s: consumers %+v; want every key redacted, one per key", when, cfg.Consumers)
		}
		if len(cfg.Routes) != 1 || len(cfg.Routes[0].Plugins) != 1 || cfg.Routes[0].Plugins[0]["jwt-auth"]["secret"] != "<redacted>" {
			t.Errorf("%s: routes %+v; want the jwt-auth secret redacted", when, cfg.Routes)
		}
		for _, path := range []string{"/config", "/config/status", "/routes", "/upstreams", "/descriptors"} {
			body := api.call(t, "GET", path, tokenAuth).body
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("%s: GET %s shows the secret %q:\n%s", when, path, s, body)
				}
			}
		}
		for _, s := range secrets {
			if strings.Contains(r.logs.String(), s) {
				t.Errorf("%s: the log shows the secret %q", when, s)
			}
		}
	}
	check("at start")
	// The calls the config allows: key-auth with alice's key, plus a
	// token for Echo.
	hc := newH2CClient(t)
	if code, body := restGet(t, hc, r.url+"/v1/sleep?duration=0s", "apikey: "+aliceKey); code != http.StatusOK {
		t.Fatalf("a call with alice's key: %d %s", code, body)
	}
	// A reload, and a refused one whose diagnostics quote a secret.
	var st admin.ConfigStatus
	decode(t, api.call(t, "POST", "/reload", tokenAuth), &st)
	if !st.OK || st.Version != 2 {
		t.Fatalf("reload: %+v", st)
	}
	check("after a reload")
	r.write(t, reloadConfig(`
admin:
  address: "127.0.0.2:0"
  token: ${ADMIN_TOKEN}
consumers:
  - {name: alice, keys: [`+aliceKey+`]}
  - {name: bob, keys: [`+aliceKey+`]}
`))
	got := api.call(t, "POST", "/reload", tokenAuth)
	if got.status != http.StatusUnprocessableEntity {
		t.Fatalf("reload of a file with a duplicate key: %d %s; want 422", got.status, got.body)
	}
	check("after a refused reload")
}

// TestAdminReadiness: /readyz answers 503 until every gRPC upstream's
// descriptors are loaded (an upstream whose backend starts after the
// gateway), then 200; from the moment shutdown begins it answers 503
// again, and /healthz 503, while the listeners drain.
func TestAdminReadiness(t *testing.T) {
	t.Parallel()
	// The late backend's address: free now, taken later.
	ln := testkit.ListenLocal(t)
	late := ln.Addr().String()
	_ = ln.Close()
	r := &reloadGateway{logs: &logBuffer{}, vars: map[string]string{"LATE": late}}
	r.file = t.TempDir() + "/rosetta.yaml"
	r.dumpLogsOnFailure(t)
	r.write(t, `
listeners:
  - address: "127.0.0.1:0"
admin:
  address: "127.0.0.2:0"
upstreams:
  late:
    targets: ["$LATE"]
`)
	// The default refresh_interval (60s): an upstream that has never
	// loaded is retried after 1s, 2s, 4s, ... meanwhile.
	r.g = r.newGateway(t)
	if ok, why := r.g.Ready(); ok || why != "starting: listeners not up yet" {
		t.Errorf("Ready before Start: %v %q; want false, starting", ok, why)
	}
	if !r.g.Live() {
		t.Errorf("Live before Start: false")
	}
	r.url = startTestGateway(t, r.g, "")
	api := newAdminAPI(t, r.g)
	// No token configured: the admin listener is loopback only and asks
	// for none.
	expect(t, api.call(t, "GET", "/healthz", ""), 200, `{"status": "ok"}`)
	expect(t, api.call(t, "GET", "/readyz", ""), 503, `{"status": "not ready", "reason": "no descriptors loaded yet for upstream late"}`)
	if got := api.call(t, "GET", "/config/status", ""); got.status != http.StatusOK {
		t.Errorf("GET /config/status without a token configured: %d %s", got.status, got.body)
	}

	var active atomic.Int64
	testkit.StartBackend(t, testkit.WithAddress(late), testkit.WithServerOptions(grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			active.Add(1)
			defer active.Add(-1)
			return h(ctx, req)
		})))
	waitUntil(t, func() bool { return api.call(t, "GET", "/readyz", "").status == http.StatusOK }, "ready once the backend is up")
	expect(t, api.call(t, "GET", "/readyz", ""), 200, `{"status": "ready"}`)

	// A call in flight holds the listeners open while shutdown drains.
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	callDone := make(chan error, 1)
	go func() {
		_, err := client.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
		callDone <- err
	}()
	waitUntil(t, func() bool { return active.Load() == 1 }, "the call at the backend")
	shutdownDone := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		shutdownDone <- r.g.Shutdown(sctx)
	}()
	waitUntil(t, func() bool { return api.call(t, "GET", "/readyz", "").status == http.StatusServiceUnavailable }, "not ready once shutdown began")
	expect(t, api.call(t, "GET", "/readyz", ""), 503, `{"status": "not ready", "reason": "shutting down"}`)
	expect(t, api.call(t, "GET", "/healthz", ""), 503, `{"status": "stopping"}`)
	if st := r.g.Reload(); st.OK || !strings.Contains(st.Error, "shutting down") {
		t.Errorf("a reload during shutdown: %+v; want refused", st)
	}
	cancel()
	<-callDone
	if err := <-shutdownDone; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", r.g.AdminAddr().String(), time.Second); err == nil {
		_ = c.Close()
		t.Errorf("the admin listener still accepts after shutdown")
	}
}

// TestAdminReloadStatus: POST /reload takes a valid file (200, the new
// status) and refuses an invalid one (422, its file:line:col
// diagnostics), which GET /config/status then shows while the old
// config keeps serving.
func TestAdminReloadStatus(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	r := startReloadGateway(t, "", map[string]string{"A": be.Addr}, adminConfig(""))
	api := newAdminAPI(t, r.g)
	hc := newH2CClient(t)

	var st admin.ConfigStatus
	decode(t, api.get(t, "/config/status"), &st)
	if !st.OK || st.Version != 1 || st.File != r.file || st.Reloads != 0 || st.Error != "" {
		t.Errorf("status at start: %+v", st)
	}
	r.write(t, adminConfig(`http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /v2/configured/{id}
`))
	got := api.call(t, "POST", "/reload", "Bearer "+testAdminToken)
	decode(t, got, &st)
	if !st.OK || st.Version != 2 || st.Reloads != 1 {
		t.Errorf("POST /reload of a valid file: %+v", st)
	}
	if code, body := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusOK {
		t.Fatalf("the reloaded route: %d %s", code, body)
	}

	r.write(t, adminConfig("")+"upstreams_typo: {}\n")
	got = api.call(t, "POST", "/reload", "Bearer "+testAdminToken)
	if got.status != http.StatusUnprocessableEntity {
		t.Fatalf("POST /reload of an invalid file: %d %s; want 422", got.status, got.body)
	}
	var refused admin.ConfigStatus
	if err := json.Unmarshal([]byte(got.body), &refused); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(r.expand(adminConfig("")), "\n") + 1
	wantDiag := r.file + ":" + strconv.Itoa(line) + ":1: upstreams_typo: unknown key \"upstreams_typo\""
	if refused.OK || refused.Version != 2 || refused.Failures != 1 || len(refused.Diagnostics) != 1 || !strings.HasPrefix(refused.Diagnostics[0], wantDiag) ||
		refused.Error != r.file+": invalid config (1 problems); the running config keeps serving" {
		t.Errorf("POST /reload of an invalid file: %+v; want diagnostic %q", refused, wantDiag)
	}
	decode(t, api.get(t, "/config/status"), &st)
	if st.OK || st.Error != refused.Error || !slices.Equal(st.Diagnostics, refused.Diagnostics) || st.Version != 2 {
		t.Errorf("GET /config/status after the refused reload: %+v; want %+v", st, refused)
	}
	if code, body := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusOK {
		t.Fatalf("the running config after a refused reload: %d %s", code, body)
	}
	// GET /config shows the running config, not the refused file.
	var cfg map[string]any
	decode(t, api.get(t, "/config"), &cfg)
	if _, ok := cfg["upstreams_typo"]; ok || cfg["http"] == nil {
		t.Errorf("GET /config after the refused reload: %v; want the running config", cfg)
	}
}

// TestAdminTables: GET /routes is the route table as `rosetta routes`
// prints it (REST bindings, then uri routes), GET /upstreams every
// upstream with its targets' state and in-flight calls, GET
// /descriptors the snapshot's services and methods with where they came
// from.
func TestAdminTables(t *testing.T) {
	t.Parallel()
	be := startNamedBackend(t, "a")
	web := testkit.ListenLocal(t).Addr().String() // an HTTP upstream nothing calls
	withWeb := strings.Replace(adminConfig(`routes:
  - uri: /web/*
    service: web
    methods: [GET, POST]
`), "upstreams:\n", "upstreams:\n  web:\n    kind: http\n    targets: [\"$WEB\"]\n", 1)
	r := startReloadGateway(t, "relay", map[string]string{"A": be.Addr, "WEB": web}, withWeb)
	api := newAdminAPI(t, r.g)

	var routes []admin.Route
	decode(t, api.get(t, "/routes"), &routes)
	var want []admin.Route
	for _, rt := range r.g.Routes() {
		want = append(want, admin.Route{Verb: rt.HTTPMethod, Path: rt.Pattern, RPC: string(rt.Method.FullName()), Upstream: rt.Upstream, Source: rt.Source.String()})
	}
	want = append(want, admin.Route{Verb: "GET,POST", Path: "/web/*", Upstream: "web", Source: "uri"})
	if !slices.Equal(routes, want) {
		t.Errorf("GET /routes:\n%+v\nwant\n%+v", routes, want)
	}
	for _, row := range []admin.Route{
		{Verb: "GET", Path: "/v1/echo/{id}", RPC: "rosetta.testing.v1.EchoService.Echo", Upstream: "test", Source: "annotation"},
		{Verb: "POST", Path: "/rosetta.testing.v1.EchoService/Unannotated", RPC: "rosetta.testing.v1.EchoService.Unannotated", Upstream: "test", Source: "default"},
	} {
		if !slices.Contains(routes, row) {
			t.Errorf("GET /routes has no row %+v: %+v", row, routes)
		}
	}
	var raw []map[string]any
	decode(t, api.get(t, "/routes"), &raw)
	for _, key := range []string{"verb", "path", "rpc", "upstream", "source"} {
		if _, ok := raw[0][key]; !ok {
			t.Errorf("GET /routes rows have no %q: %v", key, raw[0])
		}
	}

	// A call in flight shows in /upstreams.
	be.delay.Store(int64(time.Minute))
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = client.Echo(ctx, &testingv1.Everything{Id: "x"})
	}()
	waitUntil(t, func() bool { return be.active.Load() == 1 }, "the call at the backend")
	var ups []admin.Upstream
	decode(t, api.get(t, "/upstreams"), &ups)
	cancel()
	<-done
	if len(ups) != 2 || ups[0].Name != "test" || ups[1].Name != "web" {
		t.Fatalf("GET /upstreams: %+v; want test and web", ups)
	}
	test := ups[0]
	if test.Balance != "round_robin" || test.Panic || test.Ejections != 0 || len(test.Targets) != 1 {
		t.Errorf("upstream test: %+v", test)
	} else if tg := test.Targets[0]; tg.Address != be.Addr || tg.Weight != 1 || !tg.Healthy || !tg.Connected || tg.InFlight != 1 || tg.EjectedUntil != nil {
		t.Errorf("upstream test's target: %+v; want %s, weight 1, healthy, connected, 1 in flight", tg, be.Addr)
	}
	if w := ups[1]; w.Kind != "http" || len(w.Targets) != 1 || w.Targets[0].Address != web {
		t.Errorf("upstream web: %+v", w)
	}
	if tg := test.Targets[0]; tg.LatencyMS != 0 {
		t.Errorf("target %s shows latency_ms %v before any answer; want none", tg.Address, tg.LatencyMS)
	}
	// An answered call gives the target a latency estimate.
	be.delay.Store(int64(20 * time.Millisecond))
	if _, err := client.Echo(testContext(t), &testingv1.Everything{Id: "y"}); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	decode(t, api.get(t, "/upstreams"), &ups)
	if lat := ups[0].Targets[0].LatencyMS; lat < 20 || lat > 10_000 {
		t.Errorf("target %s: latency_ms %v after a call the backend held 20 ms; want 20 or more", be.Addr, lat)
	}
	if lat := ups[1].Targets[0].LatencyMS; lat != 0 {
		t.Errorf("http target %s: latency_ms %v; want none (it is not relayed)", web, lat)
	}
	var rawUps []map[string]any
	decode(t, api.get(t, "/upstreams"), &rawUps)
	for _, key := range []string{"name", "kind", "balance", "targets", "panic", "ejections"} {
		if _, ok := rawUps[0][key]; !ok {
			t.Errorf("GET /upstreams rows have no %q: %v", key, rawUps[0])
		}
	}

	var d admin.Descriptors
	decode(t, api.get(t, "/descriptors"), &d)
	if d.Version != r.g.Snapshot().Version || d.Version == 0 {
		t.Errorf("descriptors version %d; want the snapshot's, %d", d.Version, r.g.Snapshot().Version)
	}
	i := slices.IndexFunc(d.Services, func(s admin.Service) bool { return s.Name == "rosetta.testing.v1.EchoService" })
	if i < 0 {
		t.Fatalf("GET /descriptors: no EchoService in %+v", d.Services)
	}
	echo := d.Services[i]
	if echo.Upstream != "test" || echo.Source != "reflection" || echo.File != "rosetta/testing/v1/echo.proto" ||
		!slices.Contains(echo.Methods, "Echo") || !slices.Contains(echo.Methods, "BidiStream") {
		t.Errorf("EchoService: %+v", echo)
	}
	// A reload whose descriptor sources change loads a new snapshot.
	r.write(t, strings.Replace(adminConfig(""), `["$A"]`, `["$A"]
    descriptors:
      reflection: true
      refresh_interval: 30s`, 1))
	var st admin.ConfigStatus
	decode(t, api.call(t, "POST", "/reload", "Bearer "+testAdminToken), &st)
	var d2 admin.Descriptors
	decode(t, api.get(t, "/descriptors"), &d2)
	if !st.OK || len(d2.Services) != len(d.Services) {
		t.Errorf("after a reload: status %+v, services %+v", st, d2.Services)
	}
}

// TestAdminCachePurge: POST /cache/purge drops cached answers when a
// proxy-cache is configured.
func TestAdminCachePurge(t *testing.T) {
	t.Parallel()
	be := startNamedBackend(t, "a")
	r := startReloadGateway(t, "", map[string]string{"A": be.Addr}, adminConfig(`routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - proxy-cache: {ttl: 60s}
`))
	api := newAdminAPI(t, r.g)
	hc := newH2CClient(t)
	for range 2 {
		if code, body := restGet(t, hc, r.url+"/v1/echo/cached"); code != http.StatusOK {
			t.Fatalf("GET: %d %s", code, body)
		}
	}
	if n := be.calls.Load(); n != 1 {
		t.Fatalf("backend calls: %d; want 1 (the second answered from the cache)", n)
	}
	got := api.call(t, "POST", "/cache/purge", "Bearer "+testAdminToken)
	var purged struct {
		Purged int    `json:"purged"`
		Route  string `json:"route"`
	}
	decode(t, got, &purged)
	if purged.Purged != 1 || purged.Route != "" {
		t.Errorf("POST /cache/purge: %s; want 1 entry purged", got.body)
	}
	if code, _ := restGet(t, hc, r.url+"/v1/echo/cached"); code != http.StatusOK || be.calls.Load() != 2 {
		t.Errorf("after the purge: %d, backend calls %d; want the backend called again", code, be.calls.Load())
	}
}

// TestAdminAddressValidation: without a token the admin listener must be
// on a loopback address; config validation refuses any other, with a
// located diagnostic, and accepts it with a token.
func TestAdminAddressValidation(t *testing.T) {
	t.Parallel()
	parse := func(admin string, env map[string]string) error {
		text := "listeners:\n  - address: \"127.0.0.1:8080\"\nupstreams:\n  test:\n    targets: [\"127.0.0.1:9000\"]\nadmin:\n" + admin
		_, err := config.Parse("rosetta.yaml", []byte(text), func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
		return err
	}
	for _, addr := range []string{"0.0.0.0:9901", ":9901", "10.1.2.3:9901", "[::]:9901", "example.com:9901"} {
		err := parse("  address: \""+addr+"\"\n", nil)
		want := `rosetta.yaml:7:12: admin.address: admin address "` + addr + `" is not a loopback address, and admin has no token (hint: set admin.token (e.g. "${ADMIN_TOKEN}"), or bind the admin listener to 127.0.0.1 or [::1])`
		var diags config.Diagnostics
		if !errors.As(err, &diags) || len(diags) != 1 || diags[0].String() != want {
			t.Errorf("admin %s without a token: %v;\nwant %s", addr, err, want)
		}
		if err := parse("  address: \""+addr+"\"\n  token: ${ADMIN_TOKEN}\n", map[string]string{"ADMIN_TOKEN": testAdminToken}); err != nil {
			t.Errorf("admin %s with a token: %v", addr, err)
		}
		// A token that expands to nothing is no token.
		if err := parse("  address: \""+addr+"\"\n  token: ${ADMIN_TOKEN:-}\n", nil); err == nil {
			t.Errorf("admin %s with an empty token: accepted", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:9901", "127.0.0.2:9901", "localhost:9901", "[::1]:9901"} {
		if err := parse("  address: \""+addr+"\"\n", nil); err != nil {
			t.Errorf("admin %s without a token: %v; want accepted (loopback)", addr, err)
		}
	}
}

// TestAdminAddressTaken: an admin address another process holds fails
// Start with the address and the system's reason, and the listeners it
// had bound are closed again (none is left).
func TestAdminAddressTaken(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	taken := testkit.ListenLocal(t).Addr().String()
	g := newTestGateway(t, be.Addr, "listeners: [{address: \"127.0.0.1:0\"}]\n"+
		"upstreams:\n  test: {targets: [\"$BACKEND\"]}\n"+
		"admin: {address: \""+taken+"\"}\n", nil)
	err := g.Start(testContext(t))
	want := "admin listener " + taken + ": listen tcp " + taken + ": bind: address already in use"
	if err == nil || err.Error() != want {
		t.Fatalf("Start: %v; want %s", err, want)
	}
	if addrs := g.Addrs(); len(addrs) != 0 {
		t.Errorf("listeners %v still bound after the failed Start", addrs)
	}
	_ = g.Shutdown(testContext(t))
}
