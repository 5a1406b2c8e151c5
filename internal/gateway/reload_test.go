package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/admin"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// logBuffer collects log output written from many goroutines.
type logBuffer = testkit.LogBuffer

// reloadGateway is a started gateway whose config is a file the test
// rewrites and reloads. Every "$NAME" of vars in a config text is
// replaced by its value; "$DIR" is the config file's directory.
type reloadGateway struct {
	g    *Gateway
	file string
	url  string // the first listener's base URL
	logs *logBuffer
	vars map[string]string
}

// startReloadGateway writes yamlText to rosetta.yaml in a temporary
// directory and starts a gateway from it (see startGatewayOn for path),
// logging into a buffer the test can read.
func startReloadGateway(t *testing.T, path string, vars map[string]string, yamlText string) *reloadGateway {
	t.Helper()
	r := &reloadGateway{file: filepath.Join(t.TempDir(), "rosetta.yaml"), logs: &logBuffer{}, vars: vars}
	r.dumpLogsOnFailure(t)
	r.write(t, yamlText)
	r.g = r.newGateway(t)
	r.url = startTestGateway(t, r.g, path)
	return r
}

// dumpLogsOnFailure logs the gateway's log when the test fails.
func (r *reloadGateway) dumpLogsOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", r.logs.String())
		}
	})
}

// newGateway builds (without starting) a gateway from r's file.
func (r *reloadGateway) newGateway(t *testing.T) *Gateway {
	t.Helper()
	cfg, err := config.Load(r.file)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	g, err := New(cfg, slog.New(slog.NewTextHandler(r.logs, nil)))
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	return g
}

// expand replaces the variables in text (the longest names first, so
// that $A leaves $ADDR alone).
func (r *reloadGateway) expand(text string) string {
	names := slices.SortedFunc(maps.Keys(r.vars), func(a, b string) int { return len(b) - len(a) })
	for _, k := range names {
		text = strings.ReplaceAll(text, "$"+k, r.vars[k])
	}
	return strings.ReplaceAll(text, "$DIR", filepath.Dir(r.file))
}

// write replaces the config file as an editor does: it writes a new file
// next to it and renames it over the old one.
func (r *reloadGateway) write(t testing.TB, yamlText string) {
	t.Helper()
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.expand(yamlText)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.file); err != nil {
		t.Fatal(err)
	}
}

// reload writes yamlText and reloads it, failing the test unless the
// reload succeeded.
func (r *reloadGateway) reload(t testing.TB, yamlText string) admin.ConfigStatus {
	t.Helper()
	r.write(t, yamlText)
	st := r.g.Reload()
	if !st.OK {
		t.Fatalf("reload refused: %s %q", st.Error, st.Diagnostics)
	}
	return st
}

// reloadConfig is one listener and the upstream test, then extra
// (top-level keys).
func reloadConfig(extra string) string {
	return `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$A"]
` + extra
}

