package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Plugin defaults, applied by Parse and FromFlags.
const (
	defaultClockSkew      = 30 * time.Second
	defaultJWKSRefresh    = time.Hour
	defaultJWKSRefreshMin = 30 * time.Second
	defaultKeyAuthHeader  = "apikey"
	defaultCORSMaxAge     = 2 * time.Hour
	defaultCacheStore     = "memory"
	defaultCacheMaxBytes  = 64 * MiB
	defaultCacheMaxEntry  = 1 * MiB
)

// Algorithm families: what each kind of key material verifies.
var (
	hmacAlgorithms  = []string{"HS256", "HS384", "HS512"}
	rsaAlgorithms   = []string{"PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}
	asymmetricAlgos = []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}
	knownAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}
)

// KeyAlgorithms returns the JWS "alg" values a public key verifies: RS*
// and PS* for RSA, the ES* of the key's curve for ECDSA, EdDSA for
// Ed25519. It returns nil for other keys.
func KeyAlgorithms(key any) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return rsaAlgorithms
	case *ecdsa.PublicKey:
		switch k.Curve.Params().Name {
		case "P-256":
			return []string{"ES256"}
		case "P-384":
			return []string{"ES384"}
		case "P-521":
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// forEachPlugin calls f with every plugins entry of c and its key path.
func (c *Config) forEachPlugin(f func(path string, p *Plugin)) {
	for i := range c.Plugins {
		f(fmt.Sprintf("plugins[%d]", i), &c.Plugins[i])
	}
	for r := range c.Routes {
		for i := range c.Routes[r].Plugins {
			f(fmt.Sprintf("routes[%d].plugins[%d]", r, i), &c.Routes[r].Plugins[i])
		}
	}
}

// pluginDefaults fills the unset settings of every plugin. It is
// idempotent.
func (c *Config) pluginDefaults() {
	c.forEachPlugin(func(_ string, p *Plugin) {
		if j := p.JWTAuth; j != nil {
			if j.ClockSkew == nil {
				j.ClockSkew = ptr(Duration(defaultClockSkew))
			}
			if j.JWKSURI != "" {
				if j.JWKSRefresh == nil || *j.JWKSRefresh == 0 {
					j.JWKSRefresh = ptr(Duration(defaultJWKSRefresh))
				}
				if j.JWKSRefreshMin == nil {
					j.JWKSRefreshMin = ptr(Duration(defaultJWKSRefreshMin))
				}
			}
		}
		if k := p.KeyAuth; k != nil && k.Header == "" {
			k.Header = defaultKeyAuthHeader
		}
		if r := p.RateLimiting; r != nil {
			if r.Policy == "" {
				r.Policy = "local"
			}
			if r.Fail == "" {
				r.Fail = "open"
			}
		}
		if p.CORS != nil {
			setDuration(&p.CORS.MaxAge, defaultCORSMaxAge)
		}
		if pc := p.ProxyCache; pc != nil {
			if pc.Key == nil {
				pc.Key = StringList{"consumer"}
			}
			if pc.Store == "" {
				pc.Store = defaultCacheStore
			}
			if pc.Store == defaultCacheStore && pc.MaxBytes == 0 {
				pc.MaxBytes = defaultCacheMaxBytes
			}
			if pc.MaxEntryBytes == 0 {
				pc.MaxEntryBytes = defaultCacheMaxEntry
			}
		}
	})
}

// resolvePluginPaths makes the file paths of plugin settings and of the
// redis block absolute with abs.
func (c *Config) resolvePluginPaths(abs func(*string)) {
	c.forEachPlugin(func(_ string, p *Plugin) {
		if j := p.JWTAuth; j != nil && j.PublicKey != "" && !isInlinePEM(j.PublicKey) {
			abs(&j.PublicKey)
		}
	})
	if r := c.Redis; r != nil && r.TLS != nil {
		abs(&r.TLS.CA)
		abs(&r.TLS.Cert)
		abs(&r.TLS.Key)
	}
}

// plugins checks every plugins list, the consumers, redis and
// trusted_proxies.
func (v *validator) plugins() {
	c := v.c
	var keyAuthAt string
	var keyAuthPos Pos
	check := func(list string, plugins []Plugin, route *Route) {
		first := map[string]int{}
		for i := range plugins {
			p := &plugins[i]
			ep := fmt.Sprintf("%s[%d]", list, i)
			name := p.Name()
			if name == "" {
				v.report(ep, p.Pos, false, "empty plugins entry", `name one plugin, e.g. "- key-auth: {}"`)
				continue
			}
			pp := joinKey(ep, name)
			if j, dup := first[name]; dup {
				v.report(pp, p.Pos, true, fmt.Sprintf("plugin %q is listed twice in this list (first at %s[%d])", name, list, j),
					"keep one entry and merge their settings")
				continue
			}
			first[name] = i
			switch name {
			case PluginJWTAuth:
				v.jwtAuth(pp, p.Pos, p.JWTAuth)
			case PluginKeyAuth:
				v.keyAuth(pp, p.Pos, p.KeyAuth)
				if keyAuthAt == "" {
					keyAuthAt, keyAuthPos = pp, p.Pos
				}
			case PluginRateLimiting:
				v.rateLimiting(pp, p.Pos, p.RateLimiting)
			case PluginConcurrencyLimit:
				if p.ConcurrencyLimit.Max <= 0 {
					v.report(pp+".max", p.Pos, false, v.requiredMsg(pp+".max", "max"), "the number of calls allowed in flight, e.g. max: 100")
				}
			case PluginCORS:
				v.corsPlugin(pp, p.Pos, p.CORS)
			case PluginProxyCache:
				v.proxyCache(pp, p.Pos, p.ProxyCache, route)
			}
		}
	}
	check("plugins", c.Plugins, nil)
	for i := range c.Routes {
		check(fmt.Sprintf("routes[%d].plugins", i), c.Routes[i].Plugins, &c.Routes[i])
	}
	if c.CORS != nil && slices.ContainsFunc(c.Plugins, func(p Plugin) bool { return p.CORS != nil }) {
		v.report("cors", Pos{}, true, "cors is set both as a top-level block and as a top-level plugin",
			"keep one: the top-level cors plugin, or the cors block")
	}
	withKeys := v.consumers()
	selfService := c.Portal != nil && c.Portal.SelfService
	if keyAuthAt != "" && !withKeys && !selfService && !v.isBad("consumers") {
		v.report(keyAuthAt, keyAuthPos, true, "key-auth needs at least one consumer with keys",
			`add consumers: [{name: alice, keys: ["${ALICE_KEY}"]}], or let consumers create keys: portal: {self_service: true}`)
	}
	v.redis()
	for i, s := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(s); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(s); err == nil {
			continue
		}
		v.report(fmt.Sprintf("trusted_proxies[%d]", i), Pos{}, false, fmt.Sprintf("invalid trusted proxy %q", s),
			`write a CIDR ("10.0.0.0/8") or an address ("192.0.2.1")`)
	}
}

