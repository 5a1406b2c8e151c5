package policy

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

// Set is every policy chain of one config snapshot: one per config route
// and a default chain for calls that no config route covers. It is
// immutable once built (its method cache aside) and safe for concurrent
// use.
//
// A route's chain holds the route's own plugins plus every top-level
// plugin whose name the route does not list (the route's wins). A
// top-level plugin applies to a route as if the route listed it: it is
// built for that route (Env.Route names it), so a top-level
// concurrency-limit or rate-limiting with key: route counts per route.
// The default chain has the top-level plugins built with Env.Route "".
// cors entries are not checking plugins: they do not enter chains, and
// [Set.CORSForMethod] and [Set.CORSForURIRoute] return them instead;
// proxy-cache entries neither, and [Set.CacheForMethod] and
// [Set.CacheForURIRoute] return them (the cache runs after the chain,
// around the upstream call).
type Set struct {
	def        *Chain
	defCORS    *config.CORS
	defCache   *config.ProxyCache
	routes     []*Chain             // by index in Config.Routes
	routeCORS  []*config.CORS       // by index in Config.Routes
	routeCache []*config.ProxyCache // by index in Config.Routes
	selectors  []selectorRoute
	built      []Plugin // every plugin built, once each, for Close
	shared     *Shared  // owned (closed by Close) when Build made it

	mu      sync.Mutex // serializes writers of methods
	methods atomic.Pointer[map[string]methodEntry]
}

// selectorRoute is a route with a selector, in config order.
type selectorRoute struct {
	selector string
	index    int
}

// methodEntry is what ForMethod answers for one method name.
type methodEntry struct {
	chain *Chain
	route string
	cors  *config.CORS
	cache *config.ProxyCache
}

// maxCachedMethods bounds the per-method cache of [Set.ForMethod]; past
// it, lookups scan the routes each time (still correct, slower).
const maxCachedMethods = 10_000

// pluginPackages names the package that registers each plugin, for the
// error of a binary that forgot to import one.
var pluginPackages = map[string]string{
	config.PluginJWTAuth:          "github.com/rosetta-gateway/rosetta/policy/jwtauth",
	config.PluginKeyAuth:          "github.com/rosetta-gateway/rosetta/policy/keyauth",
	config.PluginRateLimiting:     "github.com/rosetta-gateway/rosetta/policy/ratelimit",
	config.PluginConcurrencyLimit: "github.com/rosetta-gateway/rosetta/policy/concurrency",
}

// Build builds every chain of cfg, a validated config, with the
// constructors registered under the plugins' names ([Register]). shared
// keeps state across snapshots (pass the previous snapshot's; nil makes
// one that [Set.Close] closes). logger may be nil.
//
// When cfg has plans, Build also builds the implicit plan plugin
// ([PlanPlugin], registered by policy/quota with [RegisterPlan]) once,
// and adds it to every chain that has an authentication plugin (the
// default chain included), as the first plugin of the Limit phase: it
// counts the calls of consumers that have a plan. It is among
// [Set.Plugins] whenever cfg has plans, even when no chain
// authenticates.
//
// It fails when a plugin has no registered constructor (the binary does
// not import its package) or a constructor fails; the error names each
// entry (file:line: path) and what to fix. On failure, what was built is
// closed.
func Build(cfg *config.Config, shared *Shared, logger *slog.Logger, opts ...BuildOption) (*Set, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o buildOptions
	for _, opt := range opts {
		opt(&o)
	}
	s := &Set{
		routes:     make([]*Chain, len(cfg.Routes)),
		routeCORS:  make([]*config.CORS, len(cfg.Routes)),
		routeCache: make([]*config.ProxyCache, len(cfg.Routes)),
	}
	if shared == nil {
		shared = &Shared{}
		s.shared = shared
	}
	b := &setBuilder{cfg: cfg, shared: shared, logger: logger, set: s, now: o.now}
	plan := b.buildPlan()
	loaded := time.Now() // a deprecation's since, when it names none

	// Top-level plugins, in config order; those whose constructor fails
	// for the default chain are reported once and left out of routes.
	var top, def []entry
	for i := range cfg.Plugins {
		spec := &cfg.Plugins[i]
		if spec.CORS != nil {
			s.defCORS = spec.CORS
			continue
		}
		if spec.ProxyCache != nil {
			s.defCache = spec.ProxyCache
			continue
		}
		path := fmt.Sprintf("plugins[%d]", i)
		if p := b.build(path, "", spec); p != nil {
			def = append(def, entry{p, spec, path})
			top = append(top, entry{nil, spec, path})
		}
	}
	if s.defCORS == nil {
		s.defCORS = cfg.CORS
	}
	s.def = chainOf(def, plan)

	for ri := range cfg.Routes {
		r := &cfg.Routes[ri]
		name := r.Selector
		if r.URI != "" {
			name = r.URI
		}
		var own []entry
		named := map[string]bool{}
		s.routeCORS[ri] = s.defCORS
		s.routeCache[ri] = s.defCache
		for i := range r.Plugins {
			spec := &r.Plugins[i]
			named[spec.Name()] = true
			if spec.CORS != nil {
				s.routeCORS[ri] = spec.CORS
				continue
			}
			if spec.ProxyCache != nil {
				s.routeCache[ri] = spec.ProxyCache
				continue
			}
			path := fmt.Sprintf("routes[%d].plugins[%d]", ri, i)
			if p := b.build(path, name, spec); p != nil {
				own = append(own, entry{p, spec, path})
			}
		}
		for _, e := range top {
			if !named[e.spec.Name()] {
				if p := b.build(e.path, name, e.spec); p != nil {
					own = append(own, entry{p, e.spec, e.path})
				}
			}
		}
		s.routes[ri] = chainOf(own, plan).withLifecycle(newLifecycle(r, loaded))
		if r.URI == "" && r.Selector != "" {
			s.selectors = append(s.selectors, selectorRoute{r.Selector, ri})
		}
	}
	if len(b.errs) > 0 {
		_ = s.Close()
		return nil, errors.Join(b.errs...)
	}
	return s, nil
}

