package openapi

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	// google/api/visibility.proto, imported by one of grpc-gateway's
	// examples, is not linked into the gateway.
	_ "google.golang.org/genproto/googleapis/api/visibility"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rosetta-gateway/rosetta/router"
)

// moduleDir returns the directory of a module of the build list (from the
// module cache), or skips t when the go command cannot say.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("module %s is not in the module cache: %v", module, err)
	}
	return dir
}

// TestGRPCGatewayExamples generates and validates the documents of
// grpc-gateway's example protos (compiled from the grpc-gateway module,
// which go.mod requires): a_bit_of_everything and its neighbours cover
// path enums, nested and repeated path and query parameters, oneofs, maps,
// wrappers, HttpBody, response_body, streams and deprecated fields. Each
// proto package is an upstream: its document is validated, and so is the
// whole one. Skipped with -short.
func TestGRPCGatewayExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and validates a large proto set")
	}
	t.Parallel()
	root := moduleDir(t, "github.com/grpc-ecosystem/grpc-gateway/v2")
	var files []string
	for _, dir := range []string{"examples/internal/proto", "examples/internal/helloworld"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".proto") {
				rel, _ := filepath.Rel(root, path)
				files = append(files, filepath.ToSlash(rel))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(files)
	set := compileSet(t, []string{root}, files...)
	checkSet(t, set, 25, validation{whole: true, partEvery: 1})
}

// TestGoogleAPIs generates and validates the documents of the Google
// Cloud APIs: the descriptors embedded in the generated code of the
// monolithic google.golang.org/genproto module (its googleapis tree of
// 2020: Pub/Sub, Spanner, Firestore, Storage, BigQuery, Logging,
// Monitoring, Kubernetes Engine, ... some 2,300 files), read from the
// module cache. That module predates the split genproto modules go.mod
// requires and cannot be built beside them, so its descriptors are taken
// from the source: each file's rawDesc byte literal (without source info,
// so without comments). The test is skipped when the module is not in
// the cache, and with -short.
func TestGoogleAPIs(t *testing.T) {
	if testing.Short() {
		t.Skip("validates documents of hundreds of services")
	}
	t.Parallel()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "google.golang.org", "genproto@*", "googleapis"))
	if len(dirs) == 0 {
		t.Skip("the monolithic google.golang.org/genproto module is not in the module cache")
	}
	sort.Strings(dirs)
	dir := dirs[len(dirs)-1]
	t.Logf("descriptors from %s", dir)
	set := rawDescriptors(t, dir)
	// Validating the whole document (13 MB, 2,950 operations) takes
	// libopenapi some 5 s, and 25 s or more under the race detector,
	// which has nothing to find there (the test calls libopenapi from one
	// goroutine). Under -race, every 10th upstream's document is validated
	// instead; either way every upstream's document is checked against
	// the whole one (checkPart).
	if raceEnabled {
		t.Log("race detector on: validating every 10th upstream's document, not the whole one")
		checkSet(t, set, 2000, validation{partEvery: 10})
	} else {
		checkSet(t, set, 2000, validation{whole: true})
	}
}

// validation says which documents of a set checkSet validates (see
// validateDocument).
type validation struct {
	whole     bool // the whole document
	partEvery int  // every partEvery-th upstream's document in name order; 0: none
}

