package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// cacheBackend is an EchoService backend (Echo marked NO_SIDE_EFFECTS
// through its descriptor file) and a plain HTTP backend, both counting
// the calls of each request id and answering with the Cache-Control that
// the id's prefix asks for: nostore- (no-store), private- (private),
// short- (max-age=5), swr- (max-age=10, stale-while-revalidate=60). An
// answer's value is the x-consumer the backend received, so that a test
// sees whose answer it got. Ids starting with slow- wait for release.
type cacheBackend struct {
	grpcAddr, webAddr string
	descriptors       string

	mu    sync.Mutex
	calls map[string]int
	hold  chan struct{}
}

func startCacheBackend(t *testing.T) *cacheBackend {
	t.Helper()
	cb := &cacheBackend{calls: map[string]int{}, hold: make(chan struct{}), descriptors: writeSideEffectFreeDescriptors(t)}
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.UnaryInterceptor(cb.intercept)))
	cb.grpcAddr = be.Addr
	lis := testkit.ListenLocal(t)
	srv := &http.Server{Handler: http.HandlerFunc(cb.serveWeb), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	cb.webAddr = lis.Addr().String()
	return cb
}

// release lets the slow- calls answer.
func (cb *cacheBackend) release() { close(cb.hold) }

// count returns how many calls of id the backends received.
func (cb *cacheBackend) count(id string) int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.calls[id]
}

// called counts a call of id, waits for release when id is slow-, and
// returns the call's number and the Cache-Control to answer with.
func (cb *cacheBackend) called(ctx context.Context, id string) (int, string) {
	cb.mu.Lock()
	cb.calls[id]++
	n := cb.calls[id]
	cb.mu.Unlock()
	if strings.HasPrefix(id, "slow-") {
		select {
		case <-cb.hold:
		case <-ctx.Done():
		}
	}
	switch {
	case strings.HasPrefix(id, "nostore-"):
		return n, "no-store"
	case strings.HasPrefix(id, "private-"):
		return n, "private"
	case strings.HasPrefix(id, "short-"):
		return n, "max-age=5"
	case strings.HasPrefix(id, "swr-"):
		return n, "max-age=10, stale-while-revalidate=60"
	}
	return n, ""
}

func (cb *cacheBackend) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	e, ok := req.(*testingv1.Everything)
	if !ok || info.FullMethod != echoService+"Echo" {
		return handler(ctx, req)
	}
	n, cc := cb.called(ctx, e.GetId())
	md, _ := metadata.FromIncomingContext(ctx)
	e.StringValue = strings.Join(md.Get("x-consumer"), ",")
	out := metadata.Pairs("x-backend-call", strconv.Itoa(n))
	if cc != "" {
		out.Set("cache-control", cc)
	}
	_ = grpc.SetHeader(ctx, out)
	return handler(ctx, e)
}

func (cb *cacheBackend) serveWeb(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/")
	n, cc := cb.called(r.Context(), id)
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Vary", "Accept-Language")
	w.Header().Set("X-Backend-Call", strconv.Itoa(n))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "stringValue": r.Header.Get("X-Consumer")})
}

// cacheConfig caches EchoService.Echo (on every protocol: with
// no_side_effects) and the uri route /web/*, varying on Accept-Language;
// with consumers, both routes take API keys (alice-key, bob-key).
func cacheConfig(cb *cacheBackend, consumers bool) string {
	auth, tail := "", ""
	if consumers {
		auth = "\n      - key-auth: {}"
		tail = `
consumers:
  - {name: alice, keys: [alice-key]}
  - {name: bob, keys: [bob-key]}
`
	}
	return `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    descriptors:
      files: ["` + cb.descriptors + `"]
  web:
    kind: http
    targets: ["` + cb.webAddr + `"]
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:` + auth + `
      - proxy-cache: {ttl: 30s, no_side_effects: true, vary: [accept-language]}
  - uri: /web/*
    service: web
    strip_prefix: true
    plugins:` + auth + `
      - proxy-cache: {ttl: 30s, vary: [accept-language]}
` + tail
}

// fakeClock is a clock that tests move by hand.
type fakeClock = testkit.Clock

func newFakeClock() *fakeClock { return testkit.NewClock(time.Unix(1_800_000_000, 0)) }

