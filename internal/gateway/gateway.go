package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/analytics"
	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/keyauth"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/connect"
	grpcdialect "github.com/rosetta-gateway/rosetta/transcoder/grpc"
	"github.com/rosetta-gateway/rosetta/transcoder/grpcweb"
	"github.com/rosetta-gateway/rosetta/transcoder/rest"
	"github.com/rosetta-gateway/rosetta/transcoder/websocket"
	"github.com/rosetta-gateway/rosetta/transports"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// Gateway is one running gateway. Create it with [New], then [Gateway.Start];
// stop it with [Gateway.Shutdown].
type Gateway struct {
	logger  *slog.Logger
	access  *slog.Logger // the access log
	noRelay bool         // tests: serve gRPC over HTTP/2 through the handler only
	// shared holds what policies count (rate limits, token caches),
	// kept across config generations.
	shared *policy.Shared
	local  *localGRPC // grpc_local.go
	ws     wsSockets  // websocket.go
	// obs are metrics and tracing (observe.go).
	obs observability
	// state is what requests read: the current generation's current
	// descriptor snapshot. cur is the current generation.
	state  atomic.Pointer[state]
	cur    atomic.Pointer[generation]
	reload reloader // reload.go
	// servers are the listeners, in config order; listenAddrs their
	// configured addresses. Reloads change them under serversMu.
	serversMu   sync.Mutex
	servers     []*transports.Server
	listenAddrs []string
	// admin is the admin listener (admin.go); nil without one.
	admin *adminServer
	// portalSrv is the portal's own listener (portal.go); nil without
	// portal.address.
	portalSrv *transports.Server
	// catalogOf caches the portal's catalog of the current state
	// (portal.go).
	catalogOf atomic.Pointer[catalogOf]
	// analytics records calls for the admin API and the portal
	// (analytics.go); nil when off. analyticsRedis is its client.
	analytics      *analytics.Aggregator
	analyticsRedis *redis.Client
	started        atomic.Bool // listeners up (readiness)
	stopping       atomic.Bool // shutting down (liveness, readiness)
	cancel         context.CancelFunc
	wg             sync.WaitGroup

	shutdownOnce sync.Once
	shutdownErr  error
}

// generation is everything built from one config: upstreams, descriptor
// registry, URI routes, policy chains, caches and CORS policies. A
// reload builds a new generation and swaps it in; a request keeps the
// generation (and snapshot) it started with.
type generation struct {
	g       *Gateway
	cfg     *config.Config
	version uint64 // 1 for the config the gateway started with
	reg     *registry.Registry
	ups     *upstream.Set
	uri     *uriRoutes
	// pols are the policy chains of the config (nil without plugins).
	pols   *policy.Set
	caches *caches       // cache.go; nil without proxy-cache
	cors   *corsPolicies // browser.go; nil without any cors config
	// openapi serves the generated OpenAPI documents (openapi.go).
	openapi *openAPIHandlers
	// portal serves the developer portal under portalPath (portal.go);
	// nil without a portal block.
	portal     http.Handler
	portalPath string
	// portalKeys is the key-auth lookup of the portal's sign-in
	// (portal.go), built on first use.
	portalKeys struct {
		once sync.Once
		p    *keyauth.Plugin
	}
	// names caches methodNames (protoreflect.MethodDescriptor →
	// methodName); nnames counts its entries.
	names  sync.Map
	nnames atomic.Int64
	// runCancel stops the registry's refresh loop.
	runCancel context.CancelFunc
	// active counts the calls that hold the generation (acquire); once
	// retired is set (a reload replaced it), what it alone owns closes
	// when active is back to zero (reload.go).
	active  atomic.Int64
	retired atomic.Bool
}

// acquire returns the current state with its generation held for one
// call: the call serves on it to its end, whatever reloads happen
// meanwhile, and must call release. A generation retired between the
// load and the hold is let go, and the newer one taken.
func (g *Gateway) acquire() *state {
	for {
		st := g.state.Load()
		if st == nil {
			return nil // not started
		}
		st.gen.active.Add(1)
		if !st.gen.retired.Load() {
			return st
		}
		st.gen.active.Add(-1)
	}
}

// release ends a call's hold on its generation (acquire).
func (gen *generation) release() { gen.active.Add(-1) }

// refreshed returns the state to continue a call on after a descriptor
// refresh: the newest state of st's generation (the call holds that
// generation), or st when a reload has replaced it meanwhile.
func (g *Gateway) refreshed(st *state) *state {
	if n := g.state.Load(); n.gen == st.gen {
		return n
	}
	return st
}

