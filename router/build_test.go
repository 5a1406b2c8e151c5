package router

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/wrapperspb" // registers wrappers.proto in GlobalFiles

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
)

const libraryProto = `syntax = "proto3";
package library.v1;
import "google/api/annotations.proto";
import "google/protobuf/wrappers.proto";

message Book { string name = 1; string shelf_id = 2; repeated string tags = 3; }
message BookRequest {
  string name = 1;
  Book book = 2;
  repeated string tags = 3;
  map<string, string> labels = 4;
  google.protobuf.StringValue etag = 5;
  int64 id = 6;
}
message Empty {}

service Library {
  rpc GetBook(BookRequest) returns (Book) {
    option (google.api.http) = {
      get: "/v1/{name=shelves/*/books/*}"
      additional_bindings { get: "/v1/books/{book.shelf_id}/{book.name}" }
      additional_bindings { custom { kind: "head" path: "/v1/{name=shelves/*/books/*}" } }
    };
  }
  rpc UpdateBook(BookRequest) returns (Book) {
    option (google.api.http) = { patch: "/v1/{book.name=shelves/*/books/*}" body: "book" response_body: "name" };
  }
  rpc WatchBooks(BookRequest) returns (stream Book) {
    option (google.api.http) = { get: "/v1/watch/{id}" };
  }
  rpc GetByEtag(BookRequest) returns (Book) {
    option (google.api.http) = { get: "/v1/etags/{etag}" };
  }
  rpc Ping(Empty) returns (Empty);
}
`

const badProto = `syntax = "proto3";
package bad.v1;
import "google/api/annotations.proto";

message Book { string name = 1; string shelf_id = 2; }
message Req { string name = 1; Book book = 2; repeated string tags = 3; map<string, string> labels = 4; string id = 5; }
message Resp {}

service Bad {
  rpc BadTemplate(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{name=shelves/*" }; }
  rpc UnknownField(Req) returns (Resp) { option (google.api.http) = { get: "/v1/unknown/{nope}" }; }
  rpc NestedUnknown(Req) returns (Resp) { option (google.api.http) = { get: "/v1/nu/{book.nope}" }; }
  rpc Repeated(Req) returns (Resp) { option (google.api.http) = { get: "/v1/tags/{tags}" }; }
  rpc MapVar(Req) returns (Resp) { option (google.api.http) = { get: "/v1/labels/{labels}" }; }
  rpc MessageLeaf(Req) returns (Resp) { option (google.api.http) = { get: "/v1/books/{book}" }; }
  rpc ScalarParent(Req) returns (Resp) { option (google.api.http) = { get: "/v1/sp/{name.x}" }; }
  rpc BadBody(Req) returns (Resp) { option (google.api.http) = { post: "/v1/body" body: "nope" }; }
  rpc NestedBody(Req) returns (Resp) { option (google.api.http) = { post: "/v1/nbody" body: "book.name" }; }
  rpc BadResponseBody(Req) returns (Resp) { option (google.api.http) = { get: "/v1/rb" response_body: "nope" }; }
  rpc BodyOverlap(Req) returns (Resp) { option (google.api.http) = { post: "/v1/overlap/{name}" body: "name" }; }
  rpc BodyStarOK(Req) returns (Resp) { option (google.api.http) = { post: "/v1/star/{name}" body: "*" }; }
  rpc ConflictA(Req) returns (Resp) { option (google.api.http) = { get: "/v1/dup/{name}" }; }
  rpc ConflictB(Req) returns (Resp) { option (google.api.http) = { get: "/v1/dup/{id}" }; }
  rpc NestedAdditional(Req) returns (Resp) {
    option (google.api.http) = {
      get: "/v1/na1"
      additional_bindings { get: "/v1/na2" additional_bindings { get: "/v1/na3" } }
    };
  }
  rpc NoPattern(Req) returns (Resp) { option (google.api.http) = { body: "*" }; }
  rpc BadCustom(Req) returns (Resp) { option (google.api.http) = { custom { kind: "BAD KIND" path: "/v1/custom" } }; }
  rpc Partial(Req) returns (Resp) {
    option (google.api.http) = { get: "/v1/{name=shelves/*" additional_bindings { get: "/v1/partial/{name}" } };
  }
  rpc DefaultClash(Req) returns (Resp);
  rpc ClashWithDefault(Req) returns (Resp) { option (google.api.http) = { post: "/bad.v1.Bad/DefaultClash" body: "*" }; }
}
`