// cacheGateway is a gateway in front of a cacheBackend, with a fake
// clock.
type cacheGateway struct {
	*Gateway
	url   string
	clock *fakeClock
	be    *cacheBackend
	grpc  *grpc.ClientConn
}

// startCacheGateway starts a gateway on the gRPC path given (see
// startGatewayOn) with yaml (cacheConfig when "").
func startCacheGateway(t *testing.T, cb *cacheBackend, path, yaml string) *cacheGateway {
	t.Helper()
	if yaml == "" {
		yaml = cacheConfig(cb, false)
	}
	g := newTestGateway(t, cb.grpcAddr, yaml, nil)
	clock := newFakeClock()
	if g.gen().caches != nil {
		g.gen().caches.setClock(clock.Now)
	}
	url := startTestGateway(t, g, path)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return &cacheGateway{Gateway: g, url: url, clock: clock, be: cb, grpc: dialGateway(t, url)}
}

// cacheAnswer is what a test reads of an answer.
type cacheAnswer struct {
	ok           bool   // a successful answer
	xcache, age  string // "" when absent
	id, value    string // the echoed id and the backend's x-consumer
	hasAgeHeader bool
}

func (a cacheAnswer) String() string {
	return fmt.Sprintf("{ok %v X-Cache %q Age %q id %q value %q}", a.ok, a.xcache, a.age, a.id, a.value)
}

// cacheProtocols are the ways a test reaches the cached method (and, for
// uri, the cached uri route). grpc/relay and grpc/handler are gRPC
// clients with the frame relay on and off.
var cacheProtocols = []string{"rest", "connect-get", "connect-post", "grpc-web", "grpc/relay", "grpc/handler", "uri"}

// gatewayPath returns the gRPC path a protocol's gateway runs with.
func gatewayPath(protocol string) string {
	switch protocol {
	case "grpc/relay":
		return "relay"
	case "grpc/handler":
		return "handler"
	}
	return ""
}

