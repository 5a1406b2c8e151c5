package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

func TestRESTMetadata(t *testing.T) {
	t.Parallel()
	url := startDefault(t)
	r := do(t, "POST", url+"/v1/metadata", `{"headerOut": {"h1": "hv"}, "trailerOut": {"t1": "tv"}}`,
		"Authorization: Bearer tok", "Grpc-Metadata-Custom: cv", "X-Request-Id: rid", "X-Not-Forwarded: no",
		"X-Forwarded-For: 203.0.113.9", "Grpc-Metadata-Grpc-Internal: no")
	expect(t, r, 200, "")
	var got struct {
		Incoming map[string]struct{ Values []string } `json:"incoming"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"authorization":     "Bearer tok",
		"custom":            "cv",
		"x-request-id":      "rid",
		"x-forwarded-for":   "203.0.113.9, 127.0.0.1",
		"x-forwarded-proto": "http",
		"x-forwarded-host":  strings.TrimPrefix(url, "http://"),
	}
	for k, v := range want {
		if vs := got.Incoming[k].Values; len(vs) != 1 || vs[0] != v {
			t.Errorf("metadata %s: got %q; want [%q]", k, vs, v)
		}
	}
	for _, k := range []string{"x-not-forwarded", "grpc-internal"} {
		if _, ok := got.Incoming[k]; ok {
			t.Errorf("metadata %s forwarded; want it dropped", k)
		}
	}
	if h := r.header.Get("Grpc-Metadata-H1"); h != "hv" {
		t.Errorf("Grpc-Metadata-H1: got %q; want hv", h)
	}
	if h := r.header.Get("Grpc-Trailer-T1"); h != "tv" {
		t.Errorf("Grpc-Trailer-T1 (as header without TE: trailers): got %q; want tv", h)
	}

	t.Run("trailers when accepted", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/metadata", `{"trailerOut": {"t1": "tv"}}`, "TE: trailers")
		expect(t, r, 200, "")
		if h := r.trailer.Get("Grpc-Trailer-T1"); h != "tv" {
			t.Errorf("trailer Grpc-Trailer-T1: got %q; want tv (headers %v)", h, r.header)
		}
	})
}

func TestRESTDeadlines(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, basicConfig+`
routes:
  - selector: rosetta.testing.v1.EchoService.Sleep
    timeout: 200ms
`)
	t.Run("route timeout", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/sleep?duration=30s", "")
		if r.status != 504 {
			t.Fatalf("status: got %d; want 504 (%s)", r.status, r.body)
		}
		var st struct{ Code int }
		_ = json.Unmarshal([]byte(r.body), &st)
		// The message is the backend's or the gateway's, whichever timer
		// fires first; the code and the error ID are always there.
		if st.Code != 4 {
			t.Errorf("code: got %d; want 4 (%s)", st.Code, r.body)
		}
		if r.header.Get("Rosetta-Error-Id") == "" {
			t.Error("504 without Rosetta-Error-Id")
		}
	})
	t.Run("grpc-timeout shortens", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/sleep?duration=30s", "", "Grpc-Timeout: 50m")
		if r.status != 504 {
			t.Fatalf("status: got %d; want 504 (%s)", r.status, r.body)
		}
	})
	t.Run("deadline reaches the backend", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/sleep", "", "Grpc-Timeout: 100S")
		expect(t, r, 200, "")
		var got struct {
			HadDeadline       bool   `json:"hadDeadline"`
			DeadlineRemaining string `json:"deadlineRemaining"`
		}
		_ = json.Unmarshal([]byte(r.body), &got)
		if !got.HadDeadline {
			t.Errorf("backend saw no deadline: %s", r.body)
		}
	})
}

func TestRESTHttpBody(t *testing.T) {
	t.Parallel()
	url := startDefault(t)
	t.Run("upload body=*", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/files", "raw\x00bytes", "Content-Type: image/png")
		if r.status != 200 || r.body != "raw\x00bytes" || r.header.Get("Content-Type") != "image/png" {
			t.Errorf("got %d %q %q; want 200 image/png raw bytes", r.status, r.header.Get("Content-Type"), r.body)
		}
	})
	t.Run("download", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/files/report.csv?contentType=text/csv", "")
		if r.status != 200 || r.body != "content of report.csv" || r.header.Get("Content-Type") != "text/csv" {
			t.Errorf("got %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
		}
	})
	t.Run("upload into a field", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/named/pic", "12345", "Content-Type: application/octet-stream")
		expect(t, r, 200, `{"name": "pic", "contentType": "application/octet-stream", "size": "5"}`)
	})
}

func TestRESTServerStream(t *testing.T) {
	t.Parallel()
	url := startDefault(t)
	t.Run("ndjson", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/stream?count=3&text=hi", "")
		if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("got %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		lines := strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("got %d lines; want 3: %q", len(lines), r.body)
		}
		for i, l := range lines {
			assertJSON(t, l, `{"index": `+string(rune('1'+i))+`, "text": "hi"}`)
		}
	})
	t.Run("error midway", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/stream?count=5&failAt=3", "")
		lines := strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
		if r.status != 200 || len(lines) != 3 {
			t.Fatalf("got %d with %d lines; want 200 with 3: %q", r.status, len(lines), r.body)
		}
		assertJSON(t, lines[2], `{"error": {"code": 10, "message": "failing at 3", "details": []}}`)
	})
	t.Run("error before first message", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/stream?count=5&failAt=1", "")
		expect(t, r, 409, `{"code": 10, "message": "failing at 1", "details": []}`)
	})
	t.Run("flushed per message", func(t *testing.T) {
		t.Parallel()
		// The second message is an hour away: the first line can only
		// arrive if the gateway flushes it on its own. The context bounds
		// the wait, so a gateway that buffers fails instead of hanging.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/stream?count=2&interval=3600s&text=slow", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil {
			t.Fatalf("first line did not arrive before the stream ended: %v", err)
		}
		assertJSON(t, line, `{"index": 1, "text": "slow"}`)
	})
}

func TestRESTJSONOptions(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, basicConfig+`
transcoding:
  json:
    use_proto_names: true
    use_enum_numbers: true
routes:
  - selector: rosetta.testing.v1.EchoService.EchoResponseBody
    json: { use_proto_names: false, emit_unpopulated: true }
`)
	expect(t, do(t, "POST", url+"/v1/echo", `{"stringValue": "s", "color": "COLOR_RED"}`), 200,
		`{"string_value": "s", "color": 1}`)
	expect(t, do(t, "GET", url+"/v1/echo/x/nested?nested.name=n", ""), 200,
		`{"name": "n", "n": 0, "child": null}`)
}

func TestRESTStrictAndDiscard(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, basicConfig+`
transcoding:
  strict_query: true
  json: { discard_unknown: true }
`)
	expect(t, do(t, "POST", url+"/v1/echo", `{"nope": 1, "stringValue": "kept"}`), 200, `{"stringValue": "kept"}`)
	expect(t, do(t, "GET", url+"/v1/echo/q?nope=1", ""), 400, `{"code": 3, "message": "unknown query parameter \"nope\"",
		"details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "nope", "description": "unknown query parameter \"nope\""}]}]}`)
}

func TestRESTConfigRulesAndDefaults(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, basicConfig+`
transcoding:
  default_bindings: false