// jwtAuth checks one jwt-auth plugin.
func (v *validator) jwtAuth(p string, at Pos, j *JWTAuth) {
	var set []string
	for _, k := range []struct{ key, val string }{{"secret", j.Secret}, {"public_key", j.PublicKey}, {"jwks_uri", j.JWKSURI}} {
		if k.val != "" {
			set = append(set, k.key)
		} else if _, inFile := v.index.exact(p+"."+k.key, true); inFile {
			v.report(p+"."+k.key, at, false, k.key+" is empty", "if it comes from ${VAR}, check that the variable is set to a value")
			return
		}
	}
	var algs []string // what the key material verifies
	switch len(set) {
	case 0:
		v.report(p, at, true, "one of secret, public_key or jwks_uri is required", `e.g. secret: ${JWT_SECRET}`)
		return
	case 1:
	default:
		v.report(p+"."+set[1], at, true, fmt.Sprintf("%s and %s are exclusive", set[0], set[1]),
			"set exactly one of secret, public_key or jwks_uri")
		return
	}
	keyDesc := set[0]
	switch set[0] {
	case "secret":
		algs = hmacAlgorithms
		keyDesc = "a secret"
	case "public_key":
		key, err := ReadPublicKey(j.PublicKey, v.base)
		if err != nil {
			hint := "give a PEM public key (-----BEGIN PUBLIC KEY-----; openssl pkey -pubout prints one), inline or as a file path"
			if strings.HasPrefix(err.Error(), "open ") {
				hint = "paths are relative to the config file"
			}
			v.report(p+".public_key", at, false, "public_key: "+err.Error(), hint)
			return
		}
		algs = KeyAlgorithms(key)
		keyDesc = fmt.Sprintf("this %s public key", keyKind(key))
	case "jwks_uri":
		algs = asymmetricAlgos
		keyDesc = "a JWKS (asymmetric keys only)"
		v.jwksURI(p+".jwks_uri", at, j.JWKSURI)
	}
	if m := j.JWKSRefreshMin; j.JWKSURI != "" && m != nil && m.Std() < time.Second {
		v.report(p+".jwks_refresh_min", at, false, fmt.Sprintf("jwks_refresh_min must be at least 1s, got %q", m.String()),
			"it bounds how often tokens with made-up key ids can make the gateway refetch the JWKS")
	}
	if j.JWKSURI == "" {
		for _, k := range []struct {
			key string
			set bool
		}{{"jwks_refresh", j.JWKSRefresh != nil}, {"jwks_refresh_min", j.JWKSRefreshMin != nil}} {
			if k.set {
				v.report(p+"."+k.key, at, true, k.key+" applies only with jwks_uri", "remove it")
			}
		}
	}
	for i, a := range j.Algorithms {
		ap := fmt.Sprintf("%s.algorithms[%d]", p, i)
		switch {
		case strings.EqualFold(a, "none"):
			v.report(ap, at, false, `algorithm "none" is never accepted (unsigned tokens)`, "remove it")
		case !slices.Contains(knownAlgorithms, a):
			v.unknown(ap, at, "algorithm", a, knownAlgorithms)
		case !slices.Contains(algs, a):
			v.report(ap, at, false, fmt.Sprintf("algorithm %s does not fit %s, which verifies %s", a, keyDesc, strings.Join(algs, ", ")),
				"list only algorithms of the key's type, or leave algorithms out to accept all of them")
		}
	}
	for i, s := range j.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			v.report(fmt.Sprintf("%s.scopes[%d]", p, i), at, false, fmt.Sprintf("invalid scope %q", s), "a scope is one word without spaces or quotes")
		}
	}
	if j.Cookie != "" && !validToken(j.Cookie) {
		v.report(p+".cookie", at, false, fmt.Sprintf("invalid cookie name %q", j.Cookie), "")
	}
	claims := make([]string, 0, len(j.ClaimsToHeaders))
	for c := range j.ClaimsToHeaders {
		claims = append(claims, c)
	}
	slices.Sort(claims)
	targets := map[string]string{}
	for _, c := range claims {
		h := j.ClaimsToHeaders[c]
		cp := joinKey(p+".claims_to_headers", c)
		lh := strings.ToLower(h)
		switch {
		case c == "":
			v.report(cp, at, true, "empty claim name", "")
		case !validToken(h):
			v.report(cp, at, false, fmt.Sprintf("invalid header name %q", h), `write a header name such as "x-user-id"`)
		case reservedUpstreamHeader(lh):
			v.report(cp, at, false, fmt.Sprintf("header %q cannot carry a claim", h),
				"pick a name of your own such as x-user-id (hop-by-hop, content, grpc-* and x-consumer headers are the gateway's)")
		case targets[lh] != "":
			v.report(cp, at, false, fmt.Sprintf("header %q already carries claim %q", h, targets[lh]), "give each claim its own header")
		default:
			targets[lh] = c
		}
	}
}

