package gateway

import (
	"net/http"
	"strings"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/websocket"

	// The plugins a config may name register themselves.
	_ "github.com/rosetta-gateway/rosetta/policy/concurrency"
	_ "github.com/rosetta-gateway/rosetta/policy/jwtauth"
	_ "github.com/rosetta-gateway/rosetta/policy/keyauth"
	_ "github.com/rosetta-gateway/rosetta/policy/ratelimit"
)

// policies returns the policy set as the dialects look chains up, nil
// when the config has no plugin (so calls skip the seam entirely).
func (gen *generation) policies() transcoder.Policies {
	if gen.pols == nil {
		return nil
	}
	return gen.pols
}

// admitURI runs the chain of a plain HTTP (uri) route. It reports false
// when the call was refused and answered. The caller defers adm.Done.
func (g *Gateway) admitURI(w http.ResponseWriter, r *http.Request, st *state, rt *router.URIRoute) (*transcoder.Admission, bool) {
	chain := st.gen.pols.ForURIRoute(rt.Index)
	if chain.Empty() {
		return nil, true
	}
	protocol := call.HTTP
	if isUpgrade(r) {
		protocol = call.WebSocket
	}
	adm := &transcoder.Admission{}
	adm.Describe(nil, protocol, nil, rt.Config.Service, r)
	adm.SetChain(chain)
	adm.Call.Route = rt.Config.URI
	if protocol == call.WebSocket {
		// Browsers cannot set Authorization on a WebSocket: the bridge's
		// token sources (the rosetta.bearer.<token> subprotocol and
		// ?access_token=) work on uri routes too, and are taken out of
		// what the upstream receives.
		adm.Call.Bearer = takeWebSocketToken(r)
	}
	cerr := adm.Check(r.Context())
	adm.SetHeaders(w.Header(), true)
	if cerr != nil {
		adm.Done()
		st.rest.WriteError(w, r, cerr)
		return nil, false
	}
	adm.Header(r.Header)
	return adm, true
}

// takeWebSocketToken removes the bearer token a WebSocket upgrade carries
// outside Authorization (a rosetta.bearer.<token> subprotocol, else the
// access_token query parameter) from r, and returns it.
func takeWebSocketToken(r *http.Request) string {
	token := ""
	if protos := r.Header.Values("Sec-WebSocket-Protocol"); len(protos) > 0 {
		var kept []string
		for _, line := range protos {
			for _, p := range strings.Split(line, ",") {
				p = strings.TrimSpace(p)
				if v, ok := strings.CutPrefix(p, websocket.SubprotocolBearerPrefix); ok {
					token = v
					continue
				}
				if p != "" {
					kept = append(kept, p)
				}
			}
		}
		r.Header.Del("Sec-WebSocket-Protocol")
		if len(kept) > 0 {
			r.Header.Set("Sec-WebSocket-Protocol", strings.Join(kept, ", "))
		}
	}
	var fromQuery string
	r.URL.RawQuery, fromQuery = transcoder.StripQuery(r.URL.RawQuery, websocket.AccessTokenParam)
	if token == "" {
		token = fromQuery
	}
	return token
}

// admitLocal runs the top-level chain on calls to the gateway's own
// reflection service (its health service stays open). It reports false
// when the call was refused and answered; the caller defers adm.Done.
func (g *Gateway) admitLocal(w http.ResponseWriter, r *http.Request, st *state) (*transcoder.Admission, bool) {
	if !strings.HasPrefix(r.URL.Path, "/grpc.reflection.") {
		return nil, true
	}
	chain := st.gen.pols.Default()
	if chain.Empty() {
		return nil, true
	}
	adm := &transcoder.Admission{}
	adm.Describe(nil, call.GRPC, nil, "", r)
	adm.SetChain(chain)
	cerr := adm.Check(r.Context())
	adm.SetHeaders(w.Header(), false)
	if cerr != nil {
		adm.Done()
		st.grpc.WriteError(w, r, cerr)
		return nil, false
	}
	return adm, true
}

// isUpgrade reports whether r asks for a WebSocket (an HTTP/1.1 upgrade
// or an extended CONNECT).
func isUpgrade(r *http.Request) bool {
	return transcoder.Detect(r) == call.WebSocket
}

var _ transcoder.Policies = (*policy.Set)(nil)
