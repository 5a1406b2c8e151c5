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

// newCORS builds the CORS policy of cfg, or nil when cfg has no cors
// section.
func newCORS(cfg *config.Config) *cors.Policy {
	if cfg.CORS == nil {
		return nil
	}
	return cors.New(*cfg.CORS)
}

// applyCORS answers a CORS preflight (reporting true) or sets the CORS
// headers of an actual response.
func (g *Gateway) applyCORS(w http.ResponseWriter, r *http.Request) bool {
	if g.cors.Preflight(w, r) {
		return true
	}
	g.cors.Apply(w, r)
	return false
}

// browserAdapters builds the gRPC-Web and Connect adapters of a snapshot.
func (g *Gateway) browserAdapters(snap *registry.Snapshot, table *router.Table) (*grpcweb.Handler, *connect.Handler) {
	p := transcoder.Params{
		Snapshot:    snap,
		Table:       table,
		Backends:    g.backend,
		Transcoding: g.cfg.Transcoding,
		Policies:    g.policies(),
	}
	p.Logger = g.logger.With("component", "transcoder.grpc_web")
	web := grpcweb.New(p)
	p.Logger = g.logger.With("component", "transcoder.connect")
	return web, connect.New(p)
}

// refreshRPC returns the state to serve an RPC-shaped (gRPC-Web or Connect)
// request with: st, or a newer state when the path names a method st does
// not know and a descriptor refresh (rate-limited in the registry) found it.
func (g *Gateway) refreshRPC(r *http.Request, st *state) *state {
	if st.connect.Knows(r.URL.Path) || !looksLikeMethodPath(r.URL.Path) {
		return st
	}
	if _, found := g.reg.RefreshMissing(r.Context(), r.URL.Path); found {
		return g.state.Load()
	}
	return st
}
