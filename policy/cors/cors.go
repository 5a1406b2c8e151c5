package cors

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

// DefaultMaxAge is how long browsers may cache a preflight answer when the
// config sets no max_age.
const DefaultMaxAge = 2 * time.Hour

// allowedMethods are the HTTP methods a preflight may ask for.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"

// exposeHeaders are the response headers browsers let scripts read: the
// gRPC status headers of gRPC-Web trailers-only answers, the compression
// headers of gRPC-Web and Connect, the gateway's error ID, and what the
// policy chain answers with (the authentication challenge, Retry-After,
// the RateLimit-* fields). Without
// credentials "*" also exposes every metadata header; with credentials
// browsers take "*" literally, so only these names are readable.
var exposeHeaders = strings.Join([]string{
	"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin",
	"Grpc-Encoding", "Grpc-Accept-Encoding",
	"Connect-Content-Encoding", "Connect-Accept-Encoding", "Content-Encoding",
	"Rosetta-Error-Id",
	"WWW-Authenticate", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
}, ", ")

// Policy answers CORS preflights and sets CORS response headers from a
// [config.CORS]. It is immutable and safe for concurrent use.
type Policy struct {
	anyOrigin   bool
	exact       map[string]bool
	patterns    [][2]string // prefix and suffix of "https://*.example.com"
	credentials bool
	maxAge      string
}

// New builds the policy of cfg. Origins are compared case-insensitively;
// "*" allows every origin, and an entry with one "*" (such as
// "https://*.example.com") allows the origins it matches.
func New(cfg config.CORS) *Policy {
	p := &Policy{exact: map[string]bool{}, credentials: cfg.AllowCredentials}
	for _, o := range cfg.AllowedOrigins {
		o = strings.ToLower(strings.TrimSpace(o))
		switch {
		case o == "*":
			p.anyOrigin = true
		case strings.Count(o, "*") == 1:
			pre, suf, _ := strings.Cut(o, "*")
			p.patterns = append(p.patterns, [2]string{pre, suf})
		default:
			p.exact[strings.TrimSuffix(o, "/")] = true
		}
	}
	age := time.Duration(cfg.MaxAge)
	if age <= 0 {
		age = DefaultMaxAge
	}
	p.maxAge = strconv.Itoa(int(age / time.Second))
	return p
}

// Allowed reports whether origin may call the gateway.
func (p *Policy) Allowed(origin string) bool {
	if origin == "" {
		return false
	}
	if p.anyOrigin {
		return true
	}
	o := strings.ToLower(origin)
	if p.exact[o] {
		return true
	}
	for _, pat := range p.patterns {
		if len(o) > len(pat[0])+len(pat[1]) && strings.HasPrefix(o, pat[0]) && strings.HasSuffix(o, pat[1]) {
			return true
		}
	}
	return false
}

// Preflight answers a CORS preflight (an OPTIONS request with Origin and
// Access-Control-Request-Method) and reports whether it did; other
// requests are left alone. An allowed origin gets 204 with
// Access-Control-Allow-Origin, -Methods, -Headers (the headers the browser
// asked for, such as x-grpc-web, x-user-agent, grpc-timeout,
// connect-protocol-version, connect-timeout-ms, content-type and
// authorization), -Max-Age and, when configured, -Credentials. A disallowed
// origin or method gets 403 with no CORS headers and a message saying what
// to change.
func (p *Policy) Preflight(w http.ResponseWriter, r *http.Request) bool {
	method := r.Header.Get("Access-Control-Request-Method")
	if r.Method != http.MethodOptions || method == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	origin := r.Header.Get("Origin")
	if !p.Allowed(origin) {
		refuse(w, fmt.Sprintf("CORS preflight refused: origin %q is not allowed; add it to cors.allowed_origins", origin))
		return true
	}
	if !methodAllowed(method) {
		refuse(w, fmt.Sprintf("CORS preflight refused: method %q is not allowed (allowed: %s)", method, allowedMethods))
		return true
	}
	p.setOrigin(h, origin)
	h.Set("Access-Control-Allow-Methods", allowedMethods)
	if req := requestedHeaders(r); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", p.maxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}

// Apply sets the CORS headers of an actual (non-preflight) response from
// an allowed origin: Access-Control-Allow-Origin, -Credentials when
// configured, and Access-Control-Expose-Headers. It always adds
// Vary: Origin, since the answer depends on it. Call it before the
// response headers are written.
func (p *Policy) Apply(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if !p.Allowed(origin) {
		return
	}
	p.setOrigin(h, origin)
	expose := exposeHeaders
	if !p.credentials {
		expose += ", *"
	}
	h.Set("Access-Control-Expose-Headers", expose)
}

// setOrigin sets Access-Control-Allow-Origin ("*" when any origin may call
// without credentials, else the request's origin) and -Credentials.
func (p *Policy) setOrigin(h http.Header, origin string) {
	if p.anyOrigin && !p.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// requestedHeaders returns the Access-Control-Request-Headers list,
// lowercased and comma-separated.
func requestedHeaders(r *http.Request) string {
	var names []string
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for _, n := range strings.Split(v, ",") {
			if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
				names = append(names, n)
			}
		}
	}
	return strings.Join(names, ", ")
}

func methodAllowed(m string) bool {
	for _, a := range strings.Split(allowedMethods, ", ") {
		if m == a {
			return true
		}
	}
	return false
}

// refuse answers a refused preflight.
func refuse(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusForbidden)
	_, _ = fmt.Fprintln(w, msg)
}