// state is everything built from one descriptor snapshot of one
// generation. It is immutable; a request keeps the state it started with.
type state struct {
	gen           *generation
	snap          *registry.Snapshot
	table         *router.Table
	rest          *rest.Handler
	grpc          *grpcdialect.Proxy
	grpcWeb       *grpcweb.Handler
	connect       *connect.Handler
	websocket     *websocket.Bridge
	routeProblems []registry.Problem
}

// New builds a gateway from a validated config. It opens no sockets and
// contacts no backend; that happens in Start.
func New(cfg *config.Config, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{logger: logger, access: logger.With("component", "access"), shared: &policy.Shared{}}
	if err := g.newObservability(cfg); err != nil { // observe.go
		return nil, err
	}
	if err := g.newAnalytics(cfg); err != nil { // analytics.go
		return nil, err
	}
	gen, err := g.newGeneration(cfg, nil)
	if err != nil {
		return nil, err
	}
	gen.version = 1
	g.cur.Store(gen)
	g.setRouteOf(gen) // observe.go
	g.local = newLocalGRPC(g)
	return g, nil
}

// newGeneration builds the parts of a gateway that come from cfg. prev,
// when not nil, is the generation it replaces: upstreams whose config is
// unchanged are carried over with their connections.
func (g *Gateway) newGeneration(cfg *config.Config, prev *generation) (gen *generation, err error) {
	logger := g.logger
	var prevUps *upstream.Set
	var prevHTTP *upstream.HTTPSet
	if prev != nil {
		prevUps, prevHTTP = prev.ups, prev.uri.ups
	}
	gen = &generation{g: g, cfg: cfg}
	gen.openapi = g.newOpenAPI(cfg)                                // openapi.go
	gen.portal, gen.portalPath = g.newPortal(cfg), portalPath(cfg) // portal.go
	// On failure, close what this generation made and nothing it took
	// over from prev.
	defer func() {
		if err == nil {
			return
		}
		if gen.pols != nil {
			_ = gen.pols.Close()
		}
		if gen.uri != nil {
			gen.uri.ups.CloseNew(prevHTTP)
		}
		if gen.reg != nil && (prev == nil || gen.reg != prev.reg) {
			_ = gen.reg.Close()
		}
		if gen.ups != nil {
			_ = gen.ups.CloseNew(prevUps)
		}
	}()
	if gen.ups, err = upstream.NewSetOptions(cfg.Upstreams, upstream.SetOptions{Logger: logger.With("component", "upstream"), Previous: prevUps}); err != nil {
		return nil, err
	}
	if prev != nil && sameDescriptorSources(prev.cfg, cfg) {
		gen.reg = prev.reg // descriptors come from the same places: keep the snapshot
	} else {
		specs, err := registrySpecs(cfg)
		if err != nil {
			return nil, err
		}
		if gen.reg, err = registry.New(registry.Params{Upstreams: specs, Logger: logger.With("component", "registry")}); err != nil {
			return nil, err
		}
	}
	if gen.uri, err = newURIRoutes(cfg, logger, prevHTTP); err != nil {
		return nil, err
	}
	if len(cfg.Plugins) > 0 || hasRoutePlugins(cfg) {
		if gen.pols, err = policy.Build(cfg, g.shared, logger.With("component", "policy")); err != nil {
			return nil, err
		}
	}
	if gen.caches, err = newCaches(cfg, gen.pols, gen.ups, logger); err != nil {
		return nil, err
	}
	gen.cors = newCORS(cfg)
	return gen, nil
}

func registrySpecs(cfg *config.Config) ([]registry.UpstreamSpec, error) {
	var specs []registry.UpstreamSpec
	for name, u := range cfg.Upstreams {
		if u.Kind != "" && u.Kind != "grpc" {
			continue
		}
		opts, err := upstream.DialOptions(u)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		d := u.Descriptors
		var refresh time.Duration
		if d.RefreshInterval != nil {
			refresh = time.Duration(*d.RefreshInterval)
		}
		specs = append(specs, registry.UpstreamSpec{
			Name:            name,
			Targets:         u.Addresses(),
			DialOptions:     opts,
			Reflection:      d.UseReflection(),
			RefreshInterval: refresh,
			Files:           d.Files,
			Protos:          d.Protos,
			ImportPaths:     d.ImportPaths,
			Services:        d.Services,
		})
	}
	return specs, nil
}

