package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// upstreamLoad is the descriptors one upstream contributes to a snapshot:
// its files (with every transitive import a source provided), the services
// it serves, and the problems found while loading them.
type upstreamLoad struct {
	name     string
	files    map[string]*descriptorpb.FileDescriptorProto
	services []protoreflect.FullName // sorted
	problems []Problem
}

// merged is the result of merging every upstream's load.
type merged struct {
	files    *protoregistry.Files
	types    *protoregistry.Types
	services []*Service
	problems []Problem
	// hash covers every file's bytes and the service → upstream map. Two
	// merges with the same hash serve the same thing.
	hash [sha256.Size]byte
}

// acceptedFile is one file registered in the merged Files.
type acceptedFile struct {
	upstream string // "" for the gateway's built-in files
	key      []byte // see fileKey
	proto    *descriptorpb.FileDescriptorProto
}

// symbolOwner says which file of which upstream defines a name.
type symbolOwner struct {
	upstream string
	file     string
}

type merger struct {
	files    *protoregistry.Files
	accepted map[string]*acceptedFile
	symbols  map[protoreflect.FullName]symbolOwner
	served   map[protoreflect.FullName]string // service → upstream
	services []*Service
	problems []Problem
}

// merge merges the loads, which must be sorted by upstream name, into one
// set of files. Identical files are shared. When two upstreams define the
// same name differently, the earlier one wins and the later one loses every
// file and service that depends on the definition; each such conflict is a
// Problem. Nothing is ever overwritten.
func merge(loads []*upstreamLoad) *merged {
	m := &merger{
		files:    new(protoregistry.Files),
		accepted: map[string]*acceptedFile{},
		symbols:  map[protoreflect.FullName]symbolOwner{},
		served:   map[protoreflect.FullName]string{},
	}
	for _, l := range loads {
		m.addUpstream(l)
	}
	out := &merged{
		files:    m.files,
		types:    buildTypes(m.files),
		services: m.services,
		problems: m.problems,
	}
	out.hash = m.hash()
	return out
}

func (m *merger) addUpstream(l *upstreamLoad) {
	usable := map[string]bool{}
	var visit func(name string) bool
	visit = func(name string) bool {
		if ok, done := usable[name]; done {
			return ok
		}
		usable[name] = false // an import cycle leaves the file unusable
		if fd, ok := builtinFile(name); ok {
			m.addBuiltin(fd)
			usable[name] = true
			return true
		}
		fdp := l.files[name]
		for _, dep := range fdp.GetDependency() {
			if _, ok := l.files[dep]; !ok {
				if _, ok := builtinFile(dep); !ok {
					m.problem(l.name, "file %s imports %s, which no descriptor source provides", name, dep)
					return false
				}
			}
			if !visit(dep) {
				return false
			}
		}
		ok := m.addFile(l.name, fdp)
		usable[name] = ok
		return ok
	}
	names := make([]string, 0, len(l.files))
	for name := range l.files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		visit(name)
	}

	for _, svc := range l.services {
		d, err := m.files.FindDescriptorByName(svc)
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if err != nil || !ok || !usable[sd.ParentFile().Path()] {
			if !definesService(l.files, svc) {
				m.problem(l.name, "service %s is not defined by any file of this upstream", svc)
			}
			// Otherwise a conflict, reported above, disabled it.
			continue
		}
		if owner, dup := m.served[svc]; dup {
			m.problem(l.name, "conflict: service %s is served by upstreams %s and %s; routing it to %s", svc, owner, l.name, owner)
			continue
		}
		m.served[svc] = l.name
		m.services = append(m.services, &Service{Desc: sd, Upstream: l.name})
	}
}

func definesService(files map[string]*descriptorpb.FileDescriptorProto, svc protoreflect.FullName) bool {
	for _, f := range files {
		if slices.Contains(fileServices([]*descriptorpb.FileDescriptorProto{f}), svc) {
			return true
		}
	}
	return false
}

// addBuiltin registers one of the gateway's own files and its imports.
func (m *merger) addBuiltin(fd protoreflect.FileDescriptor) {
	if _, ok := m.accepted[fd.Path()]; ok {
		return
	}
	imports := fd.Imports()
	for i := 0; i < imports.Len(); i++ {
		m.addBuiltin(imports.Get(i).FileDescriptor)
	}
	if err := m.files.RegisterFile(fd); err != nil {
		m.problem("", "built-in file %s: %v", fd.Path(), err)
		return
	}
	m.accepted[fd.Path()] = &acceptedFile{}
	for _, s := range symbolsOf(protodesc.ToFileDescriptorProto(fd)) {
		m.symbols[s.name] = symbolOwner{file: fd.Path()}
	}
}

