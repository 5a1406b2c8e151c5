package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/portal"
	"github.com/rosetta-gateway/rosetta/portal/portaltest"
)

// This file tests the developer portal's API against a real gateway and
// backend: the catalog, sign-in, usage, self-service keys that key-auth
// then accepts (and refuses once revoked), and the operator's analytics.

const portalConfig = `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
admin: { address: "127.0.0.1:0", token: portal-admin-token-0123 }
portal: { path: /dev, title: Test APIs, self_service: true }
plans:
  free: { quota: { limit: 100, period: month } }
consumers:
  - { name: alice, keys: [alice-portal-key-0123456789], plan: free }
routes:
  - selector: rosetta.testing.v1.EchoService.*
    deprecated: { sunset: 2027-06-30, link: "https://example.com/v2" }
    plugins:
      - key-auth: { header: x-api-key }
`

// portalDo sends one request to the portal or the API and decodes a JSON
// answer into out (when not nil); it returns the status and body.
func portalDo(t *testing.T, method, url, body string, hdr map[string]string, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testContext(t), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func TestPortalAPI(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	base, g := startGatewayOn(t, "relay", backend.Addr, portalConfig)
	portal := base + "/dev"

	// The catalog: the EchoService, its methods with their bindings, the
	// route's key-auth, and its deprecation.
	var cat struct {
		Title string `json:"title"`
		APIs  []struct {
			Name     string `json:"name"`
			Versions []struct {
				Version    string         `json:"version"`
				Service    string         `json:"service"`
				Deprecated map[string]any `json:"deprecated"`
				Methods    []struct {
					Name       string           `json:"name"`
					Kind       string           `json:"kind"`
					HTTP       []map[string]any `json:"http"`
					Auth       []string         `json:"auth"`
					AuthHeader string           `json:"auth_header"`
				} `json:"methods"`
			} `json:"versions"`
		} `json:"apis"`
	}
	if s, b := portalDo(t, "GET", portal+"/api/catalog", "", nil, &cat); s != 200 {
		t.Fatalf("catalog: %d %s", s, b)
	}
	if cat.Title != "Test APIs" {
		t.Errorf("title %q", cat.Title)
	}
	found := false
	for _, api := range cat.APIs {
		if api.Name != "rosetta.testing.EchoService" {
			continue
		}
		found = true
		v := api.Versions[0]
		if v.Version != "v1" || v.Service != "rosetta.testing.v1.EchoService" || v.Deprecated["sunset"] != "2027-06-30" {
			t.Errorf("version: %+v", v)
		}
		kinds := map[string]string{}
		for _, m := range v.Methods {
			kinds[m.Name] = m.Kind
			if m.Name == "Metadata" && (len(m.HTTP) == 0 || len(m.Auth) != 1 || m.Auth[0] != "key-auth" || m.AuthHeader != "x-api-key") {
				t.Errorf("Metadata: %+v", m)
			}
		}
		if kinds["BidiStream"] != "bidi_stream" || kinds["ServerStream"] != "server_stream" || kinds["Metadata"] != "unary" {
			t.Errorf("kinds: %v", kinds)
		}
	}
	if !found {
		t.Fatalf("the catalog has no rosetta.testing.EchoService: %+v", cat)
	}
	if s, b := portalDo(t, "GET", portal+"/api/openapi/rosetta.testing.v1.EchoService", "", nil, nil); s != 200 || !strings.Contains(b, `"/v1/metadata"`) {
		t.Errorf("openapi: %d %.200s", s, b)
	}
	if s, b := portalDo(t, "GET", portal+"/api/openapi/nope.v1.Nope", "", nil, nil); s != 404 || !strings.Contains(b, `no service \"nope.v1.Nope\"`) {
		t.Errorf("unknown service: %d %s", s, b)
	}

	// Sign-in: a wrong key, then alice's.
	if s, b := portalDo(t, "POST", portal+"/api/signin", `{"api_key":"wrong"}`, nil, nil); s != 401 || !strings.Contains(b, "invalid API key") {
		t.Errorf("wrong key: %d %s", s, b)
	}
	alice := map[string]string{"X-API-Key": "alice-portal-key-0123456789"}
	call := func(key string) (int, string) {
		return portalDo(t, "POST", base+"/v1/metadata", `{}`, map[string]string{"X-Api-Key": key}, nil)
	}
	for i := 0; i < 2; i++ {
		if s, b := call("alice-portal-key-0123456789"); s != 200 {
			t.Fatalf("alice's call: %d %s", s, b)
		}
	}
	var me struct {
		Name  string `json:"name"`
		Plan  string `json:"plan"`
		Keys  []struct{ ID, Masked, Source string }
		Quota struct{ Limit, Used, Remaining int64 }
	}
	if s, b := portalDo(t, "GET", portal+"/api/me", "", alice, &me); s != 200 {
		t.Fatalf("me: %d %s", s, b)
	}
	if me.Name != "alice" || me.Plan != "free" || me.Quota.Limit != 100 || me.Quota.Used != 2 || me.Quota.Remaining != 98 {
		t.Errorf("me: %+v", me)
	}
	if len(me.Keys) != 1 || me.Keys[0].Source != "config" || strings.Contains(me.Keys[0].Masked, "portal-key") {
		t.Errorf("keys: %+v", me.Keys)
	}
	var usage struct {
		Rows []struct {
			Method string `json:"method"`
			Calls  int64  `json:"calls"`
		} `json:"rows"`
	}
	if s, b := portalDo(t, "GET", portal+"/api/me/usage?window=24h", "", alice, &usage); s != 200 {
		t.Fatalf("usage: %d %s", s, b)
	}
	if len(usage.Rows) != 1 || usage.Rows[0].Calls != 2 || usage.Rows[0].Method != "/rosetta.testing.v1.EchoService/Metadata" {
		t.Errorf("usage: %+v", usage)
	}

	// Self-service: a new key works on the API at once, and not once
	// revoked.
	var created struct {
		Key    struct{ ID string } `json:"key"`
		Secret string              `json:"secret"`
	}
	if s, b := portalDo(t, "POST", portal+"/api/me/keys", "", alice, &created); s != 200 && s != 201 {
		t.Fatalf("create key: %d %s", s, b)
	}
	if s, b := call(created.Secret); s != 200 {
		t.Fatalf("call with the self-service key: %d %s", s, b)
	}
	if s, b := portalDo(t, "DELETE", portal+"/api/me/keys/"+created.Key.ID, "", alice, nil); s/100 != 2 {
		t.Fatalf("revoke: %d %s", s, b)
	}
	if s, b := call(created.Secret); s != 401 || !strings.Contains(b, "invalid API key") {
		t.Errorf("call with the revoked key: %d %s", s, b)
	}
	if s, b := portalDo(t, "DELETE", portal+"/api/me/keys/config-0", "", alice, nil); s != 403 {
		t.Errorf("revoke a config key: %d %s", s, b)
	}

	// Analytics: the admin token, and the calls made (all of them alice's,
	// on the deprecated route).
	if s, b := portalDo(t, "GET", portal+"/api/analytics?window=1h", "", nil, nil); s != 401 {
		t.Errorf("analytics without the token: %d %s", s, b)
	}
	var res struct {
		Series []struct {
			Labels map[string]string `json:"labels"`
			Totals struct{ Calls int64 }
		} `json:"series"`
	}
	admin := map[string]string{"Authorization": "Bearer portal-admin-token-0123"}
	if s, b := portalDo(t, "GET", portal+"/api/analytics?window=1h&group_by=consumer,status_class", "", admin, &res); s != 200 {
		t.Fatalf("analytics: %d %s", s, b)
	}
	counts := map[string]int64{}
	for _, s := range res.Series {
		counts[s.Labels["consumer"]+" "+s.Labels["status_class"]] = s.Totals.Calls
	}
	if counts["alice 2xx"] != 3 || counts[" 4xx"] != 1 {
		t.Errorf("analytics by consumer and class: %v; want alice 2xx 3 and anonymous 4xx 1", counts)
	}
	if s, b := portalDo(t, "GET", portal+"/api/analytics?window=1h&deprecated=true", "", admin, &res); s != 200 || len(res.Series) == 0 || res.Series[0].Labels["route"] != "rosetta.testing.v1.EchoService.*" {
		t.Errorf("deprecated analytics: %d %s", s, b)
	}
	if s, b := portalDo(t, "GET", portal+"/api/analytics?window=2y", "", admin, nil); s != 400 {
		t.Errorf("bad window: %d %s", s, b)
	}
	_ = g
}

// TestPortalSignInJWT: a JWT that the config's jwt-auth accepts signs its
// consumer in (by jwt_subject, else its sub); a bad or expired one gets
// jwt-auth's refusal.
func TestPortalSignInJWT(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	const secret = "portal-jwt-secret-0123456789abcdef0123"
	base, _ := startGatewayOn(t, "relay", backend.Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
portal: {}
consumers:
  - { name: carol, jwt_subject: carol-sub }
plugins:
  - jwt-auth: { secret: `+secret+` }
`)
	signIn := func(token string) (int, string) {
		return portalDo(t, "POST", base+"/portal/api/signin", `{"jwt":"`+token+`"}`, nil, nil)
	}
	exp := time.Now().Add(time.Hour).Unix()
	if s, b := signIn(hsSign(t, secret, jwt.MapClaims{"sub": "carol-sub", "exp": exp})); s != 200 || !strings.Contains(b, `"name":"carol"`) {
		t.Errorf("carol's token: %d %s", s, b)
	}
	if s, b := signIn(hsSign(t, secret, jwt.MapClaims{"sub": "dave", "exp": exp})); s != 200 || !strings.Contains(b, `"name":"dave"`) {
		t.Errorf("an unmapped sub: %d %s", s, b)
	}
	if s, b := signIn(hsSign(t, "another-secret-0123456789abcdef0123", jwt.MapClaims{"sub": "carol-sub", "exp": exp})); s != 401 || !strings.Contains(b, "invalid token") {
		t.Errorf("a token signed with another key: %d %s", s, b)
	}
	if s, b := signIn(hsSign(t, secret, jwt.MapClaims{"sub": "carol-sub", "exp": time.Now().Add(-time.Hour).Unix()})); s != 401 || !strings.Contains(b, "expired") {
		t.Errorf("an expired token: %d %s", s, b)
	}
	if s, b := portalDo(t, "POST", base+"/portal/api/signin", `{"api_key":"nope"}`, nil, nil); s != 401 || !strings.Contains(b, "invalid API key") {
		t.Errorf("a key on a gateway without keys: %d %s", s, b)
	}
}

// TestPortalOwnListener: with portal.address the portal has a listener of
// its own, which also serves the APIs (the consoles' calls are
// same-origin); the other listeners do not serve the portal.
func TestPortalOwnListener(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	base, g := startGatewayOn(t, "relay", backend.Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
portal: { address: "127.0.0.1:0", title: Own }
`)
	if g.PortalAddr() == nil {
		t.Fatal("no portal listener")
	}
	own := "http://" + g.PortalAddr().String()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(own + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/portal/" {
		t.Errorf("GET / on the portal listener: %d %q; want a redirect to /portal/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if s, b := portalDo(t, "GET", own+"/portal/api/config", "", nil, nil); s != 200 || !strings.Contains(b, `"title":"Own"`) {
		t.Errorf("portal config: %d %s", s, b)
	}
	if s, b := portalDo(t, "POST", own+"/v1/metadata", `{}`, nil, nil); s != 200 {
		t.Errorf("an API call on the portal listener: %d %s", s, b)
	}
	if s, b := portalDo(t, "GET", own+"/portal/api/analytics", "", nil, nil); s != 403 || !strings.Contains(b, `"the portal shows analytics to the operator only: set admin.token in the config, then enter it here"`) {
		t.Errorf("analytics without an admin token configured: %d %s", s, b)
	}
	if s, b := portalDo(t, "DELETE", own+"/portal/api/me/keys/config-0", "", nil, nil); s != 403 || !strings.Contains(b, "self-service key revocation is off") {
		t.Errorf("revoke with self-service off: %d %s", s, b)
	}
	if s, b := portalDo(t, "GET", base+"/portal/api/config", "", nil, nil); s != 404 {
		t.Errorf("the portal on the API listener: %d %s; want 404", s, b)
	}
}

// TestPortalAnalyticsOff: a gateway started without analytics (a reload
// may add a portal later) answers the portal's usage and analytics with
// a 403 that says how to turn them on.
func TestPortalAnalyticsOff(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	_, g := startGatewayOn(t, "relay", backend.Addr, basicConfig)
	src := portalSource{g}
	_, err := src.Usage(testContext(t), "alice", time.Now().Add(-time.Hour), time.Now())
	if !errors.Is(err, portal.ErrForbidden) || !strings.Contains(err.Error(), "analytics are off: they start with the gateway when its config has an admin, portal or analytics block") {
		t.Errorf("usage: %v", err)
	}
}

// TestPortalPlainHTTPAPI: a plain HTTP upstream that uri routes reach is
// an API of the catalog (a route per method, its auth), with an OpenAPI
// document of its routes, and its page renders in a browser with a curl
// example per HTTP method and swagger-ui's operations.
func TestPortalPlainHTTPAPI(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	base, _ := startGatewayOn(t, "relay", env.backend.Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
  web:
    kind: http
    targets: ["`+env.web+`"]
portal: {}
consumers:
  - { name: alice, keys: [alice-web-key-0123456789] }
routes:
  - uri: /web/*
    service: web
    methods: [GET, POST]
    plugins:
      - key-auth: { header: x-api-key }
  - uri: /health
    service: web
    methods: [GET]
    deprecated: { sunset: 2027-06-30 }
`)
	var cat struct {
		APIs []struct {
			Name     string `json:"name"`
			Versions []struct {
				Service string `json:"service"`
				Methods []struct {
					Name, Kind string
					HTTP       []struct{ Method, Path string }
					Auth       []string
					AuthHeader string `json:"auth_header"`
					Deprecated map[string]any
				}
			}
		}
	}
	if s, b := portalDo(t, "GET", base+"/portal/api/catalog", "", nil, &cat); s != 200 {
		t.Fatalf("catalog: %d %s", s, b)
	}
	var web []string
	for _, api := range cat.APIs {
		if api.Name != "web" {
			continue
		}
		for _, m := range api.Versions[0].Methods {
			var verbs []string
			for _, b := range m.HTTP {
				verbs = append(verbs, b.Method+" "+b.Path)
			}
			web = append(web, fmt.Sprintf("%s %s %v %v %s deprecated=%v", m.Name, m.Kind, verbs, m.Auth, m.AuthHeader, m.Deprecated != nil))
		}
	}
	want := []string{
		"/web/* http [GET /web/* POST /web/*] [key-auth] x-api-key deprecated=false",
		"/health http [GET /health] []  deprecated=true",
	}
	if strings.Join(web, "\n") != strings.Join(want, "\n") {
		t.Errorf("the web API's routes:\n%s\nwant:\n%s", strings.Join(web, "\n"), strings.Join(want, "\n"))
	}
	s, doc := portalDo(t, "GET", base+"/portal/api/openapi/web", "", nil, nil)
	for _, part := range []string{`"/web/{path}"`, `"/health"`, `"name": "x-api-key"`, `"deprecated": true`, `"openapi": "3.1.0"`} {
		if s != 200 || !strings.Contains(doc, part) {
			t.Errorf("the web API's OpenAPI document (%d) lacks %s:\n%.600s", s, part, doc)
		}
	}

	ctx := portaltest.NewBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/portal/#/api/web")); err != nil {
		t.Fatal(err)
	}
	portaltest.Wait(t, ctx, "the web API's routes and swagger-ui", `document.querySelectorAll('.method[data-kind="http"]').length === 2 &&
		[...document.querySelectorAll(".method-body")].some((b) => b.textContent.includes("-X POST") && b.textContent.includes("x-api-key: $API_KEY")) &&
		document.querySelectorAll(".swagger .opblock").length === 3`)
	portaltest.Screenshot(t, ctx, "portal-plain-http")
}
