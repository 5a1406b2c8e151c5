package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/admin/openapi"
	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/keyauth"
	"github.com/rosetta-gateway/rosetta/policy/keystore"
	"github.com/rosetta-gateway/rosetta/policy/quota"
	"github.com/rosetta-gateway/rosetta/portal"
	"github.com/rosetta-gateway/rosetta/transports"
)

// This file is the gateway's side of the developer portal: the
// portal.Source over the current snapshot, consumers, plans, analytics
// and self-service keys, and where the portal is mounted.

// portalSource implements portal.Source over g.
type portalSource struct{ g *Gateway }

var _ portal.Source = portalSource{}

// newPortal returns the portal handler of cfg, nil without a portal block.
func (g *Gateway) newPortal(cfg *config.Config) http.Handler {
	p := cfg.Portal
	if p == nil {
		return nil
	}
	path := strings.TrimSuffix(p.Path, "/")
	if path == "" {
		path = "/portal"
	}
	return portal.New(portal.Options{Title: portalTitle(cfg), Path: path, SelfService: p.SelfService, Source: portalSource{g}})
}

// portalPath returns the portal's mount path of cfg ("" without a
// portal).
func portalPath(cfg *config.Config) string {
	if cfg.Portal == nil {
		return ""
	}
	if p := strings.TrimSuffix(cfg.Portal.Path, "/"); p != "" {
		return p
	}
	return "/portal"
}

// underPortal reports whether path is the portal's (path is its mount
// path, or under it).
func underPortal(mount, path string) bool {
	return mount != "" && strings.HasPrefix(path, mount) && (len(path) == len(mount) || path[len(mount)] == '/')
}

// Catalog returns the catalog of the current state.
func (s portalSource) Catalog() *portal.Catalog {
	st := s.g.state.Load()
	if st == nil {
		return &portal.Catalog{}
	}
	// Built once per state (a descriptor snapshot of a generation), not
	// per request.
	if c := s.g.catalogOf.Load(); c != nil && c.st == st {
		return c.catalog
	}
	c := &catalogOf{st: st, catalog: s.g.catalog(st)}
	s.g.catalogOf.Store(c)
	return c.catalog
}

// catalogOf is the portal's catalog of one state.
type catalogOf struct {
	st      *state
	catalog *portal.Catalog
}

// OpenAPI returns the OpenAPI document of one service, its servers left
// out: the portal serves beside the API, so the try-it console calls the
// document's own origin.
func (s portalSource) OpenAPI(service string) ([]byte, error) {
	st := s.g.state.Load()
	if st == nil {
		return nil, errors.New("the gateway is starting")
	}
	cfg := st.gen.cfg
	if st.snap != nil {
		if _, ok := st.snap.Service(protoreflectName(service)); ok {
			doc, err := openapi.Generate(st.snap, st.table, openapi.Options{
				Title:    service,
				Service:  service,
				JSON:     cfg.Transcoding.JSON,
				Security: openapi.SecurityFromConfig(cfg),
			})
			if err != nil {
				return nil, err
			}
			return doc.JSON()
		}
	}
	if doc, err := uriOpenAPI(cfg, service); doc != nil || err != nil {
		return doc, err // a plain HTTP upstream's uri routes
	}
	return nil, errors.New("no service " + strconv.Quote(service))
}

// SignIn finds the consumer of a credential: a key of the config's
// consumers or a self-service key, or a JWT that a jwt-auth plugin of
// the config accepts.
func (s portalSource) SignIn(ctx context.Context, cred portal.Credential) (*portal.Consumer, error) {
	gen := s.g.cur.Load()
	name := ""
	switch {
	case cred.APIKey != "":
		n, err := s.consumerOfKey(ctx, gen, cred.APIKey)
		if err != nil {
			return nil, err
		}
		name = n
	case cred.JWT != "":
		n, err := s.consumerOfJWT(ctx, gen, cred.JWT)
		if err != nil {
			return nil, err
		}
		name = n
	default:
		return nil, errors.New("send an API key or a JWT")
	}
	return s.consumer(ctx, gen, name)
}

