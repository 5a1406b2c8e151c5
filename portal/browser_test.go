package portal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/portal"
	"github.com/rosetta-gateway/rosetta/portal/portaltest"
)

// fakeAPI stands in for the gateway beside the portal, on the same
// origin: the REST, SSE, Connect and WebSocket endpoints the UI calls for
// library v1 and v2, each requiring alice's key (X-API-Key, or ?apikey=
// on WebSockets).
func fakeAPI(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasSuffix(p, "/Chat") || strings.HasSuffix(p, "/Tail") {
		bridge(w, r, strings.HasSuffix(p, "/Tail"))
		return
	}
	if r.Header.Get("X-API-Key") != fixtureKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"code":16,"message":"missing or unknown API key"}`)
		return
	}
	switch {
	case strings.HasSuffix(p, "/books:watch") && r.Header.Get("Accept") == "text/event-stream":
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i, title := range []string{"Dune", "Emma", "Ulysses"} {
			fmt.Fprintf(w, "id: %d\ndata: {\"title\":%q}\n\n", i+1, title)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Fprint(w, "event: end\ndata: {}\n\n")
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/ListBooks") && r.Header.Get("Content-Type") == "application/json":
		// Connect's unary protocol with JSON.
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"code":"invalid_argument","message":"bad JSON"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"books":[{"title":"Emma","shelf":%q}]}`, fmt.Sprint(req["shelf"]))
	case strings.HasPrefix(p, "/v1/shelves/") || strings.HasPrefix(p, "/v2/shelves/"):
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"books":[{"title":"Dune","shelf":%q}]}`, strings.Split(p, "/")[3])
	default:
		http.NotFound(w, r)
	}
}

// bridge is a WebSocket bridge in JSON mode for LibraryService.Chat
// (bidi: it echoes each message and answers {"@close_send": true} with an
// OK @status frame) and LibraryService.Tail (server stream: after its one
// message, two frames and the @status frame).
func bridge(w http.ResponseWriter, r *http.Request, serverStream bool) {
	if r.URL.Query().Get("apikey") != fixtureKey {
		http.Error(w, `{"code":16,"message":"missing API key"}`, http.StatusUnauthorized)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"rosetta.json.v1"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var msg map[string]any
		if json.Unmarshal(data, &msg) != nil {
			_ = c.Close(1007, "not JSON")
			return
		}
		if serverStream {
			for i := range 2 {
				_ = c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"line":"shelf %v line %d"}`, msg["shelf"], i+1))
			}
			msg = map[string]any{"@close_send": true}
		}
		if msg["@close_send"] == true {
			_ = c.Write(ctx, websocket.MessageText, []byte(`{"@status":{"code":0,"message":"","details":[]},"@headers":{},"@trailers":{}}`))
			_ = c.Close(websocket.StatusNormalClosure, "")
			return
		}
		reply, _ := json.Marshal(map[string]string{"user": "library", "text": fmt.Sprintf("%v said: %v", msg["user"], msg["text"])})
		if err := c.Write(ctx, websocket.MessageText, reply); err != nil {
			return
		}
	}
}

// startPortal serves the portal at /portal beside fakeAPI on 127.0.0.1:0
// and returns its origin.
func startPortal(t *testing.T, f *fixture) string {
	t.Helper()
	lis := testkit.ListenLocal(t)
	p := portal.New(portal.Options{Path: "/portal", SelfService: true, Source: f})
	mux := http.NewServeMux()
	mux.Handle("/portal/", p)
	mux.Handle("/portal", p)
	mux.HandleFunc("/", fakeAPI)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + lis.Addr().String()
}