// checkSet loads set as one upstream per proto package that defines
// services, each from a descriptor-set file of the package's files and
// their imports (as a backend of that package would serve them), and
// generates the whole document and each upstream's. It checks the paths
// and operation IDs of the whole document, and that the upstreams'
// documents partition it: each holds exactly its upstream's operations,
// equal to the whole document's, and the schemas they reach, equal to the
// whole document's, with every reference inside it (checkPart); so an
// upstream's document is valid when the whole one is. It validates the
// documents v says. It wants at least minOps operations in the whole
// document.
func checkSet(t *testing.T, set *descriptorpb.FileDescriptorSet, minOps int, v validation) {
	t.Helper()
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range set.File {
		byName[f.GetName()] = f
	}
	// The files of each package that defines services.
	roots := map[string][]string{}
	services := map[string][]string{}
	for _, f := range set.File {
		pkg := f.GetPackage()
		for _, s := range f.GetService() {
			services[pkg] = append(services[pkg], pkg+"."+s.GetName())
		}
		if len(f.GetService()) > 0 {
			roots[pkg] = append(roots[pkg], f.GetName())
		}
	}
	// One descriptor set per upstream: its files and their imports,
	// dependencies first. (One file of everything for every upstream
	// would make the registry link the whole set once per upstream.)
	dir := t.TempDir()
	upstreams := map[string][]string{}
	for pkg, files := range roots {
		sub := &descriptorpb.FileDescriptorSet{}
		seen := map[string]bool{}
		var add func(name string)
		add = func(name string) {
			f := byName[name]
			if seen[name] || f == nil {
				return // a file the set lacks: the registry reports it
			}
			seen[name] = true
			for _, dep := range f.GetDependency() {
				add(dep)
			}
			sub.File = append(sub.File, f)
		}
		for _, name := range files {
			add(name)
		}
		b, err := proto.Marshal(sub)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, pkg+".binpb")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		upstreams[pkg] = []string{path}
	}
	snap, table, problems := loadSnapshot(t, upstreams, services, router.Params{DefaultBindings: true})
	t.Logf("%d services in %d upstreams, %d routes, %d problems (conflicting bindings keep the first)",
		len(snap.Services()), len(upstreams), len(table.Routes()), len(problems))
	whole, err := Generate(snap, table, Options{Title: "whole"})
	if err != nil {
		t.Fatal(err)
	}
	ops := 0
	for _, item := range whole.Paths {
		ops += len(item.Operations())
	}
	t.Logf("whole document: %d paths, %d operations, %d schemas, %d bindings omitted",
		len(whole.Paths), ops, len(whole.Components.Schemas), len(whole.Omitted))
	for _, o := range whole.Omitted {
		t.Logf("omitted: %+v", o)
	}
	if ops < minOps {
		t.Errorf("%d operations; want at least %d", ops, minOps)
	}
	checkOperationIDs(t, whole)
	checkPaths(t, whole)
	if v.whole {
		b, err := whole.JSON()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("whole document: %d bytes", len(b))
		validateDocument(t, b)
	}

	names := make([]string, 0, len(upstreams))
	for n := range upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	byRule := map[string]*Operation{} // by "METHOD /pkg.Svc/Method httpRule"
	for _, item := range whole.Paths {
		for m, op := range item.Operations() {
			byRule[m+" "+op.Method+" "+op.Template.HTTPRule] = op
		}
	}
	covered := map[string]string{} // by the same key: the upstream
	for i, n := range names {
		doc, err := Generate(snap, table, Options{Upstream: n})
		if err != nil {
			t.Errorf("upstream %s: %v", n, err)
			continue
		}
		checkPart(t, n, whole, doc, byRule, covered)
		if v.partEvery > 0 && i%v.partEvery == 0 {
			b, err := doc.JSON()
			if err != nil {
				t.Fatal(err)
			}
			t.Run(n, func(t *testing.T) { validateDocument(t, b) })
		}
	}
	if len(covered) != ops {
		t.Errorf("the upstreams' documents have %d operations together; the whole one %d", len(covered), ops)
	}
}

// checkPart checks the document of upstream name against the whole
// document (whose operations byRule holds by HTTP method, RPC and
// template): its operations are whole's operations of that upstream's
// routes, found in no other upstream's document (covered records them),
// and the same but for tags and operationId, which depend on which
// services share a name, and for parameter names where whole names the
// parameters of a template after another upstream's template of the
// same shape; its schemas are whole's; every schema reference in it
// resolves inside it.
func checkPart(t *testing.T, name string, whole, part *Document, byRule map[string]*Operation, covered map[string]string) {
	t.Helper()
	refs := map[string]bool{}
	for path, item := range part.Paths {
		wholeItem := whole.Paths[path]
		for m, op := range item.Operations() {
			key := m + " " + op.Method + " " + op.Template.HTTPRule
			if prev, dup := covered[key]; dup {
				t.Errorf("%s: %s is in upstream %s's document as well", name, key, prev)
			}
			covered[key] = name
			var want *Operation
			if wholeItem != nil {
				want = wholeItem.Operations()[m]
			}
			if want == nil || want.Method != op.Method || want.Template.HTTPRule != op.Template.HTTPRule {
				// The whole document names the parameters of templates
				// of one shape after the first of them, which may be
				// another upstream's.
				want = byRule[m+" "+op.Method+" "+op.Template.HTTPRule]
				if want == nil {
					t.Errorf("%s: %s (%s) is not in the whole document", name, key, op.Method)
					continue
				}
				if len(want.Parameters) != len(op.Parameters) {
					t.Errorf("%s: %s (%s) has other parameters than in the whole document", name, key, op.Method)
				}
				continue
			}
			a, b := *op, *want
			a.Tags, a.OperationID, b.Tags, b.OperationID = nil, "", nil, ""
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s: %s differs from the whole document's", name, key)
			}
			for _, p := range op.Parameters {
				walkSchema(p.Schema, refs)
			}
			if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Content {
					walkSchema(mt.Schema, refs)
				}
			}
			for _, r := range op.Responses {
				for _, mt := range r.Content {
					walkSchema(mt.Schema, refs)
					walkSchema(mt.ItemSchema, refs)
				}
			}
		}
	}
	for n, s := range part.Components.Schemas {
		if w := whole.Components.Schemas[n]; w == nil || !reflect.DeepEqual(w, s) {
			t.Errorf("%s: schema %s differs from the whole document's", name, n)
		}
		walkSchema(s, refs)
	}
	for ref := range refs {
		if part.Components.Schemas[strings.TrimPrefix(ref, refPrefix)] == nil {
			t.Errorf("%s: dangling reference %s", name, ref)
		}
	}
}