// restGet sends GET url with the header pairs ("Name: value") through
// client and returns the status and body; transport errors fail the test.
func restGet(t *testing.T, client *http.Client, url string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestReloadPlugins: a reload that adds key-auth applies it to REST and
// gRPC (relay) calls at once; one that changes the consumers' keys
// applies the new keys; one that removes the plugin opens the routes
// again. The upstream, unchanged, is carried over.
func TestReloadPlugins(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	r := startReloadGateway(t, "relay", map[string]string{"A": be.Addr}, reloadConfig(""))
	hc := newH2CClient(t)
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	ctx := testContext(t)
	up0, _ := r.g.gen().ups.Get("test")

	open := func(when string) {
		t.Helper()
		if code, body := restGet(t, hc, r.url+"/v1/echo/x"); code != http.StatusOK {
			t.Fatalf("%s: REST got %d %s; want 200", when, code, body)
		}
		if _, err := client.Echo(ctx, &testingv1.Everything{Id: "x"}); err != nil {
			t.Fatalf("%s: gRPC: %v", when, err)
		}
	}
	keyed := func(when, good, bad string) {
		t.Helper()
		code, body := restGet(t, hc, r.url+"/v1/echo/x")
		if code != http.StatusUnauthorized || !strings.Contains(body, `"code":16`) {
			t.Fatalf("%s: REST without key got %d %s; want 401", when, code, body)
		}
		if code, body := restGet(t, hc, r.url+"/v1/echo/x", "apikey: "+bad); code != http.StatusUnauthorized {
			t.Fatalf("%s: REST with key %s got %d %s; want 401", when, bad, code, body)
		}
		if code, body := restGet(t, hc, r.url+"/v1/echo/x", "apikey: "+good); code != http.StatusOK {
			t.Fatalf("%s: REST with key %s got %d %s; want 200", when, good, code, body)
		}
		_, err := client.Echo(ctx, &testingv1.Everything{Id: "x"})
		wantStatus(t, err, codes.Unauthenticated, "")
		if _, err := client.Echo(metadata.AppendToOutgoingContext(ctx, "apikey", good), &testingv1.Everything{Id: "x"}); err != nil {
			t.Fatalf("%s: gRPC with key %s: %v", when, good, err)
		}
	}

	open("before any reload")
	st := r.reload(t, reloadConfig(`
consumers:
  - {name: alice, keys: [alice-key-0001]}
plugins:
  - key-auth: {}
`))
	if st.Version != 2 || st.Reloads != 1 || st.Failures != 0 {
		t.Errorf("status after the first reload: %+v; want version 2, 1 reload", st)
	}
	keyed("key-auth added", "alice-key-0001", "alice-key-0002")
	r.reload(t, reloadConfig(`
consumers:
  - {name: alice, keys: [alice-key-0002]}
plugins:
  - key-auth: {}
`))
	keyed("key changed", "alice-key-0002", "alice-key-0001")
	st = r.reload(t, reloadConfig(""))
	open("key-auth removed")
	if st.Version != 4 || st.Reloads != 3 {
		t.Errorf("status after the last reload: %+v; want version 4, 3 reloads", st)
	}
	if up, _ := r.g.gen().ups.Get("test"); up != up0 {
		t.Errorf("the unchanged upstream was replaced by a reload")
	}
}

// TestReloadRateLimitKept: a reload that keeps a route's rate limit as
// it was (while other parts of the config change) keeps its counters: a
// client over the limit before the reload is over it after.
func TestReloadRateLimitKept(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	limited := func(extra string) string {
		return reloadConfig(`
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - rate-limiting: { limit: 3, period: 3600, key: "header:x-bucket" }
` + extra)
	}
	r := startReloadGateway(t, "relay", map[string]string{"A": be.Addr}, limited(""))
	hc := newH2CClient(t)
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	ctx := testContext(t)
	call := func(via, bucket string) int {
		t.Helper()
		if via == "rest" {
			code, _ := restGet(t, hc, r.url+"/v1/echo/x", "x-bucket: "+bucket)
			return code
		}
		_, err := client.Echo(metadata.AppendToOutgoingContext(ctx, "x-bucket", bucket), &testingv1.Everything{Id: "x"})
		switch status.Code(err) {
		case codes.OK:
			return http.StatusOK
		case codes.ResourceExhausted:
			return http.StatusTooManyRequests
		default:
			t.Fatalf("gRPC call: %v", err)
			return 0
		}
	}
	for _, via := range []string{"rest", "grpc"} {
		for i := 0; i < 2; i++ {
			if code := call(via, via); code != http.StatusOK {
				t.Fatalf("%s call %d: got %d; want 200", via, i+1, code)
			}
		}
	}
	// Another route with a plugin of its own, and a route timeout: the
	// Echo route's limit is unchanged.
	r.reload(t, limited(`  - selector: rosetta.testing.v1.EchoService.Sleep
    timeout: 20s
    plugins:
      - rate-limiting: { limit: 1, period: 60, key: "header:x-bucket" }
`))
	for _, via := range []string{"rest", "grpc"} {
		if code := call(via, via); code != http.StatusOK {
			t.Fatalf("%s call 3 (after the reload): got %d; want 200", via, code)
		}
		if code := call(via, via); code != http.StatusTooManyRequests {
			t.Fatalf("%s call 4 (after the reload): got %d; want 429: the counter was reset", via, code)
		}
	}
	if code := call("rest", "fresh"); code != http.StatusOK {
		t.Fatalf("a fresh bucket: got %d; want 200", code)
	}
}

// TestReloadListeners: a reload that adds a listener binds and serves
// it; one that removes a listener stops accepting connections on it while
// the calls in flight on it finish; the listener both configs keep serves
// throughout.
func TestReloadListeners(t *testing.T) {
	t.Parallel()
	be := startNamedBackend(t, "a")
	one := `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$A"]
`
	two := strings.Replace(one, `  - address: "127.0.0.1:0"`, `  - address: "127.0.0.1:0"
  - address: "127.0.0.2:0"`, 1)
	r := startReloadGateway(t, "", map[string]string{"A": be.Addr}, one)
	hc := newH2CClient(t)
	first := r.g.Addrs()[0].String()

	r.reload(t, two)
	addrs := r.g.Addrs()
	if len(addrs) != 2 || addrs[0].String() != first {
		t.Fatalf("listeners after adding one: %v; want %s and a new one", addrs, first)
	}
	second := "http://" + addrs[1].String()
	if !strings.HasPrefix(addrs[1].String(), "127.0.0.2:") {
		t.Fatalf("added listener bound to %s; want 127.0.0.2", addrs[1])
	}
	if code, body := restGet(t, hc, second+"/v1/echo/x"); code != http.StatusOK {
		t.Fatalf("REST on the added listener: %d %s", code, body)
	}
	client2 := testingv1.NewEchoServiceClient(dialGateway(t, second))
	ctx := testContext(t)
	if _, err := client2.Echo(ctx, &testingv1.Everything{Id: "x"}); err != nil {
		t.Fatalf("gRPC on the added listener: %v", err)
	}

	// Calls in flight on the listener that goes.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, second+"/v1/sleep?duration=400ms", nil)
		resp, err := hc.Do(req)
		if err != nil {
			errs <- fmt.Errorf("REST in flight: %w", err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			errs <- fmt.Errorf("REST in flight: %d %s %v", resp.StatusCode, body, err)
		}
	})
	wg.Go(func() {
		if _, err := client2.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(400 * time.Millisecond)}); err != nil {
			errs <- fmt.Errorf("gRPC in flight: %w", err)
		}
	})
	waitUntil(t, func() bool { return be.active.Load() == 2 }, "both calls at the backend")
	r.reload(t, one)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := r.g.Addrs(); len(got) != 1 || got[0].String() != first {
		t.Fatalf("listeners after removing one: %v; want [%s]", got, first)
	}
	waitUntil(t, func() bool {
		c, err := net.DialTimeout("tcp", addrs[1].String(), time.Second)
		if err != nil {
			return true
		}
		_ = c.Close()
		return false
	}, "the removed listener refuses connections")
	if code, body := restGet(t, hc, r.url+"/v1/echo/x"); code != http.StatusOK {
		t.Fatalf("REST on the kept listener: %d %s", code, body)
	}
}

