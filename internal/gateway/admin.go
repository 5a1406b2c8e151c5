package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/admin"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
)

// This file is the gateway's side of the admin API: the admin listener
// and the admin.Backend methods.

// adminServer is the admin listener; its handler is rebuilt when a reload
// changes the admin token.
type adminServer struct {
	srv     *http.Server
	ln      net.Listener
	handler atomic.Pointer[http.Handler]
	token   string
}

// startAdmin binds and serves the admin listener of the config, if it has
// one.
func (g *Gateway) startAdmin() error {
	a := g.cur.Load().cfg.Admin
	if a == nil || a.Address == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.Address)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", a.Address, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); a.Token == "" && (!ok || !tcp.IP.IsLoopback()) {
		// Validation accepts only loopback addresses without a token; a
		// name such as localhost must resolve to one too.
		_ = ln.Close()
		return fmt.Errorf("admin listener %s: bound %s, not a loopback address, and admin has no token", a.Address, ln.Addr())
	}
	s := &adminServer{ln: ln}
	g.admin = s
	g.adminToken(a.Token)
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			(*s.handler.Load()).ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	go func() { _ = s.srv.Serve(ln) }()
	g.logger.Info("admin listening", "address", ln.Addr().String())
	return nil
}

// adminToken (re)builds the admin handler with token.
func (g *Gateway) adminToken(token string) {
	s := g.admin
	if s == nil || (s.handler.Load() != nil && s.token == token) {
		return
	}
	s.token = token
	h := admin.New(g, admin.Options{
		Token:     token,
		Metrics:   g.MetricsHandler(),
		OpenAPI:   g.OpenAPIHandler(),
		Analytics: g.analyticsOrNil(g.analyticsHandler()),
		Usage:     g.analyticsOrNil(g.usageHandler()),
		Logger:    g.logger.With("component", "admin"),
	})
	s.handler.Store(&h)
}

// AdminAddr returns the admin listener's address, nil without one.
func (g *Gateway) AdminAddr() net.Addr {
	if g.admin == nil {
		return nil
	}
	return g.admin.ln.Addr()
}

// stopAdmin closes the admin listener (last, so probes answer while the
// gateway drains).
func (g *Gateway) stopAdmin(ctx context.Context) {
	if g.admin != nil && g.admin.srv.Shutdown(ctx) != nil {
		_ = g.admin.srv.Close() // the drain ran out of time: end what is left
	}
}

// Live reports whether the gateway serves: false once it shuts down.
func (g *Gateway) Live() bool { return !g.stopping.Load() }