// keyKind names a public key's type for messages.
func keyKind(key any) string {
	switch key.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", key)
}

// jwksURI checks a jwks_uri: https://, or http:// to a loopback host.
func (v *validator) jwksURI(p string, at Pos, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		v.report(p, at, false, fmt.Sprintf("invalid jwks_uri %q", s), `write an https:// URL, e.g. "https://id.example.com/.well-known/jwks.json"`)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			v.report(p, at, false, fmt.Sprintf("jwks_uri %q uses http:// to a host that is not loopback", s),
				"use https:// (http:// is allowed only for localhost, 127.0.0.0/8 and ::1)")
		}
	default:
		v.report(p, at, false, fmt.Sprintf("jwks_uri %q must use https://", s), "")
	}
	if u.User != nil {
		v.report(p, at, false, "jwks_uri must not carry credentials", "")
	}
}

// loopbackHost reports whether host is "localhost" or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// reservedUpstreamHeader reports whether a lower-case header name is one
// the gateway owns, so that a claim cannot be sent in it.
func reservedUpstreamHeader(h string) bool {
	switch h {
	case "host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
		"content-length", "content-type", "content-encoding", "authorization", "cookie", "x-consumer":
		return true
	}
	return strings.HasPrefix(h, "grpc-") || strings.HasPrefix(h, ":")
}