// summarize renders a route on one line for exact comparison.
func summarize(r *Route) string {
	var vars []string
	for _, v := range r.Vars {
		var names []string
		for _, fd := range v.Fields {
			names = append(names, string(fd.Name()))
		}
		vars = append(vars, v.FieldPath+"="+strings.Join(names, ">"))
	}
	name := func(fd protoreflect.FieldDescriptor) string {
		if fd == nil {
			return "-"
		}
		return string(fd.FullName())
	}
	cfg := "-"
	if r.Config != nil {
		cfg = r.Config.Selector
	}
	return fmt.Sprintf("%s %s -> %s [%s] up=%s body=%q(%s) resp=%q(%s) vars=%v cfg=%s",
		r.HTTPMethod, r.Pattern, r.Method.FullName(), r.Source, r.Upstream,
		r.Body, name(r.BodyField), r.ResponseBody, name(r.ResponseBodyField), vars, cfg)
}

func summarizeAll(rs []*Route) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, summarize(r))
	}
	return out
}

func problemStrings(ps []registry.Problem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func TestBuildAnnotations(t *testing.T) {
	t.Parallel()
	snap := newSnapshot(t, compileProtos(t, map[string]string{"library.proto": libraryProto})...)
	routes := []config.Route{{Selector: "library.v1.Library.GetBook"}, {Selector: "library.v1.*"}}
	want := []string{
		`GET /v1/books/{book.shelf_id}/{book.name} -> library.v1.Library.GetBook [annotation] up=library.v1 body=""(-) resp=""(-) vars=[book.shelf_id=book>shelf_id book.name=book>name] cfg=library.v1.Library.GetBook`,
		`GET /v1/etags/{etag} -> library.v1.Library.GetByEtag [annotation] up=library.v1 body=""(-) resp=""(-) vars=[etag=etag] cfg=library.v1.*`,
		`GET /v1/watch/{id} -> library.v1.Library.WatchBooks [annotation] up=library.v1 body=""(-) resp=""(-) vars=[id=id] cfg=library.v1.*`,
		`PATCH /v1/{book.name=shelves/*/books/*} -> library.v1.Library.UpdateBook [annotation] up=library.v1 body="book"(library.v1.BookRequest.book) resp="name"(library.v1.Book.name) vars=[book.name=book>name] cfg=library.v1.*`,
		`GET /v1/{name=shelves/*/books/*} -> library.v1.Library.GetBook [annotation] up=library.v1 body=""(-) resp=""(-) vars=[name=name] cfg=library.v1.Library.GetBook`,
		`HEAD /v1/{name=shelves/*/books/*} -> library.v1.Library.GetBook [annotation] up=library.v1 body=""(-) resp=""(-) vars=[name=name] cfg=library.v1.Library.GetBook`,
	}
	defaultPing := `POST /library.v1.Library/Ping -> library.v1.Library.Ping [default] up=library.v1 body="*"(-) resp=""(-) vars=[] cfg=library.v1.*`

	for _, tt := range []struct {
		name     string
		defaults bool
		want     []string
	}{
		{"default-bindings-off", false, want},
		{"default-bindings-on", true, append([]string{defaultPing}, want...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tab, problems := Build(snap, Params{Routes: routes, DefaultBindings: tt.defaults})
			if len(problems) > 0 {
				t.Errorf("problems: %v; want none", problems)
			}
			if diff := cmp.Diff(tt.want, summarizeAll(tab.Routes())); diff != "" {
				t.Errorf("Routes() mismatch (-want +got):\n%s", diff)
			}
			got := summarizeAll(tab.RouteFor("library.v1.Library.GetBook"))
			wantGet := []string{want[4], want[0], want[5]} // primary binding, then additional_bindings in order
			if diff := cmp.Diff(wantGet, got); diff != "" {
				t.Errorf("RouteFor(GetBook) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildProblems(t *testing.T) {
	t.Parallel()
	snap := newSnapshot(t, compileProtos(t, map[string]string{"bad.proto": badProto})...)
	tab, problems := Build(snap, Params{DefaultBindings: true})
	const fix = " (the first method by full name keeps it; change one of the paths)"
	wantProblems := []string{
		`upstream bad.v1: bad.v1.Bad.BadBody: google.api.http: POST "/v1/body": body "nope": request message bad.v1.Req has no top-level field "nope" (set body to "", "*" or one of its fields)`,
		`upstream bad.v1: bad.v1.Bad.BadCustom: google.api.http: custom "/v1/custom": custom kind "BAD KIND" is not an HTTP method (want a token such as HEAD, or "*" for any method)`,
		`upstream bad.v1: bad.v1.Bad.BadResponseBody: google.api.http: GET "/v1/rb": response_body "nope": response message bad.v1.Resp has no top-level field "nope" (omit response_body to send the whole response, or name one of its fields)`,
		`upstream bad.v1: bad.v1.Bad.BadTemplate: google.api.http: GET "/v1/{name=shelves/*": missing "}" at offset 19`,
		`upstream bad.v1: bad.v1.Bad.BodyOverlap: google.api.http: POST "/v1/overlap/{name}": path variable "name" is also the body field (bind the field in the path or in the body, not both)`,
		`upstream bad.v1: bad.v1.Bad.ConflictB: google.api.http: GET "/v1/dup/{id}": conflicts with GET "/v1/dup/{name}" of bad.v1.Bad.ConflictA` + fix,
		`upstream bad.v1: bad.v1.Bad.DefaultClash: default binding: POST "/bad.v1.Bad/DefaultClash": conflicts with POST "/bad.v1.Bad/DefaultClash" of bad.v1.Bad.ClashWithDefault` + fix,
		`upstream bad.v1: bad.v1.Bad.MapVar: google.api.http: GET "/v1/labels/{labels}": path variable "labels": field labels is a map (path variables must bind a singular field)`,
		`upstream bad.v1: bad.v1.Bad.MessageLeaf: google.api.http: GET "/v1/books/{book}": path variable "book": field book is a message (bad.v1.Book); bind one of its scalar fields, e.g. "book.name"`,
		`upstream bad.v1: bad.v1.Bad.NestedAdditional: google.api.http: additional_bindings inside additional_bindings are ignored (nesting may only be one level deep)`,
		`upstream bad.v1: bad.v1.Bad.NestedBody: google.api.http: POST "/v1/nbody": body "book.name": request message bad.v1.Req has no top-level field "book.name" (set body to "", "*" or one of its fields)`,
		`upstream bad.v1: bad.v1.Bad.NestedUnknown: google.api.http: GET "/v1/nu/{book.nope}": path variable "book.nope": message bad.v1.Book has no field "nope"`,
		`upstream bad.v1: bad.v1.Bad.NoPattern: google.api.http: no HTTP method and path (set exactly one of get, put, post, delete, patch or custom)`,
		`upstream bad.v1: bad.v1.Bad.Partial: google.api.http: GET "/v1/{name=shelves/*": missing "}" at offset 19`,
		`upstream bad.v1: bad.v1.Bad.Repeated: google.api.http: GET "/v1/tags/{tags}": path variable "tags": field tags is repeated (path variables must bind a singular field)`,
		`upstream bad.v1: bad.v1.Bad.ScalarParent: google.api.http: GET "/v1/sp/{name.x}": path variable "name.x": field name has type string, not a message`,
		`upstream bad.v1: bad.v1.Bad.UnknownField: google.api.http: GET "/v1/unknown/{nope}": path variable "nope": message bad.v1.Req has no field "nope"`,
	}
	if diff := cmp.Diff(wantProblems, problemStrings(problems)); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	var got []string
	for _, r := range tab.Routes() {
		got = append(got, r.HTTPMethod+" "+r.Pattern+" "+string(r.Method.Name()))
	}
	wantRoutes := []string{
		"POST /bad.v1.Bad/DefaultClash ClashWithDefault",
		"GET /v1/dup/{name} ConflictA",
		"GET /v1/na1 NestedAdditional",
		"GET /v1/na2 NestedAdditional",
		"GET /v1/partial/{name} Partial",
		"POST /v1/star/{name} BodyStarOK",
	}
	if diff := cmp.Diff(wantRoutes, got); diff != "" {
		t.Errorf("surviving routes mismatch (-want +got):\n%s", diff)
	}
}

func TestBuildConfigRules(t *testing.T) {
	t.Parallel()
	snap := newSnapshot(t, compileProtos(t, map[string]string{"library.proto": libraryProto})...)
	p := Params{
		DefaultBindings: true,
		Rules: []config.HTTPRule{
			{
				Selector:           "library.v1.Library.GetBook",
				Get:                "/v2/books/{name}",
				AdditionalBindings: []config.HTTPRule{{Post: "/v2/books/{name}:get", Body: "*"}},
			},
			{Selector: "library.v1.Library.Nope", Get: "/x", Pos: config.Pos{File: "rosetta.yaml", Line: 3, Col: 5}},
			{Selector: "library.v1.*", Get: "/y"},
			{Selector: "/library.v1.Library/GetBook", Get: "/z"},
			{Selector: "library.v1.Library.Ping", Get: "/v2/ping", Post: "/v2/ping", Pos: config.Pos{Line: 7, Col: 3}},
			{Selector: "library.v1.Library.WatchBooks", Get: "/v2/old"},
			{Selector: "library.v1.Library.WatchBooks", Get: "/v2/watch/{id}"},
			{Selector: "library.v1.Library.UpdateBook", Patch: "/v2/{book.name", Pos: config.Pos{File: "rosetta.yaml", Line: 12, Col: 7}},
			{Selector: "library.v1.Library.GetByEtag", Custom: &config.CustomRule{Kind: "", Path: "/v2/etag"}},
		},
	}
	tab, problems := Build(snap, p)
	wantProblems := []string{
		`rosetta.yaml:3:5: http rule selector "library.v1.Library.Nope" names no known method (want a method's full name, e.g. "pkg.Service.Method")`,
		`http rule selector "library.v1.*" names no known method (want a method's full name, e.g. "pkg.Service.Method")`,
		`http rule selector "/library.v1.Library/GetBook" names no known method (want a method's full name, e.g. "pkg.Service.Method")`,
		`http rule library.v1.Library.GetByEtag: custom "/v2/etag": custom kind "" is not an HTTP method (want a token such as HEAD, or "*" for any method)`,
		`7:3: http rule library.v1.Library.Ping: sets get and post (set exactly one of get, put, post, delete, patch or custom)`,
		`rosetta.yaml:12:7: http rule library.v1.Library.UpdateBook: PATCH "/v2/{book.name": missing "}" at offset 14`,
	}
	if diff := cmp.Diff(wantProblems, problemStrings(problems)); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	want := []string{
		`GET /v2/books/{name} -> library.v1.Library.GetBook [config] up=library.v1 body=""(-) resp=""(-) vars=[name=name] cfg=-`,
		`POST /v2/books/{name}:get -> library.v1.Library.GetBook [config] up=library.v1 body="*"(-) resp=""(-) vars=[name=name] cfg=-`,
		`GET /v2/watch/{id} -> library.v1.Library.WatchBooks [config] up=library.v1 body=""(-) resp=""(-) vars=[id=id] cfg=-`,
	}
	if diff := cmp.Diff(want, summarizeAll(tab.Routes())); diff != "" {
		t.Errorf("Routes() mismatch (-want +got):\n%s", diff)
	}
	m, _, ok := tab.Match("POST", "/v2/books/b1:get")
	if !ok || m.Route.Method.Name() != "GetBook" || !cmp.Equal(m.Values, []string{"b1"}) {
		t.Errorf("Match(POST /v2/books/b1:get) = %v, %v, %v; want GetBook [b1]", m.Route, m.Values, ok)
	}
}

// TestBuildUnknownOption checks descriptors whose google.api.http option
// is held as unknown fields, as when they come from a descriptor set
// decoded without the extension registered.
func TestBuildUnknownOption(t *testing.T) {
	t.Parallel()
	files := compileProtos(t, map[string]string{"library.proto": libraryProto})
	raw, err := proto.Marshal(protodesc.ToFileDescriptorProto(files[0]))
	if err != nil {
		t.Fatal(err)
	}
	var fdp descriptorpb.FileDescriptorProto
	if err := (proto.UnmarshalOptions{Resolver: new(protoregistry.Types)}).Unmarshal(raw, &fdp); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(&fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("protodesc.NewFile: %v", err)
	}
	md := fd.Services().Get(0).Methods().ByName("GetBook")
	if len(md.Options().ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("GetBook options hold no unknown fields; the test does not exercise the unknown-field path")
	}
	tab, problems := Build(newSnapshot(t, fd), Params{})
	if len(problems) > 0 {
		t.Errorf("problems: %v; want none", problems)
	}
	if got, want := len(tab.Routes()), 6; got != want {
		t.Errorf("got %d routes; want %d", got, want)
	}
	if m, _, ok := tab.Match("GET", "/v1/shelves/s1/books/b1"); !ok || m.Route.Method.Name() != "GetBook" {
		t.Errorf("Match(GET /v1/shelves/s1/books/b1) = %v, %v; want GetBook", m.Route, ok)
	}
}

func TestBuildNilSnapshot(t *testing.T) {
	t.Parallel()
	tab, problems := Build(nil, Params{Rules: []config.HTTPRule{{Selector: "a.B.C", Get: "/x"}}})
	want := []string{`http rule selector "a.B.C" names no known method (want a method's full name, e.g. "pkg.Service.Method")`}
	if diff := cmp.Diff(want, problemStrings(problems)); diff != "" {
		t.Errorf("problems mismatch (-want +got):\n%s", diff)
	}
	if _, allow, ok := tab.Match("GET", "/x"); ok || allow != nil {
		t.Errorf("empty table matched /x")
	}
}
