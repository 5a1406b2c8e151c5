package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Validate checks c and returns [Diagnostics] listing every problem, or
// nil. It accepts configs with or without defaults applied and checks
// that the files c refers to exist, relative to the directory of c.File.
// Configs from [Parse] and [FromFlags] are already valid; Validate is for
// configs built or changed in code.
func (c *Config) Validate() error {
	base := ""
	if c.File != "" {
		base = baseDir(c.File)
	}
	v := &validator{c: c, base: base}
	v.run()
	return v.diags.err()
}

// validator checks a Config, collecting diagnostics. index, when set,
// locates paths in the file; bad lists paths whose decoding already
// failed, which are not reported again; zero lists the numbers written
// as 0, which defaults may since have replaced.
type validator struct {
	c     *Config
	index *posIndex
	base  string
	bad   map[string]bool
	zero  map[string]bool // paths of numbers the file sets to 0
	diags Diagnostics
	warns Diagnostics
}

// isBad reports whether path or an enclosing path failed to decode.
func (v *validator) isBad(path string) bool {
	for p := path; ; p = parentPath(p) {
		if v.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// report records a problem with path. When the path is not in the file,
// at (if known) locates it instead of the enclosing value. key places the
// diagnostic on the key rather than the value.
func (v *validator) report(path string, at Pos, key bool, msg, hint string) {
	if d, ok := v.locate(path, at, key, msg, hint); ok {
		v.diags = append(v.diags, d)
	}
}

// warn records a setting that is accepted but has no effect, located as
// report locates problems.
func (v *validator) warn(path string, at Pos, key bool, msg, hint string) {
	if d, ok := v.locate(path, at, key, msg, hint); ok {
		v.warns = append(v.warns, d)
	}
}

// locate makes the diagnostic of report and warn; ok is false when path
// failed to decode and was reported then.
func (v *validator) locate(path string, at Pos, key bool, msg, hint string) (d Diagnostic, ok bool) {
	if v.isBad(path) {
		return Diagnostic{}, false
	}
	p, ok := v.index.exact(path, key)
	switch {
	case ok:
	case at.Line != 0:
		p = at
	default:
		p = v.index.lookup(path, key)
	}
	if p.File == "" {
		p.File = v.c.File
	}
	return Diagnostic{File: p.File, Line: p.Line, Col: p.Col, Path: path, Msg: msg, Hint: hint}, true
}

// exact returns the position of path's key (when key is set) or value,
// when path is in the file.
func (x *posIndex) exact(path string, key bool) (Pos, bool) {
	if x == nil {
		return Pos{}, false
	}
	if key {
		if p, ok := x.key[path]; ok {
			return p, true
		}
	}
	p, ok := x.val[path]
	return p, ok
}

func (v *validator) run() {
	c := v.c
	v.listeners()
	v.upstreams()
	v.websocket()
	for i := range c.HTTP.Rules {
		v.rule(fmt.Sprintf("http.rules[%d]", i), &c.HTTP.Rules[i], false)
	}
	for i := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		v.route(p, &c.Routes[i])
		v.routeResilience(p, &c.Routes[i])
	}
	v.plugins()
	v.manage()
	v.tracing()
	if o := c.OpenAPI; o != nil {
		if !strings.HasPrefix(o.Path, "/") || strings.ContainsAny(o.Path, "?#{}* ") {
			v.report("openapi.path", Pos{}, false, fmt.Sprintf("openapi path %q is not a plain absolute path", o.Path),
				`use a path such as "/openapi.json"`)
		}
		for i, u := range o.Servers {
			if pu, err := url.Parse(u); err != nil || pu.Scheme == "" || pu.Host == "" {
				v.report(fmt.Sprintf("openapi.servers[%d]", i), Pos{}, false, fmt.Sprintf("server %q is not an absolute URL", u),
					`use a base URL such as "https://api.example.com"`)
			}
		}
	}
	for i, s := range c.Transcoding.ForwardHeaders {
		if !validHeaderPattern(s) {
			v.report(fmt.Sprintf("transcoding.forward_headers[%d]", i), Pos{}, false,
				fmt.Sprintf("invalid header name %q", s), `write a header name such as "X-Request-Id", or a prefix such as "X-Tenant-*"`)
		}
	}
	if c.Admin != nil {
		v.address("admin.address", c.Admin.Address, listenAddr)
		if c.Admin.Token == "" && c.Admin.Address != "" && !loopbackAddress(c.Admin.Address) {
			v.report("admin.address", Pos{}, false,
				fmt.Sprintf("admin address %q is not a loopback address, and admin has no token", c.Admin.Address),
				`set admin.token (e.g. "${ADMIN_TOKEN}"), or bind the admin listener to 127.0.0.1 or [::1]`)
		}
		for i, l := range c.Listeners {
			if l.Address != "" && l.Address == c.Admin.Address && !strings.HasSuffix(l.Address, ":0") {
				v.report("admin.address", Pos{}, false,
					fmt.Sprintf("address %q is also used by listeners[%d]", l.Address, i), "give the admin endpoint its own port")
			}
		}
	}
}

// loopbackAddress reports whether host:port binds only to loopback (an
// empty host binds every interface; "localhost" counts as loopback).
func loopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (v *validator) websocket() {
	ws := &v.c.WebSocket
	if ws.PingInterval != nil {
		v.nonNegative("websocket.ping_interval", *ws.PingInterval)
	}
	if ws.IdleTimeout != nil {
		v.nonNegative("websocket.idle_timeout", *ws.IdleTimeout)
	}
	v.nonNegativeInt("websocket.max_message_bytes", ws.MaxMessageBytes)
	for i, o := range ws.AllowedOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			v.report(fmt.Sprintf("websocket.allowed_origins[%d]", i), Pos{}, false,
				fmt.Sprintf("invalid origin %q", o), `write scheme://host[:port], e.g. "https://app.example.com", or "*"`)
		}
	}
}