// TestReloadInvalid: a file that does not validate is refused as a
// whole: the status reports it (file:line:col diagnostics, failures
// counted, version unchanged), the log says so, and the running config
// keeps serving; the next valid file is taken and clears the error.
func TestReloadInvalid(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	r := startReloadGateway(t, "relay", map[string]string{"A": be.Addr}, reloadConfig(""))
	hc := newH2CClient(t)
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	ctx := testContext(t)
	before := r.g.ConfigStatus()
	if !before.OK || before.Version != 1 || before.File != r.file {
		t.Fatalf("status at start: %+v", before)
	}
	// diag starts the one diagnostic wanted (after the file name); end
	// ends it (the list of known keys in between may grow).
	for i, tc := range []struct{ name, yaml, diag, end string }{
		{"unknown-key", reloadConfig("") + "    timout: 5s\n",
			`:7:5: upstreams.test.timout: unknown key "timout" (known: `, `) (hint: did you mean "timeout"?)`},
		{"bad-value", reloadConfig("plugins:\n  - rate-limiting: { limit: 0, period: 60 }\n"),
			`:8:29: plugins[0].rate-limiting.limit: limit must be greater than 0 (hint: the number of calls allowed per period, e.g. limit: 1000)`, ""},
		// YAML syntax errors have a line, not a column.
		{"yaml-syntax", "listeners:\n  - address: \"127.0.0.1:0\"\nupstreams: [\n", `:3: invalid YAML: did not find expected node content`, ""},
	} {
		r.write(t, tc.yaml)
		st := r.g.Reload()
		if st.OK || st.Version != 1 || st.Failures != uint64(i+1) || st.Reloads != 0 {
			t.Errorf("%s: status %+v; want not OK, version 1, %d failures", tc.name, st, i+1)
		}
		if !st.LoadedAt.Equal(before.LoadedAt) || !st.LastAttempt.After(before.LoadedAt) {
			t.Errorf("%s: loaded at %v, last attempt %v; want the first load's time and a later attempt", tc.name, st.LoadedAt, st.LastAttempt)
		}
		if !strings.Contains(st.Error, "invalid config") || !strings.Contains(st.Error, "the running config keeps serving") {
			t.Errorf("%s: error %q", tc.name, st.Error)
		}
		if len(st.Diagnostics) != 1 || !strings.HasPrefix(st.Diagnostics[0], r.file+tc.diag) || !strings.HasSuffix(st.Diagnostics[0], tc.end) ||
			(tc.end == "" && st.Diagnostics[0] != r.file+tc.diag) {
			t.Errorf("%s: diagnostics %q; want [%s%s...%s]", tc.name, st.Diagnostics, r.file, tc.diag, tc.end)
		}
		if got := r.g.ConfigStatus(); got.Error != st.Error || len(got.Diagnostics) != len(st.Diagnostics) {
			t.Errorf("%s: ConfigStatus %+v; want what Reload returned", tc.name, got)
		}
		logs := r.logs.String()
		if !strings.Contains(logs, `level=ERROR msg="config reload refused"`) {
			t.Errorf("%s: no refusal logged:\n%s", tc.name, logs)
		}
		for _, d := range st.Diagnostics {
			if !strings.Contains(logs, fmt.Sprintf("diagnostic=%q", d)) {
				t.Errorf("%s: diagnostic %q not logged:\n%s", tc.name, d, logs)
			}
		}
		if code, body := restGet(t, hc, r.url+"/v1/echo/x"); code != http.StatusOK {
			t.Fatalf("%s: REST after the refused reload: %d %s", tc.name, code, body)
		}
		if _, err := client.Echo(ctx, &testingv1.Everything{Id: "x"}); err != nil {
			t.Fatalf("%s: gRPC after the refused reload: %v", tc.name, err)
		}
	}
	st := r.reload(t, reloadConfig(""))
	if !st.OK || st.Version != 2 || st.Error != "" || st.Diagnostics != nil || st.Reloads != 1 || st.Failures != 3 {
		t.Errorf("status after a valid reload: %+v", st)
	}
}

