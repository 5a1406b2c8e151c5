package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/cache"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// caches are the response caches of one config: one per proxy-cache
// plugins entry (a top-level entry is one cache for every route it
// applies to), with the caching connection of each gRPC upstream. They
// depend on the config only, so they are built once in New.
type caches struct {
	pols    *policy.Set
	byEntry map[*config.ProxyCache]*cache.Cache
	list    []*cache.Cache
	redis   *redisclient.Server                 // the redis block's server, when a store uses it
	shared  *cache.Cache                        // the first cache on Redis: they share one keyspace
	conns   map[string]grpc.ClientConnInterface // by gRPC upstream name
}

// newCaches builds the caches of cfg's proxy-cache entries; nil when it
// has none.
func newCaches(cfg *config.Config, pols *policy.Set, ups *upstream.Set, logger *slog.Logger) (*caches, error) {
	cs := &caches{pols: pols, byEntry: map[*config.ProxyCache]*cache.Cache{}, conns: map[string]grpc.ClientConnInterface{}}
	var entries []*config.ProxyCache
	for i := range cfg.Plugins {
		if pc := cfg.Plugins[i].ProxyCache; pc != nil {
			entries = append(entries, pc)
		}
	}
	for r := range cfg.Routes {
		for i := range cfg.Routes[r].Plugins {
			if pc := cfg.Routes[r].Plugins[i].ProxyCache; pc != nil {
				entries = append(entries, pc)
			}
		}
	}
	if len(entries) == 0 || pols == nil {
		return nil, nil
	}
	logger = logger.With("component", "cache")
	for _, pc := range entries {
		var store cache.Store
		switch pc.Store {
		case "redis":
			if cs.redis == nil {
				if cfg.Redis == nil {
					cs.close()
					return nil, errors.New("proxy-cache with store: redis needs the top-level redis block")
				}
				srv, err := redisclient.NewServer(cfg.Redis, cache.StoreName, nil, logger)
				if err != nil {
					cs.close()
					return nil, fmt.Errorf("proxy-cache redis store: %w", err)
				}
				cs.redis = srv
			}
			store = cache.NewRedis(cs.redis, false)
		default:
			store = cache.NewMemory(pc.MaxBytes.Bytes(), pc.MaxEntryBytes.Bytes())
		}
		c := cache.New(pc, store, cache.WithTrustedProxies(cfg.TrustedProxies))
		if pc.Store == "redis" && cs.shared == nil {
			cs.shared = c
		}
		cs.byEntry[pc] = c
		cs.list = append(cs.list, c)
	}
	for name, u := range cfg.Upstreams {
		if u.Kind != "" && u.Kind != "grpc" {
			continue
		}
		if up, ok := ups.Get(name); ok {
			cs.conns[name] = transcoder.CacheConn(up.CallConn(), cs)
		}
	}
	return cs, nil
}

// CacheForMethod returns the cache of an RPC method and the route it
// applies for (transcoder.Caches).
func (cs *caches) CacheForMethod(fullName string) (*cache.Cache, string) {
	pc, route := cs.pols.CacheForMethod(fullName)
	if pc == nil {
		return nil, ""
	}
	return cs.byEntry[pc], route
}

// forURIRoute returns the cache of routes[i] (a uri route), nil for none.
func (cs *caches) forURIRoute(i int) *cache.Cache {
	if cs == nil {
		return nil
	}
	return cs.byEntry[cs.pols.CacheForURIRoute(i)]
}

// conn returns the connection the dialects call upstream name on: its
// caching connection when there are caches, else u's own.
func (cs *caches) conn(name string, u *upstream.Upstream) grpc.ClientConnInterface {
	if cs != nil {
		if c, ok := cs.conns[name]; ok {
			return c
		}
	}
	return u.CallConn()
}

// grpcConn is the gRPC proxy's Params.Cache: the caching connection of a
// unary method whose gRPC calls its cache may answer (with
// no_side_effects, for methods marked NO_SIDE_EFFECTS: gRPC calls are
// POSTs).
func (cs *caches) grpcConn(md protoreflect.MethodDescriptor, name string) grpc.ClientConnInterface {
	c, _ := cs.CacheForMethod(string(md.FullName()))
	if c == nil || !c.NoSideEffects() || !transcoder.NoSideEffects(md) {
		return nil
	}
	return cs.conns[name]
}