func (v *validator) listeners() {
	if len(v.c.Listeners) == 0 {
		v.report("listeners", Pos{}, false, "at least one listener is required", `add one, e.g. listeners: [{address: ":8080"}]`)
		return
	}
	first := map[string]int{}
	for i, l := range v.c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if v.address(p+".address", l.Address, listenAddr) {
			if j, dup := first[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
				v.report(p+".address", Pos{}, false, fmt.Sprintf("duplicate address %q (first used by listeners[%d])", l.Address, j), "")
			} else if !dup {
				first[l.Address] = i
			}
		}
		v.nonNegative(p+".read_header_timeout", l.ReadHeaderTimeout)
		v.nonNegative(p+".read_timeout", l.ReadTimeout)
		v.nonNegative(p+".write_timeout", l.WriteTimeout)
		v.nonNegative(p+".idle_timeout", l.IdleTimeout)
		v.headLimit(p+".max_header_bytes", l.MaxHeaderBytes, 1024, "a request with a few ordinary fields (cookies, a bearer token) needs more; the default is 61440")
		v.headLimit(p+".max_header_count", l.MaxHeaderCount, 16, "browsers send 10 to 20 header fields on their own; the default is 100")
		v.headLimit(p+".max_uri_bytes", l.MaxURIBytes, 256, "a path with a query string easily needs more; the default is 8192")
		v.nonNegativeInt(p+".max_body_bytes", l.MaxBodyBytes)
		if t := l.TLS; t != nil {
			tp := p + ".tls"
			switch {
			case t.SelfSigned && (t.Cert != "" || t.Key != ""):
				v.report(tp, Pos{}, false, "self_signed cannot be combined with cert and key", "")
			case !t.SelfSigned && (t.Cert == "" || t.Key == ""):
				v.report(tp, Pos{}, false, "cert and key are required (or self_signed: true)", "")
			}
			if !t.SelfSigned && t.Cert != "" && t.Key != "" {
				v.file(tp+".cert", t.Cert, false, false)
				v.file(tp+".key", t.Key, false, false)
			}
			for j, ck := range t.Certificates {
				v.file(fmt.Sprintf("%s.certificates[%d].cert", tp, j), ck.Cert, false, false)
				v.file(fmt.Sprintf("%s.certificates[%d].key", tp, j), ck.Key, false, false)
			}
			switch t.ClientAuth {
			case "", "none":
			case "request", "require":
				if t.ClientCA == "" {
					v.report(tp+".client_ca", Pos{}, false, fmt.Sprintf("client_auth %q needs client_ca", t.ClientAuth), "")
				}
			default:
				v.report(tp+".client_auth", Pos{}, false, fmt.Sprintf("unknown client_auth %q", t.ClientAuth), "want none, request or require")
			}
			if t.ClientCA != "" {
				v.file(tp+".client_ca", t.ClientCA, false, false)
			}
		}
		if l.HTTP3 && l.TLS == nil {
			v.report(p+".http3", Pos{}, false, "http3 needs tls", "add tls: {cert: ..., key: ...} or tls: {self_signed: true}")
		}
	}
}

