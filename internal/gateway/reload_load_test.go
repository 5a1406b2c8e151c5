package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// loadConfigs are the two valid configs TestReloadUnderLoad alternates.
// They differ in routes (an HTTP rule, a route timeout) and plugins
// (rate-limiting or key-auth); upstreamX and upstreamY are the keys of
// their upstream test (its targets). The traffic sends the key key-auth
// wants, so every call passes both.
func loadConfigs(upstreamX, upstreamY string) (x, y string) {
	const head = `
listeners:
  - address: "127.0.0.1:0"
consumers:
  - {name: alice, keys: [alice-key-0001]}
upstreams:
  test:
`
	x = head + upstreamX + `
http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /x/configured/{id}
routes:
  - selector: rosetta.testing.v1.EchoService.*
    timeout: 30s
    plugins:
      - rate-limiting: { limit: 1000000, period: 60, key: route }
`
	y = head + upstreamY + `
http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /y/configured/{id}
routes:
  - selector: rosetta.testing.v1.EchoService.*
    timeout: 40s
    plugins:
      - key-auth: {}
`
	return x, y
}

// invalidLoadConfigs are the files TestReloadUnderLoad interleaves: each
// must be refused with its error, the running config untouched. "$X" is
// the config that runs when it is tried.
var invalidLoadConfigs = []struct {
	name, yaml string
	// diag, when set, starts the first diagnostic (after "file:";
	// $LINE is the line after $X, $NEXT the one after it); want, when
	// set, is in the error of a file that validates but cannot be
	// applied.
	diag, want string
}{
	{name: "unknown-key", yaml: "$X\nbogus: 1\n", diag: "$LINE:1: bogus: unknown key"},
	{name: "bad-value", yaml: "$X\nplugins:\n  - rate-limiting: { limit: 0, period: 60 }\n", diag: "$NEXT:29: plugins[0].rate-limiting.limit: limit must be greater than 0"},
	{name: "yaml-syntax", yaml: "$X\nlisteners: [\n"},
	{name: "taken-address", yaml: "$X", want: "address already in use"},
}

// counter counts the calls of one kind of traffic.
type counter struct {
	ok, failed atomic.Int64
	stopped    atomic.Bool // the traffic ended early (a socket broke)
	mu         sync.Mutex
	errs       []string
	backends   map[string]int
}

func (c *counter) add(backend string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.ok.Add(1)
		if c.backends == nil {
			c.backends = map[string]int{}
		}
		c.backends[backend]++
		return
	}
	c.failed.Add(1)
	if len(c.errs) < 5 {
		c.errs = append(c.errs, err.Error())
	}
}

// calls returns how many calls were made.
func (c *counter) calls() int64 { return c.ok.Load() + c.failed.Load() }

func (c *counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("ok=%d failed=%d backends=%v errors=%q", c.ok.Load(), c.failed.Load(), c.backends, c.errs)
}

// countingDialer dials TCP and counts the connections it made.
type countingDialer struct{ n atomic.Int64 }

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.n.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// TestReloadUnderLoad: steady traffic on REST (HTTP/1.1 and h2c), gRPC
// (over the frame relay: unary calls and server streams) and WebSockets
// (one socket open throughout, and one per call) while the config is
// reloaded 50 times, alternating two valid configs that differ in
// routes, plugins and targets, with invalid ones interleaved. No call
// fails, no client connection is dropped (each client dials once, the
// long-lived socket stays open and answers every message), and every
// invalid file is refused with its error while the running config keeps
// serving. The subtests change the upstream's targets in the ways a
// reload can; each known bug it shows is named (see skipUpstreamBug).
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	t.Run("upstream-replaced", func(t *testing.T) {
		// The target moves and the upstream's timeout changes: each
		// reload builds a new upstream and retires the old one.
		testReloadUnderLoad(t, "    targets: [\"$A\"]\n    timeout: 20s", "    targets: [\"$B\"]\n    timeout: 25s")
	})
	t.Run("routes-plugins", func(t *testing.T) {
		// The upstream (both backends) is the same in both configs: it
		// is carried over.
		testReloadUnderLoad(t, "    targets: [\"$A\", \"$B\"]", "    targets: [\"$A\", \"$B\"]")
	})
	t.Run("weights", func(t *testing.T) {
		// Both backends in both configs, their weights changed: the
		// upstream is carried over, its targets updated in place.
		testReloadUnderLoad(t,
			"    targets: [{address: \"$A\", weight: 3}, {address: \"$B\", weight: 1}]",
			"    targets: [{address: \"$A\", weight: 1}, {address: \"$B\", weight: 3}]")
	})
	t.Run("targets-only", func(t *testing.T) {
		// Only the target moves: the upstream is carried over, its
		// target replaced in place.
		testReloadUnderLoad(t, "    targets: [\"$A\"]", "    targets: [\"$B\"]")
	})
}

