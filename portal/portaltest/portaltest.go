// Package portaltest drives pages (the developer portal's, chiefly) in
// headless Chromium for tests: [NewBrowser] starts one, [Wait] polls a
// JavaScript condition, and [Screenshot] saves a PNG.
//
// It needs Chromium at [ChromiumPath] (Debian's chromium package, which
// make test installs). Under go test -short, NewBrowser skips the test;
// otherwise a missing Chromium fails it with the install hint.
//
// Uncaught JavaScript exceptions and Content-Security-Policy violations on
// the page fail the test when it ends, so a page that breaks in ways the
// test's conditions do not look at is still caught.
package portaltest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is where NewBrowser expects Chromium.
const ChromiumPath = "/usr/bin/chromium"

// WaitTimeout bounds one [Wait].
const WaitTimeout = 30 * time.Second

// cspMarker starts the console line the page writes for a CSP violation.
const cspMarker = "portaltest: CSP violation: "

// watchCSP runs in every document before its scripts and reports CSP
// violations on the console, where NewBrowser sees them.
const watchCSP = `document.addEventListener("securitypolicyviolation", (e) =>
  console.error(` + "`" + cspMarker + "${e.violatedDirective} blocked ${e.blockedURI || \"inline\"} (${e.sourceFile}:${e.lineNumber})`" + `));`

type browserKey struct{}

// browser is what NewBrowser keeps in the context.
type browser struct {
	dir string // where Screenshot writes

	mu       sync.Mutex
	problems []string // exceptions and CSP violations
	log      []string // other console errors, shown when the test fails
}

// NewBrowser starts headless Chromium for t and returns its chromedp
// context (one tab), which has run once, so actions may derive timeouts
// from it. The browser stops when t ends; uncaught exceptions and CSP
// violations seen by then fail t.
//
// Screenshots go to the directory in $ROSETTA_ARTIFACTS when it is set,
// else to a temporary directory of t.
func NewBrowser(t testing.TB) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Chromium; runs without -short")
	}
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("Chromium is needed at %s for browser tests: install it with `apt-get install -y chromium` (make test does), or run go test -short to leave them out: %v", ChromiumPath, err)
	}
	b := &browser{dir: os.Getenv("ROSETTA_ARTIFACTS")}
	if b.dir == "" {
		b.dir = t.TempDir()
	} else if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatalf("artifacts directory: %v", err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	var logs strings.Builder
	var logsMu sync.Mutex
	ctx, cancel := chromedp.NewContext(context.WithValue(allocCtx, browserKey{}, b), chromedp.WithLogf(func(f string, a ...any) {
		logsMu.Lock()
		defer logsMu.Unlock()
		fmt.Fprintf(&logs, f+"\n", a...)
	}))
	// The first Run starts the browser; it must not carry a timeout.
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watchCSP})
		return err
	}))
	if err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium: %v\n%s", err, logs.String())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			b.mu.Lock()
			switch {
			case m.IsException():
				b.problems = append(b.problems, fmt.Sprintf("uncaught exception at %s:%d: %s", m.URL, m.Line+1, m.Text))
			case strings.Contains(m.Text, cspMarker):
				b.problems = append(b.problems, m.Text[strings.Index(m.Text, cspMarker):])
			case m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning:
				b.log = append(b.log, string(m.Type)+": "+m.Text)
			}
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("page: %s", p)
		}
		if t.Failed() && len(b.log) > 0 {
			t.Logf("page console:\n%s", strings.Join(b.log, "\n"))
		}
	})
	return ctx
}

// Wait polls the JavaScript expression expr in the page until it is
// true, for at most [WaitTimeout], and fails t with the page's text when
// it is not; what names the condition in the failure.
func Wait(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(WaitTimeout))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot saves a PNG of the whole page as <test name>-<name>.png in the
// browser's artifacts directory (see [NewBrowser]) and logs its path.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("ROSETTA_ARTIFACTS")
	if b, ok := ctx.Value(browserKey{}).(*browser); ok {
		dir = b.dir
	}
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(dir, unsafeName.ReplaceAllString(t.Name()+"-"+name, "_")+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", file)
}

// Run runs actions in the page, for at most [WaitTimeout], and fails t
// with the page's text when they fail; what names the step.
func Run(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, WaitTimeout)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
	}
}

// Eval is an action that runs the JavaScript statements js in the page.
func Eval(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool]("(() => {"+js+"; return true})()")(ctx, tg)
		return err
	})
}

// Click is an action that clicks the first element matching css.
func Click(css string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(css))
}

// Drawn is a JavaScript condition for [Wait]: some canvas under the
// elements matching css has a pixel drawn (a chart is not empty).
func Drawn(css string) string {
	return `[...document.querySelectorAll('` + css + ` canvas')].some((c) => {
		const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
		return false;
	})`
}