// headLimit checks a listener's request-head limit: 0 (the default) or
// at least least.
func (v *validator) headLimit(path string, n, least int, hint string) {
	switch {
	case n < 0:
		v.nonNegativeInt(path, int64(n))
	case n > 0 && n < least:
		v.report(path, Pos{}, false, fmt.Sprintf("must be at least %d, got %d", least, n), hint)
	}
}

var upstreamName = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)

func (v *validator) upstreams() {
	c := v.c
	if len(c.Upstreams) == 0 {
		v.report("upstreams", Pos{}, false, "at least one upstream is required", `add one, e.g. upstreams: {backend: {targets: ["127.0.0.1:9000"]}}`)
		return
	}
	names := make([]string, 0, len(c.Upstreams))
	for name := range c.Upstreams {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		u := c.Upstreams[name]
		p := joinKey("upstreams", name)
		if !upstreamName.MatchString(name) {
			v.report(p, Pos{}, true, fmt.Sprintf("invalid upstream name %q", name), "use letters, digits, '_', '.' and '-'")
		}
		if u == nil {
			v.report(p, Pos{}, false, "upstream is empty", `give it targets, e.g. targets: ["127.0.0.1:9000"]`)
			continue
		}
		kindOK := u.Kind == "" || u.Kind == "grpc" || u.Kind == "http"
		if !kindOK {
			v.report(p+".kind", Pos{}, false, fmt.Sprintf("unknown kind %q (known: grpc, http)", u.Kind), "")
		}
		v.targets(p, u)
		v.resilience(p, u, kindOK)
		if u.TLS != nil {
			tp := p + ".tls"
			v.file(tp+".ca", u.TLS.CA, false, true)
			v.file(tp+".cert", u.TLS.Cert, false, true)
			v.file(tp+".key", u.TLS.Key, false, true)
			if (u.TLS.Cert == "") != (u.TLS.Key == "") && !v.isBad(tp+".cert") && !v.isBad(tp+".key") {
				v.report(tp, Pos{}, false, "cert and key must be set together", "")
			}
		}
		v.descriptors(p+".descriptors", &u.Descriptors)
		v.nonNegative(p+".timeout", u.Timeout)
		v.nonNegativeInt(p+".max_message_bytes", int64(u.MaxMessageBytes))
		v.nonNegativeInt(p+".max_request_message_bytes", int64(u.MaxRequestMessageBytes))
	}
}

