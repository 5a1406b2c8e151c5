package registry

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// upstream is the registry's state for one UpstreamSpec. Everything but
// spec, filter and targets is guarded by Registry.loadMu.
type upstream struct {
	spec    UpstreamSpec
	filter  map[protoreflect.FullName]bool // nil: every service
	targets []*reflectionTarget

	// good is the last load in which every source answered; it is kept
	// when a later load fails, so one failed refresh drops nothing.
	good *upstreamLoad
	// used is what the last merge used.
	used *upstreamLoad
}

// load reads every descriptor source of the upstream: descriptor sets,
// then .proto sources, then reflection. complete is false when a source
// failed entirely.
func (u *upstream) load(ctx context.Context) (l *upstreamLoad, complete bool) {
	l = &upstreamLoad{name: u.spec.Name, files: map[string]*descriptorpb.FileDescriptorProto{}}
	complete = true
	var services []protoreflect.FullName
	problem := func(format string, args ...any) {
		l.problems = append(l.problems, Problem{Upstream: u.spec.Name, Msg: fmt.Sprintf(format, args...)})
	}
	add := func(files []*descriptorpb.FileDescriptorProto, source string) {
		for _, f := range files {
			prev, ok := l.files[f.GetName()]
			if !ok {
				l.files[f.GetName()] = f
				continue
			}
			if !sameFile(prev, f) {
				problem("file %s from %s differs from the copy loaded from an earlier source; using the earlier one", f.GetName(), source)
			}
		}
	}

	for _, path := range u.spec.Files {
		set, err := LoadDescriptorSet(path)
		if err != nil {
			problem("%v", err)
			complete = false
			continue
		}
		add(set.GetFile(), path)
		services = append(services, fileServices(set.GetFile())...)
	}

	if len(u.spec.Protos) > 0 {
		set, roots, err := compileProtos(ctx, u.spec.ImportPaths, u.spec.Protos)
		if err != nil {
			problem("%v", err)
			complete = false
		} else {
			add(set.GetFile(), "proto sources")
			for _, f := range set.GetFile() {
				if slices.Contains(roots, f.GetName()) {
					services = append(services, fileServices([]*descriptorpb.FileDescriptorProto{f})...)
				}
			}
		}
	}

	if u.spec.Reflection {
		res := loadReflection(ctx, u.targets, u.filter)
		for _, msg := range res.problems {
			problem("%s", msg)
		}
		if res.ok {
			add(sortedFiles(res.files), "reflection")
			services = append(services, res.services...)
		} else {
			complete = false
		}
	}

	services = slices.DeleteFunc(services, skipService)
	if u.filter != nil {
		services = slices.DeleteFunc(services, func(s protoreflect.FullName) bool { return !u.filter[s] })
	}
	slices.Sort(services)
	l.services = slices.Compact(services)
	if complete && u.filter != nil {
		for _, name := range u.spec.Services {
			if _, found := slices.BinarySearch(l.services, protoreflect.FullName(name)); !found {
				problem("service %s (from the services filter) is not served", name)
			}
		}
	}
	return l, complete
}

func sortedFiles(files map[string]*descriptorpb.FileDescriptorProto) []*descriptorpb.FileDescriptorProto {
	out := make([]*descriptorpb.FileDescriptorProto, 0, len(files))
	for _, f := range files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *descriptorpb.FileDescriptorProto) int {
		switch {
		case a.GetName() < b.GetName():
			return -1
		case a.GetName() > b.GetName():
			return 1
		}
		return 0
	})
	return out
}
