package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// BenchmarkCacheHit measures GETs through the gateway: a REST GET of a
// cached method, the same GET passed to the backend (it carries
// credentials no plugin checks, which the cache leaves alone), and a
// cached plain HTTP uri route, each a ~100-byte answer over keep-alive
// HTTP/1.1 connections.
func BenchmarkCacheHit(b *testing.B) {
	be := testkit.StartBackend(b)
	web := testkit.ListenLocal(b)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"`+strings.Repeat("x", 90)+`"}`)
	})}
	go func() { _ = srv.Serve(web) }()
	b.Cleanup(func() { _ = srv.Close() })
	_, g := newBenchGateway(b, be.Addr, `
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: ["$BACKEND"]}
  web: {kind: http, targets: ["`+web.Addr().String()+`"]}
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - proxy-cache: {ttl: 1h}
  - uri: /web/*
    service: web
    plugins:
      - proxy-cache: {ttl: 1h}
`)
	id := strings.Repeat("x", 90)
	cases := []struct{ name, path, want string }{
		{"rest/hit", "/v1/echo/" + id, "HIT"},
		{"rest/passed", "/v1/echo/" + id, ""},
		{"uri/hit", "/web/" + id, "HIT"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 16}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			get := func() (string, error) {
				resp, err := client.Get(g + tc.path)
				if err != nil {
					return "", err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.Header.Get("X-Cache"), nil
			}
			if tc.want == "" {
				client.Transport = authTransport{tr}
			}
			if _, err := get(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					got, err := get()
					if err != nil || got != tc.want {
						b.Errorf("got X-Cache %q, %v; want %q", got, err, tc.want)
						return
					}
				}
			})
		})
	}
}

// authTransport adds an Authorization header, which makes the cache pass
// the call through.
type authTransport struct{ rt http.RoundTripper }

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer x")
	return a.rt.RoundTrip(r)
}

// BenchmarkCacheHitHandler measures a REST GET answered from the cache
// by the gateway's handler alone (no sockets: an httptest recorder), the
// part of a hit that the cache and the REST dialect own.
func BenchmarkCacheHitHandler(b *testing.B) {
	be := testkit.StartBackend(b)
	g, url := newBenchGateway(b, be.Addr, `
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: ["$BACKEND"]}
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - proxy-cache: {ttl: 1h}
`)
	path := "/v1/echo/" + strings.Repeat("x", 90)
	resp, err := http.Get(url + path)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	h := g.Handler()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = "127.0.0.1:1234"
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Header().Get("X-Cache") != "HIT" {
			b.Fatalf("X-Cache %q; want HIT", w.Header().Get("X-Cache"))
		}
	}
}

// newBenchGateway starts a gateway from yaml ($BACKEND replaced) for a
// benchmark and returns it and its base URL.
func newBenchGateway(b *testing.B, backendAddr, yaml string) (*Gateway, string) {
	b.Helper()
	return newBenchGatewayWith(b, backendAddr, yaml, nil)
}

// newBenchGatewayWith is newBenchGateway with setup, when not nil, run on
// the gateway before it starts.
func newBenchGatewayWith(b *testing.B, backendAddr, yaml string, setup func(*Gateway)) (*Gateway, string) {
	b.Helper()
	file := filepath.Join(b.TempDir(), "rosetta.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(yaml, "$BACKEND", backendAddr)), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		b.Fatalf("config: %v", err)
	}
	g, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if setup != nil {
		setup(g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return g, "http://" + g.Addrs()[0].String()
}