func (v *validator) descriptors(p string, d *Descriptors) {
	for i, f := range d.Files {
		v.file(fmt.Sprintf("%s.files[%d]", p, i), f, false, false)
	}
	for i, f := range d.ImportPaths {
		v.file(fmt.Sprintf("%s.import_paths[%d]", p, i), f, true, false)
	}
	for i, f := range d.Protos {
		v.protoFile(fmt.Sprintf("%s.protos[%d]", p, i), f, d.ImportPaths)
	}
	for i, s := range d.Services {
		if !validFullName(s, 1) {
			v.report(fmt.Sprintf("%s.services[%d]", p, i), Pos{}, false,
				fmt.Sprintf("invalid service name %q", s), `write the fully-qualified name, e.g. "library.v1.Library"`)
		}
	}
	if !d.UseReflection() && len(d.Files) == 0 && len(d.Protos) == 0 &&
		!v.isBad(p+".files") && !v.isBad(p+".protos") && !v.isBad(p+".reflection") {
		v.report(p, Pos{}, false, "no descriptor source: reflection is off and no files or protos are listed",
			"set reflection: true, or list files or protos")
	}
	if d.RefreshInterval != nil {
		v.nonNegative(p+".refresh_interval", *d.RefreshInterval)
	}
}

// verbs lists the HTTP method fields of a rule, in config key order.
func verbs(r *HTTPRule) []struct{ key, path string } {
	out := []struct{ key, path string }{
		{"get", r.Get}, {"put", r.Put}, {"post", r.Post},
		{"delete", r.Delete}, {"patch", r.Patch},
	}
	if r.Custom != nil {
		out = append(out, struct{ key, path string }{"custom", r.Custom.Path})
	}
	return out
}

const verbHint = "set exactly one of get, put, post, delete, patch or custom"

func (v *validator) rule(p string, r *HTTPRule, nested bool) {
	switch {
	case nested && r.Selector != "":
		v.report(p+".selector", r.Pos, false, "selector is not allowed in additional_bindings", "additional bindings use the selector of their rule")
	case nested:
	case r.Selector == "":
		v.report(p+".selector", r.Pos, false, "selector is required", `e.g. selector: library.v1.Library.GetBook`)
	case !validFullName(r.Selector, 3):
		v.report(p+".selector", r.Pos, false, fmt.Sprintf("selector %q is not a full method name", r.Selector),
			`write package.Service.Method, e.g. "library.v1.Library.GetBook"`)
	}
	var set []string
	for _, vb := range verbs(r) {
		vp := p + "." + vb.key
		if vb.key != "custom" && vb.path == "" {
			continue
		}
		set = append(set, vb.key)
		if len(set) > 1 {
			v.report(vp, r.Pos, true, fmt.Sprintf("%s conflicts with %s: a rule binds exactly one HTTP method", vb.key, set[0]),
				"move the extra binding to additional_bindings")
		}
		if vb.key == "custom" {
			vp += ".path"
			if r.Custom.Kind == "" {
				v.report(p+".custom.kind", r.Pos, false, "custom kind is required", `name the HTTP method, e.g. kind: HEAD`)
			}
		}
		switch {
		case vb.path == "":
			v.report(vp, r.Pos, false, "path is required", `e.g. "/v1/books/{id}"`)
		case !strings.HasPrefix(vb.path, "/"):
			v.report(vp, r.Pos, false, fmt.Sprintf("path %q must start with \"/\"", vb.path), "")
		}
	}
	if len(set) == 0 && !slices.ContainsFunc([]string{"get", "put", "post", "delete", "patch", "custom"},
		func(k string) bool { return v.isBad(p + "." + k) }) {
		v.report(p, r.Pos, false, "no HTTP method set", verbHint)
	}
	if r.Body != "" && r.Body != "*" && !validFullName(r.Body, 1) {
		v.report(p+".body", r.Pos, false, fmt.Sprintf("invalid body %q", r.Body), `use "*" for the whole request message or a field name`)
	}
	if r.ResponseBody != "" && !validFullName(r.ResponseBody, 1) {
		v.report(p+".response_body", r.Pos, false, fmt.Sprintf("invalid response_body %q", r.ResponseBody), "use a field name of the response message")
	}
	if nested {
		if len(r.AdditionalBindings) > 0 {
			v.report(p+".additional_bindings", r.Pos, true, "additional bindings cannot be nested",
				"list every binding in the additional_bindings of the top-level rule")
		}
		return
	}
	for i := range r.AdditionalBindings {
		v.rule(fmt.Sprintf("%s.additional_bindings[%d]", p, i), &r.AdditionalBindings[i], true)
	}
}

