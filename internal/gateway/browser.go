package gateway

import (
	"net/http"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy/cors"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/connect"
	"github.com/rosetta-gateway/rosetta/transcoder/grpcweb"
)

// This file wires the browser-facing protocols: gRPC-Web, Connect and CORS.

// corsPolicies are the CORS policies of one config: the gateway-wide one
// (the top-level cors plugin, else the cors block) and, when some route
// has a cors plugin of its own, one per distinct setting.
type corsPolicies struct {
	top      *cors.Policy
	byCfg    map[*config.CORS]*cors.Policy
	perRoute bool // some route has its own cors plugin
}

// newCORS builds the CORS policies of cfg; nil when cfg allows no
// cross-origin call anywhere.
func newCORS(cfg *config.Config) *corsPolicies {
	c := &corsPolicies{byCfg: map[*config.CORS]*cors.Policy{}}
	add := func(cc *config.CORS) *cors.Policy {
		if cc == nil {
			return nil
		}
		if p, ok := c.byCfg[cc]; ok {
			return p
		}
		p := cors.New(*cc)
		c.byCfg[cc] = p
		return p
	}
	top := cfg.CORS
	for _, p := range cfg.Plugins {
		if p.CORS != nil {
			top = p.CORS
		}
	}
	c.top = add(top)
	for _, r := range cfg.Routes {
		for _, p := range r.Plugins {
			if p.CORS != nil {
				add(p.CORS)
				c.perRoute = true
			}
		}
	}
	if c.top == nil && !c.perRoute {
		return nil
	}
	return c
}

// corsFor returns the CORS policy of the route r reaches (its cors
// plugin, else the gateway-wide one), or nil when r's route allows no
// cross-origin call. Routes are looked up only when some route has a
// cors plugin of its own.
func (g *Gateway) corsFor(r *http.Request, st *state) *cors.Policy {
	gen := st.gen
	if !gen.cors.perRoute {
		return gen.cors.top
	}
	method := r.Method
	if m := r.Header.Get("Access-Control-Request-Method"); r.Method == http.MethodOptions && m != "" {
		method = m // a preflight names the method of the call to come
	}
	if gen.uri != nil && gen.uri.table.Len() > 0 {
		if rt, _, ok := gen.uri.table.Match(method, r.URL.Path); ok {
			return gen.cors.byCfg[gen.pols.CORSForURIRoute(rt.Index)]
		}
	}
	name := ""
	if st != nil && st.snap != nil {
		if md, _, ok := st.snap.Method(r.URL.Path); ok {
			name = string(md.FullName())
		} else if m, _, ok := st.table.Match(method, r.URL.EscapedPath()); ok {
			name = string(m.Route.Method.FullName())
		}
	}
	if name == "" {
		return gen.cors.top
	}
	return gen.cors.byCfg[gen.pols.CORSForMethod(name)]
}

// applyCORS answers a CORS preflight (reporting true) or sets the CORS
// headers of an actual response, by the policy of r's route.
func (g *Gateway) applyCORS(w http.ResponseWriter, r *http.Request, st *state) bool {
	p := g.corsFor(r, st)
	if p == nil {
		return false
	}
	if p.Preflight(w, r) {
		return true
	}
	p.Apply(w, r)
	return false
}

// browserAdapters builds the gRPC-Web and Connect adapters of a snapshot.
func (gen *generation) browserAdapters(snap *registry.Snapshot, table *router.Table) (*grpcweb.Handler, *connect.Handler) {
	p := transcoder.Params{
		Snapshot:    snap,
		Table:       table,
		Backends:    gen.backend,
		Transcoding: gen.cfg.Transcoding,
		Policies:    gen.policies(),
	}
	p.Logger = gen.g.logger.With("component", "transcoder.grpc_web")
	web := grpcweb.New(p)
	p.Logger = gen.g.logger.With("component", "transcoder.connect")
	return web, connect.New(p)
}

// refreshRPC returns the state to serve an RPC-shaped (gRPC-Web or Connect)
// request with: st, or a newer state when the path names a method st does
// not know and a descriptor refresh (rate-limited in the registry) found it.
func (g *Gateway) refreshRPC(r *http.Request, st *state) *state {
	if st.connect.Knows(r.URL.Path) || !looksLikeMethodPath(r.URL.Path) {
		return st
	}
	if _, found := st.gen.reg.RefreshMissing(r.Context(), r.URL.Path); found {
		return g.refreshed(st)
	}
	return st
}