// entry is a built plugin and the config entry (and its key path) it
// came from.
type entry struct {
	plugin Plugin
	spec   *config.Plugin
	path   string
}

// BuildOption tunes [Build].
type BuildOption func(*buildOptions)

type buildOptions struct {
	now func() time.Time
}

// WithClock makes the plugins that read calendar time (the plan
// plugin's quota periods) read it from now instead of [time.Now]
// ([Env.Now]); tests move a fake clock across period boundaries.
func WithClock(now func() time.Time) BuildOption {
	return func(o *buildOptions) { o.now = now }
}

// setBuilder collects what Build makes and the errors it meets.
type setBuilder struct {
	cfg    *config.Config
	shared *Shared
	logger *slog.Logger
	set    *Set
	now    func() time.Time
	errs   []error
}

// planPackage registers the plan plugin.
const planPackage = "github.com/rosetta-gateway/rosetta/policy/quota"

// buildPlan constructs the implicit plan plugin when the config has
// plans, or records why it cannot; it returns nil otherwise.
func (b *setBuilder) buildPlan() Plugin {
	if len(b.cfg.Plans) == 0 {
		return nil
	}
	where := "plans"
	names := make([]string, 0, len(b.cfg.Plans))
	for name := range b.cfg.Plans {
		names = append(names, name)
	}
	slices.Sort(names)
	if p := b.cfg.Plans[names[0]]; p != nil {
		if pos := p.Pos.String(); pos != "" {
			where = pos + ": plans"
		}
	}
	ctor := lookupPlan()
	if ctor == nil {
		b.errs = append(b.errs, fmt.Errorf("%s: the plan plugin is not built into this binary; import %s for its side effect (import _ %q)",
			where, planPackage, planPackage))
		return nil
	}
	env := Env{
		Config: b.cfg,
		Shared: b.shared,
		Logger: b.logger.With("plugin", PlanPlugin),
		Now:    b.now,
	}
	p, err := ctor(env)
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %s: %w", where, PlanPlugin, err))
		return nil
	}
	b.set.built = append(b.set.built, p)
	return p
}

// build constructs one plugin, or records why it cannot and returns nil.
func (b *setBuilder) build(path, route string, spec *config.Plugin) Plugin {
	name := spec.Name()
	where := path
	if pos := spec.Pos.String(); pos != "" {
		where = pos + ": " + path
	}
	ctor, ok := Lookup(name)
	if !ok {
		msg := fmt.Sprintf("%s: plugin %q is not built into this binary (registered: %s)", where, name, strings.Join(Registered(), ", "))
		if pkg := pluginPackages[name]; pkg != "" {
			msg += fmt.Sprintf("; import %s for its side effect (import _ %q)", pkg, pkg)
		}
		b.errs = append(b.errs, errors.New(msg))
		return nil
	}
	env := Env{
		Config: b.cfg,
		Route:  route,
		Shared: b.shared,
		Logger: b.logger.With("plugin", name, "route", route),
		Now:    b.now,
	}
	p, err := ctor(env, *spec)
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %s: %w", where, name, err))
		return nil
	}
	b.set.built = append(b.set.built, p)
	return p
}

// chainOf makes the chain of entries, with the header names it strips:
// every claims_to_headers target of its jwt-auth plugins, and x-consumer
// when it authenticates. plan, when not nil, joins a chain that
// authenticates, first of its Limit phase: the plan plugin is pending
// only when a Redis block is set, and then nothing local has counted
// before it, so a pending TryCheck never counts a call twice.
func chainOf(entries []entry, plan Plugin) *Chain {
	plugins := make([]Plugin, 0, len(entries)+1)
	var strip []string
	authn := false
	for _, e := range entries {
		plugins = append(plugins, e.plugin)
		if e.plugin.Phase() == Authenticate {
			authn = true
		}
		if j := e.spec.JWTAuth; j != nil {
			for _, h := range j.ClaimsToHeaders {
				strip = append(strip, strings.ToLower(h))
			}
			// jwt-auth sends the token it verified as the only
			// authorization value.
			strip = append(strip, "authorization")
		}
	}
	if authn {
		strip = append(strip, ConsumerHeader)
		if plan != nil {
			// NewChain sorts by phase, stably: first of the Limit phase.
			plugins = append([]Plugin{plan}, plugins...)
		}
	}
	slices.Sort(strip)
	return NewChain(plugins, slices.Compact(strip))
}