http:
  rules:
    - selector: rosetta.testing.v1.EchoService.Configured
      get: /v1/configured/{id}
      additional_bindings:
        - post: /v1/configured
          body: "*"
    - selector: rosetta.testing.v1.EchoService.Echo
      get: /v2/echo/{string_value}
`)
	expect(t, do(t, "GET", url+"/v1/configured/c1?stringValue=s", ""), 200, `{"id": "c1", "stringValue": "s"}`)
	expect(t, do(t, "POST", url+"/v1/configured", `{"id": "c2"}`), 200, `{"id": "c2"}`)
	// The config rule replaces Echo's annotation.
	expect(t, do(t, "GET", url+"/v2/echo/over", ""), 200, `{"stringValue": "over"}`)
	expect(t, do(t, "POST", url+"/v1/echo", `{}`), 404, "")
	// Default bindings are off.
	expect(t, do(t, "POST", url+"/rosetta.testing.v1.EchoService/Unannotated", `{}`), 404, "")
}

func TestRESTBodyLimit(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, `
listeners:
  - address: "127.0.0.1:0"
    max_body_bytes: 64
upstreams:
  test:
    targets: ["$BACKEND"]
`)
	big := `{"stringValue": "` + strings.Repeat("x", 100) + `"}`
	expect(t, do(t, "POST", url+"/v1/echo", big), 413,
		`{"code": 8, "message": "request body is larger than the limit of 64 bytes", "details": []}`)
	expect(t, do(t, "POST", url+"/v1/echo", `{"stringValue": "small"}`), 200, `{"stringValue": "small"}`)
}

func TestRESTBackendDown(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, g := startGateway(t, be.Addr, basicConfig)
	expect(t, do(t, "GET", url+"/v1/echo/up", ""), 200, `{"id": "up"}`)
	be.Server.Stop()
	r := do(t, "GET", url+"/v1/echo/down", "")
	if r.status != 503 {
		t.Fatalf("status: got %d; want 503 (%s)", r.status, r.body)
	}
	if r.header.Get("Rosetta-Error-Id") == "" {
		t.Error("503 without Rosetta-Error-Id")
	}
	// Routes stay: the snapshot keeps the descriptors it had.
	if len(g.Routes()) == 0 {
		t.Error("routes dropped after the backend went away")
	}
}

// descriptorSetFile writes the echo service's descriptors (with imports) as
// a FileDescriptorSet, as `buf build -o` would.
func descriptorSetFile(t *testing.T) string {
	t.Helper()
	return testkit.WriteDescriptorSet(t, testingv1.File_rosetta_testing_v1_echo_proto)
}

func TestRESTDescriptorSources(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t, testkit.WithoutReflection())
	protoDir, err := filepath.Abs("../../proto")
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{
		"descriptor set": `files: ["` + descriptorSetFile(t) + `"]`,
		"proto sources":  `protos: ["rosetta/testing/v1/echo.proto"], import_paths: ["` + protoDir + `"]`,
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url, _ := startGateway(t, be.Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    descriptors: { `+src+` }
`)
			expect(t, do(t, "GET", url+"/v1/echo/nested/a/1", ""), 200, `{"nested": {"name": "a", "n": 1}}`)
			expect(t, do(t, "POST", url+"/v1/echo", `{"any": {"@type": "type.googleapis.com/rosetta.testing.v1.Nested", "n": 3}}`), 200,
				`{"any": {"@type": "type.googleapis.com/rosetta.testing.v1.Nested", "n": 3}}`)
		})
	}
}

