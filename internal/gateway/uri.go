package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/upstream"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
)

// uriRoutes is the plain HTTP routing of one config: the URI table, one
// proxy per URI route, and the upstreams of kind http they forward to. It
// depends on the config only, so it is built once in New.
type uriRoutes struct {
	table   *router.URITable
	proxies []http.Handler // by router.URIRoute.Index
	// hashed is true, by router.URIRoute.Index, for a route whose
	// upstream balances by ring_hash: its requests carry the call that
	// hash_on reads.
	hashed []bool
	ups    *upstream.HTTPSet
}

// newURIRoutes builds the URI table and proxies of cfg.
func newURIRoutes(cfg *config.Config, logger *slog.Logger, prev *upstream.HTTPSet) (*uriRoutes, error) {
	ups, err := upstream.NewHTTPSetFrom(cfg.Upstreams, logger.With("component", "upstream.http"), prev)
	if err != nil {
		return nil, err
	}
	u := &uriRoutes{table: router.BuildURI(cfg.Routes), proxies: make([]http.Handler, len(cfg.Routes)), hashed: make([]bool, len(cfg.Routes)), ups: ups}
	for _, rt := range u.table.Routes() {
		hu, ok := ups.Get(rt.Config.Service)
		if !ok {
			ups.CloseNew(prev)
			return nil, fmt.Errorf("%sroutes[%d]: uri %q: upstream %q is not an upstream of kind http; set kind: http on it",
				uriRoutePos(rt.Config.Pos), rt.Index, rt.Config.URI, rt.Config.Service)
		}
		u.proxies[rt.Index] = hu.Proxy(rt.Config)
		u.hashed[rt.Index] = hu.Balancer().Algorithm() == balance.RingHash
	}
	return u, nil
}

func uriRoutePos(p config.Pos) string {
	if s := p.String(); s != "" {
		return s + ": "
	}
	return ""
}

// close closes the idle connections to the http upstreams.
func (u *uriRoutes) close() { u.ups.Close() }

// serveURI proxies r when a URI route matches its path, answering 405 (with
// Allow) when routes match the path but not the method. It reports whether
// it answered; false means no URI route matches and the caller goes on.
func (g *Gateway) serveURI(w http.ResponseWriter, r *http.Request, st *state) bool {
	if st.gen.uri == nil || st.gen.uri.table.Len() == 0 {
		return false
	}
	rt, allow, ok := st.gen.uri.table.Match(r.Method, r.URL.Path)
	switch {
	case ok:
		protocol := call.HTTP
		if isUpgrade(r) {
			protocol = call.WebSocket
		}
		call.ReportFrom(r.Context()).Routed(protocol, nil, rt.Config.URI, rt.Config.Service)
		adm, ok := g.admitURI(w, r, st, rt)
		if !ok {
			return true
		}
		defer adm.Done()
		if st.gen.uri.hashed[rt.Index] {
			r = withURICallInfo(r, adm)
		}
		g.proxyURI(w, r, st, rt, adm)
	case len(allow) > 0:
		w.Header().Set("Allow", strings.Join(allow, ", "))
		st.rest.WriteError(w, r, transcoder.StatusError(http.StatusMethodNotAllowed,
			call.Errorf(codes.Unimplemented, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))))
	default:
		return false
	}
	return true
}

// uriCallInfo is an upstream.CallInfo with room for a call description
// of its own, so that it costs one allocation.
type uriCallInfo struct {
	upstream.CallInfo
	own call.Call
}

// withURICallInfo returns r carrying the call that ring_hash's hash_on
// reads (upstream.CallInfo): the admission's, with its consumer and
// claims, when the route has plugins (adm not nil), else one described
// from r (its headers and the client's address).
func withURICallInfo(r *http.Request, adm *transcoder.Admission) *http.Request {
	ci := &uriCallInfo{}
	if adm != nil {
		ci.Call, ci.Claims = &adm.Call, adm.State.Claims
	} else {
		ci.own = call.Call{HTTPMethod: r.Method, Header: call.HTTPHeader(r.Header), Peer: call.ParsePeer(r.RemoteAddr)}
		ci.Call = &ci.own
	}
	return r.WithContext(upstream.WithCallInfo(r.Context(), &ci.CallInfo))
}