// addFile registers fdp for upstream, unless it conflicts with what is
// already registered. It reports whether the upstream can use the file.
func (m *merger) addFile(upstream string, fdp *descriptorpb.FileDescriptorProto) bool {
	name := fdp.GetName()
	key := fileKey(fdp)
	if acc, ok := m.accepted[name]; ok {
		if bytes.Equal(acc.key, key) {
			return true
		}
		kind, sym := "file", name
		if k, s, found := firstDifference(acc.proto, fdp); found {
			kind, sym = k, string(s)
		}
		m.conflict(upstream, symbolOwner{upstream: acc.upstream, file: name}, name, kind, sym)
		return false
	}
	syms := symbolsOf(fdp)
	for _, s := range syms {
		if owner, ok := m.symbols[s.name]; ok {
			m.conflict(upstream, owner, name, s.kind, string(s.name))
			return false
		}
	}
	fd, err := protodesc.NewFile(fdp, m.files)
	if err == nil {
		err = m.files.RegisterFile(fd)
	}
	if err != nil {
		m.problem(upstream, "invalid descriptor file %s: %v; serving %s's services that depend on it is disabled", name, err, upstream)
		return false
	}
	m.accepted[name] = &acceptedFile{upstream: upstream, key: key, proto: fdp}
	for _, s := range syms {
		m.symbols[s.name] = symbolOwner{upstream: upstream, file: name}
	}
	return true
}

func (m *merger) conflict(upstream string, owner symbolOwner, file, kind, sym string) {
	switch {
	case owner.upstream == "":
		m.problem(upstream, "conflict: %s %s is defined differently by the gateway's built-in %s and upstream %s; serving %s's services that depend on it is disabled", kind, sym, owner.file, upstream, upstream)
	case owner.upstream == upstream:
		m.problem(upstream, "conflict: %s %s is defined by both %s and %s; serving %s's services that depend on %s is disabled", kind, sym, owner.file, file, upstream, file)
	default:
		m.problem(upstream, "conflict: %s %s is defined differently by upstreams %s and %s; serving %s's services that depend on it is disabled", kind, sym, owner.upstream, upstream, upstream)
	}
}

func (m *merger) problem(upstream, format string, args ...any) {
	m.problems = append(m.problems, Problem{Upstream: upstream, Msg: fmt.Sprintf(format, args...)})
}

