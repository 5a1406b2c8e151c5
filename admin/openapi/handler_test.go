package openapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit/snapshot"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

// TestHandler serves the document over a real listener: it is cached per
// snapshot and table, regenerated when they change, answers
// If-None-Match, ?upstream= and errors.
func TestHandler(t *testing.T) {
	t.Parallel()
	snap, table := snapshot.EchoSnapshot(t)
	var mu sync.Mutex
	cur := struct {
		snap  *registry.Snapshot
		table *router.Table
	}{snap, table}
	calls := 0
	h := Handler(func() (*registry.Snapshot, *router.Table) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return cur.snap, cur.table
	}, Options{Servers: []string{"http://127.0.0.1:8080"}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	get := func(path string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := get("/openapi.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	validateDocument(t, body)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	resp, _ = get("/openapi.json", "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d; want 304", resp.StatusCode)
	}
	cached := func() *cachedDoc {
		hh := h.(*handler)
		hh.mu.Lock()
		defer hh.mu.Unlock()
		return hh.docs[""]
	}
	d := cached()
	resp, again := get("/openapi.json")
	if string(again) != string(body) || cached() != d {
		t.Error("the document was generated again for the same snapshot")
	}
	_ = resp

	resp, one := get("/openapi.json?upstream=test")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("?upstream=test: status %d", resp.StatusCode)
	}
	var doc Document
	if err := json.Unmarshal(one, &doc); err != nil || doc.Info.Title != "Rosetta gateway: test" {
		t.Errorf("?upstream=test: %v, title %q", err, doc.Info.Title)
	}
	resp, msg := get("/openapi.json?upstream=nope")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("?upstream=nope: status %d; want 404 (%s)", resp.StatusCode, msg)
	}

	// A new snapshot (a descriptor refresh) regenerates the document.
	snap2, table2 := snapshot.EchoSnapshot(t)
	mu.Lock()
	cur.snap, cur.table = snap2, table2
	mu.Unlock()
	_, _ = get("/openapi.json")
	if cached() == d {
		t.Error("the document was not regenerated for a new snapshot")
	}

	// Concurrent requests while the snapshot changes: each gets a whole
	// document of one snapshot or the other, generated once per
	// snapshot.
	snap3, table3 := snapshot.EchoSnapshot(t)
	var wg sync.WaitGroup
	bodies := make([][]byte, 8)
	for i := range bodies {
		wg.Go(func() {
			if i == 4 {
				mu.Lock()
				cur.snap, cur.table = snap3, table3
				mu.Unlock()
			}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/openapi.json?upstream=test", nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			bodies[i], _ = io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("concurrent GET: status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	for i, b := range bodies {
		var doc Document
		if err := json.Unmarshal(b, &doc); err != nil || len(doc.Paths) == 0 {
			t.Errorf("concurrent GET %d: %v, %d paths", i, err, len(doc.Paths))
		}
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/openapi.json", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestSecurityFromConfig reads the auth plugins as the gateway applies
// them: the first matching selector route, plus the top-level plugins it
// does not name.
func TestSecurityFromConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "rosetta.yaml")
	yaml := `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["127.0.0.1:1"]
consumers:
  - name: alice
    keys: ["k1"]
plugins:
  - key-auth:
      header: x-api-key
      query: key
routes:
  - selector: pkg.Svc.Open
  - selector: pkg.Svc.*
    plugins:
      - jwt-auth:
          secret: s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t
          scopes: [books.read]
          cookie: session
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	sec := SecurityFromConfig(cfg)
	names := func(m protoreflect.FullName) []string {
		var out []string
		for _, s := range sec(m) {
			out = append(out, s.Name)
		}
		return out
	}
	for method, want := range map[protoreflect.FullName][]string{
		"pkg.Svc.Get":   {"bearerAuth", "jwtCookie_session", "apiKeyHeader_x-api-key", "apiKeyQuery_key"},
		"pkg.Svc.Open":  {"apiKeyHeader_x-api-key", "apiKeyQuery_key"},
		"other.Svc.Get": {"apiKeyHeader_x-api-key", "apiKeyQuery_key"},
	} {
		if diff := cmp.Diff(want, names(method)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", method, diff)
		}
	}
	if got := sec("pkg.Svc.Get")[0]; got.Scheme.Scheme != "bearer" || !cmp.Equal(got.Scopes, []string{"books.read"}) {
		t.Errorf("jwt-auth: %+v", got)
	}
}
