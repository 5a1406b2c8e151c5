package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/upstream"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
)

// skipUpstreamBug skips a test (or a cell) that shows a reported bug of
// the upstream integration, unless ROSETTA_BUG_TESTS is set (to see it
// fail).
func skipUpstreamBug(t *testing.T, bug string) {
	t.Helper()
	if os.Getenv("ROSETTA_BUG_TESTS") == "" {
		t.Skip("bug: " + bug + " (set ROSETTA_BUG_TESTS=1 to run)")
	}
}

// namedBackend is an in-process EchoService backend that tags every
// EchoService answer with the header metadata "x-backend: <name>" and
// counts the calls it got. A test can make it answer UNAVAILABLE (fail)
// or flip its grpc.health.v1 status (Health).
type namedBackend struct {
	*testkit.Backend
	name   string
	calls  atomic.Int64 // EchoService calls received
	active atomic.Int64 // EchoService calls running now
	fail   atomic.Bool  // answer every EchoService call UNAVAILABLE
	delay  atomic.Int64 // wait this many nanoseconds before each answer
}

func startNamedBackend(t *testing.T, name string) *namedBackend {
	t.Helper()
	b := &namedBackend{name: name}
	tag := metadata.Pairs("x-backend", name)
	b.Backend = testkit.StartBackend(t, testkit.WithServerOptions(grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if !strings.HasPrefix(info.FullMethod, echoService) {
				return handler(ctx, req)
			}
			b.calls.Add(1)
			b.active.Add(1)
			defer b.active.Add(-1)
			_ = grpc.SetHeader(ctx, tag)
			if b.fail.Load() {
				return nil, status.Error(codes.Unavailable, "backend "+name+" is failing on purpose")
			}
			if d := time.Duration(b.delay.Load()); d > 0 {
				tm := time.NewTimer(d)
				select {
				case <-tm.C:
				case <-ctx.Done():
					tm.Stop()
				}
			}
			return handler(ctx, req)
		})))
	return b
}

// startSlowBackend starts a namedBackend that waits d before each answer.
func startSlowBackend(t *testing.T, name string, d time.Duration) *namedBackend {
	t.Helper()
	b := startNamedBackend(t, name)
	b.delay.Store(int64(d))
	return b
}

// setServing sets the backend's health status for "" (what the gateway's
// health check asks by default).
func (b *namedBackend) setServing(serving bool) {
	s := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		s = healthpb.HealthCheckResponse_SERVING
	}
	b.Health.SetServingStatus("", s)
}

// upstreamTrio starts three named backends a, b and c.
func upstreamTrio(t *testing.T) []*namedBackend {
	t.Helper()
	return []*namedBackend{startNamedBackend(t, "a"), startNamedBackend(t, "b"), startNamedBackend(t, "c")}
}

// gatewayConfig returns a gateway config with one listener and the
// upstream "test" (targets, then the other keys of upstream, written at
// the upstream's indentation), then rest (top-level keys).
func gatewayConfig(targets, upstream, rest string) string {
	s := "listeners:\n  - address: \"127.0.0.1:0\"\nupstreams:\n  test:\n    targets: " + targets + "\n"
	if upstream != "" {
		s += indent(upstream, 4) + "\n"
	}
	return s + rest
}

// upGateway is a gateway in front of the test upstream, with the clients
// of every protocol that reaches it.
type upGateway struct {
	g    *Gateway
	url  string
	path string // "relay" or "handler": how gRPC calls are served
	hc   *http.Client
	ws   *http.Client // HTTP/1.1, for WebSocket upgrades
	cc   *grpc.ClientConn
	// keyField returns the header field (lower case) that carries a
	// call's key; nil: x-user-id with the key as it is.
	keyField func(key string) (name, value string)
}

// field returns the header field of a key.
func (u *upGateway) field(key string) (string, string) {
	if u.keyField != nil {
		return u.keyField(key)
	}
	return "x-user-id", key
}

// from returns u with clients whose connections come from the local
// address ip (any of 127.0.0.0/8), for hash_on: ip.
func (u *upGateway) from(t *testing.T, ip string) *upGateway {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	wtr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(wtr.CloseIdleConnections)
	c := *u
	c.hc = &http.Client{Transport: tr}
	c.ws = &http.Client{Transport: wtr}
	c.cc = dialGateway(t, u.url, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}))
	return &c
}

// startUpGateway starts a gateway from yamlText; gRPC calls take path
// ("relay" waits until every target has a relay connection).
func startUpGateway(t *testing.T, path, yamlText string) *upGateway {
	t.Helper()
	url, g := startGatewayOn(t, path, "", yamlText)
	return &upGateway{g: g, url: url, path: path, hc: newH2CClient(t), ws: newHTTP1Client(t), cc: dialGateway(t, url)}
}