// TestReloadRefusedWhenApplied: a file that validates but cannot be
// applied (a new listener's address is taken) is refused whole: the
// status says why, the listeners, plugins and routes stay as they were,
// and the upstream keeps its targets.
func TestReloadRefusedWhenApplied(t *testing.T) {
	t.Parallel()
	a := startNamedBackend(t, "a")
	b := startNamedBackend(t, "b")
	taken := testkit.ListenLocal(t).Addr().String()
	r := startReloadGateway(t, "relay", map[string]string{"A": a.Addr, "B": b.Addr, "TAKEN": taken}, reloadConfig(""))
	hc := newH2CClient(t)
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	ctx := testContext(t)
	serving := func(when string) {
		t.Helper()
		if got := r.g.Addrs(); len(got) != 1 {
			t.Errorf("%s: listeners %v; want the one of the running config", when, got)
		}
		code, body := restGet(t, hc, r.url+"/v1/echo/x")
		if code != http.StatusOK {
			t.Fatalf("%s: REST: %d %s; want 200 (no key-auth)", when, code, body)
		}
		if code, _ := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusNotFound {
			t.Errorf("%s: the refused config's route answers %d; want 404", when, code)
		}
		for range 5 {
			var md metadata.MD
			if _, err := client.Echo(ctx, &testingv1.Everything{Id: "x"}, grpc.Header(&md)); err != nil || strings.Join(md.Get("x-backend"), "") != "a" {
				t.Fatalf("%s: gRPC answered by %q, %v; want backend a", when, md.Get("x-backend"), err)
			}
		}
	}
	refuse := func(target string) {
		t.Helper()
		r.write(t, `
listeners:
  - address: "127.0.0.1:0"
  - address: "$TAKEN"
upstreams:
  test:
    targets: ["`+target+`"]
consumers:
  - {name: alice, keys: [alice-key-0001]}
plugins:
  - key-auth: {}
http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /v2/configured/{id}
`)
		st := r.g.Reload()
		if st.OK || st.Version != 1 || st.Diagnostics != nil || !strings.Contains(st.Error, "listener "+taken) || !strings.Contains(st.Error, "address already in use") {
			t.Errorf("status: %+v; want refused for listener %s (address in use), version 1", st, taken)
		}
		if !strings.Contains(r.logs.String(), `level=ERROR msg="config reload refused" error="listener `+taken) {
			t.Errorf("refusal not logged:\n%s", r.logs)
		}
	}
	serving("at start")
	refuse("$A")
	serving("after a refused reload")
	refuse("$B")
	serving("after a refused reload that changed the upstream's targets")
}