var _ = net.IPv4len

func TestRESTInt64AsNumbers(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, basicConfig+`
routes:
  - selector: rosetta.testing.v1.EchoService.UpdateThing
    json: { int64_as_numbers: true }
`)
	body := `{"int64Value": "9007199254740993", "uint64Value": "18446744073709551615", "fixed64Value": "1",
		"int64Wrapper": "-5", "stringValue": "<&>", "nested": {"name": "n"},
		"any": {"@type": "type.googleapis.com/google.protobuf.Int64Value", "value": "7"}}`
	r := do(t, "POST", url+"/v1/echo", body, "Accept: application/json; int64=number")
	expect(t, r, 200, "")
	// Compared as text, key by key: 2^53+1 and 2^64-1 must survive as
	// exact JSON numbers, which a float64 comparison would hide.
	for _, want := range []string{`"int64Value":9007199254740993`, `"uint64Value":18446744073709551615`, `"fixed64Value":1`,
		`"int64Wrapper":-5`, `"stringValue":"<&>"`, `"value":7`} {
		if !strings.Contains(strings.ReplaceAll(r.body, " ", ""), want) {
			t.Errorf("response lacks %s: %s", want, r.body)
		}
	}
	// Without the Accept parameter, int64s stay strings.
	expect(t, do(t, "POST", url+"/v1/echo", `{"int64Value": "1"}`), 200, `{"int64Value": "1"}`)
	// The route option turns it on for UpdateThing.
	r = do(t, "PATCH", url+"/v1/things/t?updateMask=int64Value", `{"int64Value": "12"}`)
	if !strings.Contains(strings.ReplaceAll(r.body, " ", ""), `"int64Value":12`) {
		t.Errorf("route option: got %s; want int64Value as a number", r.body)
	}
}