// Load loads descriptors and builds the first route table, without
// listening. Start calls it; the routes command uses it alone.
func (g *Gateway) Load(ctx context.Context) error {
	return g.cur.Load().load(ctx)
}

// load loads the generation's descriptors and installs its first state.
func (gen *generation) load(ctx context.Context) error {
	snap, err := gen.reg.Load(ctx)
	if err != nil {
		return fmt.Errorf("load descriptors: %w", err)
	}
	gen.install(snap)
	gen.reg.Subscribe(gen.install)
	return nil
}

// install builds the state of a snapshot of gen and swaps it in, unless
// another generation has replaced gen meanwhile.
func (gen *generation) install(snap *registry.Snapshot) {
	g := gen.g
	table, problems := router.Build(snap, router.Params{
		Rules:           gen.cfg.HTTP.Rules,
		Routes:          gen.cfg.Routes,
		DefaultBindings: gen.cfg.Transcoding.DefaultBindingsEnabled(),
	})
	rest := rest.New(transcoder.Params{
		Snapshot:    snap,
		Table:       table,
		Backends:    gen.backend,
		Transcoding: gen.cfg.Transcoding,
		Logger:      g.logger.With("component", "transcoder.rest"),
		Policies:    gen.policies(),
	})
	grpcProxy := grpcdialect.New(grpcdialect.Params{
		Snapshot:     snap,
		Upstreams:    gen.ups.Get,
		Logger:       g.logger.With("component", "transcoder.grpc"),
		RouteTimeout: gen.routeTimeout,
		Idempotent:   gen.routeIdempotent,
		Policies:     gen.policies(),
		Cache:        gen.grpcCache(),
	})
	web, connect := gen.browserAdapters(snap, table)
	ws := gen.newWebSocket(snap, table)
	next := &state{gen: gen, snap: snap, table: table, rest: rest, grpc: grpcProxy, grpcWeb: web, connect: connect, websocket: ws, routeProblems: problems}
	prev := g.state.Load()
	for {
		if prev != nil && prev.gen != gen && g.cur.Load() != gen {
			return // a newer generation serves: this refresh is moot
		}
		if g.state.CompareAndSwap(prev, next) {
			break
		}
		prev = g.state.Load()
	}
	if prev != nil && prev.gen != gen {
		prev = nil // the first state of a new generation: report every problem
	}
	for _, p := range problems {
		if prev == nil || !hasProblem(prev.routeProblems, p) {
			g.logger.Warn("route problem", "problem", p.String())
		}
	}
	g.logger.Info("routes installed", "snapshot", snap.Version, "routes", len(table.Routes()), "services", len(snap.Services()))
}

// routeTimeout returns the timeout of the first config route whose
// selector matches md ("pkg.Svc.Method", "pkg.Svc.*", "pkg.*" or "*").
func (gen *generation) routeTimeout(md protoreflect.MethodDescriptor) time.Duration {
	if r := gen.selectorRoute(md); r != nil {
		return time.Duration(r.Timeout)
	}
	return 0
}

// routeIdempotent reports whether the first config route whose selector
// matches md says its calls may run twice (idempotent: true).
func (gen *generation) routeIdempotent(md protoreflect.MethodDescriptor) bool {
	r := gen.selectorRoute(md)
	return r != nil && r.Idempotent
}

// methodName is how metrics, spans and analytics name an RPC method:
// its gRPC path and the selector of its config route ("" when none).
type methodName struct{ procedure, route string }

// maxMethodNames bounds a generation's name cache: descriptor refreshes
// make new descriptors, and past it the cache starts over.
const maxMethodNames = 10_000

// methodNames returns md's names, computed once per method and
// generation (not per call: finding the route scans the config routes).
func (gen *generation) methodNames(md protoreflect.MethodDescriptor) methodName {
	if v, ok := gen.names.Load(md); ok {
		return v.(methodName)
	}
	n := methodName{procedure: "/" + string(md.Parent().FullName()) + "/" + string(md.Name())}
	if r := gen.selectorRoute(md); r != nil {
		n.route = r.Selector
	}
	if gen.nnames.Add(1) > maxMethodNames {
		gen.names.Clear()
		gen.nnames.Store(1)
	}
	gen.names.Store(md, n)
	return n
}

// selectorRoute returns the first config route whose selector matches md
// ("pkg.Svc.Method", "pkg.Svc.*", "pkg.*" or "*"), nil when none does.
func (gen *generation) selectorRoute(md protoreflect.MethodDescriptor) *config.Route {
	return config.SelectorRoute(gen.cfg.Routes, string(md.FullName()))
}

