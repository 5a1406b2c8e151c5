package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway/gatewaytest"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// TestUsageCommand makes calls through a real gateway and reads them
// back with "rosetta usage", as CSV and as JSON: the counts are the
// calls made.
func TestUsageCommand(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	adminPort := freePort(t)
	file := filepath.Join(t.TempDir(), "rosetta.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: [%q]}
admin: {address: "127.0.0.1:%d", token: usage-token-0123456789}
consumers:
  - {name: alice, keys: [alice-key-0123456789]}
  - {name: bob, keys: [bob-key-0123456789]}
plugins:
  - key-auth: {}
`, backend.Addr, adminPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg)
	from := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	base := gatewaytest.URL(g)
	call := func(key, path string) int {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Apikey", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 3; i++ {
		if s := call("alice-key-0123456789", "/v1/metadata"); s != http.StatusOK {
			t.Fatalf("alice's call: %d", s)
		}
	}
	if s := call("bob-key-0123456789", "/v1/metadata"); s != http.StatusOK {
		t.Fatalf("bob's call: %d", s)
	}
	code, out, errs := runCLI("usage", "--config", file, "--from", from, "--consumer", "alice")
	if code != 0 {
		t.Fatalf("rosetta usage: exit %d: %s", code, errs)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v: %q", err, out)
	}
	want := [][]string{
		{"consumer", "api", "method", "status_class", "calls"},
		{"alice", "rosetta.testing.v1.EchoService", "/rosetta.testing.v1.EchoService/Metadata", "2xx", "3"},
	}
	if len(recs) != len(want) {
		t.Fatalf("CSV: got %q; want %q", recs, want)
	}
	for i := range want {
		if got := strings.Join(recs[i][:5], ","); got != strings.Join(want[i], ",") {
			t.Errorf("CSV line %d: got %s; want %s", i, got, strings.Join(want[i], ","))
		}
	}
	if n, _ := strconv.Atoi(recs[1][6]); n == 0 {
		t.Errorf("CSV: no bytes out in %q", recs[1])
	}
	// The gateway's refusal of a bad period, as the user sees it.
	if code, _, errs := runCLI("usage", "--config", file, "--from", "2026-12-02", "--to", "2026-12-01"); code != 1 ||
		!strings.Contains(errs, `answered 400 Bad Request: {"error":"to (2026-12-01T00:00:00Z) must be after from (2026-12-02T00:00:00Z)"}`) {
		t.Errorf("to before from: got %d %q", code, errs)
	}
	code, out, errs = runCLI("usage", "--config", file, "--from", from, "--format", "json")
	if code != 0 {
		t.Fatalf("rosetta usage --format json: exit %d: %s", code, errs)
	}
	var u struct {
		Rows []struct {
			Consumer string `json:"consumer"`
			Calls    int64  `json:"calls"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("JSON: %v: %q", err, out)
	}
	calls := map[string]int64{}
	for _, r := range u.Rows {
		calls[r.Consumer] += r.Calls
	}
	if calls["alice"] != 3 || calls["bob"] != 1 || len(calls) != 2 {
		t.Errorf("JSON calls by consumer: %v; want alice 3, bob 1", calls)
	}
}

// TestUsageCommandErrors shows the errors a user sees.
func TestUsageCommandErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noAdmin := filepath.Join(dir, "no-admin.yaml")
	_ = os.WriteFile(noAdmin, []byte(`
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: ["127.0.0.1:9"]}
`), 0o600)
	down := filepath.Join(dir, "down.yaml")
	_ = os.WriteFile(down, []byte(fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  test: {targets: ["127.0.0.1:9"]}
admin: {address: "127.0.0.1:%d"}
`, freePort(t))), 0o600)
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"usage"}, 2, "--config FILE is required"},
		{[]string{"usage", "--config", noAdmin}, 2, "--from DATE is required"},
		{[]string{"usage", "--config", noAdmin, "--from", "2026-12-01", "--format", "xml"}, 2, `--format "xml": use csv or json`},
		{[]string{"usage", "--config", noAdmin, "--from", "2026-12-01"}, 2, "has no admin block"},
		{[]string{"usage", "--config", down, "--from", "2026-12-01"}, 1, "is rosetta serve running with this config?"},
	} {
		code, _, errs := runCLI(c.args...)
		if code != c.code || !strings.Contains(errs, c.err) {
			t.Errorf("%v: got %d %q; want %d and %q", c.args, code, errs, c.code, c.err)
		}
	}
}