func (v *validator) route(p string, r *Route) {
	sel := r.Selector
	if r.URI != "" || r.Service != "" {
		v.uriRoute(p, r)
		return
	}
	switch {
	case sel == "":
		v.report(p+".selector", r.Pos, false, "selector or uri is required", `e.g. selector: "library.v1.Library.*", or uri: "/users/*" with service: users`)
	case sel == "*":
	case strings.HasSuffix(sel, ".*") && validFullName(strings.TrimSuffix(sel, ".*"), 1):
	case validFullName(sel, 3):
	default:
		v.report(p+".selector", r.Pos, false, fmt.Sprintf("invalid selector %q", sel),
			`write a full method name such as "library.v1.Library.GetBook", or end with ".*", e.g. "library.v1.Library.*"`)
	}
	v.nonNegative(p+".timeout", r.Timeout)
}

// uriRoute checks a plain HTTP route (uri + service).
func (v *validator) uriRoute(p string, r *Route) {
	if r.Selector != "" {
		v.report(p+".selector", r.Pos, false, "a route has either selector or uri, not both", "")
	}
	switch {
	case r.URI == "":
		v.report(p+".uri", r.Pos, false, "uri is required with service", `e.g. uri: "/users/*"`)
	case !strings.HasPrefix(r.URI, "/"):
		v.report(p+".uri", r.Pos, false, fmt.Sprintf("uri %q must start with \"/\"", r.URI), "")
	case strings.Contains(strings.TrimSuffix(r.URI, "/*"), "*"):
		v.report(p+".uri", r.Pos, false, fmt.Sprintf("uri %q: \"*\" is only allowed as a final \"/*\"", r.URI), `e.g. uri: "/users/*"`)
	}
	if r.Service == "" {
		v.report(p+".service", r.Pos, false, "service is required with uri", "name an upstream of kind http")
	} else if u, ok := v.c.Upstreams[r.Service]; !ok {
		v.report(p+".service", r.Pos, false, fmt.Sprintf("unknown upstream %q", r.Service), "")
	} else if u.Kind != "http" {
		v.report(p+".service", r.Pos, false, fmt.Sprintf("upstream %q is of kind %q; uri routes need kind http", r.Service, u.Kind), "")
	}
	for i, m := range r.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
			v.report(fmt.Sprintf("%s.methods[%d]", p, i), r.Pos, false, fmt.Sprintf("invalid HTTP method %q", m), "write methods in upper case, e.g. GET")
		}
	}
	v.nonNegative(p+".timeout", r.Timeout)
}