// consumerOfKey returns the consumer whose key is key.
func (s portalSource) consumerOfKey(ctx context.Context, gen *generation, key string) (string, error) {
	gen.portalKeys.once.Do(func() {
		// key-auth's own lookup of the config's keys and the self-service
		// store, built once per generation (none when nobody has a key).
		gen.portalKeys.p, _ = keyauth.NewWithStore(config.KeyAuth{}, gen.cfg.Consumers, s.store(gen))
	})
	ka := gen.portalKeys.p
	if ka == nil {
		return "", errors.New("invalid API key")
	}
	c := &call.Call{Protocol: call.REST, Header: call.HTTPHeader(http.Header{"Apikey": {key}})}
	if err := ka.Check(ctx, c, &policy.State{}); err != nil {
		return "", errors.New(err.Msg)
	}
	return c.Consumer, nil
}

// consumerOfJWT runs the config's jwt-auth plugins on the token; the
// first that accepts it names the consumer.
func (s portalSource) consumerOfJWT(ctx context.Context, gen *generation, token string) (string, error) {
	var first *call.Error
	for _, p := range gen.pols.Plugins() {
		if p.Name() != config.PluginJWTAuth {
			continue
		}
		c := &call.Call{Protocol: call.REST, HTTPMethod: http.MethodGet, Header: call.HTTPHeader(http.Header{"Authorization": {"Bearer " + token}})}
		var st policy.State
		if err := p.Check(ctx, c, &st); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if c.Consumer == "" {
			return "", errors.New("the token names no subject")
		}
		return c.Consumer, nil
	}
	if first != nil {
		return "", errors.New(first.Msg)
	}
	return "", errors.New("this gateway accepts no JWT (no jwt-auth plugin is configured)")
}

// consumer describes the consumer name: plan, keys and quota.
func (s portalSource) consumer(ctx context.Context, gen *generation, name string) (*portal.Consumer, error) {
	out := &portal.Consumer{Name: name, Keys: []portal.Key{}}
	for _, c := range gen.cfg.Consumers {
		if c.Name != name {
			continue
		}
		out.Plan = c.Plan
		for i, k := range c.Keys {
			if k == "" {
				continue
			}
			out.Keys = append(out.Keys, portal.Key{ID: "config-" + strconv.Itoa(i), Masked: maskKey(k), Source: "config"})
		}
	}
	if store := s.store(gen); store != nil {
		keys, err := store.List(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			out.Keys = append(out.Keys, portal.Key{ID: k.ID, Masked: k.Masked, Source: "self-service", Created: k.Created})
		}
	}
	q, err := s.g.quotaOf(ctx, gen, name)
	if err != nil {
		return nil, err
	}
	out.Quota = q
	return out, nil
}

// maskKey shows a key's first four and last two characters.
func maskKey(k string) string {
	if len(k) <= 8 {
		return strings.Repeat("•", len(k))
	}
	return k[:4] + "…" + k[len(k)-2:]
}

// store returns the self-service key store, nil when self-service is off.
func (s portalSource) store(gen *generation) *keystore.Store {
	if p := gen.cfg.Portal; p == nil || !p.SelfService {
		return nil
	}
	st, err := keystore.Shared(s.g.shared, gen.cfg)
	if err != nil {
		s.g.logger.Error("portal: key store", "error", err)
		return nil
	}
	return st
}

// CreateKey creates a self-service key for consumer.
func (s portalSource) CreateKey(ctx context.Context, consumer string) (portal.Key, string, error) {
	store := s.store(s.g.cur.Load())
	if store == nil {
		return portal.Key{}, "", portal.ErrForbidden
	}
	k, secret, err := store.Create(ctx, consumer)
	if err != nil {
		return portal.Key{}, "", err
	}
	return portal.Key{ID: k.ID, Masked: k.Masked, Source: "self-service", Created: k.Created}, secret, nil
}

