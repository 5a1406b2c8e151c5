package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/protoutil"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// The genproto packages register google/api/annotations.proto,
	// http.proto, httpbody.proto (and their siblings) in
	// protoregistry.GlobalFiles, so .proto sources can import them without
	// a copy on disk, and so the google.api.http option is parsed into a
	// typed extension wherever descriptors are decoded.
	_ "google.golang.org/genproto/googleapis/api/annotations"
	_ "google.golang.org/genproto/googleapis/api/httpbody"
)

// builtinPrefixes are the file path prefixes for which the gateway's own
// compiled-in descriptors (protoregistry.GlobalFiles) are authoritative:
// they resolve imports that no source provides, and they replace an
// upstream's copy of the same file, so that two upstreams built with
// different protobuf releases do not conflict over descriptor.proto.
var builtinPrefixes = []string{"google/protobuf/", "google/api/", "google/rpc/"}

// builtinFile returns the gateway's own descriptor of path, when path is a
// well-known file the gateway carries.
func builtinFile(path string) (protoreflect.FileDescriptor, bool) {
	if !slices.ContainsFunc(builtinPrefixes, func(p string) bool { return strings.HasPrefix(path, p) }) {
		return nil, false
	}
	fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
	if err != nil {
		return nil, false
	}
	return fd, true
}

// LoadDescriptorSet reads a binary FileDescriptorSet from path, as written
// by `buf build -o x.binpb` or `protoc --include_imports
// --descriptor_set_out`. Options of extensions compiled into the gateway
// (such as google.api.http) are decoded into typed extensions.
func LoadDescriptorSet(path string) (*descriptorpb.FileDescriptorSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read descriptor set: %w", err)
	}
	set := &descriptorpb.FileDescriptorSet{}
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b, set); err != nil {
		return nil, fmt.Errorf("decode descriptor set %s: %w", path, err)
	}
	for i, f := range set.GetFile() {
		if f.GetName() == "" {
			return nil, fmt.Errorf("decode descriptor set %s: file %d has no name", path, i)
		}
	}
	return set, nil
}

// CompileProtos compiles the given .proto files with protocompile and
// returns them with all their transitive imports, dependencies first (the
// shape of `protoc --include_imports --descriptor_set_out`). Files are named
// relative to importPaths; an absolute file path under one of importPaths
// is made relative to it, and with no importPaths each file's directory is
// its import path. The google/protobuf well-known files, and
// google/api/annotations.proto, http.proto and httpbody.proto, resolve even
// without a copy on disk. Source info is not included. A compile error
// lists every problem found, one per line, each as file:line:col: message.
func CompileProtos(ctx context.Context, importPaths, files []string) (*descriptorpb.FileDescriptorSet, error) {
	set, _, err := compileProtos(ctx, importPaths, files)
	return set, err
}

// compileProtos is CompileProtos that also returns the names of the root
// files (those asked for, as the compiler named them).
func compileProtos(ctx context.Context, importPaths, files []string) (*descriptorpb.FileDescriptorSet, []string, error) {
	if len(files) == 0 {
		return &descriptorpb.FileDescriptorSet{}, nil, nil
	}
	paths := importPaths
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f
		if len(importPaths) == 0 {
			dir := filepath.Dir(f)
			if !slices.Contains(paths, dir) {
				paths = append(paths, dir)
			}
			names[i] = filepath.Base(f)
			continue
		}
		if filepath.IsAbs(f) {
			for _, ip := range importPaths {
				abs, err := filepath.Abs(ip)
				if err != nil {
					continue
				}
				if rel, err := filepath.Rel(abs, f); err == nil && !strings.HasPrefix(rel, "..") {
					names[i] = filepath.ToSlash(rel)
					break
				}
			}
		}
	}

	var errs []error
	rep := reporter.NewReporter(func(err reporter.ErrorWithPos) error {
		errs = append(errs, err)
		return nil
	}, func(reporter.ErrorWithPos) {})
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			&protocompile.SourceResolver{ImportPaths: paths},
			protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
				if fd, ok := builtinFile(path); ok {
					return protocompile.SearchResult{Desc: fd}, nil
				}
				return protocompile.SearchResult{}, protoregistry.NotFound
			}),
		}),
		Reporter:       rep,
		SourceInfoMode: protocompile.SourceInfoStandard, // comments, for the OpenAPI document
		// The gateway shares two cores with everything else it runs.
		MaxParallelism: 1,
	}
	linked, err := c.Compile(ctx, names...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if len(errs) > 0 {
			err = errors.Join(errs...)
		}
		return nil, nil, fmt.Errorf("compile protos: %w", err)
	}

	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var walk func(fd protoreflect.FileDescriptor) error
	walk = func(fd protoreflect.FileDescriptor) error {
		if seen[fd.Path()] {
			return nil
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			if err := walk(imports.Get(i).FileDescriptor); err != nil {
				return err
			}
		}
		fdp, err := canonicalProto(protoutil.ProtoFromFileDescriptor(fd))
		if err != nil {
			return fmt.Errorf("compile protos: %s: %w", fd.Path(), err)
		}
		set.File = append(set.File, fdp)
		return nil
	}
	roots := make([]string, 0, len(linked))
	for _, fd := range linked {
		if err := walk(fd); err != nil {
			return nil, nil, err
		}
		roots = append(roots, fd.Path())
	}
	return set, roots, nil
}

// canonicalProto returns a copy of fdp that went through the wire format,
// so options of extensions known to the gateway are typed extensions and
// everything else is in unknown fields, whichever source the file came from.
func canonicalProto(fdp *descriptorpb.FileDescriptorProto) (*descriptorpb.FileDescriptorProto, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fdp)
	if err != nil {
		return nil, err
	}
	out := &descriptorpb.FileDescriptorProto{}
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b, out); err != nil {
		return nil, err
	}
	return out, nil
}

// fileServices lists the services defined in the given files.
func fileServices(files []*descriptorpb.FileDescriptorProto) []protoreflect.FullName {
	var out []protoreflect.FullName
	for _, f := range files {
		for _, s := range f.GetService() {
			name := s.GetName()
			if f.GetPackage() != "" {
				name = f.GetPackage() + "." + name
			}
			out = append(out, protoreflect.FullName(name))
		}
	}
	return out
}
