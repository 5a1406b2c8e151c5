package registry

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestDescriptorSetFile(t *testing.T) {
	t.Parallel()
	path := writeDescriptorSet(t, librarySources)

	set, err := LoadDescriptorSet(path)
	if err != nil {
		t.Fatalf("LoadDescriptorSet: %v", err)
	}
	if got := len(set.GetFile()); got != 4 { // 3 lib files + timestamp.proto
		t.Errorf("files in set: got %d; want 4", got)
	}

	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{{Name: "library", Files: []string{path}}}})
	snap := load(t, r)
	if diff := cmp.Diff([]string{"lib.Admin@library", "lib.Library@library"}, serviceNames(snap)); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if len(snap.Problems) != 0 {
		t.Errorf("problems: got %q; want none", problemStrings(snap.Problems))
	}
}

func TestDescriptorSetMissing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "absent.binpb")
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{{Name: "gone", Files: []string{path}}}})
	snap := load(t, r)
	if len(snap.Problems) != 1 || !strings.HasPrefix(snap.Problems[0].Msg, "read descriptor set: open "+path) {
		t.Errorf("problems: got %q; want the read error", problemStrings(snap.Problems))
	}
}

// writeTree writes files under a new temporary directory and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var shelfTree = map[string]string{
	"acme/v1/shelf.proto": `syntax = "proto3";
package acme.v1;
import "acme/v1/types.proto";
import "google/api/annotations.proto";
import "google/api/httpbody.proto";
service Shelves {
  rpc ListShelves(ListShelvesRequest) returns (ListShelvesResponse) {
    option (google.api.http) = { get: "/v1/shelves" };
  }
  rpc Download(ListShelvesRequest) returns (google.api.HttpBody);
}
`,
	"acme/v1/types.proto": `syntax = "proto3";
package acme.v1;
message ListShelvesRequest { int32 page_size = 1; }
message ListShelvesResponse { repeated string names = 1; }
service NotServed { rpc X(ListShelvesRequest) returns (ListShelvesResponse); }
`,
}

func TestProtoFiles(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, shelfTree)
	root := filepath.Join(dir, "acme/v1/shelf.proto")

	set, err := CompileProtos(context.Background(), []string{dir}, []string{root})
	if err != nil {
		t.Fatalf("CompileProtos: %v", err)
	}
	var names []string
	for _, f := range set.GetFile() {
		names = append(names, f.GetName())
	}
	// Dependencies first; google/api files come from the gateway's copies.
	if last := names[len(names)-1]; last != "acme/v1/shelf.proto" {
		t.Errorf("last file: got %s; want acme/v1/shelf.proto (imports first) in %q", last, names)
	}
	for _, want := range []string{"google/api/annotations.proto", "google/api/http.proto", "google/api/httpbody.proto", "acme/v1/types.proto"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("files: got %q; want %s among them", names, want)
		}
	}

	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{{
		Name:        "acme",
		Protos:      []string{root},
		ImportPaths: []string{dir},
	}}})
	snap := load(t, r)
	if len(snap.Problems) != 0 {
		t.Errorf("problems: got %q; want none", problemStrings(snap.Problems))
	}
	// Only the services of the files named in Protos are served.
	if diff := cmp.Diff([]string{"acme.v1.Shelves@acme"}, serviceNames(snap)); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	md, _, ok := snap.Method("/acme.v1.Shelves/ListShelves")
	if !ok {
		t.Fatal("ListShelves not found")
	}
	rule, _ := proto.GetExtension(md.Options().(*descriptorpb.MethodOptions), annotations.E_Http).(*annotations.HttpRule)
	if got := rule.GetGet(); got != "/v1/shelves" {
		t.Errorf("google.api.http get: got %q; want /v1/shelves", got)
	}
}

func TestCompileError(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{
		"bad.proto": "syntax = \"proto3\";\npackage bad;\nmessage M {\n  Missing x = 1;\n}\n",
	})
	_, err := CompileProtos(context.Background(), []string{dir}, []string{"bad.proto"})
	const want = "compile protos: bad.proto:4:3: "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "Missing") {
		t.Fatalf("CompileProtos: got %v; want an error starting %q naming Missing", err, want)
	}

	// In a registry, the error is a problem of that upstream; others serve.
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{
		{Name: "bad", Protos: []string{"bad.proto"}, ImportPaths: []string{dir}},
		{Name: "library", Files: []string{writeDescriptorSet(t, librarySources)}},
	}})
	snap := load(t, r)
	if diff := cmp.Diff([]Problem{{Upstream: "bad", Msg: err.Error()}}, snap.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"lib.Admin@library", "lib.Library@library"}, serviceNames(snap)); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}