// connCounter counts the connections a gRPC server accepts and notes
// which of them carried EchoService calls.
type connCounter struct {
	n    atomic.Int64 // accepted
	open atomic.Int64 // open now
	mu   sync.Mutex
	echo map[int64]bool
}

type connIDKey struct{}

func (c *connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connIDKey{}, c.n.Add(1))
}

func (c *connCounter) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if id, ok := ctx.Value(connIDKey{}).(int64); ok && strings.HasPrefix(info.FullMethodName, echoService) {
		c.mu.Lock()
		if c.echo == nil {
			c.echo = map[int64]bool{}
		}
		c.echo[id] = true
		c.mu.Unlock()
	}
	return ctx
}

func (c *connCounter) HandleRPC(context.Context, stats.RPCStats) {}
func (c *connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		c.open.Add(1)
	case *stats.ConnEnd:
		c.open.Add(-1)
	}
}

// echoConns returns the connections that carried EchoService calls.
func (c *connCounter) echoConns() map[int64]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.echo)
}

// startCountedBackend starts a named backend that counts the
// connections it accepts.
func startCountedBackend(t *testing.T, name string) (*namedBackend, *connCounter) {
	t.Helper()
	cc := &connCounter{}
	b := &namedBackend{name: name}
	b.Backend = testkit.StartBackend(t, testkit.WithServerOptions(grpc.StatsHandler(cc), grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			_ = grpc.SetHeader(ctx, metadata.Pairs("x-backend", name))
			b.calls.Add(1)
			return handler(ctx, req)
		})))
	return b, cc
}

// TestReloadReusesConnections: a reload that changes routes and plugins
// but not the upstream keeps the upstream, and its connections: the
// backend sees no new connection. One that adds a target (and so
// reloads descriptors, over a connection of the registry's own) keeps
// the upstream's connections to the target that stays: calls to it come
// on the connections they came on before.
func TestReloadReusesConnections(t *testing.T) {
	t.Parallel()
	a, aConns := startCountedBackend(t, "a")
	b, bConns := startCountedBackend(t, "b")
	r := startReloadGateway(t, "relay", map[string]string{"A": a.Addr, "B": b.Addr}, reloadConfig(""))
	hc := newH2CClient(t)
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	ctx := testContext(t)
	traffic := func(when string) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for range 10 {
			req, _ := http.NewRequest(http.MethodGet, r.url+"/v1/echo/x", nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s: REST: %v", when, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: REST: %d", when, resp.StatusCode)
			}
			seen[resp.Header.Get("Grpc-Metadata-X-Backend")]++
			var md metadata.MD
			if _, err := client.Echo(ctx, &testingv1.Everything{Id: "x"}, grpc.Header(&md)); err != nil {
				t.Fatalf("%s: gRPC: %v", when, err)
			}
			seen[strings.Join(md.Get("x-backend"), ",")]++
		}
		return seen
	}
	traffic("before the reload")
	up0, _ := r.g.gen().ups.Get("test")
	relay0 := up0.RelayConn(a.Addr)
	n0, echo0 := aConns.n.Load(), aConns.echoConns()
	if n0 == 0 || relay0 == nil {
		t.Fatalf("backend a: %d connections, relay connection %v", n0, relay0)
	}

	r.reload(t, reloadConfig(`
http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /v2/configured/{id}
routes:
  - selector: rosetta.testing.v1.EchoService.*
    timeout: 10s
    plugins:
      - rate-limiting: { limit: 100000, period: 60, key: route }
`))
	if code, body := restGet(t, hc, r.url+"/v2/configured/y"); code != http.StatusOK {
		t.Fatalf("the reloaded config's new binding: %d %s", code, body)
	}
	traffic("after a reload that kept the upstream")
	up1, _ := r.g.gen().ups.Get("test")
	if up1 != up0 || up1.RelayConn(a.Addr) != relay0 {
		t.Errorf("the upstream or its relay connection was replaced by a reload that did not change it")
	}
	if n := aConns.n.Load(); n != n0 {
		t.Errorf("backend a saw %d connections after the reload; want %d (the same)", n, n0)
	}
	if got := aConns.echoConns(); !maps.Equal(got, echo0) {
		t.Errorf("backend a: calls came on connections %v after the reload; want %v (the same)", got, echo0)
	}

	r.reload(t, strings.Replace(reloadConfig(""), `["$A"]`, `["$A", "$B"]`, 1))
	seen := map[string]int{}
	waitUntil(t, func() bool {
		for k, v := range traffic("after adding target b") {
			seen[k] += v
		}
		return seen["a"] > 0 && seen["b"] > 0
	}, "calls reach both targets")
	if got := aConns.echoConns(); !maps.Equal(got, echo0) {
		t.Errorf("backend a: calls came on connections %v after adding a target; want %v (the same)", got, echo0)
	}
	if bConns.n.Load() == 0 {
		t.Errorf("backend b saw no connection")
	}
	if up, _ := r.g.gen().ups.Get("test"); up.RelayConn(a.Addr) != relay0 {
		t.Errorf("the relay connection to the kept target was replaced")
	}
}

