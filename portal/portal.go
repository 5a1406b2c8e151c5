package portal

import (
	"log/slog"
	"net/http"
	"strings"
)

// Options configure [New].
type Options struct {
	// Title names the portal in its header and the browser's title bar;
	// empty means the catalog's title, else "Developer portal".
	Title string
	// Path is the mount prefix, e.g. "/portal" (no trailing slash; one is
	// removed). Empty mounts the portal at the root.
	Path string
	// SelfService lets signed-in consumers create and revoke their own
	// keys (POST and DELETE api/me/keys).
	SelfService bool
	// Source provides everything the portal shows. Required.
	Source Source
	// Logger receives one line per 5xx answer (with its error ID); nil
	// discards them.
	Logger *slog.Logger
}

// handler serves the portal; see [New].
type handler struct {
	o      Options
	prefix string // o.Path without a trailing slash
	log    *slog.Logger
}

// New returns the handler serving the UI under o.Path+"/" (o.Path alone
// redirects to o.Path+"/") and the JSON API under o.Path+"/api/". It
// expects the request's full path (mount it with mux.Handle(o.Path+"/", h)
// and mux.Handle(o.Path, h), without http.StripPrefix) and answers 404 for
// paths outside o.Path.
//
// The JSON API:
//
//	GET    api/config             {"title", "self_service"}
//	GET    api/catalog            the [Catalog]
//	GET    api/openapi/{service}  the service's OpenAPI document
//	POST   api/signin             body {"api_key": ...} or {"jwt": ...} → the [Consumer]
//	GET    api/me                 the signed-in [Consumer]
//	GET    api/me/usage?window=   usage for 1h, 24h (default), 7d or 30d
//	POST   api/me/keys            201 {"key": [Key], "secret": ...} (SelfService only)
//	DELETE api/me/keys/{id}       {"revoked": id} (SelfService only)
//	GET    api/analytics?...      the [Source]'s analytics (admin token only)
//
// The api/me paths take the credential in an X-API-Key header or an
// "Authorization: Bearer <jwt>" header and check it again with
// Source.SignIn on every call: the portal keeps no session. Errors are
// {"error": "..."} with the status; a 5xx also has a Rosetta-Error-Id
// header and a log line with the same ID.
//
// New panics when o.Source is nil.
func New(o Options) http.Handler {
	if o.Source == nil {
		panic("portal: Options.Source is nil")
	}
	prefix := strings.TrimRight(o.Path, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	o.Path = prefix
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{o: o, prefix: prefix, log: log}
}

// csp allows the portal's own scripts and styles, the inline styles
// swagger-ui sets on its elements, data: images (swagger-ui's icons) and
// connections to the same origin (fetch, and WebSocket: CSP level 3's
// 'self' matches ws: and wss: on the page's host).
const csp = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")

	p := r.URL.Path
	if !strings.HasPrefix(p, h.prefix) {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	rest := p[len(h.prefix):]
	switch {
	case rest == "":
		target := h.prefix + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
	case rest == "/api" || strings.HasPrefix(rest, "/api/"):
		h.serveAPI(w, r, strings.TrimPrefix(rest, "/api"))
	case strings.HasPrefix(rest, "/"):
		serveAsset(w, r, rest[1:])
	default: // "/portalx": another path that shares the prefix
		writeError(w, http.StatusNotFound, "not found")
	}
}

var _ http.Handler = (*handler)(nil)