// hasRoutePlugins reports whether some route of cfg lists plugins or is
// deprecated or retired, or cfg has plans: whether its calls need chains.
func hasRoutePlugins(cfg *config.Config) bool {
	for _, r := range cfg.Routes {
		if len(r.Plugins) > 0 || r.Deprecated != nil || r.Retired != nil {
			return true
		}
	}
	return len(cfg.Plans) > 0
}

// close closes everything the generation holds (at shutdown).
func (gen *generation) close() []error {
	var errs []error
	if gen.runCancel != nil {
		gen.runCancel()
	}
	if err := gen.reg.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := gen.ups.Close(); err != nil {
		errs = append(errs, err)
	}
	gen.uri.close()
	gen.caches.close()
	if err := gen.pols.Close(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func hasProblem(list []registry.Problem, p registry.Problem) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

func (gen *generation) backend(name string) (transcoder.Backend, bool) {
	u, ok := gen.ups.Get(name)
	if !ok {
		return transcoder.Backend{}, false
	}
	return transcoder.Backend{Conn: gen.caches.conn(name, u), Timeout: time.Duration(u.Config.Timeout), MaxMessageBytes: u.Config.MaxMessageBytes, MaxRequestMessageBytes: u.Config.MaxRequestMessageBytes}, true
}

// Routes returns the current route table's routes.
func (g *Gateway) Routes() []*router.Route {
	if s := g.state.Load(); s != nil {
		return s.table.Routes()
	}
	return nil
}

// Problems returns what went wrong in the latest descriptor load (which
// may not have changed the snapshot) and in building the current route
// table.
func (g *Gateway) Problems() []registry.Problem {
	out := g.cur.Load().reg.Problems()
	if s := g.state.Load(); s != nil {
		out = append(out, s.routeProblems...)
	}
	return out
}

// Snapshot returns the current descriptor snapshot.
func (g *Gateway) Snapshot() *registry.Snapshot {
	if s := g.state.Load(); s != nil {
		return s.snap
	}
	return nil
}

// Handler returns the one http.Handler behind every listener.
func (g *Gateway) Handler() http.Handler {
	return g.edge(g.serveHTTP) // observe.go
}

// serveHTTP is the one handler behind every listener (under the access
// log, which detects the protocol): it recovers panics, answers CORS
// preflights and hands the request to proto's adapter of the current
// state.
func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request, proto call.Protocol) {
	st := g.acquire()
	defer st.gen.release()
	defer g.recoverPanic(w, r, st, proto)
	if st.gen.cors != nil && g.applyCORS(w, r, st) {
		return // a preflight, answered
	}
	if st.gen.portal != nil && st.gen.cfg.Portal.Address == "" && underPortal(st.gen.portalPath, r.URL.Path) {
		st.gen.portal.ServeHTTP(w, r) // the developer portal (portal.go)
		return
	}
	if o := st.gen.cfg.OpenAPI; o != nil && r.URL.Path == o.Path && proto == call.REST {
		st.gen.openapi.public.ServeHTTP(w, r) // the public document (openapi.go)
		return
	}
	switch proto {
	case call.GRPC:
		g.serveGRPC(w, r, st)
	case call.GRPCWeb:
		g.refreshRPC(r, st).grpcWeb.ServeHTTP(w, r)
	case call.Connect:
		g.refreshRPC(r, st).connect.ServeHTTP(w, r)
	case call.WebSocket:
		if !g.serveURI(w, r, st) {
			g.serveWebSocket(w, r, st)
		}
	default:
		if !g.serveURI(w, r, st) {
			g.serveREST(w, r, st)
		}
	}
}

// recoverPanic turns a panic in any adapter into a 500 with an error ID,
// logged with its stack, so one bad request never takes the gateway down.
func (g *Gateway) recoverPanic(w http.ResponseWriter, r *http.Request, st *state, proto call.Protocol) {
	v := recover()
	if v == nil || v == http.ErrAbortHandler {
		if v != nil {
			panic(v)
		}
		return
	}
	g.logger.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	ce := call.Errorf(codes.Internal, "internal error")
	switch proto {
	case call.GRPC, call.GRPCWeb:
		// A trailers-only answer: grpc-status in the headers, which both
		// gRPC and gRPC-Web clients read.
		st.grpc.WriteError(w, r, ce)
	default:
		st.rest.WriteError(w, r, ce)
	}
}

// serveREST serves REST/JSON by the route table, refreshing descriptors
// once when the path names a method the snapshot does not know.
func (g *Gateway) serveREST(w http.ResponseWriter, r *http.Request, st *state) {
	m, err := st.rest.Match(r)
	if err != nil && transcoder.IsNotFound(err) && looksLikeMethodPath(r.URL.Path) {
		// The path names a method the snapshot may not know yet: refresh
		// descriptors (rate-limited inside the registry) and try again.
		if _, found := st.gen.reg.RefreshMissing(r.Context(), r.URL.Path); found {
			st = g.refreshed(st)
			m, err = st.rest.Match(r)
		}
	}
	if err != nil {
		st.rest.WriteError(w, r, err)
		return
	}
	st.rest.Serve(w, r, m)
}

// looksLikeMethodPath reports whether p has the "/pkg.Service/Method" shape
// of a default binding.
func looksLikeMethodPath(p string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return ok && strings.Contains(svc, ".") && method != "" && !strings.Contains(method, "/")
}

// Start loads descriptors, builds routes, binds every listener and starts
// serving and refreshing. It returns once the listeners accept connections.
func (g *Gateway) Start(ctx context.Context) error {
	if err := g.Load(ctx); err != nil {
		return err
	}
	gen := g.cur.Load()
	h := g.Handler()
	for _, l := range gen.cfg.Listeners {
		s, err := transports.NewServer(l, h, g.logger.With("component", "transports.http", "listener", l.Address))
		if err != nil {
			g.closeServers()
			return fmt.Errorf("listener %s: %w", l.Address, err)
		}
		if err := s.Listen(); err != nil {
			g.closeServers()
			return err
		}
		s.InterceptHTTP2(g.interceptGRPC)
		g.servers = append(g.servers, s)
		g.listenAddrs = append(g.listenAddrs, l.Address)
	}
	for _, s := range g.servers {
		s.Serve()
		g.logger.Info("listening", "address", s.Addr().String(), "protocols", s.Protocols())
	}
	if err := g.startAdmin(); err != nil {
		g.closeServers()
		return err
	}
	if err := g.startPortal(gen.cfg); err != nil { // portal.go
		g.closeServers()
		g.stopAdmin(ctx)
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	gen.run(runCtx)
	g.started.Store(true)
	g.reload.status = g.configStatus(gen, nil)
	return nil
}

// run starts the generation's background work: descriptor refresh.
func (gen *generation) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	gen.runCancel = cancel
	gen.g.wg.Add(1)
	go func() {
		defer gen.g.wg.Done()
		gen.reg.Run(ctx)
	}()
}

func (g *Gateway) closeServers() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, s := range g.servers {
		_ = s.Shutdown(ctx)
	}
	g.servers = nil
}