// Default returns the chain of calls that no config route covers: the
// top-level plugins. It may be empty, never nil (for a non-nil Set).
func (s *Set) Default() *Chain {
	if s == nil {
		return nil
	}
	return s.def
}

// Plugins returns every plugin the set built, once each (nil-safe), for
// the counters some keep (rate-limiting's FailOpens).
func (s *Set) Plugins() []Plugin {
	if s == nil {
		return nil
	}
	return s.built
}

// ForMethod returns the chain of the RPC method named fullName
// ("pkg.Service.Method") and the selector of the route it came from: the
// first route, in config order, whose selector is fullName, "*", or a
// "prefix.*" that fullName starts with. Without one it returns the
// default chain and "". Answers are cached per method name, so a repeat
// costs one map lookup and allocates nothing; callers pass method names
// the router resolved (the cache is bounded all the same).
func (s *Set) ForMethod(fullName string) (chain *Chain, route string) {
	if s == nil {
		return nil, ""
	}
	e := s.method(fullName)
	return e.chain, e.route
}

// CORSForMethod returns the CORS settings that apply to the RPC method
// fullName: those of the cors plugin of the route [Set.ForMethod] picks,
// else the top-level cors plugin, else the top-level cors block. nil
// means no CORS.
func (s *Set) CORSForMethod(fullName string) *config.CORS {
	if s == nil {
		return nil
	}
	return s.method(fullName).cors
}

// CacheForMethod returns the proxy-cache settings that apply to the RPC
// method fullName, and the route they apply for (as [Set.ForMethod]
// names it): those of the route [Set.ForMethod] picks, else the
// top-level proxy-cache. nil means no caching. The pointer identifies
// the plugins entry: every route a top-level entry applies to gets the
// same one.
func (s *Set) CacheForMethod(fullName string) (*config.ProxyCache, string) {
	if s == nil {
		return nil, ""
	}
	e := s.method(fullName)
	return e.cache, e.route
}

// CacheForURIRoute returns the proxy-cache settings that apply to
// routes[i]: its own, else the top-level one. nil means no caching.
func (s *Set) CacheForURIRoute(i int) *config.ProxyCache {
	if s == nil {
		return nil
	}
	if i < 0 || i >= len(s.routeCache) {
		return s.defCache
	}
	return s.routeCache[i]
}

// ForURIRoute returns the chain of routes[i] (the index in
// Config.Routes), normally a route with uri:. An index out of range gets
// the default chain, never an empty one.
func (s *Set) ForURIRoute(i int) *Chain {
	if s == nil {
		return nil
	}
	if i < 0 || i >= len(s.routes) {
		return s.def
	}
	return s.routes[i]
}

// CORSForURIRoute returns the CORS settings that apply to routes[i]: its
// cors plugin, else the top-level one (plugin or block). nil means no
// CORS.
func (s *Set) CORSForURIRoute(i int) *config.CORS {
	if s == nil {
		return nil
	}
	if i < 0 || i >= len(s.routeCORS) {
		return s.defCORS
	}
	return s.routeCORS[i]
}

// Close closes every plugin that has a Close method, and the Shared that
// Build made when it was given none. Chains must not be used after.
func (s *Set) Close() error {
	if s == nil {
		return nil
	}
	var errs []error
	for _, p := range s.built {
		if c, ok := p.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	if s.shared != nil {
		errs = append(errs, s.shared.Close())
	}
	return errors.Join(errs...)
}

// method returns the cached answer for name, computing and caching it on
// a miss.
func (s *Set) method(name string) methodEntry {
	if m := s.methods.Load(); m != nil {
		if e, ok := (*m)[name]; ok {
			return e
		}
	}
	e := s.match(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.methods.Load()
	if old != nil && len(*old) >= maxCachedMethods {
		return e
	}
	// Copy on write: readers never lock. Each distinct method is added
	// once per snapshot.
	next := make(map[string]methodEntry, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[name] = e
	s.methods.Store(&next)
	return e
}

func lenOf(m *map[string]methodEntry) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// match finds the first selector route that selects name.
func (s *Set) match(name string) methodEntry {
	for _, r := range s.selectors {
		if config.Selects(r.selector, name) {
			return methodEntry{chain: s.routes[r.index], route: r.selector, cors: s.routeCORS[r.index], cache: s.routeCache[r.index]}
		}
	}
	return methodEntry{chain: s.def, cors: s.defCORS, cache: s.defCache}
}
