package rest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rosetta-gateway/rosetta/config"
)

// TestFastPathRoutes checks which routes of the echo service take the
// wire-level path.
func TestFastPathRoutes(t *testing.T) {
	h := newTestREST(t, echoConn{}, config.Transcoding{})
	want := map[string]bool{
		"POST /v1/echo": true, "GET /v1/echo/{id}": true, "PUT /v1/echo/{id}/nested": true,
		"GET /v1/echo/{id}/nested": true, "PATCH /v1/things/{thing.id}": false,
		"POST /v1/files": false, "GET /v1/files/{name}": false, "POST /v1/named/{name}": false,
		"GET /v1/stream": true, "POST /v1/stream:bidi": true,
	}
	seen := 0
	for rt, p := range h.plans {
		key := rt.HTTPMethod + " " + rt.Pattern
		if w, ok := want[key]; ok {
			seen++
			if w != (p.Fast != nil) {
				t.Errorf("%s: fast path %v, want %v", key, p.Fast != nil, w)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("matched %d of %d routes", seen, len(want))
	}
}

// TestFastPathSameAnswers serves requests through the fast path and
// through the dynamicpb path and compares the answers.
func TestFastPathSameAnswers(t *testing.T) {
	emit := true
	for _, tc := range []config.Transcoding{{}, {JSON: config.JSONOptions{EmitUnpopulated: &emit, UseProtoNames: &emit, UseEnumNumbers: &emit}}} {
		fast := newTestREST(t, echoConn{}, tc)
		slow := newTestREST(t, echoConn{}, tc)
		for _, p := range slow.plans {
			p.Fast = nil
		}
		for _, r := range []struct{ method, path, body, accept string }{
			{"POST", "/v1/echo", benchBody, ""},
			{"POST", "/v1/echo", benchBody, "application/json; int64=number"},
			{"POST", "/v1/echo", `{"nested": {"name": "n"}, "any": {"@type": "type.googleapis.com/google.protobuf.Int64Value", "value": "7"}, "int64Wrapper": "3", "st": {"a": [1, null]}, "dur": "1.5s", "mask": "a.bC"}`, "application/json; int64=number"},
			{"POST", "/v1/echo", `{"nesteds": [{}, {"child": {"n": "x"}}]}`, ""},
			{"POST", "/v1/echo", `{"nope": 1}`, ""},
			{"POST", "/v1/echo", `{"text": "a", "number": 1}`, ""},
			{"GET", "/v1/echo/abc?int32Value=1&strings=a&strings=b&nested.name=x&labels[k]=v&color=2&ts=2024-01-01T00:00:00Z&dur=1.5s&mask=a,b.c&maybe=0", "", ""},
			{"GET", "/v1/echo/abc?number=5", "", ""},
			{"GET", "/v1/echo/nested/a%2Fb/12?nested.child.n=3&int64Wrapper=5&byId[3]=x", "", ""},
			{"GET", "/v1/echo/nested/x/notanumber", "", ""},
			{"GET", "/v1/echo/q?color=PURPLE", "", ""},
			{"PUT", "/v1/echo/i1/nested?stringValue=q&nested.n=9", `{"name": "inner", "n": 5, "child": {"name": "c"}}`, ""},
			{"PUT", "/v1/echo/i1/nested", `{"n": true}`, ""},
			{"GET", "/v1/echo/i1/nested?nested.name=x&nested.child.n=2", "", ""},
			{"POST", "/v1/echo/x:custom", `{"id": "y", "name": "things/1/parts/2"}`, ""},
		} {
			do := func(h *Handler) (int, string) {
				req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
				if r.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				if r.accept != "" {
					req.Header.Set("Accept", r.accept)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				var c bytes.Buffer
				if err := json.Compact(&c, w.Body.Bytes()); err != nil {
					t.Fatalf("%s %s: %v: %s", r.method, r.path, err, w.Body)
				}
				return w.Code, c.String()
			}
			fc, fb := do(fast)
			sc, sb := do(slow)
			if fc != sc || fb != sb {
				t.Errorf("%s %s %s:\nfast      %d %s\ndynamicpb %d %s", r.method, r.path, r.body, fc, fb, sc, sb)
			}
			if r.method == http.MethodPost && r.body == benchBody && fc != http.StatusOK {
				t.Errorf("benchmark body: status %d", fc)
			}
		}
	}
}
