package gateway

import (
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rosetta-gateway/rosetta/call"
	grpcdialect "github.com/rosetta-gateway/rosetta/transcoder/grpc"
)

// localGRPC holds the gRPC services the gateway answers itself: server
// reflection (v1 and v1alpha) over the union of every upstream service in
// the current snapshot, and grpc.health.v1.Health for the gateway. They
// run on a grpc.Server used through ServeHTTP, which is fine for their
// low traffic; everything else is proxied.
type localGRPC struct {
	srv    *grpc.Server
	health *health.Server
}

// newLocalGRPC builds the local services. Reflection reads the gateway's
// current snapshot on every call, so it follows descriptor refreshes.
func newLocalGRPC(g *Gateway) *localGRPC {
	srv := grpc.NewServer()
	hs := health.NewServer() // "" starts SERVING
	healthpb.RegisterHealthServer(srv, hs)
	l := &localGRPC{srv: srv, health: hs}
	opts := reflection.ServerOptions{
		Services:           reflectedServices{g: g, local: srv},
		DescriptorResolver: snapshotFiles{g: g},
		ExtensionResolver:  snapshotTypes{g: g},
	}
	reflectionv1.RegisterServerReflectionServer(srv, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(srv, reflection.NewServer(opts))
	return l
}

// owns reports whether a gRPC path belongs to a local service. The
// gateway's own health service wins over an upstream's.
func (l *localGRPC) owns(path string) bool {
	return strings.HasPrefix(path, "/grpc.reflection.") || strings.HasPrefix(path, "/grpc.health.v1.Health/")
}

// draining marks the gateway NOT_SERVING (Watch streams are told at once).
func (l *localGRPC) draining() { l.health.Shutdown() }

// stop ends every local call still running.
func (l *localGRPC) stop() { l.srv.Stop() }

// serveGRPC serves a gRPC request: local services first, then the
// pass-through proxy. Like serveREST, it refreshes descriptors once when
// the path names a method the snapshot does not know, before answering
// UNIMPLEMENTED.
func (g *Gateway) serveGRPC(w http.ResponseWriter, r *http.Request, st *state) {
	if r.ProtoMajor >= 2 && g.local.owns(r.URL.Path) {
		adm, ok := g.admitLocal(w, r, st)
		if !ok {
			return
		}
		defer adm.Done()
		g.local.srv.ServeHTTP(w, r)
		return
	}
	rt, err := st.grpc.Match(r)
	if err != nil && errors.Is(err, grpcdialect.ErrUnknownMethod) && looksLikeMethodPath(r.URL.Path) {
		if _, found := st.gen.reg.RefreshMissing(r.Context(), r.URL.Path); found {
			st = g.refreshed(st)
			rt, err = st.grpc.Match(r)
		}
	}
	if err != nil {
		st.grpc.WriteError(w, r, err)
		return
	}
	call.ReportFrom(r.Context()).Routed(call.GRPC, st.grpc.Method(r.URL.Path), "", rt.Upstream.Name)
	st.grpc.Serve(w, r, rt)
}

// reflectedServices lists, for reflection, every upstream service of the
// current snapshot and the local services.
type reflectedServices struct {
	g     *Gateway
	local *grpc.Server
}

// GetServiceInfo implements reflection.ServiceInfoProvider.
func (s reflectedServices) GetServiceInfo() map[string]grpc.ServiceInfo {
	out := s.local.GetServiceInfo()
	if snap := s.g.Snapshot(); snap != nil {
		for _, svc := range snap.Services() {
			name := string(svc.Desc.FullName())
			if _, ok := out[name]; ok {
				continue
			}
			info := grpc.ServiceInfo{Metadata: svc.Desc.ParentFile().Path()}
			methods := svc.Desc.Methods()
			for i := 0; i < methods.Len(); i++ {
				md := methods.Get(i)
				info.Methods = append(info.Methods, grpc.MethodInfo{
					Name:           string(md.Name()),
					IsClientStream: md.IsStreamingClient(),
					IsServerStream: md.IsStreamingServer(),
				})
			}
			out[name] = info
		}
	}
	return out
}

// snapshotFiles resolves descriptors from the current snapshot, falling
// back to the descriptors linked into the gateway (reflection, health).
type snapshotFiles struct{ g *Gateway }

func (f snapshotFiles) files() *protoregistry.Files {
	if snap := f.g.Snapshot(); snap != nil && snap.Files != nil {
		return snap.Files
	}
	return nil
}

// FindFileByPath implements protodesc.Resolver.
func (f snapshotFiles) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if files := f.files(); files != nil {
		if fd, err := files.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

// FindDescriptorByName implements protodesc.Resolver.
func (f snapshotFiles) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if files := f.files(); files != nil {
		if d, err := files.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}

// snapshotTypes resolves extensions from the current snapshot's types,
// falling back to the types linked into the gateway.
type snapshotTypes struct{ g *Gateway }

func (t snapshotTypes) types() *protoregistry.Types {
	if snap := t.g.Snapshot(); snap != nil && snap.Types != nil {
		return snap.Types
	}
	return protoregistry.GlobalTypes
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (t snapshotTypes) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := t.types().FindExtensionByName(field); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(field)
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (t snapshotTypes) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := t.types().FindExtensionByNumber(message, field); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
}

// RangeExtensionsByMessage implements reflection.ExtensionResolver.
func (t snapshotTypes) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	t.types().RangeExtensionsByMessage(message, f)
}

var (
	_ reflection.ServiceInfoProvider = reflectedServices{}
	_ reflection.ExtensionResolver   = snapshotTypes{}
	_ protodesc.Resolver             = snapshotFiles{}
)