// Ready reports whether the gateway takes traffic: its listeners are up
// and every gRPC upstream's descriptors are loaded.
func (g *Gateway) Ready() (bool, string) {
	if g.stopping.Load() {
		return false, "shutting down"
	}
	if !g.started.Load() {
		return false, "starting: listeners not up yet"
	}
	st := g.state.Load()
	if st == nil {
		return false, "descriptors not loaded yet"
	}
	have := map[string]bool{}
	for _, svc := range st.snap.Services() {
		have[svc.Upstream] = true
	}
	var missing []string
	for name, u := range st.gen.cfg.Upstreams {
		if (u.Kind == "" || u.Kind == "grpc") && !have[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return false, "no descriptors loaded yet for upstream " + strings.Join(missing, ", ")
	}
	return true, ""
}

// Config returns the running config, normalized, secrets redacted.
func (g *Gateway) Config() ([]byte, error) { return g.cur.Load().cfg.Normalized() }

// RouteTable returns the route table as the admin API shows it.
func (g *Gateway) RouteTable() []admin.Route {
	var out []admin.Route
	for _, r := range g.Routes() {
		out = append(out, admin.Route{Verb: r.HTTPMethod, Path: r.Pattern, RPC: string(r.Method.FullName()), Upstream: r.Upstream, Source: r.Source.String()})
	}
	if st := g.state.Load(); st != nil && st.gen.uri != nil {
		for _, rt := range st.gen.uri.table.Routes() {
			verbs := strings.Join(rt.Config.Methods, ",")
			if verbs == "" {
				verbs = "*"
			}
			out = append(out, admin.Route{Verb: verbs, Path: rt.Config.URI, Upstream: rt.Config.Service, Source: "uri"})
		}
	}
	return out
}

// Upstreams returns every upstream with its targets' state.
func (g *Gateway) Upstreams() []admin.Upstream {
	gen := g.cur.Load()
	names := make([]string, 0, len(gen.cfg.Upstreams))
	for name := range gen.cfg.Upstreams {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []admin.Upstream
	for _, name := range names {
		cfg := gen.cfg.Upstreams[name]
		a := admin.Upstream{Name: name, Kind: cfg.Kind, Balance: cfg.Balance}
		if a.Balance == "" {
			a.Balance = "round_robin"
		}
		var bal *balance.Balancer
		var brk interface {
			Stats() (inFlight, waiting int64, rejected uint64)
		}
		_ = brk
		if u, ok := gen.ups.Get(name); ok {
			bal = u.Balancer()
			if b := u.Breaker(); b != nil {
				s := b.Stats()
				a.Breaker = &admin.Breaker{InFlight: s.InFlight, Waiting: s.Waiting, Rejected: s.Rejected}
			}
		} else if hu, ok := gen.uri.ups.Get(name); ok {
			bal = hu.Balancer()
			if b := hu.Breaker(); b != nil {
				s := b.Stats()
				a.Breaker = &admin.Breaker{InFlight: s.InFlight, Waiting: s.Waiting, Rejected: s.Rejected}
			}
		}
		if bal != nil {
			st := bal.Stats()
			a.Panic, a.Ejections = st.Panic, st.Ejections
			for _, e := range bal.Snapshot() {
				t := admin.Target{Address: e.Addr, Weight: e.Weight, Healthy: e.Healthy, Connected: e.Conn == balance.ConnReady, InFlight: e.InFlight,
					LatencyMS: float64(e.Latency) / float64(time.Millisecond)}
				if !e.EjectedUntil.IsZero() {
					until := e.EjectedUntil
					t.EjectedUntil = &until
				}
				a.Targets = append(a.Targets, t)
			}
		}
		out = append(out, a)
	}
	return out
}

// Descriptors returns the services of the current snapshot.
func (g *Gateway) Descriptors() admin.Descriptors {
	st := g.state.Load()
	if st == nil {
		return admin.Descriptors{}
	}
	d := admin.Descriptors{Version: st.snap.Version}
	for _, svc := range st.snap.Services() {
		s := admin.Service{Name: string(svc.Desc.FullName()), Upstream: svc.Upstream, File: svc.Desc.ParentFile().Path(), Source: descriptorSource(st.gen, svc.Upstream)}
		methods := svc.Desc.Methods()
		for i := 0; i < methods.Len(); i++ {
			s.Methods = append(s.Methods, string(methods.Get(i).Name()))
		}
		d.Services = append(d.Services, s)
	}
	for _, p := range g.Problems() {
		d.Problems = append(d.Problems, p.String())
	}
	return d
}

// descriptorSource names where an upstream's descriptors come from.
func descriptorSource(gen *generation, upstream string) string {
	u, ok := gen.cfg.Upstreams[upstream]
	if !ok {
		return ""
	}
	var parts []string
	if u.Descriptors.UseReflection() {
		parts = append(parts, "reflection")
	}
	if len(u.Descriptors.Files) > 0 {
		parts = append(parts, "files")
	}
	if len(u.Descriptors.Protos) > 0 {
		parts = append(parts, "protos")
	}
	return strings.Join(parts, "+")
}

// PurgeCache drops cached answers of route (every route when ""): the
// admin API's POST /cache/purge.
func (g *Gateway) PurgeCache(route string) (int, error) {
	if g.cur.Load().caches == nil {
		return 0, errors.New("no proxy-cache is configured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return g.PurgeCaches(ctx, route, route == "", "")
}

var _ admin.Backend = (*Gateway)(nil)
