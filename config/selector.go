package config

import "strings"

// Selects reports whether a route selector selects the RPC method
// fullName ("pkg.Service.Method"): the selector is that name, "*", or a
// "prefix.*" that the name starts with ("pkg.Service.*", "pkg.*"). The
// same rule serves routes and transcoding.default_bound.
func Selects(selector, fullName string) bool {
	switch {
	case selector == "*":
		return true
	case strings.HasSuffix(selector, ".*"):
		return strings.HasPrefix(fullName, selector[:len(selector)-1])
	}
	return selector != "" && selector == fullName
}

// SelectorRoute returns the first of routes (in file order) whose
// selector selects the method fullName: the route whose timeout,
// plugins and lifecycle apply to it. It returns nil when none does.
func SelectorRoute(routes []Route, fullName string) *Route {
	for i := range routes {
		if r := &routes[i]; r.URI == "" && Selects(r.Selector, fullName) {
			return r
		}
	}
	return nil
}