// RevokeKey revokes one of consumer's self-service keys.
func (s portalSource) RevokeKey(ctx context.Context, consumer, id string) error {
	if strings.HasPrefix(id, "config-") {
		return tagged(portal.ErrForbidden, errors.New("keys from the gateway's config are revoked by its operator"))
	}
	store := s.store(s.g.cur.Load())
	if store == nil {
		return portal.ErrForbidden
	}
	err := store.Revoke(ctx, consumer, id)
	if errors.Is(err, keystore.ErrNotFound) {
		return tagged(portal.ErrNotFound, err)
	}
	return err
}

// AdminAuthorized reports whether r carries the admin token. Without a
// token in the config it lets the request through to Analytics, which
// then refuses it saying what to configure: the portal never trusts a
// client for its address (behind a reverse proxy on the same host every
// client is a loopback one).
func (s portalSource) AdminAuthorized(r *http.Request) bool {
	token := adminToken(s.g.cur.Load().cfg)
	if token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// adminToken is cfg's admin token ("" without one).
func adminToken(cfg *config.Config) string {
	if cfg.Admin == nil {
		return ""
	}
	return cfg.Admin.Token
}

// errNoAdminToken refuses the portal's analytics on a gateway whose
// config has no admin token.
var errNoAdminToken = tagged(portal.ErrForbidden,
	errors.New("the portal shows analytics to the operator only: set admin.token in the config, then enter it here"))

// quotaOf reads consumer's quota from the plan plugin of gen, nil when
// the consumer has none.
func (g *Gateway) quotaOf(ctx context.Context, gen *generation, consumer string) (*portal.Quota, error) {
	for _, p := range gen.pols.Plugins() {
		qp, ok := p.(*quota.Plugin)
		if !ok {
			continue
		}
		st, ok, err := qp.QuotaStatus(ctx, consumer)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, nil
		}
		return &portal.Quota{Plan: st.Plan, Limit: st.Limit, Used: st.Used, Remaining: st.Remaining, Period: st.Period, ResetAt: st.ResetAt}, nil
	}
	return nil, nil
}

// protoreflectName is a service name as the snapshot keys it.
func protoreflectName(s string) protoreflect.FullName { return protoreflect.FullName(s) }

// startPortal binds the portal's own listener when cfg names an address:
// it serves the portal under its path and the gateway's APIs beside it
// (so the consoles call the APIs from the portal's origin), with the
// settings of the first listener (TLS included) but HTTP/3. A reload
// does not move it.
func (g *Gateway) startPortal(cfg *config.Config) error {
	p := cfg.Portal
	if p == nil || p.Address == "" {
		return nil
	}
	l := cfg.Listeners[0]
	l.Address, l.HTTP3 = p.Address, false
	h := g.edge(func(w http.ResponseWriter, r *http.Request, proto call.Protocol) {
		st := g.state.Load()
		if st != nil && st.gen.portal != nil && underPortal(st.gen.portalPath, r.URL.Path) {
			st.gen.portal.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/" && r.Method == http.MethodGet {
			http.Redirect(w, r, portalPath(cfg)+"/", http.StatusFound)
			return
		}
		g.serveHTTP(w, r, proto)
	})
	s, err := transports.NewServer(l, h, g.logger.With("component", "transports.http", "listener", "portal"))
	if err != nil {
		return fmt.Errorf("portal listener %s: %w", p.Address, err)
	}
	if err := s.Listen(); err != nil {
		return fmt.Errorf("portal listener: %w", err)
	}
	s.InterceptHTTP2(g.interceptGRPC)
	s.Serve()
	g.portalSrv = s
	g.logger.Info("portal listening", "address", s.Addr().String(), "path", portalPath(cfg)+"/")
	return nil
}

// PortalAddr returns the portal listener's address, nil without one.
func (g *Gateway) PortalAddr() net.Addr {
	if g.portalSrv == nil {
		return nil
	}
	return g.portalSrv.Addr()
}
