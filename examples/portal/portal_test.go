package portal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/examples/library"
	"github.com/rosetta-gateway/rosetta/internal/gateway/gatewaytest"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/portal/portaltest"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// startLibrary serves the library example as library-server does (make
// run): reflection from library.binpb, so the portal shows the proto
// comments. It returns the address.
func startLibrary(t *testing.T) string {
	t.Helper()
	lis := testkit.ListenLocal(t)
	srv := grpc.NewServer()
	library.NewServer().Register(srv)
	files, err := library.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	opts := reflection.ServerOptions{Services: srv, DescriptorResolver: files, ExtensionResolver: protoregistry.GlobalTypes}
	reflectionpb.RegisterServerReflectionServer(srv, reflection.NewServerV1(opts))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

const (
	// demoConfig is the config make run starts.
	demoConfig = "../rosetta.yaml"
	// demoKey is the demo consumer's key in demoConfig.
	demoKey = "demo-key-0123456789abcdef"
	// demoAdminToken is the admin token in demoConfig, which the portal's
	// analytics ask for.
	demoAdminToken = "demo-admin-token-0123456789"
	// libraryAPI is the library's API in the portal's catalog, and
	// libraryService its one version's service.
	libraryAPI     = "rosetta.examples.library.LibraryService"
	libraryService = "rosetta.examples.library.v1.LibraryService"
)

// startDemo starts a gateway with the demo config in front of backend,
// with its listener and admin addresses moved to 127.0.0.1:0, and
// returns the gateway's origin.
func startDemo(t *testing.T, backend string) string {
	t.Helper()
	file, err := filepath.Abs(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read the demo config: %v", err)
	}
	yaml := string(data)
	for _, r := range []struct{ what, old, new string }{
		{"listener", `address: "127.0.0.1:8080"`, `address: "127.0.0.1:0"`},
		{"admin", `address: "127.0.0.1:9901"`, `address: "127.0.0.1:0"`},
		{"upstream", `targets: ["127.0.0.1:9000"]`, fmt.Sprintf("targets: [%q]", backend)},
	} {
		if n := strings.Count(yaml, r.old); n != 1 {
			t.Fatalf("%s: the %s is no longer `%s` (found %d times): update startDemo", demoConfig, r.what, r.old, n)
		}
		yaml = strings.Replace(yaml, r.old, r.new, 1)
	}
	cfg, err := config.Parse(file, []byte(yaml), nil)
	if err != nil {
		t.Fatalf("demo config: %v", err)
	}
	return gatewaytest.URL(gatewaytest.Start(t, cfg))
}

// getJSON GETs url with headers and decodes its JSON answer into v; the
// answer must be 200.
func getJSON(url string, headers map[string]string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for k, val := range headers {
		req.Header.Set(k, val)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// pollUntil calls check until it reports done, for at most
// portaltest.WaitTimeout, and fails t with its last state otherwise.
func pollUntil(t *testing.T, what string, check func() (done bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(portaltest.WaitTimeout)
	for {
		done, state := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v; last: %s", what, portaltest.WaitTimeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// usageOf returns the calls in the demo consumer's usage (the portal's
// api/me/usage over the last 24 hours).
func usageOf(origin string) (int64, error) {
	var u struct {
		Rows []struct {
			Calls int64 `json:"calls"`
		} `json:"rows"`
	}
	if err := getJSON(origin+"/portal/api/me/usage?window=24h", map[string]string{"X-API-Key": demoKey}, &u); err != nil {
		return 0, err
	}
	var n int64
	for _, r := range u.Rows {
		n += r.Calls
	}
	return n, nil
}

// callsByConsumer returns the analytics' calls of the last 24 hours by
// consumer ("" for anonymous calls), as the portal's operator page asks
// for them.
func callsByConsumer(origin string) (map[string]int64, error) {
	var res struct {
		Series []struct {
			Labels map[string]string `json:"labels"`
			Totals struct {
				Calls int64 `json:"calls"`
			} `json:"totals"`
		} `json:"series"`
	}
	if err := getJSON(origin+"/portal/api/analytics?window=24h&group_by=consumer", map[string]string{"Authorization": "Bearer " + demoAdminToken}, &res); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, s := range res.Series {
		out[s.Labels["consumer"]] += s.Totals.Calls
	}
	return out, nil
}

// readmeShot saves a 1280x800 screenshot of the page's viewport as name
// in $ROSETTA_README_SHOTS (the README's pictures), when that is set.
func readmeShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("ROSETTA_README_SHOTS")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("README screenshots: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("README screenshot %s: set the viewport: %v", name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("README screenshot %s: %v", name, err)
	}
	if err := chromedp.Do(ctx, chromedp.ResetViewport()); err != nil {
		t.Fatalf("README screenshot %s: reset the viewport: %v", name, err)
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatalf("README screenshot: %v", err)
	}
	t.Logf("README screenshot: %s", file)
}

// TestPortalDemo walks the demo's developer portal in headless Chromium,
// against a real gateway running the demo config in front of the real
// library backend: the catalog; swagger-ui's try it out on ListShelves;
// the WatchBooks (server stream, over SSE) and Chat (bidi, over the
// WebSocket bridge) consoles; sign-in with the demo consumer's key, whose
// quota and usage move by exactly the calls made with the key; and the
// operator's analytics (no admin token in the demo: the browser is a
// loopback client), whose charts and totals show those calls.
func TestPortalDemo(t *testing.T) {
	ctx := portaltest.NewBrowser(t) // skips under -short
	origin := startDemo(t, startLibrary(t))

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		portaltest.Run(t, ctx, what, actions...)
	}
	eval, click, drawn := portaltest.Eval, portaltest.Click, portaltest.Drawn
	wait := func(what, expr string) {
		t.Helper()
		portaltest.Wait(t, ctx, what, expr)
	}
	// Leave the page first when the test ends, so that no stream of the
	// page outlives the gateway (cleanups run last-in first-out).
	t.Cleanup(func() {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = chromedp.Do(lctx, chromedp.Navigate("about:blank"))
	})

	// 1. The catalog lists the library API, whose one version has streams.
	card := `.api-card[data-api="` + libraryAPI + `"]`
	run("open the portal", chromedp.Navigate(origin+"/portal/"))
	wait("catalog with the library API", `document.title === "Library APIs" &&
		document.querySelector('`+card+` h2 a')?.textContent === "Library Service" &&
		document.querySelector('`+card+` .version[data-version="v1"]')?.textContent.includes("`+libraryService+`") &&
		document.querySelector('`+card+` .version[data-version="v1"]')?.textContent.includes("12 methods · 2 streaming")`)
	portaltest.Screenshot(t, ctx, "portal-catalog")

	// 2. The API page; swagger-ui's try it out on GET /v1/shelves answers
	// the seeded shelves.
	op := `#swagger #operations-LibraryService-LibraryService_ListShelves`
	run("open the library API", click(card+` h2 a`))
	wait("library v1 with swagger-ui", `location.hash === "#/api/`+libraryAPI+`" &&
		document.querySelector(".tab.active")?.dataset.version === "v1" &&
		document.querySelector(".version-page")?.dataset.service === "`+libraryService+`" &&
		!!document.querySelector('`+op+`')`)
	readmeShot(t, ctx, "portal.png")
	tryListShelves := func() {
		t.Helper()
		run("try ListShelves", click(op+` .opblock-summary-control`), click(op+` .try-out__btn`), click(op+` .btn.execute`))
		wait("ListShelves answer", `[...document.querySelectorAll('`+op+` .live-responses-table .response-col_status')].some((e) => e.textContent.trim() === "200") &&
			document.querySelector('`+op+` .live-responses-table')?.textContent.includes('"theme": "Science fiction"') &&
			document.querySelector('`+op+` .live-responses-table')?.textContent.includes('"theme": "Computer science"')`)
	}
	tryListShelves()
	portaltest.Screenshot(t, ctx, "portal-try-it")

	// 3. The streaming consoles: WatchBooks replays shelves/1 over SSE;
	// Chat answers a message over the WebSocket bridge.
	watch := `details[data-method="/` + libraryService + `/WatchBooks"]`
	run("start WatchBooks",
		click(watch+" summary"),
		chromedp.SetValue(chromedp.CSS(watch+" textarea"), `{"parent": "shelves/1", "replayOnly": true}`),
		click(watch+` [data-action="start"]`))
	wait("WatchBooks events", `!!document.querySelector('`+watch+` .console[data-console="sse"]') &&
		document.querySelectorAll('`+watch+` .log li.received').length === 2 &&
		document.querySelectorAll('`+watch+` .log li.received')[0].textContent.includes('"title": "Dune"') &&
		document.querySelectorAll('`+watch+` .log li.received')[1].textContent.includes('"title": "The Left Hand of Darkness"') &&
		document.querySelector('`+watch+` .console-status').textContent === "ended"`)
	chat := `details[data-method="/` + libraryService + `/Chat"]`
	run("connect Chat", click(chat+" summary"), click(chat+` [data-action="connect"]`))
	wait("Chat socket open", `document.querySelector('`+chat+` .console-status').textContent === "open · rosetta.json.v1"`)
	run("send a chat message",
		chromedp.SetValue(chromedp.CSS(chat+" textarea"), `{"user": "ann", "text": "hello from the portal"}`),
		click(chat+` [data-action="send"]`))
	wait("Chat reply", `[...document.querySelectorAll('`+chat+` .log li.received')].some((li) =>
		li.textContent.includes('"user": "library"') && li.textContent.includes('"text": "ann said: hello from the portal"'))`)
	run("close send", click(chat+` [data-action="close-send"]`))
	wait("Chat ends OK", `!!document.querySelector('`+chat+` .log li.status.ok') &&
		document.querySelector('`+chat+` .console-status').textContent === "closed 1000"`)
	portaltest.Screenshot(t, ctx, "portal-console")

	// So far every call was anonymous: ListShelves, WatchBooks, Chat.
	const anonymous = 3
	pollUntil(t, "the anonymous calls in analytics", func() (bool, string) {
		by, err := callsByConsumer(origin)
		return err == nil && by[""] == anonymous, fmt.Sprint(by, err)
	})

	// 4. Sign in as the demo consumer: no usage yet. Calls with the key,
	// from Go and from swagger-ui (which sends the signed-in key), move
	// the usage and the quota by exactly those calls.
	// quotaStat reads one statistic ("Used", "Limit", "Remaining") of the
	// quota card; usageCalls reads the usage table's total (0 when the
	// window has no call), null while the usage loads.
	const readers = `const quotaStat = (name) => [...document.querySelectorAll("#quota dl.stats > div")]
			.find((d) => d.querySelector("dt").textContent === name)?.querySelector("dd").textContent;
		const usageCalls = () => document.querySelector("#usage .empty") ? 0 :
			document.querySelector("#usage .usage-table tfoot td:nth-child(4)") ?
				Number(document.querySelector("#usage .usage-table tfoot td:nth-child(4)").textContent.replace(/\D/g, "")) : null;`
	run("go to sign-in", eval(`location.hash = "#/signin"`))
	wait("sign-in form", `!!document.getElementById("signin-form")`)
	run("sign in", chromedp.SetValue(chromedp.ID("signin-secret"), demoKey), click(`#signin-form button[type=submit]`))
	wait("the demo consumer's page, before the calls", `(() => {`+readers+`
		return location.hash === "#/me" && document.getElementById("me-name")?.textContent === "demo" &&
			document.querySelector(".page-head strong")?.textContent === "free" &&
			quotaStat("Limit") === "1,000" && quotaStat("Used") === "0" && quotaStat("Remaining") === "1,000" &&
			usageCalls() === 0;
	})()`)

	keyed := []string{"/v1/shelves", "/v1/shelves/1", "/v1/shelves/2/books"}
	for _, p := range keyed {
		req, err := http.NewRequest(http.MethodGet, origin+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("apikey", demoKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s with the demo key: got HTTP %d; want 200", p, resp.StatusCode)
		}
	}
	run("open the library API, signed in", eval(`location.hash = "#/api/`+libraryAPI+`"`))
	wait("swagger-ui", `!!document.querySelector('`+op+`')`)
	tryListShelves()
	calls := len(keyed) + 1
	pollUntil(t, "the keyed calls in the demo consumer's usage", func() (bool, string) {
		n, err := usageOf(origin)
		return err == nil && n == int64(calls), fmt.Sprint(n, err)
	})
	run("back to the account", eval(`location.hash = "#/me"`))
	wait("the demo consumer's page, after the calls", fmt.Sprintf(`(() => {`+readers+`
		return location.hash === "#/me" && document.getElementById("me-name")?.textContent === "demo" &&
			quotaStat("Used") === "%d" && quotaStat("Remaining") === "%d" && usageCalls() === %d &&
			%s;
	})()`, calls, 1000-calls, calls, drawn("#usage")))
	portaltest.Screenshot(t, ctx, "portal-me")

	// 5. Analytics: the page asks for the demo's admin token. The charts
	// are drawn, and the totals by consumer count the calls above.
	pollUntil(t, "every call in analytics", func() (bool, string) {
		by, err := callsByConsumer(origin)
		return err == nil && by[""] == anonymous && by["demo"] == int64(calls), fmt.Sprint(by, err)
	})
	run("open analytics", eval(`location.hash = "#/analytics"`))
	wait("the admin token form", `!!document.getElementById("admin-form")`)
	run("enter the admin token", chromedp.SetValue(chromedp.ID("admin-token"), demoAdminToken),
		click(`#admin-form button[type=submit]`))
	wait("analytics by API", `document.querySelectorAll(".chart canvas").length === 4 && `+drawn(`.chart[data-chart="calls"]`)+` &&
		[...document.querySelectorAll(".totals-table tbody tr")].some((tr) =>
			tr.cells[0].textContent === "`+libraryService+`" && tr.cells[1].textContent === "`+strconv.Itoa(anonymous+calls)+`")`)
	run("group by consumer", eval(`const s = document.getElementById("an-group"); s.value = "consumer"; s.dispatchEvent(new Event("change"))`))
	wait("analytics by consumer", `document.querySelectorAll(".chart canvas").length === 4 && `+drawn(`.chart[data-chart="calls"]`)+` &&
		[...document.querySelectorAll(".totals-table tbody tr")].some((tr) =>
			tr.cells[0].textContent === "demo" && tr.cells[1].textContent === "`+strconv.Itoa(calls)+`") &&
		[...document.querySelectorAll(".totals-table tbody tr")].some((tr) =>
			tr.cells[0].textContent === "(anonymous)" && tr.cells[1].textContent === "`+strconv.Itoa(anonymous)+`")`)
	portaltest.Screenshot(t, ctx, "portal-analytics")
	readmeShot(t, ctx, "analytics.png")
}