func (m *merger) hash() [sha256.Size]byte {
	h := sha256.New()
	names := make([]string, 0, len(m.accepted))
	for name := range m.accepted {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		writeField(h, []byte(name))
		acc := m.accepted[name]
		if acc.proto == nil {
			writeField(h, []byte("builtin"))
			continue
		}
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(acc.proto)
		writeField(h, b)
	}
	writeField(h, []byte("services"))
	svcs := slices.Clone(m.services)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Desc.FullName() < svcs[j].Desc.FullName() })
	for _, s := range svcs {
		writeField(h, []byte(s.Desc.FullName()))
		writeField(h, []byte(s.Upstream))
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// fileKey returns the bytes two copies of a file are compared by: the
// deterministic encoding without source info (comments and positions do not
// change what a file serves).
func fileKey(fdp *descriptorpb.FileDescriptorProto) []byte {
	if fdp.SourceCodeInfo != nil {
		fdp = proto.CloneOf(fdp)
		fdp.SourceCodeInfo = nil
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(fdp)
	return b
}

// sameFile reports whether two copies of a file serve the same thing.
func sameFile(a, b *descriptorpb.FileDescriptorProto) bool {
	return bytes.Equal(fileKey(a), fileKey(b))
}

type symbol struct {
	kind string
	name protoreflect.FullName
}

// symbolsOf lists every name a file defines in the package namespace:
// messages, enums, enum values, extensions and services, nested ones too.
func symbolsOf(fdp *descriptorpb.FileDescriptorProto) []symbol {
	var out []symbol
	pkg := protoreflect.FullName(fdp.GetPackage())
	var enums func(scope protoreflect.FullName, es []*descriptorpb.EnumDescriptorProto)
	enums = func(scope protoreflect.FullName, es []*descriptorpb.EnumDescriptorProto) {
		for _, e := range es {
			out = append(out, symbol{"enum", scope.Append(protoreflect.Name(e.GetName()))})
			for _, v := range e.GetValue() {
				// Enum values are siblings of their enum, C++ style.
				out = append(out, symbol{"enum value", scope.Append(protoreflect.Name(v.GetName()))})
			}
		}
	}
	exts := func(scope protoreflect.FullName, xs []*descriptorpb.FieldDescriptorProto) {
		for _, x := range xs {
			out = append(out, symbol{"extension", scope.Append(protoreflect.Name(x.GetName()))})
		}
	}
	var msgs func(scope protoreflect.FullName, ms []*descriptorpb.DescriptorProto)
	msgs = func(scope protoreflect.FullName, ms []*descriptorpb.DescriptorProto) {
		for _, msg := range ms {
			name := scope.Append(protoreflect.Name(msg.GetName()))
			out = append(out, symbol{"message", name})
			msgs(name, msg.GetNestedType())
			enums(name, msg.GetEnumType())
			exts(name, msg.GetExtension())
		}
	}
	msgs(pkg, fdp.GetMessageType())
	enums(pkg, fdp.GetEnumType())
	exts(pkg, fdp.GetExtension())
	for _, s := range fdp.GetService() {
		out = append(out, symbol{"service", pkg.Append(protoreflect.Name(s.GetName()))})
	}
	return out
}

// firstDifference finds the first top-level definition that differs
// between two versions of one file, for a precise conflict message.
func firstDifference(old, cur *descriptorpb.FileDescriptorProto) (string, protoreflect.FullName, bool) {
	if old == nil || cur == nil {
		return "", "", false
	}
	defs := func(f *descriptorpb.FileDescriptorProto) ([]symbol, map[protoreflect.FullName][]byte) {
		pkg := protoreflect.FullName(f.GetPackage())
		var order []symbol
		body := map[protoreflect.FullName][]byte{}
		add := func(kind, name string, m proto.Message) {
			full := pkg.Append(protoreflect.Name(name))
			order = append(order, symbol{kind, full})
			body[full], _ = proto.MarshalOptions{Deterministic: true}.Marshal(m)
		}
		for _, d := range f.GetMessageType() {
			add("message", d.GetName(), d)
		}
		for _, d := range f.GetEnumType() {
			add("enum", d.GetName(), d)
		}
		for _, d := range f.GetService() {
			add("service", d.GetName(), d)
		}
		for _, d := range f.GetExtension() {
			add("extension", d.GetName(), d)
		}
		return order, body
	}
	oldOrder, oldBody := defs(old)
	curOrder, curBody := defs(cur)
	for _, s := range curOrder {
		if b, ok := oldBody[s.name]; !ok || !bytes.Equal(b, curBody[s.name]) {
			return s.kind, s.name, true
		}
	}
	for _, s := range oldOrder {
		if _, ok := curBody[s.name]; !ok {
			return s.kind, s.name, true
		}
	}
	return "", "", false
}

// buildTypes registers a dynamicpb type for every message, enum and
// extension in files, so that protojson and google.protobuf.Any resolve
// them.
func buildTypes(files *protoregistry.Files) *protoregistry.Types {
	types := new(protoregistry.Types)
	var enums func(es protoreflect.EnumDescriptors)
	enums = func(es protoreflect.EnumDescriptors) {
		for i := 0; i < es.Len(); i++ {
			_ = types.RegisterEnum(dynamicpb.NewEnumType(es.Get(i)))
		}
	}
	exts := func(xs protoreflect.ExtensionDescriptors) {
		for i := 0; i < xs.Len(); i++ {
			_ = types.RegisterExtension(dynamicpb.NewExtensionType(xs.Get(i)))
		}
	}
	var msgs func(ms protoreflect.MessageDescriptors)
	msgs = func(ms protoreflect.MessageDescriptors) {
		for i := 0; i < ms.Len(); i++ {
			md := ms.Get(i)
			if !md.IsMapEntry() {
				_ = types.RegisterMessage(dynamicpb.NewMessageType(md))
			}
			msgs(md.Messages())
			enums(md.Enums())
			exts(md.Extensions())
		}
	}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		msgs(fd.Messages())
		enums(fd.Enums())
		exts(fd.Extensions())
		return true
	})
	return types
}
