package rest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// FuzzDecodeRequest feeds arbitrary bodies, paths and query strings to the
// REST request decoder: it must never panic, must accept exactly the bodies
// protojson accepts for body "*", and every message it builds must marshal.
func FuzzDecodeRequest(f *testing.F) {
	h := newTestREST(f, nil, config.Transcoding{})
	for _, s := range []struct{ body, path, query string }{
		{`{"stringValue": "x", "int64Value": "12"}`, "/v1/echo", ""},
		{`{"nested": {"child": {"n": 1}}, "labels": {"a": "b"}, "byId": {"1": {}}}`, "/v1/echo", ""},
		{`{"ts": "2024-01-01T00:00:00Z", "dur": "3s", "any": {"@type": "type.googleapis.com/google.protobuf.Empty"}}`, "/v1/echo", ""},
		{`{"st": {"a": [1, {"b": null}]}, "val": "s", "list": [1]}`, "/v1/echo", ""},
		{`{"color": 7, "colors": ["COLOR_RED"], "item": {}, "text": "t"}`, "/v1/echo", ""},
		{`{"int32Value": 1e3}`, "/v1/echo", ""},
		{`[1,2]`, "/v1/echo", ""},
		{``, "/v1/echo/abc", "int32Value=1&strings=a&strings=b&nested.name=x&labels[k]=v&color=2"},
		{``, "/v1/echo/nested/a%2Fb/12", "ts=2024-01-01T00:00:00Z&mask=a,b.c&dur=1.5s&bytesValue=AQ"},
		{``, "/v1/echo/things/x/parts/a/b%2Fc", "maybe=3&text=a&number=4"},
		{`{"name": "n"}`, "/v1/echo/id/nested", "doubleValue=NaN&floatValue=-Infinity"},
		{`{"n": 1}`, "/v1/things/t", "updateMask=a"},
	} {
		f.Add(s.body, s.path, s.query)
	}
	f.Fuzz(func(t *testing.T, body, path, query string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?# ") {
			return
		}
		method := http.MethodPost
		if body == "" {
			method = http.MethodGet
		}
		u, err := url.Parse("http://x" + path)
		if err != nil {
			return
		}
		r := httptest.NewRequest(method, "http://x/", strings.NewReader(body))
		r.URL = u
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", "application/json")
		m, err := h.Match(r)
		if err != nil {
			return
		}
		p := h.plans[m.Route]
		var wire *[]byte
		var wireErr error
		if p.Fast != nil {
			r2 := r.Clone(r.Context())
			r2.Body = io.NopCloser(strings.NewReader(body))
			wire, wireErr = h.decodeWireRequest(r2, p, m.Values)
		}
		msg, err := h.decodeRequest(r, p, m.Values)
		if p.Fast != nil {
			q, _ := url.ParseQuery(query)
			checkSameRequest(t, p, msg, err, wire, wireErr, len(q) <= 1)
		}
		if m.Route.Body == "*" && !p.BodyRaw && body != "" {
			ref := dynamicpb.NewMessage(p.Input)
			refErr := protojson.UnmarshalOptions{Resolver: h.resolver}.Unmarshal([]byte(body), ref)
			if (refErr == nil) != (err == nil) && len(m.Values) == 0 {
				t.Fatalf("body %q: decoder error %v; protojson error %v", body, err, refErr)
			}
		}
		if err != nil {
			return
		}
		if _, err := proto.Marshal(msg); err != nil {
			t.Fatalf("decoded message does not marshal: %v", err)
		}
	})
}

// checkSameRequest checks that the fast path built the request the
// dynamicpb path built, or failed with the same error.
// Which error a request with several bad query parameters gets depends on
// map order, so sameError only holds for at most one parameter.
func checkSameRequest(t *testing.T, p *binding.Plan, msg *dynamicpb.Message, err error, wire *[]byte, wireErr error, sameError bool) {
	t.Helper()
	if (err == nil) != (wireErr == nil) {
		t.Fatalf("dynamicpb path error %v; fast path error %v", err, wireErr)
	}
	if err != nil {
		if sameError && err.Error() != wireErr.Error() {
			t.Fatalf("errors differ:\ndynamicpb %v\nfast      %v", err, wireErr)
		}
		return
	}
	got := dynamicpb.NewMessage(p.Input)
	if err := proto.Unmarshal(*wire, got); err != nil {
		t.Fatalf("fast path request does not unmarshal: %v", err)
	}
	if !proto.Equal(got, msg) {
		t.Fatalf("requests differ:\ndynamicpb %v\nfast      %v", msg, got)
	}
}