// validToken reports whether s is an RFC 9110 token (header and cookie
// names).
func validToken(s string) bool {
	return s != "" && !strings.HasSuffix(s, "*") && validHeaderPattern(s)
}

// keyAuth checks one key-auth plugin.
func (v *validator) keyAuth(p string, at Pos, k *KeyAuth) {
	if k.Header != "" && !validToken(k.Header) {
		v.report(p+".header", at, false, fmt.Sprintf("invalid header name %q", k.Header), `e.g. header: apikey`)
	}
	if k.Header != "" && reservedUpstreamHeader(strings.ToLower(k.Header)) && !strings.EqualFold(k.Header, "authorization") {
		v.report(p+".header", at, false, fmt.Sprintf("header %q cannot carry an API key", k.Header), `e.g. header: apikey`)
	}
	if k.Query != "" && strings.ContainsAny(k.Query, "&=#?+% \t") {
		v.report(p+".query", at, false, fmt.Sprintf("invalid query parameter name %q", k.Query), `e.g. query: api_key`)
	}
}

var (
	rateLimitKeys   = []string{"consumer", "ip", "route", "header:<name>", "claim:<name>"}
	rateLimitPolicy = []string{"local", "redis"}
	rateLimitFail   = []string{"closed", "open"}
)

// rateLimiting checks one rate-limiting plugin.
func (v *validator) rateLimiting(p string, at Pos, r *RateLimiting) {
	if r.Limit <= 0 {
		v.report(p+".limit", at, false, v.requiredMsg(p+".limit", "limit"), "the number of calls allowed per period, e.g. limit: 1000")
	}
	if r.Period <= 0 {
		v.report(p+".period", at, false, v.requiredMsg(p+".period", "period"), periodHint)
	}
	if r.Key != "" {
		v.keyForm(p+".key", at, "key", r.Key, rateLimitKeys)
	}
	if r.Policy != "" && !slices.Contains(rateLimitPolicy, r.Policy) {
		v.unknown(p+".policy", at, "policy", r.Policy, rateLimitPolicy)
	}
	if r.Policy == "redis" && (v.c.Redis == nil) {
		v.report(p+".policy", at, false, "policy redis needs the top-level redis block", `add redis: {address: "127.0.0.1:6379"}`)
	}
	if r.Fail != "" && !slices.Contains(rateLimitFail, r.Fail) {
		v.unknown(p+".fail", at, "fail mode", r.Fail, rateLimitFail)
	}
}