func testReloadUnderLoad(t *testing.T, upstreamX, upstreamY string) {
	const reloads = 50
	a := startNamedBackend(t, "a")
	b := startNamedBackend(t, "b")
	taken := testkit.ListenLocal(t).Addr().String()
	// Descriptors from a file: each reload that moves a target loads
	// them again (a new registry), quickly.
	files := "\n    descriptors: {reflection: false, files: [\"$DESCRIPTORS\"]}"
	x, y := loadConfigs(upstreamX+files, upstreamY+files)
	r := startReloadGateway(t, "relay", map[string]string{"A": a.Addr, "B": b.Addr,
		"DESCRIPTORS": testkit.WriteDescriptorSet(t, testingv1.File_rosetta_testing_v1_echo_proto)}, x)
	const key = "alice-key-0001"

	// Clients, each counting the connections it dials.
	var h1Dials, h2Dials, grpcDials, wsDials countingDialer
	h1 := &http.Client{Transport: &http.Transport{DialContext: h1Dials.dial}}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &p, DialContext: h2Dials.dial}}
	wsClient := &http.Client{Transport: &http.Transport{DialContext: wsDials.dial}}
	for _, c := range []*http.Client{h1, h2, wsClient} {
		t.Cleanup(c.Transport.(*http.Transport).CloseIdleConnections)
	}
	cc := dialGateway(t, r.url, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return grpcDials.dial(ctx, "tcp", addr)
	}))
	client := testingv1.NewEchoServiceClient(cc)

	// The load runs through all 50 reloads: its bound is a hang guard
	// sized for a machine busy with other tests (-race, -parallel), not
	// testContext's 20s for one call.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	authed := metadata.AppendToOutgoingContext(ctx, "apikey", key)
	rest := func(c *http.Client) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/v1/echo/x", nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("apikey", key)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
		}
		return resp.Header.Get("Grpc-Metadata-X-Backend"), nil
	}
	kinds := map[string]func() (string, error){
		"rest-http1": func() (string, error) { return rest(h1) },
		"rest-h2c":   func() (string, error) { return rest(h2) },
		"grpc-unary": func() (string, error) {
			var md metadata.MD
			_, err := client.Echo(authed, &testingv1.Everything{Id: "x"}, grpc.Header(&md))
			return strings.Join(md.Get("x-backend"), ","), err
		},
		"grpc-stream": func() (string, error) {
			s, err := client.ServerStream(authed, &testingv1.StreamRequest{Count: 3, Text: "s"})
			if err != nil {
				return "", err
			}
			for i := int32(1); ; i++ {
				item, err := s.Recv()
				if err == io.EOF && i == 4 {
					return "", nil
				}
				if err != nil {
					return "", err
				}
				if item.GetIndex() != i {
					return "", fmt.Errorf("stream item %d: got %v", i, item)
				}
			}
		},
		"websocket-call": func() (string, error) {
			opts := &websocket.DialOptions{HTTPClient: wsClient, HTTPHeader: http.Header{"Apikey": {key}}}
			c, resp, err := websocket.Dial(ctx, wsURL(r.url, "/v1/echo/x"), opts)
			if err != nil {
				if resp != nil {
					return "", fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
				}
				return "", err
			}
			defer c.CloseNow()
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"@close_send": true}`)); err != nil {
				return "", err
			}
			for {
				_, msg, err := c.Read(ctx)
				if err != nil {
					return "", err
				}
				if strings.Contains(string(msg), `"@status"`) {
					var st statusFrame
					if err := json.Unmarshal(msg, &st); err != nil || st.Status.Code != 0 {
						return "", fmt.Errorf("status frame %s (%v)", msg, err)
					}
					return "", nil
				}
			}
		},
	}
	counts := map[string]*counter{}
	var wg sync.WaitGroup
	for name, call := range kinds {
		c := &counter{}
		counts[name] = c
		wg.Go(func() {
			for ctx.Err() == nil {
				backend, err := call()
				if ctx.Err() != nil {
					return // the test is over: not a failure of the gateway
				}
				c.add(backend, err)
			}
		})
	}
	// One WebSocket open throughout: a bidi stream that echoes every
	// message, opened on the first config.
	long := &counter{}
	counts["websocket-open"] = long
	ws := dialWS(t, wsURL(r.url, "/v1/stream:bidi"), &websocket.DialOptions{HTTPClient: wsClient})
	wg.Go(func() {
		for i := 1; ctx.Err() == nil; i++ {
			msg := fmt.Sprintf(`{"index":%d,"text":"open"}`, i)
			err := ws.Write(ctx, websocket.MessageText, []byte(msg))
			if err == nil {
				var got []byte
				if _, got, err = ws.Read(ctx); err == nil && string(got) != msg {
					err = fmt.Errorf("echo %d: got %s; want %s", i, got, msg)
				}
			}
			if ctx.Err() != nil {
				return
			}
			long.add("", err)
			if err != nil {
				long.stopped.Store(true)
				return // the socket is gone
			}
		}
	})

	// progress waits until every kind of traffic made a call since the
	// last time, so every reload lands among calls of each kind.
	last := map[string]int64{}
	progress := func(when string) {
		t.Helper()
		for name, c := range counts {
			waitUntil(t, func() bool { return c.stopped.Load() || c.calls() > last[name] }, name+" traffic "+when)
			last[name] = c.calls()
		}
	}
	// routes checks that the running config's own route answers and the
	// other config's does not.
	routes := func(when string, running string) {
		t.Helper()
		mine, other := "/x/", "/y/"
		if running == y {
			mine, other = other, mine
		}
		for _, c := range []struct {
			prefix string
			code   int
		}{{mine, http.StatusOK}, {other, http.StatusNotFound}} {
			if code, body := restGet(t, h2, r.url+c.prefix+"configured/1", "apikey: "+key); code != c.code {
				t.Fatalf("%s: GET %sconfigured/1: %d %s; want %d", when, c.prefix, code, body, c.code)
			}
		}
	}
	progress("at start")
	version := uint64(1)
	running := x
	for i := 1; i <= reloads; i++ {
		next := y
		if i%2 == 0 {
			next = x
		}
		st := r.reload(t, next)
		version++
		if st.Version != version {
			t.Fatalf("reload %d: version %d; want %d", i, st.Version, version)
		}
		running = next
		routes(fmt.Sprintf("after reload %d", i), running)
		progress(fmt.Sprintf("after reload %d", i))
		if i%5 != 0 {
			continue
		}
		bad := invalidLoadConfigs[(i/5-1)%len(invalidLoadConfigs)]
		text := strings.Replace(bad.yaml, "$X", running, 1)
		if bad.name == "taken-address" {
			text = strings.Replace(text, "listeners:\n", "listeners:\n  - address: \""+taken+"\"\n", 1)
		}
		r.write(t, text)
		st = r.g.Reload()
		switch {
		case st.OK || st.Version != version:
			t.Fatalf("invalid file %s: status %+v; want refused, version %d", bad.name, st, version)
		case bad.want != "":
			if !strings.Contains(st.Error, bad.want) || st.Diagnostics != nil {
				t.Errorf("invalid file %s: error %q, diagnostics %q; want %q", bad.name, st.Error, st.Diagnostics, bad.want)
			}
		default:
			if len(st.Diagnostics) == 0 || !strings.HasPrefix(st.Diagnostics[0], r.file+":") {
				t.Errorf("invalid file %s: diagnostics %q; want file:line:col ones", bad.name, st.Diagnostics)
			}
			lines := strings.Count(r.expand(running), "\n")
			want := strings.NewReplacer("$LINE", fmt.Sprint(lines+2), "$NEXT", fmt.Sprint(lines+3)).Replace(bad.diag)
			if len(st.Diagnostics) > 0 && !strings.HasPrefix(st.Diagnostics[0], r.file+":"+want) {
				t.Errorf("invalid file %s: diagnostic %q; want it to start with %s:%s", bad.name, st.Diagnostics[0], r.file, want)
			}
		}
		if got := r.g.ConfigStatus(); got.OK || got.Error != st.Error {
			t.Errorf("invalid file %s: ConfigStatus %+v; want the refusal", bad.name, got)
		}
		routes("after invalid file "+bad.name, running)
		progress("after invalid file " + bad.name)
	}
	cancel()
	wg.Wait()
	_ = ws.Close(websocket.StatusNormalClosure, "")

	for name, c := range counts {
		t.Logf("%s: %s", name, c)
		if c.failed.Load() > 0 {
			t.Errorf("%s: %d failed calls: %s", name, c.failed.Load(), c)
		}
	}
	for _, name := range []string{"rest-http1", "rest-h2c", "grpc-unary"} {
		c := counts[name]
		if c.backends["a"] == 0 || c.backends["b"] == 0 {
			t.Errorf("%s: calls by backend %v; want both targets to have served", name, c.backends)
		}
	}
	for name, d := range map[string]*countingDialer{"HTTP/1.1": &h1Dials, "h2c": &h2Dials, "gRPC": &grpcDials} {
		if n := d.n.Load(); n != 1 {
			t.Errorf("%s client dialed %d connections; want 1 (none dropped)", name, n)
		}
	}
	if st := r.g.ConfigStatus(); st.Reloads != reloads || st.Failures != reloads/5 || st.Version != reloads+1 {
		t.Errorf("final status %+v; want %d reloads, %d failures", st, reloads, reloads/5)
	}
}
