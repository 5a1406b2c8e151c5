package portal_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/portal"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// do sends one request to a portal over f and returns the recorded answer.
func do(t *testing.T, o portal.Options, method, path, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	for _, kv := range header {
		k, v, _ := strings.Cut(kv, ": ")
		r.Header.Add(k, v)
	}
	w := httptest.NewRecorder()
	portal.New(o).ServeHTTP(w, r)
	return w
}

func options(f *fixture, selfService bool) portal.Options {
	return portal.Options{Path: "/portal", SelfService: selfService, Source: f}
}

const (
	withKey   = "X-API-Key: " + fixtureKey
	withJWT   = "Authorization: Bearer " + fixtureJWT
	withAdmin = "Authorization: Bearer " + fixtureAdmin
	asJSON    = "Content-Type: application/json"
)

// TestAPIErrors checks the status and the exact body of every JSON API
// error, and the headers that go with some.
func TestAPIErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		selfService  bool
		method, path string
		body         string
		header       []string
		status       int
		want         string            // exact body
		wantHeader   map[string]string // exact values
	}{
		{name: "unknown-path", method: "GET", path: "/portal/api/nope", status: 404, want: `{"error":"no portal API at /portal/api/nope"}`},
		{name: "api-root", method: "GET", path: "/portal/api", status: 404, want: `{"error":"no portal API at /portal/api"}`},
		{name: "unknown-asset", method: "GET", path: "/portal/nope.js", status: 404, want: `{"error":"not found"}`},
		{name: "outside-prefix", method: "GET", path: "/elsewhere", status: 404, want: `{"error":"not found"}`},
		{name: "prefix-lookalike", method: "GET", path: "/portalx", status: 404, want: `{"error":"not found"}`},
		{name: "asset-post", method: "POST", path: "/portal/app.js", status: 405, want: `{"error":"method POST not allowed; use GET"}`, wantHeader: map[string]string{"Allow": "GET, HEAD"}},
		{name: "catalog-post", method: "POST", path: "/portal/api/catalog", status: 405, want: `{"error":"method POST not allowed; use GET"}`, wantHeader: map[string]string{"Allow": "GET, HEAD"}},
		{name: "signin-get", method: "GET", path: "/portal/api/signin", status: 405, want: `{"error":"method GET not allowed; use POST"}`, wantHeader: map[string]string{"Allow": "POST"}},

		{name: "openapi-unknown-service", method: "GET", path: "/portal/api/openapi/nope.v1.Nope", status: 404, want: `{"error":"unknown service \"nope.v1.Nope\""}`},
		{name: "openapi-no-service", method: "GET", path: "/portal/api/openapi/", status: 404, want: `{"error":"no portal API at /portal/api/openapi/"}`},

		{name: "signin-bad-json", method: "POST", path: "/portal/api/signin", body: `{"api_key":`, header: []string{asJSON}, status: 400, want: `{"error":"bad JSON body: unexpected EOF"}`},
		{name: "signin-not-object", method: "POST", path: "/portal/api/signin", body: `"key"`, status: 400, want: `{"error":"bad JSON body: json: cannot unmarshal string into Go value of type portal.Credential"}`},
		{name: "signin-unknown-field", method: "POST", path: "/portal/api/signin", body: `{"password":"x"}`, status: 400, want: `{"error":"bad JSON body: json: unknown field \"password\""}`},
		{name: "signin-two-values", method: "POST", path: "/portal/api/signin", body: `{"api_key":"a"} {}`, status: 400, want: `{"error":"bad JSON body: more than one JSON value"}`},
		{name: "signin-empty", method: "POST", path: "/portal/api/signin", body: `{}`, status: 400, want: `{"error":"give one of \"api_key\" and \"jwt\""}`},
		{name: "signin-both", method: "POST", path: "/portal/api/signin", body: `{"api_key":"a","jwt":"b"}`, status: 400, want: `{"error":"give one of \"api_key\" and \"jwt\""}`},
		{name: "signin-form", method: "POST", path: "/portal/api/signin", body: `api_key=x`, header: []string{"Content-Type: application/x-www-form-urlencoded"}, status: 415, want: `{"error":"Content-Type must be application/json"}`},
		{name: "signin-unknown-key", method: "POST", path: "/portal/api/signin", body: `{"api_key":"wrong"}`, header: []string{asJSON}, status: 401, want: `{"error":"unknown API key"}`},
		{name: "signin-bad-jwt", method: "POST", path: "/portal/api/signin", body: `{"jwt":"wrong"}`, status: 401, want: `{"error":"invalid token"}`},

		{name: "me-no-credential", method: "GET", path: "/portal/api/me", status: 401, want: `{"error":"sign in: send an API key in X-API-Key or a JWT as Authorization: Bearer <token>"}`, wantHeader: map[string]string{"WWW-Authenticate": `Bearer realm="portal"`}},
		{name: "me-basic-auth", method: "GET", path: "/portal/api/me", header: []string{"Authorization: Basic YTpi"}, status: 401, want: `{"error":"sign in: send an API key in X-API-Key or a JWT as Authorization: Bearer <token>"}`},
		{name: "me-unknown-key", method: "GET", path: "/portal/api/me", header: []string{"X-API-Key: wrong"}, status: 401, want: `{"error":"unknown API key"}`},
		{name: "me-bad-jwt", method: "GET", path: "/portal/api/me", header: []string{"Authorization: Bearer wrong"}, status: 401, want: `{"error":"invalid token"}`},
		{name: "usage-no-credential", method: "GET", path: "/portal/api/me/usage", status: 401, want: `{"error":"sign in: send an API key in X-API-Key or a JWT as Authorization: Bearer <token>"}`},
		{name: "usage-bad-window", method: "GET", path: "/portal/api/me/usage?window=2h", header: []string{withKey}, status: 400, want: `{"error":"window must be one of 1h, 24h, 7d, 30d"}`},

		{name: "create-key-self-service-off", method: "POST", path: "/portal/api/me/keys", header: []string{withKey}, status: 403, want: `{"error":"self-service key creation is off"}`},
		{name: "revoke-key-self-service-off", method: "DELETE", path: "/portal/api/me/keys/k-self", header: []string{withKey}, status: 403, want: `{"error":"self-service key revocation is off"}`},
		{name: "create-key-no-credential", selfService: true, method: "POST", path: "/portal/api/me/keys", status: 401, want: `{"error":"sign in: send an API key in X-API-Key or a JWT as Authorization: Bearer <token>"}`},
		{name: "create-key-get", selfService: true, method: "GET", path: "/portal/api/me/keys", header: []string{withKey}, status: 405, want: `{"error":"method GET not allowed; use POST"}`},
		{name: "revoke-unknown-key", selfService: true, method: "DELETE", path: "/portal/api/me/keys/k-nope", header: []string{withKey}, status: 404, want: `{"error":"key \"k-nope\": not found"}`},
		{name: "revoke-config-key", selfService: true, method: "DELETE", path: "/portal/api/me/keys/k-config", header: []string{withKey}, status: 403, want: `{"error":"key \"k-config\" comes from the config: forbidden"}`},
		{name: "revoke-nested-path", selfService: true, method: "DELETE", path: "/portal/api/me/keys/a/b", header: []string{withKey}, status: 404, want: `{"error":"no portal API at /portal/api/me/keys/a/b"}`},

		{name: "analytics-no-token", method: "GET", path: "/portal/api/analytics?window=1h", status: 401, want: `{"error":"admin token required: send Authorization: Bearer <admin token>"}`, wantHeader: map[string]string{"WWW-Authenticate": `Bearer realm="portal admin"`}},
		{name: "analytics-consumer-jwt", method: "GET", path: "/portal/api/analytics", header: []string{withJWT}, status: 401, want: `{"error":"admin token required: send Authorization: Bearer <admin token>"}`},
		{name: "analytics-bad-group", method: "GET", path: "/portal/api/analytics?group_by=color", header: []string{withAdmin}, status: 400, want: `{"error":"group_by \"color\": invalid request"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := do(t, options(newFixture(), tc.selfService), tc.method, tc.path, tc.body, tc.header...)
			if got := strings.TrimSuffix(w.Body.String(), "\n"); w.Code != tc.status || got != tc.want {
				t.Errorf("%s %s: got %d %s; want %d %s", tc.method, tc.path, w.Code, got, tc.status, tc.want)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type: got %q; want application/json", ct)
			}
			for k, v := range tc.wantHeader {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: got %q; want %q", k, got, v)
				}
			}
		})
	}
}

// TestAPIInternalError: a Source error without a sentinel is a 500 whose
// body hides the cause and carries an error ID, also in a header.
func TestAPIInternalError(t *testing.T) {
	t.Parallel()
	w := do(t, options(newFixture(), false), "GET", "/portal/api/analytics?group_by=boom", "", withAdmin)
	id := w.Header().Get("Rosetta-Error-Id")
	if w.Code != 500 || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) {
		t.Fatalf("got %d with Rosetta-Error-Id %q; want 500 with a 16-hex ID", w.Code, id)
	}
	if got, want := strings.TrimSpace(w.Body.String()), `{"error":"internal error (error ID `+id+`)"}`; got != want {
		t.Errorf("body: got %s; want %s", got, want)
	}
}

// decode reads a JSON answer into v after checking its status.
func decode(t *testing.T, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("got %d %s; want %d", w.Code, w.Body.String(), status)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q; want application/json", ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %s: %v", w.Body.String(), err)
	}
}

// TestAPI checks the successful answer of every endpoint.
func TestAPI(t *testing.T) {
	t.Parallel()
	t.Run("config", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			o    portal.Options
			want string
		}{
			{portal.Options{Path: "/portal", Title: "Acme", SelfService: true, Source: newFixture()}, `{"title":"Acme","self_service":true}`},
			{portal.Options{Path: "/portal", Source: newFixture()}, `{"title":"Fixture APIs","self_service":false}`},
		} {
			w := do(t, tc.o, "GET", "/portal/api/config", "")
			if got := strings.TrimSpace(w.Body.String()); w.Code != 200 || got != tc.want {
				t.Errorf("got %d %s; want 200 %s", w.Code, got, tc.want)
			}
		}
	})
	t.Run("catalog", func(t *testing.T) {
		t.Parallel()
		f := newFixture()
		var got portal.Catalog
		decode(t, do(t, options(f, false), "GET", "/portal/api/catalog", ""), 200, &got)
		if diff := cmp.Diff(f.Catalog(), &got); diff != "" {
			t.Errorf("catalog (-want +got):\n%s", diff)
		}
		// The JSON names the UI reads.
		w := do(t, options(f, false), "GET", "/portal/api/catalog", "")
		for _, name := range []string{`"apis"`, `"versions"`, `"full_name"`, `"request_example"`, `"auth_header"`, `"auth_query"`, `"deprecated"`, `"retired"`, `"sunset"`, `"http"`} {
			if !strings.Contains(w.Body.String(), name) {
				t.Errorf("catalog JSON lacks %s", name)
			}
		}
	})
	t.Run("openapi", func(t *testing.T) {
		t.Parallel()
		var doc map[string]any
		decode(t, do(t, options(newFixture(), false), "GET", "/portal/api/openapi/library.v1.LibraryService", ""), 200, &doc)
		if doc["openapi"] != "3.1.0" {
			t.Errorf("openapi: got %v; want 3.1.0", doc["openapi"])
		}
	})
	for _, cred := range []struct{ name, body, header string }{
		{"key", `{"api_key":"` + fixtureKey + `"}`, withKey},
		{"jwt", `{"jwt":"` + fixtureJWT + `"}`, withJWT},
	} {
		t.Run("signin/"+cred.name, func(t *testing.T) {
			t.Parallel()
			var c portal.Consumer
			decode(t, do(t, options(newFixture(), false), "POST", "/portal/api/signin", cred.body, asJSON), 200, &c)
			if c.Name != "alice" || c.Plan != "free" || len(c.Keys) != 2 || c.Quota == nil || c.Quota.Remaining != 750 {
				t.Errorf("got %+v; want alice on free with 2 keys and 750 remaining", c)
			}
		})
		t.Run("me/"+cred.name, func(t *testing.T) {
			t.Parallel()
			var c portal.Consumer
			decode(t, do(t, options(newFixture(), false), "GET", "/portal/api/me", "", cred.header), 200, &c)
			if c.Name != "alice" {
				t.Errorf("got %q; want alice", c.Name)
			}
			if cc := do(t, options(newFixture(), false), "GET", "/portal/api/me", "", cred.header).Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control: got %q; want no-store", cc)
			}
		})
	}
	for _, tc := range []struct {
		query string
		want  time.Duration
	}{{"", 24 * time.Hour}, {"?window=24h", 24 * time.Hour}, {"?window=30d", 30 * 24 * time.Hour}, {"?window=1h", time.Hour}} {
		t.Run("usage"+tc.query, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			var u struct {
				Rows []map[string]any `json:"rows"`
			}
			decode(t, do(t, options(f, false), "GET", "/portal/api/me/usage"+tc.query, "", withKey), 200, &u)
			if len(u.Rows) != 4 || u.Rows[0]["consumer"] != "alice" {
				t.Errorf("rows: got %v; want alice's 4 rows", u.Rows)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if got := f.usageTo.Sub(f.usageFrom); got != tc.want || time.Since(f.usageTo) > time.Minute {
				t.Errorf("window: got %v ending %v; want %v ending now", got, f.usageTo, tc.want)
			}
		})
	}
	t.Run("keys", func(t *testing.T) {
		t.Parallel()
		f := newFixture()
		o := options(f, true)
		var created struct {
			Key    portal.Key `json:"key"`
			Secret string     `json:"secret"`
		}
		decode(t, do(t, o, "POST", "/portal/api/me/keys", "", withJWT), 201, &created)
		if created.Secret != "rk_new_secret_alice" || created.Key.Source != "self-service" || created.Key.ID == "" {
			t.Errorf("created: got %+v; want a self-service key and its secret", created)
		}
		var revoked map[string]string
		decode(t, do(t, o, "DELETE", "/portal/api/me/keys/"+created.Key.ID, "", withKey), 200, &revoked)
		if revoked["revoked"] != created.Key.ID {
			t.Errorf("revoke: got %v; want {revoked: %s}", revoked, created.Key.ID)
		}
		var c portal.Consumer
		decode(t, do(t, o, "GET", "/portal/api/me", "", withKey), 200, &c)
		if len(c.Keys) != 2 {
			t.Errorf("keys after create and revoke: got %d; want 2", len(c.Keys))
		}
	})
	t.Run("analytics", func(t *testing.T) {
		t.Parallel()
		f := newFixture()
		var res struct {
			Step   string `json:"step"`
			Series []struct {
				Labels map[string]string `json:"labels"`
				Points []map[string]any  `json:"points"`
			} `json:"series"`
		}
		path := "/portal/api/analytics?window=1h&group_by=method,consumer&method=%2Fa.B%2FC&method=%2Fa.B%2FD"
		decode(t, do(t, options(f, false), "GET", path, "", withAdmin), 200, &res)
		if len(res.Series) != 4 || len(res.Series[0].Points) != 12 || res.Step != "1h" {
			t.Errorf("got %d series (step %q); want 4 of 12 points, step 1h", len(res.Series), res.Step)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		q := f.queries[0]
		if got := []string{q.Get("window"), q.Get("group_by"), strings.Join(q["method"], " ")}; !cmp.Equal(got, []string{"1h", "method,consumer", "/a.B/C /a.B/D"}) {
			t.Errorf("query passed through: got %q", got)
		}
	})
}

// TestUI checks the pages' redirect, security headers and caching.
func TestUI(t *testing.T) {
	t.Parallel()
	o := options(newFixture(), false)
	t.Run("redirect", func(t *testing.T) {
		t.Parallel()
		w := do(t, o, "GET", "/portal?x=1", "")
		if w.Code != 301 || w.Header().Get("Location") != "/portal/?x=1" {
			t.Errorf("got %d to %q; want 301 to /portal/?x=1", w.Code, w.Header().Get("Location"))
		}
	})
	t.Run("index", func(t *testing.T) {
		t.Parallel()
		w := do(t, o, "GET", "/portal/", "")
		if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || !strings.Contains(w.Body.String(), `<script type="module" src="app.js">`) {
			t.Fatalf("got %d %q; want the HTML page", w.Code, w.Header().Get("Content-Type"))
		}
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"Cache-Control":          "no-cache",
		} {
			if got := w.Header().Get(k); got != want {
				t.Errorf("%s: got %q; want %q", k, got, want)
			}
		}
		csp := w.Header().Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self';", "style-src 'self' 'unsafe-inline'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("CSP %q lacks %q", csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
			t.Errorf("CSP %q allows eval or inline scripts", csp)
		}
	})
	t.Run("api-headers", func(t *testing.T) {
		t.Parallel()
		w := do(t, o, "GET", "/portal/api/catalog", "")
		if w.Header().Get("Content-Security-Policy") == "" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("API answers lack the security headers: %v", w.Header())
		}
	})
	t.Run("etag", func(t *testing.T) {
		t.Parallel()
		w := do(t, o, "GET", "/portal/style.css", "")
		etag := w.Header().Get("ETag")
		if w.Code != 200 || etag == "" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
			t.Fatalf("got %d ETag %q type %q; want 200, an ETag, text/css", w.Code, etag, w.Header().Get("Content-Type"))
		}
		if w := do(t, o, "GET", "/portal/style.css", "", "If-None-Match: "+etag); w.Code != 304 || w.Body.Len() != 0 {
			t.Errorf("revalidation: got %d with %d bytes; want 304, empty", w.Code, w.Body.Len())
		}
	})
	t.Run("gzip", func(t *testing.T) {
		t.Parallel()
		plain := do(t, o, "GET", "/portal/vendor/swagger-ui-bundle.js", "")
		gz := do(t, o, "GET", "/portal/vendor/swagger-ui-bundle.js", "", "Accept-Encoding: gzip, br")
		if gz.Header().Get("Content-Encoding") != "gzip" || gz.Body.Len()*2 > plain.Body.Len() ||
			gz.Header().Get("ETag") == plain.Header().Get("ETag") || !strings.HasPrefix(gz.Header().Get("Content-Type"), "text/javascript") {
			t.Errorf("gzip: got %q, %d of %d bytes, ETags %q and %q; want a gzip body under half the size with its own ETag",
				gz.Header().Get("Content-Encoding"), gz.Body.Len(), plain.Body.Len(), gz.Header().Get("ETag"), plain.Header().Get("ETag"))
		}
		if w := do(t, o, "GET", "/portal/vendor/swagger-ui-bundle.js", "", "Accept-Encoding: gzip;q=0"); w.Header().Get("Content-Encoding") != "" {
			t.Errorf("gzip;q=0: got Content-Encoding %q; want none", w.Header().Get("Content-Encoding"))
		}
	})
	t.Run("root-mount", func(t *testing.T) {
		t.Parallel()
		root := portal.Options{Source: newFixture()}
		if w := do(t, root, "GET", "/", ""); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("GET /: got %d %q; want the page", w.Code, w.Header().Get("Content-Type"))
		}
		if w := do(t, root, "GET", "/api/config", ""); w.Code != 200 {
			t.Errorf("GET /api/config: got %d; want 200", w.Code)
		}
	})
}

// TestAssetsReferenced checks that every file the page and its modules
// name (src, href, imports, vendor/…) is embedded.
func TestAssetsReferenced(t *testing.T) {
	t.Parallel()
	o := options(newFixture(), false)
	ref := regexp.MustCompile(`(?:src|href)="([^"#:]+)"|from "\./([^"]+)"|"(vendor/[^"]+)"`)
	seen := map[string]bool{}
	queue := []string{"index.html"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		w := do(t, o, "GET", "/portal/"+name, "")
		if w.Code != 200 {
			t.Errorf("%s: got %d; want 200", name, w.Code)
			continue
		}
		if !strings.HasSuffix(name, ".html") && !strings.HasSuffix(name, ".js") || strings.HasPrefix(name, "vendor/") {
			continue
		}
		for _, m := range ref.FindAllStringSubmatch(w.Body.String(), -1) {
			for _, s := range m[1:] {
				if s != "" && !strings.HasPrefix(s, "api/") {
					queue = append(queue, s)
				}
			}
		}
	}
	for _, want := range []string{"app.js", "style.css", "console.js", "vendor/swagger-ui-bundle.js", "vendor/swagger-ui.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"} {
		if !seen[want] {
			t.Errorf("%s is not referenced from index.html", want)
		}
	}
}

var _ http.Handler = portal.New(portal.Options{Source: newFixture()})
