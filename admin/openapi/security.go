package openapi

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/config"
)

// Security is one way a caller may authenticate: a security scheme,
// under a name unique to its definition, and the scopes it must grant.
type Security struct {
	// Name is the scheme's key in components.securitySchemes, e.g.
	// "bearerAuth" or "apiKeyHeader_apikey".
	Name string
	// Scheme defines it.
	Scheme SecurityScheme
	// Scopes are required of the credential (a JWT's scope or scp claim).
	Scopes []string
}

// SecurityFromConfig returns an [Options.Security] that reads the auth
// plugins of cfg the way the gateway applies them: a method gets the
// plugins of the first config route (in file order) whose selector
// matches it, plus the top-level plugins the route does not name, or the
// top-level plugins alone when no route matches. jwt-auth is an HTTP
// bearer scheme (and a cookie scheme when it reads a cookie); key-auth an
// API key in its header (and in its query parameter when set). When a
// method has several, any one credential is enough, as in the gateway.
func SecurityFromConfig(cfg *config.Config) func(method protoreflect.FullName) []Security {
	if cfg == nil {
		return nil
	}
	return func(method protoreflect.FullName) []Security {
		var plugins []config.Plugin
		named := map[string]bool{}
		if r := config.SelectorRoute(cfg.Routes, string(method)); r != nil {
			plugins = append(plugins, r.Plugins...)
			for _, p := range r.Plugins {
				named[p.Name()] = true
			}
		}
		for _, p := range cfg.Plugins {
			if !named[p.Name()] {
				plugins = append(plugins, p)
			}
		}
		var out []Security
		for _, p := range plugins {
			switch {
			case p.JWTAuth != nil:
				out = append(out, Security{
					Name:   "bearerAuth",
					Scheme: SecurityScheme{Type: "http", Scheme: "bearer", BearerFormat: "JWT", Description: "A JSON Web Token: Authorization: Bearer <token>."},
					Scopes: p.JWTAuth.Scopes,
				})
				if c := p.JWTAuth.Cookie; c != "" {
					out = append(out, Security{
						Name:   "jwtCookie_" + schemeKey(c),
						Scheme: SecurityScheme{Type: "apiKey", In: "cookie", Name: c, Description: "A JSON Web Token in the cookie " + c + "."},
						Scopes: p.JWTAuth.Scopes,
					})
				}
			case p.KeyAuth != nil:
				h := p.KeyAuth.Header
				if h == "" {
					h = "apikey"
				}
				out = append(out, Security{
					Name:   "apiKeyHeader_" + schemeKey(h),
					Scheme: SecurityScheme{Type: "apiKey", In: "header", Name: h, Description: "An API key of a consumer."},
				})
				if q := p.KeyAuth.Query; q != "" {
					out = append(out, Security{
						Name:   "apiKeyQuery_" + schemeKey(q),
						Scheme: SecurityScheme{Type: "apiKey", In: "query", Name: q, Description: "An API key of a consumer."},
					})
				}
			}
		}
		return dedupe(out)
	}
}

// schemeKey makes a header, query or cookie name fit a component key.
func schemeKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// dedupe drops repeated schemes, keeping the first.
func dedupe(list []Security) []Security {
	seen := map[string]bool{}
	out := list[:0]
	for _, s := range list {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s)
		}
	}
	return out
}
