package registry

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jhump/protoreflect/v2/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// reflectionTarget is one target of one reflection upstream. Its connection
// lives from New to Close; each load opens one reflection stream on it.
type reflectionTarget struct {
	addr string
	conn *grpc.ClientConn
	// failed records that the last load from this target failed, so the
	// next one resets the connection's backoff first. Guarded by
	// Registry.loadMu.
	failed bool
}

// targetLoad is what one target served by reflection.
type targetLoad struct {
	addr     string
	files    map[string]*descriptorpb.FileDescriptorProto
	services []protoreflect.FullName // sorted
	// closure lists, per service, the files it needs (its file and every
	// transitive import), sorted.
	closure  map[protoreflect.FullName][]string
	problems []string
	keys     map[string][]byte // fileKey of files, computed on demand
}

// key returns the comparison bytes of the named file, nil if the target
// did not serve it.
func (l *targetLoad) key(name string) []byte {
	if k, ok := l.keys[name]; ok {
		return k
	}
	f, ok := l.files[name]
	if !ok {
		return nil
	}
	if l.keys == nil {
		l.keys = map[string][]byte{}
	}
	l.keys[name] = fileKey(f)
	return l.keys[name]
}

// skipService reports whether a listed service is infrastructure the
// gateway does not route: reflection itself, and health (the gateway serves
// its own).
func skipService(name protoreflect.FullName) bool {
	return strings.HasPrefix(string(name), "grpc.reflection.") || name == "grpc.health.v1.Health"
}

// loadTarget lists the services of one target and fetches the files that
// define them with all their transitive imports. A service whose files
// cannot be fetched is left out and noted in problems; an error means the
// target could not be used at all.
func loadTarget(ctx context.Context, t *reflectionTarget, filter map[protoreflect.FullName]bool) (*targetLoad, error) {
	if t.failed {
		t.conn.ResetConnectBackoff()
	}
	client := grpcreflect.NewClientAuto(ctx, t.conn)
	defer client.Reset()

	names, err := client.ListServices()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := &targetLoad{
		addr:    t.addr,
		files:   map[string]*descriptorpb.FileDescriptorProto{},
		closure: map[protoreflect.FullName][]string{},
	}
	for _, name := range slices.Compact(names) {
		if skipService(name) || (filter != nil && !filter[name]) {
			continue
		}
		fd, err := client.FileContainingSymbol(name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out.problems = append(out.problems, fmt.Sprintf("reflection from %s: service %s: %v", t.addr, name, err))
			continue
		}
		if fd.Services().ByName(name.Name()) == nil {
			out.problems = append(out.problems, fmt.Sprintf("reflection from %s: service %s: %s does not define it", t.addr, name, fd.Path()))
			continue
		}
		var closure []string
		if err := collectFiles(fd, out.files, &closure); err != nil {
			out.problems = append(out.problems, fmt.Sprintf("reflection from %s: service %s: %v", t.addr, name, err))
			continue
		}
		slices.Sort(closure)
		out.closure[name] = closure
		out.services = append(out.services, name)
	}
	return out, nil
}

// collectFiles adds fd and its transitive imports to files, and their names
// to closure.
func collectFiles(fd protoreflect.FileDescriptor, files map[string]*descriptorpb.FileDescriptorProto, closure *[]string) error {
	seen := map[string]bool{}
	var walk func(fd protoreflect.FileDescriptor) error
	walk = func(fd protoreflect.FileDescriptor) error {
		if seen[fd.Path()] {
			return nil
		}
		seen[fd.Path()] = true
		*closure = append(*closure, fd.Path())
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			if err := walk(imports.Get(i).FileDescriptor); err != nil {
				return err
			}
		}
		if _, ok := files[fd.Path()]; ok {
			return nil
		}
		fdp, err := canonicalProto(protodesc.ToFileDescriptorProto(fd))
		if err != nil {
			return fmt.Errorf("file %s: %w", fd.Path(), err)
		}
		files[fd.Path()] = fdp
		return nil
	}
	return walk(fd)
}

// reflectionResult is the outcome of loading one upstream by reflection.
type reflectionResult struct {
	files    map[string]*descriptorpb.FileDescriptorProto
	services []protoreflect.FullName
	problems []string
	ok       bool // at least one target answered
}

// loadReflection loads from every target at once. The first target (in
// configuration order) that answered provides the descriptors; the others
// are compared with it and any difference is reported as schema drift.
func loadReflection(ctx context.Context, targets []*reflectionTarget, filter map[protoreflect.FullName]bool) reflectionResult {
	loads := make([]*targetLoad, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			loads[i], errs[i] = loadTarget(ctx, t, filter)
		})
	}
	wg.Wait()

	var res reflectionResult
	var base *targetLoad
	for i, t := range targets {
		t.failed = errs[i] != nil
		if errs[i] != nil {
			res.problems = append(res.problems, fmt.Sprintf("reflection from %s: %v", t.addr, errs[i]))
			continue
		}
		res.problems = append(res.problems, loads[i].problems...)
		if base == nil {
			base = loads[i]
			continue
		}
		res.problems = append(res.problems, drift(base, loads[i])...)
	}
	if base == nil {
		return res
	}
	res.files, res.services, res.ok = base.files, base.services, true
	return res
}

// drift compares what other serves with what base serves.
func drift(base, other *targetLoad) []string {
	var out []string
	var onlyBase, onlyOther []string
	for _, svc := range base.services {
		if _, ok := other.closure[svc]; !ok {
			onlyBase = append(onlyBase, string(svc))
		}
	}
	for _, svc := range other.services {
		if _, ok := base.closure[svc]; !ok {
			onlyOther = append(onlyOther, string(svc))
		}
	}
	if len(onlyBase) > 0 || len(onlyOther) > 0 {
		var parts []string
		if len(onlyBase) > 0 {
			parts = append(parts, fmt.Sprintf("%s only on %s", strings.Join(onlyBase, ", "), base.addr))
		}
		if len(onlyOther) > 0 {
			parts = append(parts, fmt.Sprintf("%s only on %s", strings.Join(onlyOther, ", "), other.addr))
		}
		out = append(out, fmt.Sprintf("schema drift: targets %s and %s serve different services (%s)", base.addr, other.addr, strings.Join(parts, "; ")))
	}
	for _, svc := range base.services {
		otherClosure, ok := other.closure[svc]
		if !ok {
			continue
		}
		names := append(slices.Clone(base.closure[svc]), otherClosure...)
		slices.Sort(names)
		for _, name := range slices.Compact(names) {
			if _, ok := builtinFile(name); ok {
				// Replaced by the gateway's own copy in any case.
				continue
			}
			a, b := base.key(name), other.key(name)
			if a != nil && b != nil && bytes.Equal(a, b) {
				continue
			}
			out = append(out, fmt.Sprintf("schema drift: targets %s and %s serve different descriptors for service %s (file %s differs)", base.addr, other.addr, svc, name))
			break
		}
	}
	return out
}
