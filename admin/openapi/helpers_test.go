package openapi

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// compileSet compiles .proto files (named relative to importPaths) with
// source info, resolving what no import path holds from the descriptors
// linked into the test binary (google/protobuf, google/api, google/rpc),
// and returns them with their imports, dependencies first. It fails t on
// a compile error, listing every problem.
func compileSet(t testing.TB, importPaths []string, files ...string) *descriptorpb.FileDescriptorSet {
	t.Helper()
	var errs []error
	rep := reporter.NewReporter(func(err reporter.ErrorWithPos) error {
		errs = append(errs, err)
		return nil
	}, func(reporter.ErrorWithPos) {})
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
				if strings.HasPrefix(path, "google/") {
					if fd, err := protoregistry.GlobalFiles.FindFileByPath(path); err == nil {
						return protocompile.SearchResult{Desc: fd}, nil
					}
				}
				return protocompile.SearchResult{}, protoregistry.NotFound
			}),
			&protocompile.SourceResolver{ImportPaths: importPaths},
		}),
		Reporter:       rep,
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	linked, err := c.Compile(context.Background(), files...)
	if err != nil {
		if len(errs) > 0 {
			err = errors.Join(errs...)
		}
		t.Fatalf("compile %v: %v", files, err)
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var walk func(fd protoreflect.FileDescriptor)
	walk = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			walk(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range linked {
		walk(fd)
	}
	return set
}

// writeSet writes a descriptor set to a temporary file and returns its
// path.
func writeSet(t testing.TB, set *descriptorpb.FileDescriptorSet) string {
	t.Helper()
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "set.binpb")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadSnapshot loads descriptor-set files through a real registry, one
// upstream per entry of upstreams (name → files, each upstream serving
// the services its files define, or only services when given), and
// builds the route table with p.
func loadSnapshot(t testing.TB, upstreams map[string][]string, services map[string][]string, p router.Params) (*registry.Snapshot, *router.Table, []registry.Problem) {
	t.Helper()
	var specs []registry.UpstreamSpec
	names := make([]string, 0, len(upstreams))
	for n := range upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		specs = append(specs, registry.UpstreamSpec{Name: n, Files: upstreams[n], Services: services[n]})
	}
	reg, err := registry.New(registry.Params{Upstreams: specs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	snap, err := reg.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	table, problems := router.Build(snap, p)
	return snap, table, append(snap.Problems, problems...)
}

// pathParam matches one parameter of an OpenAPI path.
var pathParam = regexp.MustCompile(`\{([^{}]*)\}`)

// checkPaths checks that every path of doc is one a generic OpenAPI
// client can fill in: no HttpRule syntax ("=", "*"), parameters that are
// whole segments (or a segment's text before a ":verb"), each named once,
// and each operation declaring exactly the path's parameters, required,
// with the parameters of x-rosetta-template's variables among them.
func checkPaths(t testing.TB, doc *Document) {
	t.Helper()
	for path, item := range doc.Paths {
		if strings.ContainsAny(path, "=*") {
			t.Errorf("path %s: HttpRule syntax", path)
		}
		inPath := map[string]bool{}
		for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
			for _, m := range pathParam.FindAllStringSubmatchIndex(seg, -1) {
				name := seg[m[2]:m[3]]
				rest := seg[m[1]:]
				if m[0] != 0 || rest != "" && !strings.HasPrefix(rest, ":") {
					t.Errorf("path %s: parameter %s is not a whole segment", path, name)
				}
				if name == "" || inPath[name] {
					t.Errorf("path %s: parameter %q empty or repeated", path, name)
				}
				inPath[name] = true
			}
		}
		for m, op := range item.Operations() {
			declared := map[string]bool{}
			for _, p := range op.Parameters {
				if p.In != "path" {
					continue
				}
				declared[p.Name] = true
				if !inPath[p.Name] || !p.Required || p.Schema == nil {
					t.Errorf("%s %s: path parameter %s: not in the path, not required or without schema", m, path, p.Name)
				}
			}
			if len(declared) != len(inPath) {
				t.Errorf("%s %s: declares path parameters %v; the path has %v", m, path, declared, inPath)
			}
			for _, v := range op.Template.Variables {
				for _, p := range v.Parameters {
					if !declared[p] {
						t.Errorf("%s %s: variable %s is made of %s, which is no path parameter", m, path, v.Field, p)
					}
				}
			}
		}
	}
}
