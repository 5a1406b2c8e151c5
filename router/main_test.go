package router

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// compileProtos compiles inline .proto sources (google/api/annotations.proto
// and the standard imports are available) and returns every file.
func compileProtos(tb testing.TB, files map[string]string) []protoreflect.FileDescriptor {
	tb.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(files)},
			protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
				switch path {
				case "google/api/annotations.proto":
					return protocompile.SearchResult{Desc: annotations.File_google_api_annotations_proto}, nil
				case "google/api/http.proto":
					return protocompile.SearchResult{Desc: annotations.File_google_api_http_proto}, nil
				}
				return protocompile.SearchResult{}, os.ErrNotExist
			}),
		}),
	}
	res, err := c.Compile(context.Background(), names...)
	if err != nil {
		tb.Fatalf("compile protos: %v", err)
	}
	out := make([]protoreflect.FileDescriptor, len(res))
	for i, f := range res {
		out[i] = f
	}
	return out
}

// newSnapshot returns a snapshot serving every service of files; the
// upstream of a service is its package name.
func newSnapshot(tb testing.TB, files ...protoreflect.FileDescriptor) *registry.Snapshot {
	tb.Helper()
	var svcs []*registry.Service
	for _, f := range files {
		for i := 0; i < f.Services().Len(); i++ {
			svcs = append(svcs, &registry.Service{Desc: f.Services().Get(i), Upstream: string(f.Package())})
		}
	}
	return registry.NewSnapshot(1, nil, nil, svcs, nil)
}

// testRules is the table the matching tests, the fuzz target and the
// benchmark run against: method name → binding.
var testRules = []config.HTTPRule{
	{Selector: "ListShelves", Get: "/v1/shelves"},
	{Selector: "CreateShelf", Post: "/v1/shelves", Body: "*"},
	{Selector: "GetShelf", Get: "/v1/shelves/{shelf}"},
	{Selector: "DeleteShelf", Delete: "/v1/shelves/{shelf}"},
	{Selector: "SpecialShelf", Get: "/v1/shelves/special"},
	{Selector: "GetBook", Get: "/v1/{name=shelves/*/books/*}"},
	{Selector: "GetBookNested", Get: "/v2/shelves/{book.shelf_id}/books/{book.name}"},
	{Selector: "Publish", Post: "/v1/{name=shelves/*/books/*}:publish", Body: "*"},
	{Selector: "GetThing", Get: "/v1/things/{id}"},
	{Selector: "GetFile", Get: "/files/{path=**}"},
	{Selector: "AnyX", Get: "/v1/any/*/x"},
	{Selector: "Download", Get: "/v1/docs/{name=**}:download"},
	{Selector: "HeadThing", Custom: &config.CustomRule{Kind: "head", Path: "/v1/heads/{id}"}},
	{Selector: "Wild", Custom: &config.CustomRule{Kind: "*", Path: "/v1/wild"}},
	{Selector: "Spaced", Get: "/v1/lit/a%20b"},
}

const testProto = `syntax = "proto3";
package test.v1;
message Book { string shelf_id = 1; string name = 2; }
message Req { string name = 1; string id = 2; string shelf = 3; string path = 4; Book book = 5; }
message Resp {}
service Svc {
%s}
`

// newTable builds a table of test.v1.Svc with one method per rule; a
// rule's selector is the bare method name.
func newTable(tb testing.TB, rules []config.HTTPRule) *Table {
	tb.Helper()
	var methods strings.Builder
	full := make([]config.HTTPRule, len(rules))
	for i, r := range rules {
		fmt.Fprintf(&methods, "  rpc %s(Req) returns (Resp);\n", r.Selector)
		r.Selector = "test.v1.Svc." + r.Selector
		full[i] = r
	}
	files := compileProtos(tb, map[string]string{"test.proto": fmt.Sprintf(testProto, methods.String())})
	tab, problems := Build(newSnapshot(tb, files...), Params{Rules: full})
	if len(problems) > 0 {
		tb.Fatalf("Build problems: %v", problems)
	}
	return tab
}
