package router

import (
	"slices"
	"strings"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// URIRoute is one config route with a URI: a plain HTTP route proxied to an
// upstream of kind http. A URIRoute is immutable once built.
type URIRoute struct {
	// Config is the route as written in the config.
	Config *config.Route
	// Index is the route's position in the routes given to [BuildURI]
	// (config.Config.Routes), so callers can keep per-route state in a
	// slice.
	Index int
	// Prefix is the path the route matches: the URI without its final
	// "/*" for a prefix route ("/users/*" → "/users", "/*" → ""), the
	// whole URI for an exact one. StripPrefix removes it.
	Prefix string
	// Exact is true for an exact route (a URI without a final "/*").
	Exact bool
}

// allows reports whether the route accepts the HTTP method.
func (r *URIRoute) allows(method string) bool {
	return len(r.Config.Methods) == 0 || slices.Contains(r.Config.Methods, method)
}

// URITable matches request paths to [URIRoute]s: exact paths first, then
// prefixes, longest first. It is built once per config by [BuildURI] and
// only read afterwards, so it is safe for concurrent use.
type URITable struct {
	routes []*URIRoute
	// exact and prefix map a path to the routes written with it, in
	// config order.
	exact  map[string][]*URIRoute
	prefix map[string][]*URIRoute
}

// BuildURI builds the URI table of the routes that have a URI; routes with
// a selector are skipped. The routes must be valid (see config.Validate):
// a URI starts with "/" and has "*" only as a final "/*".
func BuildURI(routes []config.Route) *URITable {
	t := &URITable{exact: map[string][]*URIRoute{}, prefix: map[string][]*URIRoute{}}
	for i := range routes {
		cr := &routes[i]
		if cr.URI == "" {
			continue
		}
		r := &URIRoute{Config: cr, Index: i}
		if p, ok := strings.CutSuffix(cr.URI, "/*"); ok {
			r.Prefix = p
			t.prefix[p] = append(t.prefix[p], r)
		} else {
			r.Prefix, r.Exact = cr.URI, true
			t.exact[cr.URI] = append(t.exact[cr.URI], r)
		}
		t.routes = append(t.routes, r)
	}
	return t
}

// Routes returns the table's routes in config order.
func (t *URITable) Routes() []*URIRoute { return t.routes }

// Len returns the number of routes in the table.
func (t *URITable) Len() int { return len(t.routes) }

// Match finds the route for a request's method and (decoded) URL path. The
// path is cleaned first (upstream.CleanPath), so "/api/../admin" cannot reach a
// route of "/admin/*" through "/api/*". An exact route wins over prefix
// routes; among prefixes the longest wins; "/users/*" matches "/users",
// "/users/" and "/users/anything" but not "/usersx". Among routes of the
// same URI, the first in config order whose methods include method wins.
//
// When some route matches the path but none accepts the method, Match
// returns ok false and allow, the sorted methods that would be accepted
// (answer 405 with an Allow header). When no route matches the path, both
// are zero (fall through to other routing). Match does not allocate unless
// the path needs cleaning or it answers a 405.
func (t *URITable) Match(method, urlPath string) (r *URIRoute, allow []string, ok bool) {
	if t == nil || len(t.routes) == 0 || !strings.HasPrefix(urlPath, "/") {
		return nil, nil, false
	}
	p := upstream.CleanPath(urlPath)
	pathMatched := false
	try := func(rs []*URIRoute) *URIRoute {
		for _, r := range rs {
			pathMatched = true
			if r.allows(method) {
				return r
			}
		}
		return nil
	}
	if r := try(t.exact[p]); r != nil {
		return r, nil, true
	}
	// Longest prefix first: the whole path, then each parent at a "/".
	for end := len(p); ; {
		cand := p[:end]
		if end == len(p) || p[end] == '/' {
			if r := try(t.prefix[cand]); r != nil {
				return r, nil, true
			}
		}
		if end == 0 {
			break
		}
		end = strings.LastIndexByte(cand, '/')
		if end < 0 {
			break
		}
	}
	if !pathMatched {
		return nil, nil, false
	}
	return nil, t.allowed(p), false
}

// allowed lists the methods accepted by the routes matching p. It is only
// called when every such route has a method filter.
func (t *URITable) allowed(p string) []string {
	var out []string
	for _, r := range t.routes {
		if r.matchesPath(p) {
			out = append(out, r.Config.Methods...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// matchesPath reports whether a clean path p is under the route.
func (r *URIRoute) matchesPath(p string) bool {
	if r.Exact {
		return p == r.Prefix
	}
	return p == r.Prefix || strings.HasPrefix(p, r.Prefix) && p[len(r.Prefix)] == '/'
}
