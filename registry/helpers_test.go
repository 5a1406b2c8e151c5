package registry

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bufbuild/protocompile"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// librarySources is a service whose request type lives in an imported
// file that imports another.
var librarySources = map[string]string{
	"lib/common.proto": `syntax = "proto3";
package lib;
message Page { int32 size = 1; string token = 2; }
`,
	"lib/book.proto": `syntax = "proto3";
package lib;
import "lib/common.proto";
import "google/protobuf/timestamp.proto";
message Book { string title = 1; google.protobuf.Timestamp published = 2; }
message ListBooksRequest { Page page = 1; }
message ListBooksResponse { repeated Book books = 1; }
`,
	"lib/library.proto": `syntax = "proto3";
package lib;
import "lib/book.proto";
service Library { rpc ListBooks(ListBooksRequest) returns (ListBooksResponse); }
service Admin { rpc Ping(ListBooksRequest) returns (ListBooksResponse); }
`,
}

var librarySvcs = []string{"lib.Library", "lib.Admin", "grpc.reflection.v1.ServerReflection", "grpc.health.v1.Health"}

// svcSource returns one file pkg/svc.proto defining pkg.Svc with the given
// methods.
func svcSource(methods ...string) map[string]string {
	var b strings.Builder
	b.WriteString("syntax = \"proto3\";\npackage pkg;\nmessage Req {}\nmessage Res {}\nservice Svc {\n")
	for _, m := range methods {
		b.WriteString("  rpc " + m + "(Req) returns (Res);\n")
	}
	b.WriteString("}\n")
	return map[string]string{"pkg/svc.proto": b.String()}
}

// compileSources compiles in-memory sources and returns them with their
// imports in a Files.
func compileSources(t *testing.T, srcs map[string]string) *protoregistry.Files {
	t.Helper()
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(srcs)}),
	}
	var names []string
	for name := range srcs {
		names = append(names, name)
	}
	linked, err := c.Compile(context.Background(), names...)
	if err != nil {
		t.Fatalf("compile test sources: %v", err)
	}
	files := new(protoregistry.Files)
	var register func(fd protoreflect.FileDescriptor)
	register = func(fd protoreflect.FileDescriptor) {
		if _, err := files.FindFileByPath(fd.Path()); err == nil {
			return
		}
		for i := 0; i < fd.Imports().Len(); i++ {
			register(fd.Imports().Get(i).FileDescriptor)
		}
		if err := files.RegisterFile(fd); err != nil {
			t.Fatalf("register %s: %v", fd.Path(), err)
		}
	}
	for _, fd := range linked {
		register(fd)
	}
	return files
}

// descriptorSet returns every file of files, dependencies first.
func descriptorSet(files *protoregistry.Files) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var walk func(fd protoreflect.FileDescriptor)
	walk = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := 0; i < fd.Imports().Len(); i++ {
			walk(fd.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	var all []protoreflect.FileDescriptor
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool { all = append(all, fd); return true })
	for _, fd := range all {
		walk(fd)
	}
	return set
}

// writeDescriptorSet writes the sources, compiled, as a binary
// FileDescriptorSet and returns its path.
func writeDescriptorSet(t *testing.T, srcs map[string]string) string {
	t.Helper()
	b, err := proto.Marshal(descriptorSet(compileSources(t, srcs)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "set.binpb")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// reflectionBackend is a real gRPC server on 127.0.0.1 that serves
// reflection, and nothing else, for descriptors the test can swap.
type reflectionBackend struct {
	addr     string
	srv      *grpc.Server
	streams  atomic.Int64 // reflection streams opened
	files    atomic.Pointer[protoregistry.Files]
	types    atomic.Pointer[protoregistry.Types]
	services atomic.Pointer[[]string]
	gate     atomic.Pointer[chan struct{}] // when set, streams wait for it to close
}

type backendOpts struct {
	v1, v1alpha bool
}

// startBackend starts a reflection server for the compiled sources,
// listing services.
func startBackend(t *testing.T, opts backendOpts, srcs map[string]string, services ...string) *reflectionBackend {
	t.Helper()
	b := &reflectionBackend{}
	b.set(t, srcs, services...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = lis.Addr().String()
	b.srv = grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasSuffix(info.FullMethod, "/ServerReflectionInfo") {
			b.streams.Add(1)
			if g := b.gate.Load(); g != nil {
				<-*g
			}
		}
		return handler(srv, ss)
	}))
	ropts := reflection.ServerOptions{Services: b, DescriptorResolver: b, ExtensionResolver: (*backendTypes)(b)}
	if opts.v1 {
		reflectionv1.RegisterServerReflectionServer(b.srv, reflection.NewServerV1(ropts))
	}
	if opts.v1alpha {
		reflectionv1alpha.RegisterServerReflectionServer(b.srv, reflection.NewServer(ropts))
	}
	go func() { _ = b.srv.Serve(lis) }()
	t.Cleanup(b.srv.Stop)
	return b
}

// set swaps the descriptors the backend serves.
func (b *reflectionBackend) set(t *testing.T, srcs map[string]string, services ...string) {
	t.Helper()
	files := compileSources(t, srcs)
	b.files.Store(files)
	b.types.Store(buildTypes(files))
	b.services.Store(&services)
}

func (b *reflectionBackend) GetServiceInfo() map[string]grpc.ServiceInfo {
	out := map[string]grpc.ServiceInfo{}
	for _, s := range *b.services.Load() {
		out[s] = grpc.ServiceInfo{}
	}
	return out
}

func (b *reflectionBackend) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	return b.files.Load().FindFileByPath(path)
}

func (b *reflectionBackend) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	return b.files.Load().FindDescriptorByName(name)
}

type backendTypes reflectionBackend

func (b *backendTypes) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return b.types.Load().FindExtensionByName(name)
}

func (b *backendTypes) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return b.types.Load().FindExtensionByNumber(message, field)
}

func (b *backendTypes) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	b.types.Load().RangeExtensionsByMessage(message, f)
}

// reflectionSpec is an upstream that loads by reflection from targets.
func reflectionSpec(name string, targets ...string) UpstreamSpec {
	return UpstreamSpec{
		Name:        name,
		Targets:     targets,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Reflection:  true,
	}
}

// newRegistry builds a registry that is closed when the test ends.
func newRegistry(t *testing.T, p Params) *Registry {
	t.Helper()
	r, err := New(p)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// load runs Load and fails the test on error.
func load(t *testing.T, r *Registry) *Snapshot {
	t.Helper()
	snap, err := r.Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return snap
}

// serviceNames lists the snapshot's services as name@upstream.
func serviceNames(s *Snapshot) []string {
	var out []string
	for _, svc := range s.Services() {
		out = append(out, string(svc.Desc.FullName())+"@"+svc.Upstream)
	}
	return out
}

// problemStrings lists problems as strings.
func problemStrings(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