// TestBrowser walks the portal in headless Chromium: the catalog, an API
// page with swagger-ui (try it out included), sign-in and the account page
// (usage chart and table, a new key), the SSE and WebSocket consoles, and
// the analytics page with its charts.
func TestBrowser(t *testing.T) {
	f := newFixture()
	origin := startPortal(t, f)
	ctx := portaltest.NewBrowser(t)

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		portaltest.Run(t, ctx, what, actions...)
	}
	eval, click := portaltest.Eval, portaltest.Click
	wait := func(what, expr string) {
		t.Helper()
		portaltest.Wait(t, ctx, what, expr)
	}

	// The catalog: both APIs, v1 of library deprecated, v1 of billing retired.
	run("open the portal", chromedp.Navigate(origin+"/portal"))
	wait("catalog", `document.querySelectorAll(".api-card").length === 2 &&
		!!document.querySelector('.api-card[data-api="library"] .version.is-deprecated[data-version="v1"] .badge.deprecated') &&
		!!document.querySelector('.api-card[data-api="billing"] .version.is-retired .badge.retired') &&
		document.title === "Fixture APIs"`)
	portaltest.Screenshot(t, ctx, "catalog")

	// An API page opens on its newest current version, with swagger-ui.
	run("open library", click(`.api-card[data-api="library"] h2 a`))
	wait("library v2 with swagger-ui", `location.hash === "#/api/library" &&
		document.querySelector(".tab.active")?.dataset.version === "v2" &&
		document.querySelectorAll("#swagger .opblock").length === 2`)
	portaltest.Screenshot(t, ctx, "api")
	run("open v1", click(`.tab[data-version="v1"]`))
	wait("library v1: deprecation banner, swagger-ui", `document.querySelector(".version-page .banner.deprecated")?.textContent.includes("2026-06-30") &&
		document.querySelectorAll("#swagger .opblock").length === 2`)

	// Sign in with the key; the account page shows usage.
	run("go to sign-in", eval(`location.hash = "#/signin"`))
	wait("sign-in form", `!!document.getElementById("signin-form")`)
	run("sign in", chromedp.SetValue(chromedp.ID("signin-secret"), fixtureKey), click(`#signin-form button[type=submit]`))
	wait("account page", `document.getElementById("me-name")?.textContent === "alice" &&
		document.getElementById("quota-remaining")?.textContent === "750" &&
		document.querySelectorAll("#usage .usage-table tbody tr").length === 4 &&
		!!document.querySelector("#usage canvas")`)
	portaltest.Screenshot(t, ctx, "me")
	run("create a key", click("#create-key"))
	wait("new key shown once", `document.getElementById("new-key")?.textContent.includes("rk_new_secret_alice")`)

	// Try it out in swagger-ui: the call carries the signed-in key.
	run("open library v2", eval(`location.hash = "#/api/library/v2"`))
	wait("swagger-ui", `document.querySelectorAll("#swagger .opblock").length === 2`)
	tail := `details[data-method="/library.v2.LibraryService/Tail"]`
	run("start Tail over the bridge", click(tail+" summary"), click(tail+` [data-action="start"]`))
	wait("Tail frames", `document.querySelector('`+tail+`').dataset.kind === "server_stream" &&
		!!document.querySelector('`+tail+` .console[data-console="websocket"]') &&
		document.querySelectorAll('`+tail+` .log li.received').length === 2 &&
		!!document.querySelector('`+tail+` .log li.status.ok') &&
		document.querySelector('`+tail+` .console-status').textContent === "closed 1000"`)
	run("try ListBooks",
		click(`#swagger .opblock-get .opblock-summary-control`),
		click(`#swagger .try-out__btn`),
		chromedp.SendKeys(chromedp.CSS(`#swagger tr[data-param-name="shelf"] input`), "7"),
		click(`#swagger .btn.execute`))
	wait("try-it answer", `[...document.querySelectorAll("#swagger .live-responses-table .response-col_status")].some(e => e.textContent.trim() === "200") &&
		document.querySelector("#swagger .live-responses-table")?.textContent.includes('"shelf": "7"')`)
	portaltest.Screenshot(t, ctx, "try-it")

	// The server-streaming console over SSE, the bidi console over the bridge.
	run("open library v1", eval(`location.hash = "#/api/library/v1"`))
	watch := `details[data-method="/library.v1.LibraryService/WatchBooks"]`
	wait("methods", `!!document.querySelector('`+watch+`')`)
	run("start WatchBooks", click(watch+" summary"), click(watch+` [data-action="start"]`))
	wait("SSE events", `document.querySelectorAll('`+watch+` .log li.received').length === 3 &&
		document.querySelector('`+watch+` .console-status').textContent === "ended" &&
		document.querySelector('`+watch+` .log').textContent.includes("Ulysses")`)
	list := `details[data-method="/library.v1.LibraryService/ListBooks"]`
	// A message that is not JSON is refused in the page, nothing sent.
	run("send broken JSON",
		click(list+" summary"),
		chromedp.SetValue(chromedp.CSS(list+" textarea"), `{"shelf": `),
		click(list+` [data-action="send"]`))
	wait("JSON error shown", `document.querySelector('`+list+` .console-status').textContent.startsWith("The message is not valid JSON: ") &&
		document.querySelector('`+list+` .console-status').classList.contains("bad") &&
		document.querySelectorAll('`+list+` .log li').length === 0`)
	run("send ListBooks over Connect",
		chromedp.SetValue(chromedp.CSS(list+" textarea"), `{"shelf": "3"}`),
		click(list+` [data-action="send"]`))
	wait("Connect answer", `document.querySelector('`+list+` .console-status').textContent === "HTTP 200" &&
		document.querySelector('`+list+` .log li.received').textContent.includes('"shelf": "3"')`)
	chatSel := `details[data-method="/library.v1.LibraryService/Chat"]`
	run("connect Chat", click(chatSel+" summary"), click(chatSel+` [data-action="connect"]`))
	wait("socket open", `document.querySelector('`+chatSel+` .console-status').textContent === "open · rosetta.json.v1"`)
	run("send a message",
		chromedp.SetValue(chromedp.CSS(chatSel+" textarea"), `{"user": "ann", "text": "hello"}`),
		click(chatSel+` [data-action="send"]`))
	wait("echo", `document.querySelector('`+chatSel+` .log li.received')?.textContent.includes("ann said: hello")`)
	run("close send", click(chatSel+` [data-action="close-send"]`))
	wait("status frame and close", `!!document.querySelector('`+chatSel+` .log li.status.ok') &&
		document.querySelector('`+chatSel+` .console-status').textContent === "closed 1000"`)
	portaltest.Screenshot(t, ctx, "consoles")

	// Analytics: the admin token, charts drawn, totals, deprecated calls.
	run("open analytics", eval(`location.hash = "#/analytics"`))
	wait("token form", `!!document.getElementById("admin-form")`)
	run("enter the token", chromedp.SetValue(chromedp.ID("admin-token"), fixtureAdmin), click(`#admin-form button[type=submit]`))
	drawn := portaltest.Drawn(`.chart[data-chart="calls"]`)
	wait("analytics", `document.querySelectorAll(".chart canvas").length === 4 &&
		document.querySelectorAll(".totals-table tbody tr").length === 2 &&
		document.querySelectorAll("#deprecated-calls .deprecated-table tbody tr").length === 6 && `+drawn)
	run("group by consumer", eval(`const s = document.getElementById("an-group"); s.value = "consumer"; s.dispatchEvent(new Event("change"))`))
	wait("by consumer", `[...document.querySelectorAll(".totals-table tbody tr td:first-child")].map((td) => td.textContent).join() === "bob,alice" &&
		document.querySelectorAll("#deprecated-calls .deprecated-table tbody tr").length === 6 && `+drawn)
	portaltest.Screenshot(t, ctx, "analytics")

	f.mu.Lock()
	var deprecatedQuery string
	for _, q := range f.queries {
		if q.Get("group_by") == "method,consumer" {
			deprecatedQuery = strings.Join(q["method"], " ")
		}
	}
	f.mu.Unlock()
	if want := "/library.v1.LibraryService/ListBooks /library.v1.LibraryService/WatchBooks /library.v1.LibraryService/Chat"; deprecatedQuery != want {
		t.Errorf("deprecated calls query: got methods %q; want %q", deprecatedQuery, want)
	}

	// Leave the page so that no stream outlives the test.
	run("leave", chromedp.Navigate("about:blank"))
}
