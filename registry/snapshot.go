package registry

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Snapshot is one immutable, versioned view of every descriptor the gateway
// knows and of which upstream serves each service. A Snapshot is never
// modified after [NewSnapshot] returns; it is safe for concurrent use.
type Snapshot struct {
	// Version increases by one with every snapshot a Registry builds.
	Version uint64
	// Files holds every file descriptor, merged across upstreams.
	Files *protoregistry.Files
	// Types resolves every message, enum and extension in Files to a
	// dynamicpb type: it is the resolver for google.protobuf.Any and for
	// protojson.
	Types *protoregistry.Types
	// Problems lists what went wrong while building the snapshot
	// (conflicting definitions, schema drift between replicas, an upstream
	// that could not be reached). The snapshot still serves what it could
	// load.
	Problems []Problem

	services map[protoreflect.FullName]*Service
	ordered  []*Service
}

// Service is one gRPC service and the upstream that serves it.
type Service struct {
	Desc     protoreflect.ServiceDescriptor
	Upstream string
}

// Problem is one issue found while building a snapshot. Upstream is empty
// when the problem is not tied to one upstream.
type Problem struct {
	Upstream string
	Msg      string
}

// String formats p for logs and CLI output.
func (p Problem) String() string {
	if p.Upstream == "" {
		return p.Msg
	}
	return "upstream " + p.Upstream + ": " + p.Msg
}

// NewSnapshot builds a snapshot from merged files and types and the list of
// services with their upstreams. The first service of a name wins; callers
// report duplicates as Problems before calling.
func NewSnapshot(version uint64, files *protoregistry.Files, types *protoregistry.Types, services []*Service, problems []Problem) *Snapshot {
	s := &Snapshot{
		Version:  version,
		Files:    files,
		Types:    types,
		Problems: problems,
		services: make(map[protoreflect.FullName]*Service, len(services)),
	}
	for _, svc := range services {
		if _, dup := s.services[svc.Desc.FullName()]; dup {
			continue
		}
		s.services[svc.Desc.FullName()] = svc
		s.ordered = append(s.ordered, svc)
	}
	sort.Slice(s.ordered, func(i, j int) bool { return s.ordered[i].Desc.FullName() < s.ordered[j].Desc.FullName() })
	return s
}

// Services returns every service, sorted by full name. The caller must not
// modify the slice.
func (s *Snapshot) Services() []*Service { return s.ordered }

// Service returns the service with the given full name.
func (s *Snapshot) Service(name protoreflect.FullName) (*Service, bool) {
	svc, ok := s.services[name]
	return svc, ok
}

// Method finds a method by its gRPC path ("/pkg.Service/Method") or its full
// name ("pkg.Service.Method") and returns it with the upstream serving it.
func (s *Snapshot) Method(name string) (protoreflect.MethodDescriptor, string, bool) {
	var svcName, method string
	if strings.HasPrefix(name, "/") {
		svcName, method, _ = strings.Cut(name[1:], "/")
	} else if i := strings.LastIndexByte(name, '.'); i > 0 {
		svcName, method = name[:i], name[i+1:]
	}
	svc, ok := s.services[protoreflect.FullName(svcName)]
	if !ok {
		return nil, "", false
	}
	md := svc.Desc.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, "", false
	}
	return md, svc.Upstream, true
}