var (
	cacheKeys   = []string{"consumer", "ip", "header:<name>"}
	cacheStores = []string{"memory", "redis"}
)

// proxyCache checks one proxy-cache plugin; route is the route that lists
// it (nil for a top-level entry).
func (v *validator) proxyCache(p string, at Pos, c *ProxyCache, route *Route) {
	if c.TTL <= 0 {
		v.report(p+".ttl", at, false, v.requiredMsg(p+".ttl", "ttl"), "how long an answer is served from the cache, e.g. ttl: 30s")
	}
	vary := map[string]int{}
	for i, h := range c.Vary {
		hp := fmt.Sprintf("%s.vary[%d]", p, i)
		if !validToken(h) {
			v.report(hp, at, false, fmt.Sprintf("invalid header name %q", h), "e.g. vary: [accept-language]")
			continue
		}
		if j, dup := vary[strings.ToLower(h)]; dup {
			v.report(hp, at, false, fmt.Sprintf("header %q is listed twice (first at vary[%d]; names are case-insensitive)", h, j), "")
		} else {
			vary[strings.ToLower(h)] = i
		}
	}
	keys := map[string]int{}
	for i, k := range c.Key {
		kp := fmt.Sprintf("%s.key[%d]", p, i)
		if !v.keyForm(kp, at, "key", k, cacheKeys) {
			continue
		}
		norm := k
		if name, ok := strings.CutPrefix(k, "header:"); ok {
			norm = "header:" + strings.ToLower(name)
		}
		if j, dup := keys[norm]; dup {
			v.report(kp, at, false, fmt.Sprintf("%q is listed twice (first at key[%d])", k, j), "")
		} else {
			keys[norm] = i
		}
	}
	memory := c.Store == "" || c.Store == "memory"
	switch {
	case !memory && !slices.Contains(cacheStores, c.Store):
		v.unknown(p+".store", at, "store", c.Store, cacheStores)
	case c.Store == "redis" && v.c.Redis == nil:
		v.report(p+".store", at, false, "store redis needs the top-level redis block", `add redis: {address: "127.0.0.1:6379"}`)
	}
	switch {
	case c.Store == "redis" && c.MaxBytes != 0:
		v.report(p+".max_bytes", at, true, "max_bytes applies only to store: memory",
			"Redis's own maxmemory bounds a redis store; remove max_bytes")
	case memory && v.zero[p+".max_bytes"]:
		v.report(p+".max_bytes", at, false, "max_bytes must be greater than 0", "the memory the cache may use, e.g. max_bytes: 64MiB")
	}
	switch {
	case v.zero[p+".max_entry_bytes"]:
		v.report(p+".max_entry_bytes", at, false, "max_entry_bytes must be greater than 0", "the largest answer stored, e.g. max_entry_bytes: 1MiB")
	case memory && c.MaxBytes > 0 && !v.zero[p+".max_bytes"] && c.MaxEntryBytes > c.MaxBytes:
		v.report(p+".max_entry_bytes", at, false, fmt.Sprintf("max_entry_bytes %s is larger than max_bytes %s", c.MaxEntryBytes, c.MaxBytes),
			"an answer is stored only if it fits the whole store")
	}
	if c.NoSideEffects && route != nil && route.URI != "" {
		v.report(p+".no_side_effects", at, true, "no_side_effects applies only to selector routes (methods with descriptors)",
			"a uri route caches GET requests only; remove no_side_effects")
	}
}

// corsPlugin checks a cors plugin's settings.
func (v *validator) corsPlugin(p string, at Pos, c *CORS) {
	if len(c.AllowedOrigins) == 0 {
		v.report(p+".allowed_origins", at, false, "allowed_origins is required", `e.g. allowed_origins: ["https://app.example.com"]`)
	}
	for i, o := range c.AllowedOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			v.report(fmt.Sprintf("%s.allowed_origins[%d]", p, i), at, false,
				fmt.Sprintf("invalid origin %q", o), `write scheme://host[:port], e.g. "https://app.example.com", or "*"`)
		}
	}
}