// call makes one call of id over protocol, with header fields
// ("Name: value").
func (g *cacheGateway) call(t *testing.T, protocol, id string, headers ...string) cacheAnswer {
	t.Helper()
	hdr := http.Header{}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		hdr.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	switch protocol {
	case "grpc/relay", "grpc/handler":
		return g.callGRPC(t, id, hdr)
	case "grpc-web":
		return g.callWeb(t, id, hdr)
	}
	var req *http.Request
	switch protocol {
	case "rest":
		req, _ = http.NewRequest(http.MethodGet, g.url+"/v1/echo/"+url.PathEscape(id), nil)
	case "connect-get":
		msg := url.QueryEscape(`{"id":"` + id + `"}`)
		req, _ = http.NewRequest(http.MethodGet, g.url+echoService+"Echo?connect=v1&encoding=json&message="+msg, nil)
	case "connect-post":
		req, _ = http.NewRequest(http.MethodPost, g.url+echoService+"Echo", strings.NewReader(`{"id":"`+id+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Connect-Protocol-Version", "1")
	case "uri":
		req, _ = http.NewRequest(http.MethodGet, g.url+"/web/"+url.PathEscape(id), nil)
	default:
		t.Fatalf("unknown protocol %s", protocol)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answerHeader(resp.Header)
	a.ok = resp.StatusCode == http.StatusOK
	var msg struct{ ID, StringValue string }
	if err := json.Unmarshal(body, &msg); err != nil && a.ok {
		t.Fatalf("%s: answer is not JSON: %v: %s", protocol, err, body)
	}
	a.id, a.value = msg.ID, msg.StringValue
	return a
}

func answerHeader(h http.Header) cacheAnswer {
	_, hasAge := h["Age"]
	return cacheAnswer{xcache: h.Get("X-Cache"), age: h.Get("Age"), hasAgeHeader: hasAge}
}

func (g *cacheGateway) callGRPC(t *testing.T, id string, hdr http.Header) cacheAnswer {
	t.Helper()
	ctx := t.Context()
	for k, vs := range hdr {
		for _, v := range vs {
			ctx = metadata.AppendToOutgoingContext(ctx, strings.ToLower(k), v)
		}
	}
	var md metadata.MD
	resp, err := testingv1.NewEchoServiceClient(g.grpc).Echo(ctx, &testingv1.Everything{Id: id}, grpc.Header(&md))
	a := cacheAnswer{ok: err == nil}
	if v := md.Get("x-cache"); len(v) > 0 {
		a.xcache = v[0]
	}
	if v := md.Get("age"); len(v) > 0 {
		a.age, a.hasAgeHeader = v[0], true
	}
	a.id, a.value = resp.GetId(), resp.GetStringValue()
	return a
}

func (g *cacheGateway) callWeb(t *testing.T, id string, hdr http.Header) cacheAnswer {
	t.Helper()
	msg, _ := proto.Marshal(&testingv1.Everything{Id: id})
	req, _ := http.NewRequest(http.MethodPost, g.url+echoService+"Echo", bytes.NewReader(webFrame(0, msg)))
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("gRPC-Web call: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answerHeader(resp.Header)
	a.ok = resp.Header.Get("Grpc-Status") == "" // trailers-only answers are errors here
	var out testingv1.Everything
	for len(raw) >= 5 {
		n := binary.BigEndian.Uint32(raw[1:5])
		if raw[0]&0x80 == 0 {
			if err := proto.Unmarshal(raw[5:5+n], &out); err != nil {
				t.Fatalf("gRPC-Web message: %v", err)
			}
		} else if !strings.Contains(string(raw[5:5+n]), "grpc-status: 0") {
			a.ok = false
		}
		raw = raw[5+n:]
	}
	a.id, a.value = out.GetId(), out.GetStringValue()
	return a
}

// expectAnswer checks an answer's X-Cache, Age (want "" for none) and
// consumer value.
func expectAnswer(t *testing.T, what string, got cacheAnswer, xcache, age, value string) {
	t.Helper()
	if !got.ok || got.xcache != xcache || got.age != age || (age == "" && got.hasAgeHeader) || got.value != value {
		t.Errorf("%s: got %v; want X-Cache %q Age %q value %q", what, got, xcache, age, value)
	}
}

func expectCalls(t *testing.T, cb *cacheBackend, id string, want int) {
	t.Helper()
	if got := cb.count(id); got != want {
		t.Errorf("backend calls of %s: got %d; want %d", id, got, want)
	}
}

// TestCacheMatrix runs the cache's behaviours over every protocol that
// reaches a cached method (REST GET, Connect GET and POST, gRPC-Web,
// gRPC through the relay's gateway and the handler path) and over a
// plain HTTP uri route: miss then hit, TTL expiry, the backend's
// max-age, no-store and private, vary, calls with credentials no plugin
// checked, coalescing of concurrent misses (counted at the backend) and
// stale-while-revalidate; then per-consumer isolation and private
// answers of authenticated consumers.
func TestCacheMatrix(t *testing.T) {
	t.Parallel()
	for _, protocol := range cacheProtocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			cb := startCacheBackend(t)
			g := startCacheGateway(t, cb, gatewayPath(protocol), "")
			call := func(id string, headers ...string) cacheAnswer {
				t.Helper()
				return g.call(t, protocol, id, headers...)
			}

			t.Run("miss then hit", func(t *testing.T) {
				expectAnswer(t, "first", call("a"), "MISS", "", "")
				g.clock.Add(3 * time.Second)
				got := call("a")
				expectAnswer(t, "second", got, "HIT", "3", "")
				if got.id != "a" {
					t.Errorf("hit answered id %q; want a", got.id)
				}
				expectCalls(t, cb, "a", 1)
			})
			t.Run("ttl", func(t *testing.T) {
				expectAnswer(t, "first", call("ttl"), "MISS", "", "")
				g.clock.Add(29 * time.Second)
				expectAnswer(t, "before ttl", call("ttl"), "HIT", "29", "")
				g.clock.Add(2 * time.Second)
				expectAnswer(t, "after ttl", call("ttl"), "MISS", "", "")
				expectCalls(t, cb, "ttl", 2)
			})
			t.Run("max-age caps ttl", func(t *testing.T) {
				expectAnswer(t, "first", call("short-1"), "MISS", "", "")
				g.clock.Add(4 * time.Second)
				expectAnswer(t, "within max-age", call("short-1"), "HIT", "4", "")
				g.clock.Add(2 * time.Second)
				expectAnswer(t, "past max-age", call("short-1"), "MISS", "", "")
				expectCalls(t, cb, "short-1", 2)
			})
			t.Run("no-store", func(t *testing.T) {
				expectAnswer(t, "first", call("nostore-1"), "MISS", "", "")
				expectAnswer(t, "second", call("nostore-1"), "MISS", "", "")
				expectCalls(t, cb, "nostore-1", 2)
			})
			t.Run("private, anonymous", func(t *testing.T) {
				expectAnswer(t, "first", call("private-1"), "MISS", "", "")
				expectAnswer(t, "second", call("private-1"), "MISS", "", "")
				expectCalls(t, cb, "private-1", 2)
			})
			t.Run("vary", func(t *testing.T) {
				expectAnswer(t, "en", call("v", "Accept-Language: en"), "MISS", "", "")
				expectAnswer(t, "de", call("v", "Accept-Language: de"), "MISS", "", "")
				expectAnswer(t, "en again", call("v", "Accept-Language: en"), "HIT", "0", "")
				expectAnswer(t, "none", call("v"), "MISS", "", "")
				expectCalls(t, cb, "v", 3)
			})
			t.Run("credentials no plugin checked", func(t *testing.T) {
				for i := 0; i < 2; i++ {
					expectAnswer(t, "with Authorization", call("cred", "Authorization: Bearer secret"), "", "", "")
				}
				expectAnswer(t, "with Cookie", call("cred", "Cookie: session=1"), "", "", "")
				expectCalls(t, cb, "cred", 3)
			})
			t.Run("coalescing", func(t *testing.T) {
				const n = 8
				before := g.CacheStats()
				answers := make(chan cacheAnswer, n)
				for i := 0; i < n; i++ {
					go func() { answers <- g.call(t, protocol, "slow-1") }()
				}
				waitUntil(t, func() bool {
					return g.CacheStats().Waiting == n && cb.count("slow-1") == 1
				}, "every call waiting on one backend call")
				cb.release()
				for i := 0; i < n; i++ {
					expectAnswer(t, "coalesced", <-answers, "MISS", "", "")
				}
				if st := g.CacheStats(); st.Misses-before.Misses != n {
					t.Errorf("misses: got %d; want %d", st.Misses-before.Misses, n)
				}
				expectCalls(t, cb, "slow-1", 1)
				expectAnswer(t, "after", call("slow-1"), "HIT", "0", "")
			})
			t.Run("stale-while-revalidate", func(t *testing.T) {
				expectAnswer(t, "first", call("swr-1"), "MISS", "", "")
				g.clock.Add(11 * time.Second)
				expectAnswer(t, "stale", call("swr-1"), "STALE", "11", "")
				waitUntil(t, func() bool { return cb.count("swr-1") == 2 }, "the background refresh")
				waitUntil(t, func() bool { return g.call(t, protocol, "swr-1").xcache == "HIT" }, "the refreshed entry")
				expectAnswer(t, "refreshed", call("swr-1"), "HIT", "0", "")
				expectCalls(t, cb, "swr-1", 2)
			})

			// Per-consumer isolation: the key holds the consumer.
			ga := startCacheGateway(t, cb, gatewayPath(protocol), cacheConfig(cb, true))
			t.Run("per consumer", func(t *testing.T) {
				expectAnswer(t, "alice", ga.call(t, protocol, "who", "apikey: alice-key"), "MISS", "", "alice")
				expectAnswer(t, "bob", ga.call(t, protocol, "who", "apikey: bob-key"), "MISS", "", "bob")
				expectAnswer(t, "alice again", ga.call(t, protocol, "who", "apikey: alice-key"), "HIT", "0", "alice")
				expectAnswer(t, "bob again", ga.call(t, protocol, "who", "apikey: bob-key"), "HIT", "0", "bob")
				expectCalls(t, cb, "who", 2)
			})
			t.Run("private, per consumer", func(t *testing.T) {
				expectAnswer(t, "alice", ga.call(t, protocol, "private-c", "apikey: alice-key"), "MISS", "", "alice")
				expectAnswer(t, "alice again", ga.call(t, protocol, "private-c", "apikey: alice-key"), "HIT", "0", "alice")
				expectAnswer(t, "bob", ga.call(t, protocol, "private-c", "apikey: bob-key"), "MISS", "", "bob")
				expectCalls(t, cb, "private-c", 2)
			})
		})
	}
}

// TestCacheSharedAcrossProtocols checks that the protocols share one
// entry per request: a REST GET fills it, and a Connect GET, a Connect
// POST, a gRPC-Web call and a gRPC call of the same request are hits.
func TestCacheSharedAcrossProtocols(t *testing.T) {
	t.Parallel()
	cb := startCacheBackend(t)
	g := startCacheGateway(t, cb, "relay", "")
	expectAnswer(t, "rest", g.call(t, "rest", "shared"), "MISS", "", "")
	for _, p := range []string{"connect-get", "connect-post", "grpc-web", "grpc/relay"} {
		got := g.call(t, p, "shared")
		expectAnswer(t, p, got, "HIT", "0", "")
		if got.id != "shared" {
			t.Errorf("%s: got id %q; want shared", p, got.id)
		}
	}
	expectCalls(t, cb, "shared", 1)
}

// TestCachePurge drops entries by route and by key (a procedure, or a
// uri route's request path).
func TestCachePurge(t *testing.T) {
	t.Parallel()
	cb := startCacheBackend(t)
	g := startCacheGateway(t, cb, "", "")
	fill := func(protocol, id string) {
		t.Helper()
		g.call(t, protocol, id)
		expectAnswer(t, protocol+" "+id+" stored", g.call(t, protocol, id), "HIT", "0", "")
	}
	purge := func(route string, all bool, key string, want int) {
		t.Helper()
		n, err := g.PurgeCaches(t.Context(), route, all, key)
		if err != nil || n != want {
			t.Errorf("purge %q %v %q: got %d, %v; want %d", route, all, key, n, err, want)
		}
	}
	fill("rest", "p1")
	fill("uri", "p2")
	purge("rosetta.testing.v1.EchoService.Echo", false, "", 1)
	expectAnswer(t, "rpc purged", g.call(t, "rest", "p1"), "MISS", "", "")
	expectAnswer(t, "uri kept", g.call(t, "uri", "p2"), "HIT", "0", "")
	purge("/web/*", false, "/web/p1", 0)
	purge("/web/*", false, "/web/p2", 1)
	expectAnswer(t, "uri purged", g.call(t, "uri", "p2"), "MISS", "", "")
	purge("", true, echoService+"Echo", 1)
	expectAnswer(t, "rpc purged by key", g.call(t, "rest", "p1"), "MISS", "", "")
	purge("", true, "", 2)
}

// TestCacheRedisShared runs two gateways on one real redis-server: an
// answer one instance stored is a hit on the other, expiry follows the
// cache's clock, and a purge through either drops it for both.
func TestCacheRedisShared(t *testing.T) {
	t.Parallel()
	rd := testkit.StartRedis(t)
	cb := startCacheBackend(t)
	yaml := strings.NewReplacer(
		"proxy-cache: {ttl: 30s, no_side_effects: true,", "proxy-cache: {ttl: 30s, store: redis, no_side_effects: true,",
		"proxy-cache: {ttl: 30s, vary", "proxy-cache: {ttl: 30s, store: redis, vary",
	).Replace(cacheConfig(cb, false)) + "redis: {address: \"" + rd.Addr + "\"}\n"
	g1 := startCacheGateway(t, cb, "", yaml)
	g2 := startCacheGateway(t, cb, "", yaml)
	expectAnswer(t, "rest on 1", g1.call(t, "rest", "r1"), "MISS", "", "")
	expectAnswer(t, "uri on 1", g1.call(t, "uri", "r1"), "MISS", "", "")
	g2.clock.Add(2 * time.Second)
	expectAnswer(t, "rest on 2", g2.call(t, "rest", "r1"), "HIT", "2", "")
	expectAnswer(t, "grpc on 2", g2.call(t, "grpc/relay", "r1"), "HIT", "2", "")
	expectAnswer(t, "uri on 2", g2.call(t, "uri", "r1"), "HIT", "2", "")
	expectCalls(t, cb, "r1", 2) // one per route: RPC and HTTP entries never meet
	g2.clock.Add(29 * time.Second)
	expectAnswer(t, "expired on 2", g2.call(t, "rest", "r1"), "MISS", "", "")
	expectAnswer(t, "refilled, on 1", g1.call(t, "rest", "r1"), "HIT", "0", "")
	if n, err := g2.PurgeCaches(t.Context(), "", true, ""); err != nil || n != 2 {
		t.Errorf("purge: got %d, %v; want 2 entries", n, err)
	}
	expectAnswer(t, "purged, on 1", g1.call(t, "rest", "r1"), "MISS", "", "")
	expectCalls(t, cb, "r1", 4)
}

// TestCacheLargeAnswerPassesThrough checks that an HTTP answer over
// max_entry_bytes reaches the client whole and is not stored.
func TestCacheLargeAnswerPassesThrough(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 64<<10)
	var mu sync.Mutex
	calls := 0
	lis := testkit.ListenLocal(t)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		_, _ = io.WriteString(w, big)
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, `
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: ["$BACKEND"]}
  web: {kind: http, targets: ["`+lis.Addr().String()+`"]}
routes:
  - uri: /big
    service: web
    plugins:
      - proxy-cache: {ttl: 30s, max_entry_bytes: 16KiB}
`)
	for i := 0; i < 2; i++ {
		r := do(t, "GET", url+"/big", "")
		if r.status != 200 || r.body != big || r.header.Get("X-Cache") != "" {
			t.Fatalf("got %d, %d bytes, X-Cache %q; want 200, %d bytes, none", r.status, len(r.body), r.header.Get("X-Cache"), len(big))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Each call: the cache's attempt (given up past 16KiB) and the call
	// passed through.
	if calls != 4 {
		t.Errorf("backend calls: got %d; want 4", calls)
	}
}

// TestCacheRESTDynamic caches a REST GET outside the wire-level fast
// path (a google.api.HttpBody answer, built as a dynamic message) and
// checks the access log's cache key.
func TestCacheRESTDynamic(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	var logs syncBuffer
	g := newTestGateway(t, be.Addr, `
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: ["$BACKEND"]}
routes:
  - selector: rosetta.testing.v1.EchoService.Download
    plugins:
      - proxy-cache: {ttl: 1m}
`, slog.New(slog.NewJSONHandler(&logs, nil)))
	url := startTestGateway(t, g, "")
	first := do(t, "GET", url+"/v1/files/report.txt", "")
	second := do(t, "GET", url+"/v1/files/report.txt", "")
	if first.status != 200 || second.body != first.body || second.header.Get("Content-Type") != first.header.Get("Content-Type") ||
		first.header.Get("X-Cache") != "MISS" || second.header.Get("X-Cache") != "HIT" {
		t.Errorf("got %d %q %q, then %d %q %q", first.status, first.header.Get("X-Cache"), first.body,
			second.status, second.header.Get("X-Cache"), second.body)
	}
	var got []any
	for _, l := range logs.lines() {
		got = append(got, l["cache"])
	}
	if fmt.Sprint(got) != "[MISS HIT]" {
		t.Errorf("access log cache keys: got %v; want [MISS HIT]", got)
	}
}

// TestCacheGRPCCompressedRequest: a gRPC request compressed with gzip is
// proxied as it is, uncached (the handler path keys uncompressed
// messages only).
func TestCacheGRPCCompressedRequest(t *testing.T) {
	t.Parallel()
	cb := startCacheBackend(t)
	g := startCacheGateway(t, cb, "", "")
	client := testingv1.NewEchoServiceClient(g.grpc)
	for i := 0; i < 2; i++ {
		var md metadata.MD
		resp, err := client.Echo(t.Context(), &testingv1.Everything{Id: "gz"}, grpc.UseCompressor(gzip.Name), grpc.Header(&md))
		if err != nil || resp.GetId() != "gz" || len(md.Get("x-cache")) != 0 {
			t.Errorf("call %d: got %v, %v, x-cache %v; want gz, no x-cache", i, resp, err, md.Get("x-cache"))
		}
	}
	expectCalls(t, cb, "gz", 2)
	expectAnswer(t, "uncompressed", g.call(t, "grpc/handler", "gz"), "MISS", "", "")
}