// Addrs returns the bound listener addresses, in config order.
func (g *Gateway) Addrs() []net.Addr {
	g.serversMu.Lock()
	defer g.serversMu.Unlock()
	out := make([]net.Addr, len(g.servers))
	for i, s := range g.servers {
		out[i] = s.Addr()
	}
	return out
}

// Shutdown stops accepting, drains in-flight requests until ctx ends, and
// closes backend connections. Calling it again returns the first result.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.shutdownOnce.Do(func() { g.shutdownErr = g.shutdown(ctx) })
	return g.shutdownErr
}

func (g *Gateway) shutdown(ctx context.Context) error {
	var errs []error
	g.stopping.Store(true)
	defer g.stopAdmin(ctx)
	g.local.draining()
	// WebSockets are told to go away (1001) while the listeners drain:
	// over HTTP/2 and HTTP/3 a socket is a stream that the servers'
	// shutdown waits for.
	wsDone := make(chan struct{})
	go func() {
		g.ws.close(ctx)
		close(wsDone)
	}()
	g.serversMu.Lock()
	servers := append([]*transports.Server(nil), g.servers...)
	g.serversMu.Unlock()
	if g.portalSrv != nil {
		servers = append(servers, g.portalSrv)
	}
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	g.local.stop()
	<-wsDone
	g.reload.stop()
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
	errs = append(errs, g.cur.Load().close()...)
	errs = append(errs, g.reload.closeRetired()...)
	g.shutdownTracing(ctx) // observe.go
	if err := g.closeAnalytics(ctx); err != nil {
		// As with spans, a store that does not take the last calls loses
		// them: logged, not a failed shutdown.
		g.logger.Warn("analytics: the calls not yet flushed to Redis are lost", "error", err)
	}
	if err := g.shared.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
