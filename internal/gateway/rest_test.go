package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// TestRESTBindings covers the google.api.http mapping features end to end
// against a real backend that echoes the request it received.
func TestRESTBindings(t *testing.T) {
	t.Parallel()
	url := startDefault(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"body=*/all scalars", "POST", "/v1/echo", `{
			"doubleValue": 1.5, "floatValue": 2.25, "int32Value": -3, "int64Value": "-9007199254740993",
			"uint32Value": 4, "uint64Value": "18446744073709551615", "sint32Value": -5, "sint64Value": "-6",
			"fixed32Value": 7, "fixed64Value": "8", "sfixed32Value": -9, "sfixed64Value": "-10",
			"boolValue": true, "stringValue": "héllo", "bytesValue": "AAEC/w==", "color": "COLOR_GREEN"}`, 200, `{
			"doubleValue": 1.5, "floatValue": 2.25, "int32Value": -3, "int64Value": "-9007199254740993",
			"uint32Value": 4, "uint64Value": "18446744073709551615", "sint32Value": -5, "sint64Value": "-6",
			"fixed32Value": 7, "fixed64Value": "8", "sfixed32Value": -9, "sfixed64Value": "-10",
			"boolValue": true, "stringValue": "héllo", "bytesValue": "AAEC/w==", "color": "COLOR_GREEN"}`},
		{"body=*/well-known types", "POST", "/v1/echo", `{
			"ts": "2024-02-29T12:30:00.5Z", "dur": "1.5s", "mask": "a.bC,d", "st": {"k": [1, "x", null]},
			"val": 3, "list": [true], "stringWrapper": "w", "int64Wrapper": "7", "boolWrapper": false,
			"doubleWrapper": 0.5, "bytesWrapper": "AQ==", "uint32Wrapper": 9, "empty": {},
			"any": {"@type": "type.googleapis.com/rosetta.testing.v1.Nested", "name": "in-any", "n": 2}}`, 200, `{
			"ts": "2024-02-29T12:30:00.500Z", "dur": "1.500s", "mask": "a.bC,d", "st": {"k": [1, "x", null]},
			"val": 3, "list": [true], "stringWrapper": "w", "int64Wrapper": "7", "boolWrapper": false,
			"doubleWrapper": 0.5, "bytesWrapper": "AQ==", "uint32Wrapper": 9, "empty": {},
			"any": {"@type": "type.googleapis.com/rosetta.testing.v1.Nested", "name": "in-any", "n": 2}}`},
		{"body=*/maps oneof optional repeated", "POST", "/v1/echo", `{
			"labels": {"a": "b"}, "byId": {"3": {"name": "three"}}, "item": {"n": 1}, "maybe": 0,
			"strings": ["x", "y"], "colors": ["COLOR_RED", 2], "nesteds": [{"name": "n1"}]}`, 200, `{
			"labels": {"a": "b"}, "byId": {"3": {"name": "three"}}, "item": {"n": 1}, "maybe": 0,
			"strings": ["x", "y"], "colors": ["COLOR_RED", "COLOR_GREEN"], "nesteds": [{"name": "n1"}]}`},
		{"body=*/proto field names accepted", "POST", "/v1/echo", `{"string_value": "s", "int32_value": 1}`, 200,
			`{"stringValue": "s", "int32Value": 1}`},
		{"body=*/empty body", "POST", "/v1/echo", "", 200, `{}`},
		{"path var/single segment", "GET", "/v1/echo/abc", "", 200, `{"id": "abc"}`},
		{"path var/percent-decoded incl. %2F", "GET", "/v1/echo/a%2Fb%20c", "", 200, `{"id": "a/b c"}`},
		{"path var/nested fields", "GET", "/v1/echo/nested/nm/42", "", 200, `{"nested": {"name": "nm", "n": 42}}`},
		{"path var/multi-segment with **", "GET", "/v1/echo/things/t1/parts/a/b/c", "", 200, `{"name": "things/t1/parts/a/b/c"}`},
		{"path var/multi-segment keeps %2F", "GET", "/v1/echo/things/t1/parts/a%2Fb/c%20d", "", 200, `{"name": "things/t1/parts/a%2Fb/c d"}`},
		{"custom verb", "POST", "/v1/echo/xyz:custom", `{"stringValue": "v"}`, 200, `{"id": "xyz", "stringValue": "v"}`},
		{"path wins over body", "POST", "/v1/echo/fromPath:custom", `{"id": "fromBody"}`, 200, `{"id": "fromPath"}`},
		{"delete binding", "DELETE", "/v1/echo/gone", "", 200, `{"id": "gone"}`},
		{"patch body=*", "PATCH", "/v1/echo/p1", `{"stringValue": "s"}`, 200, `{"id": "p1", "stringValue": "s"}`},
		{"body field", "PUT", "/v1/echo/i1/nested?stringValue=q", `{"name": "inner", "n": 5}`, 200,
			`{"id": "i1", "nested": {"name": "inner", "n": 5}, "stringValue": "q"}`},
		{"query/scalars enums wrappers wkt", "GET",
			"/v1/echo/q?int32Value=-1&int64_value=12345678901&boolValue=true&doubleValue=2.5&bytesValue=AQID&color=COLOR_RED" +
				"&stringWrapper=w&int64Wrapper=5&ts=2024-01-02T03:04:05Z&dur=2.5s&mask=aB,c&maybe=0", "", 200, `{
			"id": "q", "int32Value": -1, "int64Value": "12345678901", "boolValue": true, "doubleValue": 2.5,
			"bytesValue": "AQID", "color": "COLOR_RED", "stringWrapper": "w", "int64Wrapper": "5",
			"ts": "2024-01-02T03:04:05Z", "dur": "2.500s", "mask": "aB,c", "maybe": 0}`},
		{"query/enum by number", "GET", "/v1/echo/q?color=2", "", 200, `{"id": "q", "color": "COLOR_GREEN"}`},
		{"query/repeated and nested dotted", "GET",
			"/v1/echo/q?strings=a&strings=b&ints=1&ints=2&colors=COLOR_RED&colors=2&nested.name=nn&nested.child.n=3", "", 200, `{
			"id": "q", "strings": ["a", "b"], "ints": [1, 2], "colors": ["COLOR_RED", "COLOR_GREEN"],
			"nested": {"name": "nn", "child": {"n": 3}}}`},
		{"query/map entries", "GET", "/v1/echo/q?labels[k1]=v1&labels[k2]=v2&by_id[7].name=x", "", 200,
			`{"id": "q", "labels": {"k1": "v1", "k2": "v2"}}`},
		{"query/path-bound field ignored", "GET", "/v1/echo/fromPath?id=fromQuery", "", 200, `{"id": "fromPath"}`},
		{"query/unknown ignored by default", "GET", "/v1/echo/q?nope=1&alt=json", "", 200, `{"id": "q"}`},
		{"query/ignored with body=*", "POST", "/v1/echo?stringValue=x", `{}`, 200, `{}`},
		{"response_body", "GET", "/v1/echo/r/nested?nested.name=only&stringValue=dropped", "", 200, `{"name": "only"}`},
		{"patch field mask from body", "PATCH", "/v1/things/t9", `{"stringValue": "s", "nested": {"n": 2, "child": {"name": "c"}}, "labels": {"a": "b"}}`, 200, `{
			"thing": {"id": "t9", "stringValue": "s", "nested": {"n": 2, "child": {"name": "c"}}, "labels": {"a": "b"}},
			"updateMask": "labels,nested.child.name,nested.n,stringValue"}`},
		{"patch explicit mask kept", "PATCH", "/v1/things/t9?updateMask=stringValue", `{"stringValue": "s", "int32Value": 1}`, 200, `{
			"thing": {"id": "t9", "stringValue": "s", "int32Value": 1}, "updateMask": "stringValue"}`},
		{"default binding for unannotated method", "POST", "/rosetta.testing.v1.EchoService/Unannotated", `{"stringValue": "u"}`, 200, `{"stringValue": "u"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, c.method, url+c.path, c.body)
			expect(t, r, c.status, c.want)
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type: got %q; want application/json", ct)
			}
		})
	}
}

// TestRESTErrors shows the exact answer for each kind of bad request, and
// that the gateway keeps serving afterwards.
func TestRESTErrors(t *testing.T) {
	t.Parallel()
	url := startDefault(t)
	badField := func(field, msg string) string {
		return `{"code": 3, "message": ` + quote(msg) + `, "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": [{"field": ` + quote(field) + `, "description": ` + quote(msg) + `}]}]}`
	}
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		want                     string
	}{
		{"no route", "GET", "/v2/nothing", "", nil, 404, `{"code": 5, "message": "no route matches GET /v2/nothing", "details": []}`},
		{"trailing slash is another path", "GET", "/v1/echo/abc/", "", nil, 404, `{"code": 5, "message": "no route matches GET /v1/echo/abc/", "details": []}`},
		{"wrong verb", "PUT", "/v1/echo", "", nil, 405, `{"code": 12, "message": "method PUT is not allowed on /v1/echo (allowed: POST)", "details": []}`},
		{"malformed JSON", "POST", "/v1/echo", `{"stringValue": `, nil, 400, badField("body", "invalid JSON body: unexpected EOF")},
		{"wrong type", "POST", "/v1/echo", `{"int32Value": "abc"}`, nil, 400,
			badField("int32Value", `invalid JSON body: (line 1:16): invalid value for int32 field int32Value: "abc"`)},
		{"wrong type deep in the body", "POST", "/v1/echo", `{"nesteds": [{}, {"child": {"n": "x"}}]}`, nil, 400,
			badField("nesteds[1].child.n", `invalid JSON body: (line 1:34): invalid value for int32 field n: "x"`)},
		{"wrong type in a body field", "PUT", "/v1/echo/i/nested", `{"n": true}`, nil, 400,
			badField("nested.n", `invalid JSON body: (line 1:7): invalid value for int32 field n: true`)},
		{"unknown field", "POST", "/v1/echo", `{"nope": 1}`, nil, 400, badField("nope", `invalid JSON body: (line 1:2): unknown field "nope"`)},
		{"bad enum in body", "POST", "/v1/echo", `{"color": "PURPLE"}`, nil, 400,
			badField("color", `invalid JSON body: (line 1:11): invalid value for enum field color: "PURPLE"`)},
		{"not an object", "POST", "/v1/echo", `[1]`, nil, 400,
			badField("body", `invalid JSON body: syntax error (line 1:1): unexpected token [`)},
		{"bad path value", "GET", "/v1/echo/nested/x/notanumber", "", nil, 400,
			badField("nested.n", `invalid value "notanumber" for field "nested.n": not a number`)},
		{"bad query value", "GET", "/v1/echo/q?int32Value=99999999999", "", nil, 400,
			badField("int32Value", `invalid value "99999999999" for field "int32Value": out of range`)},
		{"bad query enum", "GET", "/v1/echo/q?color=PURPLE", "", nil, 400,
			badField("color", `invalid value "PURPLE" for field "color": not a value of enum rosetta.testing.v1.Color`)},
		{"two values for a singular field", "GET", "/v1/echo/q?stringValue=a&stringValue=b", "", nil, 400,
			badField("stringValue", `field "stringValue" takes one value, got 2`)},
		{"malformed query", "GET", "/v1/echo/q?a=%zz", "", nil, 400, badField("query", `malformed query string: invalid URL escape "%zz"`)},
		{"unsupported content type", "POST", "/v1/echo", `a=b`, []string{"Content-Type: application/x-www-form-urlencoded"}, 415,
			`{"code": 3, "message": "unsupported Content-Type \"application/x-www-form-urlencoded\": send application/json", "details": []}`},
		{"bad grpc-timeout", "GET", "/v1/echo/q", "", []string{"Grpc-Timeout: soon"}, 400,
			badField("Grpc-Timeout", `invalid Grpc-Timeout header "soon": want up to 8 digits and a unit, such as 5S or 200m`)},
		{"backend status with details", "POST", "/v1/fail", `{"code": 9, "message": "not now", "withDetails": true}`, nil, 400, `{
			"code": 9, "message": "not now", "details": [
			{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TEST", "domain": "rosetta.test"},
			{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]}`},
		{"backend not found", "POST", "/v1/fail", `{"code": 5, "message": "missing"}`, nil, 404, `{"code": 5, "message": "missing", "details": []}`},
		{"backend unauthenticated", "POST", "/v1/fail", `{"code": 16, "message": "who"}`, nil, 401, `{"code": 16, "message": "who", "details": []}`},
		{"backend unavailable", "POST", "/v1/fail", `{"code": 14, "message": "down"}`, nil, 503, `{"code": 14, "message": "down", "details": []}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, c.method, url+c.path, c.body, c.headers...)
			expect(t, r, c.status, c.want)
			if r.status >= 400 && !strings.Contains(r.body, `"code"`) {
				t.Errorf("error body is not a google.rpc.Status: %s", r.body)
			}
			if r.status >= 500 && r.header.Get("Rosetta-Error-Id") == "" {
				t.Errorf("5xx without Rosetta-Error-Id header")
			}
			// The gateway keeps serving.
			expect(t, do(t, "GET", url+"/v1/echo/ok", ""), 200, `{"id": "ok"}`)
		})
	}
	t.Run("405 Allow header", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/echo", "")
		if got := r.header.Get("Allow"); got != "POST" {
			t.Errorf("Allow: got %q; want POST", got)
		}
		r = do(t, "POST", url+"/v1/echo/abc", "{}")
		if got := r.header.Get("Allow"); got != "DELETE, GET, PATCH" {
			t.Errorf("Allow: got %q; want DELETE, GET, PATCH", got)
		}
	})
	t.Run("401 WWW-Authenticate", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/fail", `{"code": 16, "message": "who"}`)
		if r.header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	})
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

var _ = http.StatusOK
