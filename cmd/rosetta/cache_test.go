package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway/gatewaytest"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy/cache"
)

// TestCachePurgeCommand purges a real redis-server's cache entries with
// "rosetta cache purge": by route, by key, then all.
func TestCachePurgeCommand(t *testing.T) {
	t.Parallel()
	rd := testkit.StartRedis(t)
	file := filepath.Join(t.TempDir(), "rosetta.yaml")
	os.WriteFile(file, []byte(`
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  a: {targets: ["127.0.0.1:9000"]}
  web: {kind: http, targets: ["127.0.0.1:9001"]}
redis: {address: "`+rd.Addr+`"}
routes:
  - selector: pkg.Svc.*
    plugins:
      - proxy-cache: {ttl: 30s, store: redis}
  - uri: /web/*
    service: web
    plugins:
      - proxy-cache: {ttl: 30s}
`), 0o600)
	srv, err := redisclient.NewServer(&config.Redis{Address: rd.Addr}, cache.StoreName, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := cache.NewRedis(srv, true)
	t.Cleanup(func() { _ = store.Close() })
	keys := []*cache.Key{
		{Route: "pkg.Svc.*", Resource: "/pkg.Svc/A", Sum: [32]byte{1}},
		{Route: "pkg.Svc.*", Resource: "/pkg.Svc/A", Sum: [32]byte{2}},
		{Route: "pkg.Svc.*", Resource: "/pkg.Svc/B", Sum: [32]byte{3}},
		{Route: "other.*", Resource: "/other/C", Sum: [32]byte{4}},
	}
	for _, k := range keys {
		if err := store.Set(t.Context(), k, &cache.Entry{Body: []byte("x")}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	purge := func(want string, args ...string) {
		t.Helper()
		code, out, errs := runCLI(append([]string{"cache", "purge", "--config", file}, args...)...)
		if code != 0 || out != want || !strings.Contains(errs, "routes[1] (/web/*)") {
			t.Errorf("purge %v: got %d %q %q; want 0 %q and a note on the memory store", args, code, out, errs, want)
		}
	}
	purge("purged 2 entries from redis "+rd.Addr+"\n", "--route", "pkg.Svc.*", "--key", "/pkg.Svc/A")
	if e, _ := store.Get(t.Context(), keys[2]); e == nil {
		t.Error("the entry of another key was purged")
	}
	purge("purged 1 entries from redis "+rd.Addr+"\n", "--route", "pkg.Svc.*")
	purge("purged 1 entries from redis " + rd.Addr + "\n")
	if code, _, errs := runCLI("cache", "purge", "--config", file, "--route", "nope.*"); code != 2 || !strings.Contains(errs, `no route "nope.*"`) {
		t.Errorf("unknown route: got %d %q", code, errs)
	}
	if code, _, _ := runCLI("cache", "flush"); code != 2 {
		t.Errorf("unknown subcommand: got exit %d; want 2", code)
	}
}

// TestCachePurgeSignal sends SIGUSR1 to the test process while the serve
// command's handler listens: every cache is purged.
func TestCachePurgeSignal(t *testing.T) {
	be := testkit.StartBackend(t)
	file := filepath.Join(t.TempDir(), "rosetta.yaml")
	os.WriteFile(file, []byte(`
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: ["`+be.Addr+`"]}
routes:
  - selector: rosetta.testing.v1.EchoService.*
    plugins:
      - proxy-cache: {ttl: 1h}
`), 0o600)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := purgeOnSignal(ctx, g, slog.New(slog.DiscardHandler), notify(syscall.SIGUSR1))
	tr := &http.Transport{}
	t.Cleanup(func() {
		cancel()
		<-done
		tr.CloseIdleConnections()
	})
	url := "http://" + g.Addrs()[0].String() + "/v1/echo/sig"
	get := func() string {
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Cache")
	}
	if got := get() + " " + get(); got != "MISS HIT" {
		t.Fatalf("X-Cache of two calls: got %q; want MISS HIT", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for i := 0; get() != "MISS"; i++ {
		if i == 500 {
			t.Fatal("SIGUSR1 did not purge the cache")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