// upstream returns the gateway's upstream "test".
func (u *upGateway) upstream(t *testing.T) *upstream.Upstream {
	t.Helper()
	up, ok := u.g.gen().ups.Get("test")
	if !ok {
		t.Fatal("no upstream test")
	}
	return up
}

// endpoint returns the balancer state of addr.
func (u *upGateway) endpoint(t *testing.T, addr string) balance.EndpointState {
	t.Helper()
	for _, e := range u.upstream(t).Balancer().Snapshot() {
		if e.Addr == addr {
			return e
		}
	}
	t.Fatalf("no endpoint %s", addr)
	return balance.EndpointState{}
}

// protocol is one way a client calls EchoService through the gateway.
// echo calls Echo (key, when not "", as the x-user-id header) and returns
// the name of the backend that answered; sleep calls Sleep.
type protocol struct {
	name  string
	echo  func(ctx context.Context, key string) (string, error)
	sleep func(ctx context.Context, d time.Duration) error
}

// protocols returns REST, Connect, gRPC-Web, WebSocket and gRPC (over u's
// gRPC path) clients of u. The gRPC one is named "grpc-relay" or
// "grpc-handler".
func (u *upGateway) protocols() []protocol {
	return []protocol{u.rest(), u.connect("connect"), u.connect("grpc-web", connect.WithGRPCWeb()), u.websocket(), u.grpc()}
}

// upCell is one protocol client on one gRPC path: the tests run each on
// a gateway whose gRPC calls take path.
type upCell struct{ path, proto string }

// upCells are the protocols of these tests: REST, Connect, gRPC-Web,
// WebSocket and gRPC on a relay gateway, gRPC on a handler-only gateway.
var upCells = []upCell{{"relay", "rest"}, {"relay", "connect"}, {"relay", "grpc-web"}, {"relay", "websocket"}, {"relay", "grpc-relay"}, {"handler", "grpc-handler"}}

// unaryCells are upCells without WebSocket, whose calls are streams
// (not retried once sent, by design).
var unaryCells = slices.DeleteFunc(slices.Clone(upCells), func(c upCell) bool { return c.proto == "websocket" })

// startUpGateways starts a relay and a handler gateway from yamlText.
func startUpGateways(t *testing.T, yamlText string) map[string]*upGateway {
	t.Helper()
	return map[string]*upGateway{"relay": startUpGateway(t, "relay", yamlText), "handler": startUpGateway(t, "handler", yamlText)}
}

// protocol returns the client named name (see protocols).
func (u *upGateway) protocol(name string) protocol {
	for _, p := range u.protocols() {
		if p.name == name {
			return p
		}
	}
	panic("no protocol " + name)
}

func (u *upGateway) rest() protocol {
	get := func(ctx context.Context, path, key string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url+path, nil)
		if err != nil {
			return "", err
		}
		if key != "" {
			req.Header.Set(u.field(key))
		}
		resp, err := u.hc.Do(req)
		if err != nil {
			return "", err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", &httpError{status: resp.StatusCode, body: string(body)}
		}
		return resp.Header.Get("Grpc-Metadata-X-Backend"), nil
	}
	return protocol{
		name: "rest",
		echo: func(ctx context.Context, key string) (string, error) { return get(ctx, "/v1/echo/x", key) },
		sleep: func(ctx context.Context, d time.Duration) error {
			_, err := get(ctx, "/v1/sleep?duration="+d.String(), "")
			return err
		},
	}
}