// TestReloadOpenStreams: streams and WebSockets opened before a reload
// finish on the config they started with, whatever the reload changed;
// calls started after it get the new config (here key-auth, added by
// every change).
func TestReloadOpenStreams(t *testing.T) {
	t.Parallel()
	const keyAuth = `
consumers:
  - {name: alice, keys: [alice-key-0001]}
plugins:
  - key-auth: {}
http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /v2/configured/{id}
`
	for _, tc := range []struct {
		name, upstream string
		bug            string
	}{
		// Plugins and routes change; the upstream stays.
		{"plugins", "targets: [\"$A\"]", ""},
		// The upstream's target moves and its timeout changes: a new
		// upstream replaces the old one, which closes once idle.
		{"upstream-replaced", "targets: [\"$B\"]\n    timeout: 17s", ""},
		// Only the target moves: the upstream is updated in place.
		{"target-moved", "targets: [\"$B\"]", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.bug != "" {
				skipUpstreamBug(t, tc.bug)
			}
			testReloadOpenStreams(t, "\nlisteners:\n  - address: \"127.0.0.1:0\"\nupstreams:\n  test:\n    "+tc.upstream+"\n"+keyAuth)
		})
	}
}

func testReloadOpenStreams(t *testing.T, next string) {
	a := testkit.StartBackend(t)
	b := testkit.StartBackend(t)
	r := startReloadGateway(t, "relay", map[string]string{"A": a.Addr, "B": b.Addr}, reloadConfig(""))
	ctx := testContext(t)
	client := testingv1.NewEchoServiceClient(dialGateway(t, r.url))
	hc := newH2CClient(t)

	// A gRPC server stream (over the relay), a REST server stream and a
	// WebSocket on a bidi stream, each with a message through.
	grpcStream, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: 4, Interval: durationpb.New(50 * time.Millisecond), Text: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if item, err := grpcStream.Recv(); err != nil || item.GetIndex() != 1 {
		t.Fatalf("gRPC stream, first item: %v %v", item, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/v1/stream?count=4&interval=0.05s&text=r", nil)
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("REST stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	firstByte := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, firstByte); err != nil {
		t.Fatalf("REST stream: %v", err)
	}
	ws := dialWS(t, wsURL(r.url, "/v1/stream:bidi"), nil)
	wsSend(t, ws, `{"index": 1, "text": "w"}`)
	assertJSON(t, string(wsRead(t, ws, websocket.MessageText)), `{"index": 1, "text": "w"}`)
	// A WebSocket open but idle: its first message comes after the
	// reload.
	idle := dialWS(t, wsURL(r.url, "/v1/stream:bidi"), nil)

	r.reload(t, next)
	// New calls get the new config.
	_, err = client.Echo(ctx, &testingv1.Everything{Id: "x"})
	wantStatus(t, err, codes.Unauthenticated, "")
	if code, _ := restGet(t, hc, r.url+"/v1/echo/x"); code != http.StatusUnauthorized {
		t.Errorf("REST after the reload: %d; want 401", code)
	}
	if code, body := restGet(t, hc, r.url+"/v2/configured/x", "apikey: alice-key-0001"); code != http.StatusOK {
		t.Errorf("the new config's route: %d %s", code, body)
	}

	// The open ones finish on the old config.
	for i := int32(2); i <= 4; i++ {
		item, err := grpcStream.Recv()
		if err != nil || item.GetIndex() != i || item.GetText() != "g" {
			t.Fatalf("gRPC stream, item %d after the reload: %v %v", i, item, err)
		}
	}
	if _, err := grpcStream.Recv(); err != io.EOF {
		t.Errorf("gRPC stream end: %v; want EOF (OK)", err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("REST stream after the reload: %v", err)
	}
	if items := strings.Count(string(firstByte)+string(rest), `"text":"r"`); items != 4 || strings.Contains(string(rest), `"error"`) {
		t.Errorf("REST stream: %d items; want 4, and no error:\n%s%s", items, firstByte, rest)
	}
	for i := 2; i <= 3; i++ {
		item := fmt.Sprintf(`{"index": %d, "text": "w"}`, i)
		wsSend(t, ws, item)
		assertJSON(t, string(wsRead(t, ws, websocket.MessageText)), item)
	}
	wsSend(t, ws, `{"@close_send": true}`)
	wsExpectOK(t, ws)
	wsSend(t, idle, `{"index": 1, "text": "i"}`)
	assertJSON(t, string(wsRead(t, idle, websocket.MessageText)), `{"index": 1, "text": "i"}`)
	wsSend(t, idle, `{"@close_send": true}`)
	wsExpectOK(t, idle)
}

// waitOldUpstream gives an upstream a reload dropped the time to close
// (its backend's connections to end), were nothing holding it: at most
// d; it asserts nothing.
func waitOldUpstream(c *connCounter, d time.Duration) {
	for end := time.Now().Add(d); c.open.Load() > 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadCallsStartedBefore: a call that began before a reload but
// reaches the upstream only after it (a REST request whose body is still
// being sent, a unary call over a WebSocket whose message comes later)
// completes on the config it began with.
func TestReloadCallsStartedBefore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, upstream string
		// late: the calls go on once the old upstream has closed (were
		// nothing holding it), not at once.
		late bool
		bug  string
	}{
		{"plugins", "targets: [\"$A\"]", false, ""},
		{"upstream-replaced", "targets: [\"$B\"]\n    timeout: 17s", false, ""},
		{"upstream-replaced-late", "targets: [\"$B\"]\n    timeout: 17s", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.bug != "" {
				skipUpstreamBug(t, tc.bug)
			}
			a, aConns := startCountedBackend(t, "a")
			b := testkit.StartBackend(t)
			r := startReloadGateway(t, "relay", map[string]string{"A": a.Addr, "B": b.Addr}, reloadConfig(""))

			// REST: the head now, with Expect: 100-continue; the gateway's
			// 100 Continue says the handler reads the body, which is sent
			// after the reload.
			const body = `{"id": "late"}`
			conn, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /v1/echo HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
			br := bufio.NewReader(conn)
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
				t.Fatalf("REST: got %q %v; want 100 Continue", line, err)
			}
			if _, err := br.ReadString('\n'); err != nil { // the blank line ending the 100
				t.Fatal(err)
			}
			// WebSocket: a unary call whose message comes after the reload.
			ws := dialWS(t, wsURL(r.url, "/v1/echo/x"), nil)

			r.reload(t, "\nlisteners:\n  - address: \"127.0.0.1:0\"\nupstreams:\n  test:\n    "+tc.upstream+"\n"+`
consumers:
  - {name: alice, keys: [alice-key-0001]}
plugins:
  - key-auth: {}
`)
			if tc.late {
				waitOldUpstream(aConns, time.Second)
			}
			if _, err := io.WriteString(conn, body); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("REST call begun before the reload: %v", err)
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(got), `"late"`) {
				t.Errorf("REST call begun before the reload: %d %s %v; want 200 (no key needed)", resp.StatusCode, got, err)
			}
			wsSend(t, ws, `{"@close_send": true}`)
			assertJSON(t, string(wsRead(t, ws, websocket.MessageText)), `{"id": "x"}`)
			wsExpectOK(t, ws)
		})
	}
}