// consumers checks the consumers and reports whether any has keys.
func (v *validator) consumers() (withKeys bool) {
	names := map[string]int{}
	subjects := map[string]int{}
	type keyAt struct{ consumer, key int }
	keys := map[string]keyAt{}
	for i := range v.c.Consumers {
		c := &v.c.Consumers[i]
		p := fmt.Sprintf("consumers[%d]", i)
		switch {
		case c.Name == "":
			v.report(p+".name", c.Pos, false, "name is required", "e.g. name: alice")
		case strings.TrimSpace(c.Name) != c.Name || strings.ContainsFunc(c.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			v.report(p+".name", c.Pos, false, fmt.Sprintf("invalid consumer name %q", c.Name),
				"names are sent upstream as x-consumer: no control characters or surrounding spaces")
		default:
			if j, dup := names[c.Name]; dup {
				v.report(p+".name", c.Pos, false, fmt.Sprintf("duplicate consumer name %q (first at consumers[%d])", c.Name, j), "")
			} else {
				names[c.Name] = i
			}
		}
		if c.JWTSubject != "" {
			if j, dup := subjects[c.JWTSubject]; dup {
				v.report(p+".jwt_subject", c.Pos, false, fmt.Sprintf("jwt_subject %q is also consumers[%d]'s", c.JWTSubject, j),
					"a subject identifies one consumer")
			} else {
				subjects[c.JWTSubject] = i
			}
		}
		for k, key := range c.Keys {
			kp := fmt.Sprintf("%s.keys[%d]", p, k)
			if key == "" {
				v.report(kp, c.Pos, false, "key is empty", "if it comes from ${VAR}, check that the variable is set to a value")
				continue
			}
			withKeys = true
			// Never quote a key: name where its twin is instead.
			if first, dup := keys[key]; dup {
				v.report(kp, c.Pos, false, fmt.Sprintf("the same key as consumers[%d].keys[%d]", first.consumer, first.key),
					"every API key must be unique, so that it names one consumer")
			} else {
				keys[key] = keyAt{i, k}
			}
		}
	}
	return withKeys
}

// redis checks the redis block.
func (v *validator) redis() {
	r := v.c.Redis
	if r == nil {
		return
	}
	v.address("redis.address", r.Address, targetAddr)
	if r.TLS != nil {
		v.file("redis.tls.ca", r.TLS.CA, false, true)
		v.file("redis.tls.cert", r.TLS.Cert, false, true)
		v.file("redis.tls.key", r.TLS.Key, false, true)
		if (r.TLS.Cert == "") != (r.TLS.Key == "") && !v.isBad("redis.tls.cert") && !v.isBad("redis.tls.key") {
			v.report("redis.tls", Pos{}, false, "cert and key must be set together", "")
		}
	}
	v.nonNegativeInt("redis.db", int64(r.DB))
	v.nonNegative("redis.timeout", r.Timeout)
}

// unknown reports an enum value that is not one of known, with a
// did-you-mean hint when one is close.
func (v *validator) unknown(path string, at Pos, what, got string, known []string) {
	hint := ""
	for _, k := range known {
		if strings.EqualFold(k, got) {
			hint = fmt.Sprintf("did you mean %q?", k)
		}
	}
	if hint == "" {
		if best := closest(got, known); best != "" {
			hint = fmt.Sprintf("did you mean %q?", best)
		}
	}
	v.report(path, at, false, fmt.Sprintf("unknown %s %q (known: %s)", what, got, strings.Join(known, ", ")), hint)
}

// requiredMsg says that a number setting must be positive: "is required"
// when the file leaves it out, "must be greater than 0" otherwise.
func (v *validator) requiredMsg(path, key string) string {
	if _, inFile := v.index.exact(path, true); !inFile && v.index != nil {
		return key + " is required"
	}
	return key + " must be greater than 0"
}
