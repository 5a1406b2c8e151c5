package testkit

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"

	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// DescriptorSet returns fd and all its transitive imports as a
// FileDescriptorSet, dependencies first, as `buf build` or `protoc
// --include_imports --descriptor_set_out` write it.
func DescriptorSet(fd protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(fd)
	return &set
}

// WriteDescriptorSet writes [DescriptorSet] of fd to a file in a temporary
// directory removed when the test ends, and returns its path.
func WriteDescriptorSet(t testing.TB, fd protoreflect.FileDescriptor) string {
	t.Helper()
	b, err := proto.Marshal(DescriptorSet(fd))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(fd.Path())+".binpb")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// EchoSnapshot loads the echo test service's descriptors (from a real
// descriptor-set file, through the registry) as upstream "test", and
// returns the snapshot with its route table (default bindings on).
func EchoSnapshot(t testing.TB) (*registry.Snapshot, *router.Table) {
	t.Helper()
	path := WriteDescriptorSet(t, testingv1.File_rosetta_testing_v1_echo_proto)
	reg, err := registry.New(registry.Params{Upstreams: []registry.UpstreamSpec{{Name: "test", Files: []string{path}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	snap, err := reg.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	table, problems := router.Build(snap, router.Params{DefaultBindings: true})
	if len(problems) > 0 {
		t.Fatalf("route problems: %v", problems)
	}
	return snap, table
}
