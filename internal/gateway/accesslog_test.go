package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// syncBuffer is a buffer safe for the logger's concurrent writes.
type syncBuffer struct{ testkit.LogBuffer }

// lines returns the access lines written, as JSON objects.
func (s *syncBuffer) lines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "access" {
			out = append(out, m)
		}
	}
	return out
}

// TestAccessLog: one access line per call with the stable keys, for REST
// (incl. a 5xx with its error ID) and gRPC (with the gRPC code), and no
// header values in it.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	file := filepath.Join(t.TempDir(), "rosetta.yaml")
	os.WriteFile(file, []byte(strings.ReplaceAll(basicConfig, "$BACKEND", be.Addr)), 0o600)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	g, err := New(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	url := "http://" + g.Addrs()[0].String()

	expect(t, do(t, "POST", url+"/v1/echo", `{"stringValue": "x"}`, "Authorization: Bearer secret-token"), 200, "")
	r := do(t, "POST", url+"/v1/fail", `{"code": 13, "message": "boom"}`)
	client := testingv1.NewEchoServiceClient(dialGateway(t, url))
	_, _ = client.Fail(testContext(t), &testingv1.FailRequest{Code: 5, Message: "nope"})

	want := []struct {
		inbound, procedure string
		status, code       float64
	}{
		{"rest", "/v1/echo", 200, -1},
		{"rest", "/v1/fail", 500, -1},
		{"grpc", "/rosetta.testing.v1.EchoService/Fail", 200, 5},
	}
	var lines []map[string]any
	waitUntil(t, func() bool { lines = logs.lines(); return len(lines) >= len(want) }, "access lines")
	for i, w := range want {
		l := lines[i]
		if l["inbound"] != w.inbound || l["procedure"] != w.procedure || l["status"] != w.status {
			t.Errorf("line %d: got %v; want inbound=%s procedure=%s status=%v", i, l, w.inbound, w.procedure, w.status)
		}
		if w.code >= 0 && l["code"] != w.code {
			t.Errorf("line %d: code %v; want %v", i, l["code"], w.code)
		}
		wantHTTP := "1.1" // the REST calls use net/http's default client
		if w.inbound == "grpc" {
			wantHTTP = "2"
		}
		if l["http"] != wantHTTP {
			t.Errorf("line %d: http %v; want %s", i, l["http"], wantHTTP)
		}
		for _, k := range []string{"method", "duration", "bytes_in", "bytes_out"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line %d lacks %s: %v", i, k, l)
			}
		}
	}
	if lines[0]["bytes_in"] != float64(len(`{"stringValue": "x"}`)) {
		t.Errorf("bytes_in: got %v", lines[0]["bytes_in"])
	}
	if id := r.header.Get("Rosetta-Error-Id"); id == "" || lines[1]["error_id"] != id {
		t.Errorf("error_id: line %v, header %q", lines[1]["error_id"], id)
	}
	if strings.Contains(logs.String(), "secret-token") {
		t.Error("the access log contains a token")
	}
}