// walkSchema adds the references s and its subschemas hold to refs.
func walkSchema(s *Schema, refs map[string]bool) {
	if s == nil {
		return
	}
	if s.Ref != "" {
		refs[s.Ref] = true
	}
	walkSchema(s.Items, refs)
	walkSchema(s.AdditionalProperties, refs)
	walkSchema(s.PropertyNames, refs)
	for _, p := range s.Properties {
		walkSchema(p, refs)
	}
	for _, a := range s.AnyOf {
		walkSchema(a, refs)
	}
}

// checkOperationIDs wants every operationId unique.
func checkOperationIDs(t *testing.T, doc *Document) {
	t.Helper()
	seen := map[string]string{}
	for path, item := range doc.Paths {
		for m, op := range item.Operations() {
			where := m + " " + path
			if prev, dup := seen[op.OperationID]; dup {
				t.Errorf("operationId %s: both %s and %s", op.OperationID, prev, where)
			}
			seen[op.OperationID] = where
		}
	}
}

// rawDescriptors reads the serialized FileDescriptorProto of every
// generated .pb.go file under dir (the file_<name>_rawDesc byte slice
// literal that protoc-gen-go writes) and returns them with their imports,
// dependencies first, taking the well-known and other files they import
// from the descriptors linked into the test binary when dir lacks them.
func rawDescriptors(t *testing.T, dir string) *descriptorpb.FileDescriptorSet {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".pb.go") {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Reading and scanning some 80 MB of Go source is the slow part:
	// spread it over the CPUs.
	protos := make([]*descriptorpb.FileDescriptorProto, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				raw, err := rawDesc(paths[i])
				if err != nil || raw == nil {
					errs[i] = err
					continue
				}
				fdp := &descriptorpb.FileDescriptorProto{}
				if err := proto.Unmarshal(raw, fdp); err != nil {
					errs[i] = fmt.Errorf("%s: %w", paths[i], err)
					continue
				}
				protos[i] = fdp
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, fdp := range protos {
		if fdp != nil {
			byName[fdp.GetName()] = fdp
		}
	}
	// Each file with its imports, dependencies first; an import that
	// neither dir nor the test binary has leaves the file out. (The
	// registry links them, and reports conflicts.)
	set := &descriptorpb.FileDescriptorSet{}
	state := map[string]bool{} // name → complete
	var add func(name string) bool
	add = func(name string) bool {
		if ok, done := state[name]; done {
			return ok
		}
		state[name] = false
		fdp := byName[name]
		if fdp == nil {
			fd, err := protoregistry.GlobalFiles.FindFileByPath(name)
			if err != nil {
				return false
			}
			fdp = protodesc.ToFileDescriptorProto(fd)
		}
		for _, dep := range fdp.GetDependency() {
			if !add(dep) {
				return false
			}
		}
		set.File = append(set.File, fdp)
		state[name] = true
		return true
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	failed := 0
	for _, n := range names {
		if !add(n) {
			failed++
		}
	}
	t.Logf("%d descriptor files read, %d with their imports, %d left out (an import missing)", len(byName), len(set.File), failed)
	return set
}

// unhex is the value of a hex digit, or -1.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// rawDescMarker starts the literal that rawDesc reads.
var rawDescMarker = []byte("_rawDesc = []byte{")

// rawDesc returns the value of the file_*_rawDesc byte slice literal of
// a generated Go file, or nil when it has none. The literal is a list of
// byte values written 0x.. with two hex digits (protoc-gen-go's format);
// it is scanned as text rather than parsed as Go, which would make an
// AST node of every byte.
func rawDesc(path string) ([]byte, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(src, rawDescMarker)
	if i < 0 {
		return nil, nil
	}
	lit := src[i+len(rawDescMarker):]
	end := bytes.IndexByte(lit, '}')
	if end < 0 {
		return nil, fmt.Errorf("%s: unterminated rawDesc literal", path)
	}
	lit = lit[:end]
	out := make([]byte, 0, len(lit)/6)
	for {
		// Each byte is "0x" and two hex digits (bytes.IndexByte, in
		// assembly, skips the rest fast, even under the race detector).
		x := bytes.IndexByte(lit, 'x')
		if x < 0 {
			break
		}
		if x == 0 || lit[x-1] != '0' || x+2 >= len(lit) {
			return nil, fmt.Errorf("%s: rawDesc: unexpected %q", path, lit[max(x-1, 0):min(x+3, len(lit))])
		}
		hi, lo := unhex(lit[x+1]), unhex(lit[x+2])
		if hi < 0 || lo < 0 {
			return nil, fmt.Errorf("%s: rawDesc: bad byte %q", path, lit[x-1:x+3])
		}
		out = append(out, byte(hi<<4|lo))
		lit = lit[x+3:]
	}
	return out, nil
}
