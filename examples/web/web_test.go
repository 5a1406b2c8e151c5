package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/examples/web"
	"github.com/rosetta-gateway/rosetta/internal/gateway/gatewaytest"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// chromiumPath is Debian's chromium package (make test installs it).
const chromiumPath = "/usr/bin/chromium"

// startPage serves the demo page on 127.0.0.1:0 and returns its origin.
func startPage(t *testing.T) string {
	t.Helper()
	lis := testkit.ListenLocal(t)
	srv := &http.Server{Handler: web.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + lis.Addr().String()
}

// startGateway starts a gateway in front of backend that lets the page's
// origin open WebSockets and make CORS requests, and returns its base URL.
func startGateway(t *testing.T, backend, pageOrigin string) string {
	t.Helper()
	yaml := fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
upstreams:
  library:
    targets: [%q]
websocket:
  allowed_origins: [%q]
cors:
  allowed_origins: [%q]
`, backend, pageOrigin, pageOrigin)
	file := filepath.Join(t.TempDir(), "rosetta.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return gatewaytest.URL(gatewaytest.Start(t, cfg))
}

// TestBrowserDemo loads examples/web in headless Chromium against a real
// gateway and library backend: the chat round-trips a message over the
// WebSocket bridge, and the book list shows WatchBooks events over
// EventSource, including one for a book created while the page is open.
func TestBrowserDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium; runs without -short")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is needed at %s for the browser test: install it with `apt-get install -y chromium` (make test does), or run go test -short to leave this test out: %v", chromiumPath, err)
	}
	be := testkit.StartBackend(t)
	page := startPage(t)
	gw := startGateway(t, be.Addr, page)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	var logs strings.Builder
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(func(f string, a ...any) {
		fmt.Fprintf(&logs, f+"\n", a...)
	}))
	defer cancel()
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate(page+"/?gateway="+url.QueryEscape(gw))); err != nil {
		t.Fatalf("load the page: %v\n%s", err, logs.String())
	}
	wait := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\npage:\n%s", what, err, state)
		}
	}

	wait("chat socket open", `document.getElementById("chat-status").textContent === "connected"`)
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("user"), "ann"),
		chromedp.SendKeys(chromedp.ID("text"), "hello gateway\n"),
	); err != nil {
		t.Fatalf("send a chat message: %v", err)
	}
	wait("chat reply", `[...document.querySelectorAll("#messages li")].some(li => li.textContent === "library: ann said: hello gateway")`)

	wait("initial books", `[...document.querySelectorAll("#books li")].some(li => li.textContent.startsWith("Dune"))`)
	resp, err := http.Post(gw+"/v1/shelves/1/books", "application/json",
		strings.NewReader(`{"title": "Live from the browser test", "author": "Rosetta"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create book: HTTP %d", resp.StatusCode)
	}
	wait("live book event", `[...document.querySelectorAll("#books li")].some(li => li.textContent === "Live from the browser test — Rosetta")`)

	// Close the page's streams before the gateway stops.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Errorf("leave the page: %v", err)
	}
}