// setClock sets every cache's clock (tests).
func (cs *caches) setClock(now func() time.Time) {
	for _, c := range cs.list {
		c.SetClock(now)
	}
}

// purge drops the entries of route (every route when allRoutes) whose
// resource is resource (any when ""), from every memory cache and, once,
// from Redis.
func (cs *caches) purge(ctx context.Context, route string, allRoutes bool, resource string) (int, error) {
	if cs == nil {
		return 0, nil
	}
	n := 0
	var errs []error
	for _, c := range cs.list {
		if cs.byRedis(c) && c != cs.shared {
			continue
		}
		d, err := c.Purge(ctx, route, allRoutes, resource)
		n += d
		if err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// byRedis reports whether c keeps its entries in Redis.
func (cs *caches) byRedis(c *cache.Cache) bool {
	for pc, cc := range cs.byEntry {
		if cc == c {
			return pc.Store == "redis"
		}
	}
	return false
}

// stats returns the counters of every cache, added up.
func (cs *caches) stats() cache.Stats {
	var s cache.Stats
	if cs == nil {
		return s
	}
	for _, c := range cs.list {
		st := c.Stats()
		s.Hits += st.Hits
		s.Misses += st.Misses
		s.Stale += st.Stale
		s.Waiting += st.Waiting
	}
	return s
}

// close waits for background refreshes and closes the stores.
func (cs *caches) close() {
	if cs == nil {
		return
	}
	for _, c := range cs.list {
		_ = c.Close()
	}
	if cs.redis != nil {
		_ = cs.redis.Close()
	}
}

// proxyURI sends a request of a uri route to its proxy, through the
// route's cache when it has one and the request is one the cache takes
// (a GET without credentials no plugin checked; no upgrade).
func (g *Gateway) proxyURI(w http.ResponseWriter, r *http.Request, st *state, rt *router.URIRoute, adm *transcoder.Admission) {
	next := st.gen.uri.proxies[rt.Index]
	c := st.gen.caches.forURIRoute(rt.Index)
	if c == nil || isUpgrade(r) {
		next.ServeHTTP(w, r)
		return
	}
	var own call.Call
	cl := &own
	if adm != nil {
		cl = &adm.Call
	} else {
		own = call.Call{HTTPMethod: r.Method, Header: call.HTTPHeader(r.Header), Peer: call.ParsePeer(r.RemoteAddr)}
	}
	if !c.Admits(cl, false) {
		next.ServeHTTP(w, r)
		return
	}
	k := uriKeys.Get().(*cache.Key)
	defer uriKeys.Put(k)
	c.HTTPKey(k, rt.Config.URI, r.URL.Path, r.URL.RawQuery, cl)
	c.ServeHTTP(w, r, k, next)
}

// uriKeys holds the cache keys of uri route calls (Cache.ServeHTTP keeps
// none past its return).
var uriKeys = sync.Pool{New: func() any { return new(cache.Key) }}

// PurgeCaches drops cached answers: those of route (a selector or uri as
// written in the config; every route when allRoutes) whose resource is
// key (a procedure "/pkg.Service/Method", or a uri route's request path;
// any when ""). It purges this instance's memory caches and the Redis
// store, and returns how many entries it dropped. SIGUSR1 to rosetta
// serve purges everything.
func (g *Gateway) PurgeCaches(ctx context.Context, route string, allRoutes bool, key string) (int, error) {
	return g.cur.Load().caches.purge(ctx, route, allRoutes, key)
}

// CacheStats returns the hit, miss and stale counts of every response
// cache of the gateway, added up.
func (g *Gateway) CacheStats() cache.Stats { return g.cur.Load().caches.stats() }

// grpcCache is the gRPC proxy's Params.Cache; nil without caches.
func (gen *generation) grpcCache() func(protoreflect.MethodDescriptor, string) grpc.ClientConnInterface {
	if gen.caches == nil {
		return nil
	}
	return gen.caches.grpcConn
}
