package gateway

import (
	"net"
	"net/http"
	"sync"

	"github.com/rosetta-gateway/rosetta/admin/openapi"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

// openAPIHandlers are a generation's OpenAPI documents: the public one
// (on the listeners, with the config's servers, or none so that clients
// resolve paths against the document's own URL) and the admin one (whose
// servers default to the listeners' addresses, since the admin port
// serves no API), built on first use.
type openAPIHandlers struct {
	public    http.Handler
	adminOnce sync.Once
	admin     http.Handler
}

// newOpenAPI returns the OpenAPI handlers of a generation built from cfg:
// the document of the current descriptor snapshot and route table, with
// the title, servers, JSON options and security schemes of cfg. It is
// regenerated when descriptors change (a new snapshot) and, through the
// new generation's handlers, when a reload changes the config.
func (g *Gateway) newOpenAPI(cfg *config.Config) *openAPIHandlers {
	return &openAPIHandlers{public: g.openAPIHandler(cfg, nil)}
}

// openAPIHandler builds one handler; servers, when not nil, replaces the
// config's servers.
func (g *Gateway) openAPIHandler(cfg *config.Config, servers []string) http.Handler {
	opts := openapi.Options{
		JSON:     cfg.Transcoding.JSON,
		Security: openapi.SecurityFromConfig(cfg),
		Servers:  servers,
	}
	if o := cfg.OpenAPI; o != nil {
		opts.Title = o.Title
		if servers == nil {
			opts.Servers = o.Servers
		}
	}
	return openapi.Handler(func() (*registry.Snapshot, *router.Table) {
		st := g.state.Load()
		if st == nil {
			return nil, nil
		}
		return st.snap, st.table
	}, opts)
}

// adminOpenAPI returns the admin listener's document handler of gen.
func (g *Gateway) adminOpenAPI(gen *generation) http.Handler {
	h := gen.openapi
	h.adminOnce.Do(func() {
		var servers []string
		if o := gen.cfg.OpenAPI; o != nil && len(o.Servers) > 0 {
			servers = o.Servers
		} else {
			servers = g.listenerURLs(gen.cfg)
		}
		h.admin = g.openAPIHandler(gen.cfg, servers)
	})
	return h.admin
}

// listenerURLs returns the base URLs of the running listeners (http or
// https by their TLS; an unspecified host as localhost).
func (g *Gateway) listenerURLs(cfg *config.Config) []string {
	g.serversMu.Lock()
	defer g.serversMu.Unlock()
	var urls []string
	for i, s := range g.servers {
		scheme := "http"
		if i < len(cfg.Listeners) && cfg.Listeners[i].TLS != nil {
			scheme = "https"
		}
		host, port, err := net.SplitHostPort(s.Addr().String())
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "localhost"
		}
		urls = append(urls, scheme+"://"+net.JoinHostPort(host, port))
	}
	return urls
}

// OpenAPIHandler serves the OpenAPI document of the running config and
// descriptors (?upstream=NAME for one upstream's), as the admin
// listener's /openapi.json does: its servers are the listeners' base
// URLs unless the config's openapi block names them.
func (g *Gateway) OpenAPIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.adminOpenAPI(g.cur.Load()).ServeHTTP(w, r)
	})
}
