package library

import (
	_ "embed"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// descriptorSet is library.binpb: the library's .proto files and their
// imports, with source info (comments), as `make descriptors` writes it.
//
//go:embed library.binpb
var descriptorSet []byte

// Descriptors returns a resolver of the library's descriptors with their
// comments (from library.binpb), falling back to the linked-in ones
// (protoregistry.GlobalFiles) for everything else a server registers
// (health, reflection). Serving reflection from it lets a gateway show
// the proto comments as documentation.
func Descriptors() (protodesc.Resolver, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptorSet, &set); err != nil {
		return nil, fmt.Errorf("library.binpb: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("library.binpb: %w", err)
	}
	return resolver{files}, nil
}

// resolver looks in its own files first, then in the global registry.
type resolver struct{ own *protoregistry.Files }

func (r resolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.own.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (r resolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.own.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