// websocket calls a unary method through the WebSocket bridge: one
// socket per call (the bridge opens one upstream stream per socket),
// the request from the path, {"@close_send": true} as the only frame;
// the backend's name comes in the status frame's @headers.
func (u *upGateway) websocket() protocol {
	call := func(ctx context.Context, path, key string) (string, error) {
		opts := &websocket.DialOptions{HTTPClient: u.ws}
		if key != "" {
			name, value := u.field(key)
			opts.HTTPHeader = http.Header{}
			opts.HTTPHeader.Set(name, value)
		}
		c, resp, err := websocket.Dial(ctx, wsURL(u.url, path), opts)
		if err != nil {
			if resp != nil {
				return "", &httpError{status: resp.StatusCode, body: err.Error()}
			}
			return "", err
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"@close_send": true}`)); err != nil {
			return "", err
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return "", err
			}
			if !strings.Contains(string(b), `"@status"`) {
				continue // the answer message
			}
			var st statusFrame
			if err := json.Unmarshal(b, &st); err != nil {
				return "", err
			}
			if st.Status.Code != 0 {
				return "", status.Error(codes.Code(st.Status.Code), st.Status.Message)
			}
			if v := st.Headers["x-backend"]; len(v) > 0 {
				return v[0], nil
			}
			return "", nil
		}
	}
	return protocol{
		name: "websocket",
		echo: func(ctx context.Context, key string) (string, error) { return call(ctx, "/v1/echo/x", key) },
		sleep: func(ctx context.Context, d time.Duration) error {
			_, err := call(ctx, "/v1/sleep?duration="+d.String(), "")
			return err
		},
	}
}

// httpError is a REST answer other than 200.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

func (u *upGateway) connect(name string, opts ...connect.ClientOption) protocol {
	echo := connect.NewClient[testingv1.Everything, testingv1.Everything](u.hc, u.url+echoService+"Echo", opts...)
	sleep := connect.NewClient[testingv1.SleepRequest, testingv1.SleepResponse](u.hc, u.url+echoService+"Sleep", opts...)
	return protocol{
		name: name,
		echo: func(ctx context.Context, key string) (string, error) {
			req := connect.NewRequest(&testingv1.Everything{Id: "x"})
			if key != "" {
				req.Header().Set(u.field(key))
			}
			resp, err := echo.CallUnary(ctx, req)
			if err != nil {
				return "", err
			}
			return resp.Header().Get("X-Backend"), nil
		},
		sleep: func(ctx context.Context, d time.Duration) error {
			_, err := sleep.CallUnary(ctx, connect.NewRequest(&testingv1.SleepRequest{Duration: durationpb.New(d)}))
			return err
		},
	}
}

func (u *upGateway) grpc() protocol {
	c := testingv1.NewEchoServiceClient(u.cc)
	return protocol{
		name: "grpc-" + u.path,
		echo: func(ctx context.Context, key string) (string, error) {
			if key != "" {
				name, value := u.field(key)
				ctx = metadata.AppendToOutgoingContext(ctx, name, value)
			}
			var md metadata.MD
			if _, err := c.Echo(ctx, &testingv1.Everything{Id: "x"}, grpc.Header(&md)); err != nil {
				return "", err
			}
			if v := md.Get("x-backend"); len(v) > 0 {
				return v[0], nil
			}
			return "", nil
		},
		sleep: func(ctx context.Context, d time.Duration) error {
			_, err := c.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(d)})
			return err
		},
	}
}

// tally is what a run of calls saw: answers per backend, failures.
type tally struct {
	mu     sync.Mutex
	by     map[string]int
	failed int
	errs   []string // the first few failures
}

func (t *tally) add(backend string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.by == nil {
		t.by = map[string]int{}
	}
	if err != nil {
		t.failed++
		if len(t.errs) < 5 {
			t.errs = append(t.errs, err.Error())
		}
		return
	}
	t.by[backend]++
}

// merge adds o's counts to t.
func (t *tally) merge(o *tally) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.by == nil {
		t.by = map[string]int{}
	}
	for k, v := range o.by {
		t.by[k] += v
	}
	t.failed += o.failed
	t.errs = append(t.errs, o.errs...)[:min(len(t.errs)+len(o.errs), 5)]
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.by))
	for n := range t.by {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%d ", n, t.by[n])
	}
	fmt.Fprintf(&b, "failed=%d", t.failed)
	if len(t.errs) > 0 {
		fmt.Fprintf(&b, " (first: %q)", t.errs)
	}
	return b.String()
}

// spread makes n Echo calls over workers goroutines with p, keyed by
// key(i) (nil: no key), and tallies them.
func spread(t *testing.T, p protocol, n, workers int, key func(i int) string) *tally {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var next atomic.Int64
	res := &tally{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				k := ""
				if key != nil {
					k = key(i)
				}
				res.add(p.echo(ctx, k))
			}
		})
	}
	wg.Wait()
	return res
}

// wantShares checks that each backend got its share of n calls within
// tol calls.
func wantShares(t *testing.T, got *tally, n int, shares map[string]float64, tol func(p float64) float64) {
	t.Helper()
	if got.failed > 0 {
		t.Errorf("%d of %d calls failed: %s", got.failed, n, got)
	}
	for name, p := range shares {
		want := p * float64(n)
		if d := math.Abs(float64(got.by[name]) - want); d > tol(p) {
			t.Errorf("backend %s: got %d calls; want %.0f ± %.0f (%s)", name, got.by[name], want, tol(p), got)
		}
	}
	for name := range got.by {
		if _, ok := shares[name]; !ok {
			t.Errorf("backend %q got calls; want none (%s)", name, got)
		}
	}
}

// waitFor polls cond every 5ms until it holds, failing after 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting: %s", what)
}