// waitStatus polls the gateway's config status until cond holds.
func waitStatus(t *testing.T, g *Gateway, what string, cond func(admin.ConfigStatus) bool) admin.ConfigStatus {
	t.Helper()
	var st admin.ConfigStatus
	waitUntil(t, func() bool {
		st = g.ConfigStatus()
		return cond(st)
	}, what)
	return st
}

// configuredRoute is a config section that adds GET /v2/configured/{id},
// which the reload tests look for to tell one version from another.
const configuredRoute = `
http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /v2/configured/{id}
`

// startWatchedGateway starts a reload gateway on the default config and
// watches its file.
func startWatchedGateway(t *testing.T) *reloadGateway {
	t.Helper()
	be := testkit.StartBackend(t)
	r := startReloadGateway(t, "", map[string]string{"A": be.Addr}, reloadConfig(""))
	if err := r.g.Watch(); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWatchRenameReplace: Watch follows a config file that an editor
// replaces by renaming a new file over it, and one written in place;
// an invalid version is refused and reported, and the next valid one
// taken.
func TestWatchRenameReplace(t *testing.T) {
	t.Parallel()
	r := startWatchedGateway(t)
	hc := newH2CClient(t)
	v2 := reloadConfig(configuredRoute)
	r.write(t, v2)
	waitStatus(t, r.g, "version 2 loaded", func(st admin.ConfigStatus) bool { return st.Version == 2 && st.OK })
	if code, body := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusOK {
		t.Fatalf("the watched file's new route: %d %s", code, body)
	}

	r.write(t, v2+"bogus: 1\n")
	st := waitStatus(t, r.g, "the invalid version refused", func(st admin.ConfigStatus) bool { return st.Failures == 1 })
	if st.OK || st.Version != 2 || len(st.Diagnostics) == 0 || !strings.HasPrefix(st.Diagnostics[0], r.file+":") {
		t.Errorf("status after an invalid file: %+v", st)
	}
	if code, body := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusOK {
		t.Fatalf("the old config after an invalid file: %d %s", code, body)
	}

	// Written in place (truncate and write), as some editors do.
	if err := os.WriteFile(r.file, []byte(r.expand(reloadConfig(""))), 0o600); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, r.g, "version 3 loaded", func(st admin.ConfigStatus) bool { return st.Version == 3 && st.OK })
	if code, _ := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusNotFound {
		t.Errorf("a route the file no longer has: %d; want 404", code)
	}
}

