package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// startGateway starts a gateway from YAML text (with $BACKEND replaced by
// the backend's address) on 127.0.0.1:0 and returns its base URL.
func startGateway(t *testing.T, backendAddr, yamlText string) (string, *Gateway) {
	t.Helper()
	return startGatewayOn(t, "", backendAddr, yamlText)
}

// grpcPaths are the two ways the gateway serves gRPC over HTTP/2: the
// frame relay (grpcdialect.Proxy.Relay) and the handler path
// (GRPCProxy.Serve) that takes calls the relay cannot.
var grpcPaths = []string{"relay", "handler"}

// forEachGRPCPath runs test once per gRPC path, as parallel subtests:
// each has its own backend and gateway.
func forEachGRPCPath(t *testing.T, test func(t *testing.T, path string)) {
	for _, path := range grpcPaths {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			test(t, path)
		})
	}
}

// startGatewayOn is startGateway with the gRPC path chosen: "relay" waits
// until every gRPC upstream target has a relay connection, so gRPC calls
// take the relay from the first one; "handler" turns the relay off; ""
// leaves the gateway as it runs in production.
func startGatewayOn(t *testing.T, path, backendAddr, yamlText string) (string, *Gateway) {
	t.Helper()
	// An Info logger (discarding its output) keeps the access-log wrapper
	// in the path of every test.
	g := newTestGateway(t, backendAddr, yamlText, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return startTestGateway(t, g, path), g
}

// newTestGateway builds a gateway from yamlText with $BACKEND replaced.
func newTestGateway(t *testing.T, backendAddr, yamlText string, logger *slog.Logger) *Gateway {
	t.Helper()
	dir := t.TempDir()
	yamlText = strings.ReplaceAll(yamlText, "$BACKEND", backendAddr)
	file := filepath.Join(dir, "rosetta.yaml")
	if err := os.WriteFile(file, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	g, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	return g
}

// startTestGateway starts g (see startGatewayOn for path), shuts it down
// when the test ends and returns its first listener's URL.
func startTestGateway(t *testing.T, g *Gateway, path string) string {
	t.Helper()
	g.noRelay = path == "handler"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatalf("gateway.Start: %v", err)
	}
	t.Cleanup(func() {
		// A connection a client opened but never used holds up
		// net/http's Shutdown for 5s; close ours first.
		http.DefaultClient.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	if path == "relay" {
		for name, u := range g.gen().cfg.Upstreams {
			if u.Kind != "" && u.Kind != "grpc" {
				continue
			}
			up, _ := g.gen().ups.Get(name)
			for _, target := range u.Addresses() {
				waitUntil(t, func() bool { return up.RelayConn(target) != nil }, "relay connection to "+target)
			}
		}
	}
	return "http://" + g.Addrs()[0].String()
}

const basicConfig = `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
`

// startDefault starts a backend and a gateway with the basic config.
func startDefault(t *testing.T) string {
	t.Helper()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, basicConfig)
	return url
}

type response struct {
	status  int
	header  http.Header
	trailer http.Header
	body    string
}

// do sends one request; body "" sends none. Header pairs are "Name: value".
func do(t *testing.T, method, url, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: string(b)}
}

// assertJSON compares two JSON texts by value.
func assertJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad test JSON: %v\n%s", err, want)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("JSON mismatch (-want +got):\n%s\ngot: %s", diff, got)
	}
}

// expect checks the status and JSON body of a response.
func expect(t *testing.T, r response, status int, wantJSON string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status: got %d; want %d (body %s)", r.status, status, r.body)
	}
	if wantJSON != "" {
		assertJSON(t, r.body, wantJSON)
	}
}

// gen returns the gateway's current config generation.
func (g *Gateway) gen() *generation { return g.cur.Load() }
