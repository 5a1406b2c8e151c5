package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// getWithToken GETs url with the bearer token (none when ""), and returns the
// status and body.
func getWithToken(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestOpenAPIServed: the generated document is served on the public
// listener when the config has an openapi block (no token) and on the
// admin listener (token required); a reload that adds jwt-auth adds its
// security scheme; an unknown upstream is a 404.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	const base = "listeners: [{address: \"127.0.0.1:0\"}]\n" +
		"upstreams:\n  test: {targets: [\"$BACKEND\"]}\n" +
		"admin: {address: \"127.0.0.1:0\", token: adm1n}\n" +
		"openapi: {title: Echo API, servers: [\"https://api.example.com\"]}\n"
	url, g := startGateway(t, be.Addr, base)
	admin := "http://" + g.AdminAddr().String()

	type doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Title string `json:"title"`
		} `json:"info"`
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
		Paths      map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]json.RawMessage `json:"securitySchemes"`
		} `json:"components"`
	}
	read := func(url, token string) doc {
		t.Helper()
		code, b := getWithToken(t, url, token)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, code, b)
		}
		var d doc
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return d
	}
	pub := read(url+"/openapi.json", "")
	if !strings.HasPrefix(pub.OpenAPI, "3.1") || pub.Info.Title != "Echo API" ||
		len(pub.Servers) != 1 || pub.Servers[0].URL != "https://api.example.com" {
		t.Errorf("public document: openapi %q, title %q, servers %v", pub.OpenAPI, pub.Info.Title, pub.Servers)
	}
	if _, ok := pub.Paths["/v1/echo/{id}"]; !ok {
		keys := make([]string, 0, len(pub.Paths))
		for k := range pub.Paths {
			keys = append(keys, k)
		}
		t.Errorf("public document has no /v1/echo/{id}; paths %v", keys)
	}
	if n := len(pub.Components.SecuritySchemes); n != 0 {
		t.Errorf("security schemes without auth plugins: %d; want 0", n)
	}
	if got := read(admin+"/openapi.json?upstream=test", "adm1n"); len(got.Paths) != len(pub.Paths) {
		t.Errorf("admin document of upstream test: %d paths; want %d", len(got.Paths), len(pub.Paths))
	}
	if code, b := getWithToken(t, admin+"/openapi.json", ""); code != http.StatusUnauthorized {
		t.Errorf("admin /openapi.json without token: %d %s; want 401", code, b)
	}
	if code, b := getWithToken(t, url+"/openapi.json?upstream=nope", ""); code != http.StatusNotFound {
		t.Errorf("unknown upstream: %d %s; want 404", code, b)
	}

	cfg, err := config.Parse("rosetta.yaml", []byte(strings.ReplaceAll(base, "$BACKEND", be.Addr)+
		"plugins:\n  - jwt-auth:\n      secret: s3cret\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ReloadConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if got := read(url+"/openapi.json", ""); len(got.Components.SecuritySchemes) == 0 {
		t.Error("after a reload adding jwt-auth: no security scheme in the document")
	}
}

// TestOpenAPIAdminServers: without an openapi block the public listeners
// do not serve the document, and the admin listener's names the
// listener's URL as its server (the admin port serves no API).
func TestOpenAPIAdminServers(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, g := startGateway(t, be.Addr, "listeners: [{address: \"127.0.0.1:0\"}]\n"+
		"upstreams:\n  test: {targets: [\"$BACKEND\"]}\n"+
		"admin: {address: \"127.0.0.1:0\"}\n")
	code, b := getWithToken(t, "http://"+g.AdminAddr().String()+"/openapi.json", "")
	if code != http.StatusOK {
		t.Fatalf("admin /openapi.json: %d %s", code, b)
	}
	var d struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Servers) != 1 || d.Servers[0].URL != url {
		t.Errorf("admin document's servers: %v; want [%s]", d.Servers, url)
	}
	if code, _ := getWithToken(t, url+"/openapi.json", ""); code != http.StatusNotFound {
		t.Errorf("public /openapi.json without an openapi block: %d; want 404", code)
	}
}
