package testkit

import (
	"os"
	"path/filepath"
	"testing"

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