// TestWatchBusyDirectory: a file written without pause beside the config
// (a log) does not hold a change back. Every event of the directory used
// to restart the 250 ms debounce, so the reload never came.
func TestWatchBusyDirectory(t *testing.T) {
	t.Parallel()
	r := startWatchedGateway(t)
	busy, err := os.Create(filepath.Join(filepath.Dir(r.file), "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer busy.Close()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = busy.WriteString("a line\n")
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	r.write(t, reloadConfig(configuredRoute))
	waitStatus(t, r.g, "version 2 loaded while the log is written", func(st admin.ConfigStatus) bool { return st.Version == 2 && st.OK })
}

// TestWatchConfigMapSwap: Watch follows a config file mounted from a
// Kubernetes ConfigMap: rosetta.yaml is a symlink to ..data/rosetta.yaml,
// ..data a symlink to a timestamped directory, and an update writes a
// new directory and renames a new ..data symlink over the old one.
func TestWatchConfigMapSwap(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	dir := t.TempDir()
	r := &reloadGateway{file: filepath.Join(dir, "rosetta.yaml"), logs: &logBuffer{}, vars: map[string]string{"A": be.Addr}}
	version := 0
	update := func(yamlText string) {
		t.Helper()
		version++
		ts := fmt.Sprintf("..2025_01_01_00_00_%02d.%d", version, version)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ts, "rosetta.yaml"), []byte(r.expand(yamlText)), 0o600); err != nil {
			t.Fatal(err)
		}
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
				t.Fatal(err)
			}
		}
	}
	update(reloadConfig(""))
	if err := os.Symlink(filepath.Join("..data", "rosetta.yaml"), r.file); err != nil {
		t.Fatal(err)
	}
	r.g = r.newGateway(t)
	r.url = startTestGateway(t, r.g, "")
	if err := r.g.Watch(); err != nil {
		t.Fatal(err)
	}
	hc := newH2CClient(t)

	update(reloadConfig(configuredRoute))
	waitStatus(t, r.g, "the swapped ConfigMap loaded", func(st admin.ConfigStatus) bool { return st.Version == 2 && st.OK })
	if code, body := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusOK {
		t.Fatalf("the new ConfigMap's route: %d %s", code, body)
	}
	update(reloadConfig("nope: true\n"))
	st := waitStatus(t, r.g, "the invalid ConfigMap refused", func(st admin.ConfigStatus) bool { return st.Failures == 1 })
	if st.OK || st.Version != 2 {
		t.Errorf("status after an invalid ConfigMap: %+v", st)
	}
	update(reloadConfig(""))
	waitStatus(t, r.g, "the third ConfigMap loaded", func(st admin.ConfigStatus) bool { return st.Version == 3 && st.OK })
	if code, _ := restGet(t, hc, r.url+"/v2/configured/x"); code != http.StatusNotFound {
		t.Errorf("a route the ConfigMap no longer has: %d; want 404", code)
	}
}
