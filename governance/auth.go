package governance

import (
	"fmt"

	"github.com/rosetta-gateway/rosetta/config"
)

// noAuthn is what a chain that authenticates nobody lacks.
const noAuthn = "jwt-auth or key-auth"

// requireAuth applies [RuleRequireAuth] when the config sets
// require_auth: each method whose chain ([policy.Set.ForMethod]) does
// not authenticate, grouped into one finding per service when every
// method of the service (of two or more) takes its chain from the same
// route; and each uri route whose chain ([policy.Set.ForURIRoute]) does
// not. Retired routes and their methods are exempt.
func (c *checker) requireAuth() {
	cfg := c.in.Config
	if !cfg.RequireAuth {
		return
	}
	pols := c.in.Policies
	for _, svc := range c.services() {
		ms := svc.Desc.Methods()
		type gap struct {
			method   string
			route    *config.Route
			optional bool // it authenticates, but lets anonymous calls pass
		}
		var gaps []gap
		sameRoute := true
		for i := 0; i < ms.Len(); i++ {
			name := ms.Get(i).FullName()
			if c.retired(name) {
				continue
			}
			chain, _ := pols.ForMethod(string(name))
			if chain.RequiresAuth() {
				continue
			}
			g := gap{string(name), c.route(name), chain.Authenticates()}
			if len(gaps) > 0 && gaps[0].route != g.route {
				sameRoute = false
			}
			gaps = append(gaps, g)
		}
		if n := len(gaps); n > 1 && n == ms.Len() && sameRoute {
			what := fmt.Sprintf("none of its %d methods authenticates callers", n)
			c.add(c.methodAuthFinding(KindService, string(svc.Desc.FullName()), what, "them", gaps[0].route, gaps[0].optional))
			continue
		}
		for _, g := range gaps {
			c.add(c.methodAuthFinding(KindMethod, g.method, "does not authenticate callers", "it", g.route, g.optional))
		}
	}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		chain := pols.ForURIRoute(i)
		if r.URI == "" || r.Retired != nil || chain.RequiresAuth() {
			continue
		}
		if chain.Authenticates() {
			c.add(Finding{
				Rule: RuleRequireAuth, Kind: KindRoute, Subject: r.URI, Pos: r.Pos,
				Message: "does not authenticate every caller: " + optionalAuthn,
				Fix:     optionalFix,
			})
			continue
		}
		c.add(Finding{
			Rule: RuleRequireAuth, Kind: KindRoute, Subject: r.URI, Pos: r.Pos,
			Message: "does not authenticate callers: neither its plugins nor the top-level plugins have " + noAuthn,
			Fix:     "add " + noAuthn + " to the route's plugins, or to the top-level plugins for every route",
		})
	}
}

// methodAuthFinding reports methods whose chain comes from route (nil:
// from the top-level plugins) and does not authenticate; pronoun is "it"
// or "them".
// optional is set when the chain authenticates but lets anonymous calls
// pass.
func (c *checker) methodAuthFinding(kind, subject, what, pronoun string, route *config.Route, optional bool) Finding {
	f := Finding{Rule: RuleRequireAuth, Kind: kind, Subject: subject}
	if optional {
		if route != nil {
			f.Pos = route.Pos
		}
		f.Message = what + ": " + optionalAuthn
		f.Fix = optionalFix
		return f
	}
	if route == nil {
		f.Message = fmt.Sprintf("%s: no route selects %s and the top-level plugins have no %s", what, pronoun, noAuthn)
		f.Fix = fmt.Sprintf("add %s to the top-level plugins, or a route that selects %s with one", noAuthn, pronoun)
		return f
	}
	f.Pos = route.Pos
	f.Message = fmt.Sprintf("%s: route %q has no %s, nor do the top-level plugins", what, route.Selector, noAuthn)
	f.Fix = fmt.Sprintf("add %s to the plugins of route %q, or to the top-level plugins for every route", noAuthn, route.Selector)
	return f
}

// optionalAuthn and optionalFix describe a chain whose key-auth lets
// anonymous calls pass.
const (
	optionalAuthn = "its key-auth has optional: true, which lets calls without a key pass anonymously"
	optionalFix   = "remove optional: true from key-auth"
)
