package openapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit/snapshot"
	"github.com/rosetta-gateway/rosetta/router"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenSnapshot loads testdata/golden.proto (with source info) as
// upstream "golden".
func goldenSnapshot(t *testing.T, p router.Params) *Document {
	t.Helper()
	set := compileSet(t, []string{"testdata"}, "golden.proto")
	snap, table, problems := loadSnapshot(t, map[string][]string{"golden": {writeSet(t, set)}}, nil, p)
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	doc, err := Generate(snap, table, Options{
		Title:   "Golden",
		Version: "1.0.0",
		Servers: []string{"https://api.example.com"},
		Security: func(m protoreflect.FullName) []Security {
			if m != "golden.v1.Shelves.UpdateBook" {
				return nil
			}
			return []Security{
				{Name: "bearerAuth", Scheme: SecurityScheme{Type: "http", Scheme: "bearer", BearerFormat: "JWT"}, Scopes: []string{"books.write"}},
				{Name: "apiKeyHeader_apikey", Scheme: SecurityScheme{Type: "apiKey", In: "header", Name: "apikey"}},
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestGolden compares the document of a small API with
// testdata/golden.json (go test -run TestGolden -update rewrites it) and
// validates it.
func TestGolden(t *testing.T) {
	doc := goldenSnapshot(t, router.Params{})
	got, err := doc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	validateDocument(t, got)
	path := filepath.Join("testdata", "golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("document differs from %s (-want +got):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

// TestEchoDocument validates the document of the test service, which
// binds every google.api.http feature, and checks the features' shapes.
func TestEchoDocument(t *testing.T) {
	t.Parallel()
	snap, table := snapshot.EchoSnapshot(t)
	doc, err := Generate(snap, table, Options{Upstream: "test"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := doc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	validateDocument(t, b)
	if len(doc.Omitted) > 0 {
		t.Errorf("omitted bindings: %+v", doc.Omitted)
	}

	ops := map[string]*Operation{}
	for _, item := range doc.Paths {
		for _, op := range item.Operations() {
			if ops[op.OperationID] != nil {
				t.Errorf("operationId %s appears twice", op.OperationID)
			}
			ops[op.OperationID] = op
		}
	}
	for _, id := range []string{"EchoService_Echo", "EchoService_Echo_1", "EchoService_Echo_7", "EchoService_Unannotated", "EchoService_ServerStream"} {
		if ops[id] == nil {
			t.Errorf("no operation %s", id)
		}
	}

	everything := doc.Components.Schemas["rosetta.testing.v1.Everything"]
	if everything == nil {
		t.Fatal("no schema for rosetta.testing.v1.Everything")
	}
	for prop, want := range map[string]string{
		"int64Value":    `{"type":"string","format":"int64","pattern":"^-?[0-9]+$"}`,
		"uint64Value":   `{"type":"string","format":"uint64","pattern":"^[0-9]+$"}`,
		"fixed64Value":  `{"type":"string","format":"uint64","pattern":"^[0-9]+$"}`,
		"bytesValue":    `{"type":"string","format":"byte","contentEncoding":"base64"}`,
		"color":         `{"$ref":"#/components/schemas/rosetta.testing.v1.Color"}`,
		"labels":        `{"type":"object","additionalProperties":{"type":"string"}}`,
		"byId":          `{"type":"object","additionalProperties":{"$ref":"#/components/schemas/rosetta.testing.v1.Nested"},"propertyNames":{"pattern":"^-?[0-9]+$"}}`,
		"nesteds":       `{"type":"array","items":{"$ref":"#/components/schemas/rosetta.testing.v1.Nested"}}`,
		"ts":            `{"type":"string","format":"date-time","description":"An RFC 3339 timestamp in UTC, e.g. 2024-01-02T15:04:05Z."}`,
		"int64Wrapper":  `{"type":"string","format":"int64","pattern":"^-?[0-9]+$"}`,
		"st":            `{"type":"object","additionalProperties":{}}`,
		"list":          `{"type":"array","items":{}}`,
		"empty":         `{"type":"object"}`,
		"stringWrapper": `{"type":"string"}`,
	} {
		got, _ := json.Marshal(everything.Properties[prop])
		assertJSON(t, prop, string(got), want)
	}
	if diff := cmp.Diff(map[string][]string{"choice": {"text", "number", "item"}}, everything.Oneofs); diff != "" {
		t.Errorf("oneofs (-want +got):\n%s", diff)
	}
	if c := doc.Components.Schemas["rosetta.testing.v1.Color"]; c == nil || c.Type != "string" || len(c.Enum) != 3 {
		t.Errorf("Color: %+v", c)
	}

	// Paths, parameters and bodies of a few bindings.
	get := doc.Paths["/v1/echo/things/{thing}/parts/{part}"].Get
	if get == nil || len(get.Parameters) < 2 || !get.Parameters[1].RawSlashes || get.Parameters[0].RawSlashes {
		t.Errorf("multi-segment binding: %+v", get)
	}
	nested := doc.Paths["/v1/echo/{id}/nested"]
	if nested.Put == nil || nested.Put.RequestBody == nil || nested.Get == nil {
		t.Fatalf("/v1/echo/{id}/nested: %+v", nested)
	}
	assertJSON(t, "body field", mustJSON(nested.Put.RequestBody.Content["application/json"].Schema), `{"$ref":"#/components/schemas/rosetta.testing.v1.Nested"}`)
	assertJSON(t, "response_body", mustJSON(nested.Get.Responses["200"].Content["application/json"].Schema), `{"$ref":"#/components/schemas/rosetta.testing.v1.Nested"}`)
	for _, p := range nested.Put.Parameters {
		if p.In == "query" && (p.Name == "nested.name" || p.Name == "nested" || p.Name == "id") {
			t.Errorf("query parameter %s is bound by the path or body", p.Name)
		}
	}
	query := map[string]*Parameter{}
	for _, p := range doc.Paths["/v1/echo/{id}"].Get.Parameters {
		if p.In == "query" {
			query[p.Name] = p
		}
	}
	for name, want := range map[string]string{
		"strings":        `{"name":"strings","in":"query","style":"form","explode":true,"schema":{"type":"array","items":{"type":"string"}}}`,
		"colors":         `{"name":"colors","in":"query","style":"form","explode":true,"schema":{"type":"array","items":{"$ref":"#/components/schemas/rosetta.testing.v1.Color"}}}`,
		"nested.child.n": "",
		"nested.n":       `{"name":"nested.n","in":"query","schema":{"type":"integer","format":"int32"}}`,
		"dur":            `{"name":"dur","in":"query","schema":{"type":"string","pattern":"^-?[0-9]+(\\.[0-9]{1,9})?s$","description":"A duration in seconds with the suffix \"s\", e.g. \"1.5s\"."}}`,
	} {
		p := query[name]
		if want == "" {
			if p != nil {
				t.Errorf("query parameter %s: recursion not cut: %+v", name, p)
			}
			continue
		}
		if p == nil {
			t.Errorf("no query parameter %s", name)
			continue
		}
		assertJSON(t, name, mustJSON(p), want)
	}
	if p := query["labels"]; p == nil || p.Style != "deepObject" {
		t.Errorf("map query parameter: %+v", p)
	}
	for _, skipped := range []string{"id", "nesteds", "byId", "st", "val", "list", "any"} {
		if query[skipped] != nil {
			t.Errorf("query parameter %s should be left out", skipped)
		}
	}

	stream := doc.Paths["/v1/stream"].Get.Responses["200"].Content
	for _, mt := range []string{"application/x-ndjson", "application/json", "text/event-stream"} {
		if stream[mt] == nil {
			t.Errorf("server stream: no %s", mt)
		}
	}
	if s := stream["application/json"].Schema; s == nil || s.Type != "array" {
		t.Errorf("server stream as a JSON array: %+v", s)
	}
	client := doc.Paths["/v1/stream:client"].Post
	if client.Streaming != "client" || client.RequestBody.Content["application/json"] == nil {
		t.Errorf("client stream: %+v", client)
	}
	upload := doc.Paths["/v1/files"].Post
	if upload.RequestBody.Content["*/*"] == nil || upload.Responses["200"].Content["*/*"] == nil {
		t.Errorf("HttpBody upload: %+v", upload)
	}
	if doc.Paths["/v1/files/{name}"].Get.Responses["200"].Content["*/*"] == nil {
		t.Error("HttpBody download: no */* response")
	}
	if doc.Components.Schemas["google.rpc.Status"] == nil {
		t.Error("no google.rpc.Status schema")
	}
}

// TestStyles checks that per-route JSON options give their own component
// schemas. The route selects GetBook, which answers a Book: a method with
// response_body (Title answers the title, a string) reaches no message
// schema in its style.
func TestStyles(t *testing.T) {
	t.Parallel()
	on := true
	doc := goldenSnapshot(t, router.Params{Routes: []config.Route{{
		Selector: "golden.v1.Shelves.GetBook",
		JSON:     config.JSONOptions{UseProtoNames: &on, UseEnumNumbers: &on, Int64AsNumbers: &on, EmitUnpopulated: &on},
	}}})
	b, _ := doc.JSON()
	validateDocument(t, b)
	s := doc.Components.Schemas["golden.v1.Book-proto_names-enum_numbers-int64_numbers-emit_unpopulated"]
	if s == nil {
		t.Fatalf("no styled Book schema; have %v", keys(doc.Components.Schemas))
	}
	for prop, want := range map[string]string{
		"create_time": `{"type":["string","null"],"format":"date-time","description":"An RFC 3339 timestamp in UTC, e.g. 2024-01-02T15:04:05Z."}`,
		"pages":       `{"type":"integer","format":"int64"}`,
		"kind":        `{"$ref":"#/components/schemas/golden.v1.Kind-enum_numbers"}`,
		"reprint_of":  "",
	} {
		p := s.Properties[prop]
		if want == "" {
			if p == nil || p.Ref == "" {
				t.Errorf("%s: a oneof member is never null: %s", prop, mustJSON(p))
			}
			continue
		}
		assertJSON(t, prop, mustJSON(p), want)
	}
	if k := doc.Components.Schemas["golden.v1.Kind-enum_numbers"]; k == nil || k.Type != "integer" {
		t.Errorf("Kind with enum numbers: %s", mustJSON(k))
	}
	if doc.Components.Schemas["golden.v1.Book"] == nil {
		t.Error("the other routes lost the default Book schema")
	}
}

func TestUnknownUpstream(t *testing.T) {
	t.Parallel()
	snap, table := snapshot.EchoSnapshot(t)
	if _, err := Generate(snap, table, Options{Upstream: "nope"}); err == nil {
		t.Error("no error for an unknown upstream")
	}
	doc, err := Generate(nil, nil, Options{})
	if err != nil || len(doc.Paths) != 0 {
		t.Errorf("nil snapshot: %v, %+v", err, doc)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// assertJSON compares two JSON texts by value.
func assertJSON(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad test JSON: %v\n%s", what, err, want)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}