// validFullName reports whether s is a dotted protobuf name of at least
// min identifiers, e.g. "pkg.Service.Method" for min 3.
func validFullName(s string, min int) bool {
	parts := strings.Split(s, ".")
	if len(parts) < min {
		return false
	}
	for _, part := range parts {
		if !validIdent(part) {
			return false
		}
	}
	return true
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderPattern reports whether s is an HTTP header name (RFC 9110
// token), optionally followed by a "*" prefix wildcard.
func validHeaderPattern(s string) bool {
	s = strings.TrimSuffix(s, "*")
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > unicode.MaxASCII || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// addrKind says what an address is used for.
type addrKind int

const (
	listenAddr addrKind = iota // host may be empty, port may be 0
	targetAddr                 // host and a non-zero port required
)

func (k addrKind) hint() string {
	if k == listenAddr {
		return `write host:port, e.g. "127.0.0.1:8080" or ":8080"`
	}
	return `write host:port, e.g. "10.0.0.5:9000"`
}

// checkAddress returns what is wrong with addr, or "" when it is fine.
func checkAddress(addr string, kind addrKind) string {
	if addr == "" {
		return "address is required"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		msg := err.Error()
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			msg = ae.Err
		}
		return fmt.Sprintf("invalid address %q: %s", addr, msg)
	}
	if kind == targetAddr && host == "" {
		return fmt.Sprintf("invalid address %q: missing host", addr)
	}
	if strings.ContainsFunc(host, func(r rune) bool { return unicode.IsSpace(r) || r == '/' }) {
		return fmt.Sprintf("invalid address %q: invalid host %q", addr, host)
	}
	n, err := strconv.Atoi(port)
	lo := 0
	if kind == targetAddr {
		lo = 1
	}
	switch {
	case err != nil && port == "":
		return fmt.Sprintf("invalid address %q: missing port", addr)
	case err != nil:
		return fmt.Sprintf("invalid address %q: port %q is not a number", addr, port)
	case n < lo || n > 65535:
		return fmt.Sprintf("invalid address %q: port %d out of range %d-65535", addr, n, lo)
	}
	return ""
}

// address checks a host:port value and reports whether it is valid.
func (v *validator) address(path, addr string, kind addrKind) bool {
	if msg := checkAddress(addr, kind); msg != "" {
		hint := kind.hint()
		v.report(path, Pos{}, false, msg, hint)
		return false
	}
	return true
}

// file checks that the file (or directory, when dir is set) at p exists.
// Relative paths are resolved against the config file's directory.
func (v *validator) file(path, p string, dir, optional bool) {
	if p == "" {
		if !optional {
			v.report(path, Pos{}, false, "path is empty", "")
		}
		return
	}
	full := p
	if !filepath.IsAbs(p) && v.base != "" {
		full = filepath.Join(v.base, p)
	}
	hint := ""
	if !filepath.IsAbs(p) {
		hint = "paths are relative to the config file"
	}
	fi, err := os.Stat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.report(path, Pos{}, false, fmt.Sprintf("open %s: no such file", p), hint)
	case err != nil:
		msg := err.Error()
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		v.report(path, Pos{}, false, fmt.Sprintf("open %s: %s", p, msg), "")
	case dir && !fi.IsDir():
		v.report(path, Pos{}, false, fmt.Sprintf("%s is not a directory", p), "")
	case !dir && fi.IsDir():
		v.report(path, Pos{}, false, fmt.Sprintf("%s is a directory, not a file", p), "")
	}
}

// protoFile checks that a .proto name is found in one of the import paths
// (the config file's directory when there are none).
func (v *validator) protoFile(path, name string, importPaths []string) {
	if name == "" {
		v.report(path, Pos{}, false, "path is empty", "")
		return
	}
	dirs := importPaths
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	for _, d := range dirs {
		full := name
		if !filepath.IsAbs(name) {
			if !filepath.IsAbs(d) && v.base != "" {
				d = filepath.Join(v.base, d)
			}
			full = filepath.Join(d, name)
		} else if rel, err := filepath.Rel(d, name); err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if fi, err := os.Stat(full); err == nil && !fi.IsDir() {
			return
		}
	}
	if filepath.IsAbs(name) {
		v.report(path, Pos{}, false, fmt.Sprintf("%s is not a file under any import path", name),
			"list the directory it is imported from in import_paths")
		return
	}
	v.report(path, Pos{}, false, fmt.Sprintf("open %s: no such file in the import paths", name),
		"proto names are relative to import_paths (default: the config file's directory)")
}

func (v *validator) nonNegative(path string, d Duration) {
	if d < 0 {
		v.report(path, Pos{}, false, fmt.Sprintf("duration must not be negative, got %q", d.String()), "")
	}
}

func (v *validator) nonNegativeInt(path string, n int64) {
	if n < 0 {
		v.report(path, Pos{}, false, fmt.Sprintf("must not be negative, got %d", n), "")
	}
}
