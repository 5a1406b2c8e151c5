package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Plugin is one entry of a plugins list: a map with exactly one key, the
// plugin's name, whose value holds the plugin's settings:
//
//	plugins:
//	  - rate-limiting:
//	      limit: 1000
//	      period: 3600
//	  - jwt-auth:
//	      secret: ${JWT_SECRET}
//
// Plugins run in a fixed phase order whatever their order in the list:
// authentication, authorization, limits, then the cache.
type Plugin struct {
	// JWTAuth authenticates callers by a signed JWT.
	JWTAuth *JWTAuth `yaml:"jwt-auth"`
	// KeyAuth authenticates callers by an API key of a consumer.
	KeyAuth *KeyAuth `yaml:"key-auth"`
	// RateLimiting allows at most Limit calls per Period per key.
	RateLimiting *RateLimiting `yaml:"rate-limiting"`
	// ConcurrencyLimit caps the calls in flight on a route.
	ConcurrencyLimit *ConcurrencyLimit `yaml:"concurrency-limit"`
	// CORS opens a route to browser origins (the keys of the top-level
	// cors block).
	CORS *CORS `yaml:"cors"`
	// ProxyCache stores backend answers and serves them again while
	// they are fresh.
	ProxyCache *ProxyCache `yaml:"proxy-cache"`

	// Pos is where this entry is in the config file.
	Pos Pos `yaml:"-"`
}

// JWTAuth verifies a JSON Web Token sent as "Authorization: Bearer", or
// in Cookie when set (and, on the WebSocket bridge, as the
// rosetta.bearer.<token> subprotocol or the access_token query
// parameter). Exactly one of Secret, PublicKey and JWKSURI is set.
type JWTAuth struct {
	// Secret verifies HS256/384/512 tokens. Write it as ${VAR}; it is
	// shown as "<redacted>" in normalized output.
	Secret string `yaml:"secret" redact:"true"`
	// PublicKey is a PEM public key (RSA, ECDSA or Ed25519), inline or as
	// a file path relative to the config file; it verifies RS/PS/ES/EdDSA
	// tokens.
	PublicKey string `yaml:"public_key"`
	// JWKSURI is an https:// URL of a JSON Web Key Set (http:// only for
	// loopback hosts). Keys are fetched at start, refreshed every
	// JWKSRefresh and at once when a token names an unknown kid (the first
	// unknown kid after each refresh; after that at most once per
	// JWKSRefreshMin).
	JWKSURI string `yaml:"jwks_uri"`
	// JWKSRefresh is how often the key set is refetched. Default (and
	// for "0s") 1h, with jwks_uri.
	JWKSRefresh *Duration `yaml:"jwks_refresh"`
	// JWKSRefreshMin is the least time between two refetches caused by
	// tokens naming an unknown kid, so that made-up kids cannot make the
	// gateway hammer the key server. Default 30s, with jwks_uri; at
	// least 1s.
	JWKSRefreshMin *Duration `yaml:"jwks_refresh_min"`
	// Algorithms allow-lists the "alg" values accepted. Default: those the
	// key material implies (HS256/384/512 for a secret, the key type's
	// family for a public key, what the JWKS keys declare).
	Algorithms []string `yaml:"algorithms"`
	// Issuer, when set, must equal the "iss" claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set (a string or a list), must contain one of the
	// token's "aud" values.
	Audience StringList `yaml:"audience"`
	// ClockSkew is the tolerance on exp, nbf and iat. Default 30s.
	ClockSkew *Duration `yaml:"clock_skew"`
	// Scopes must all be granted by the token (a space-separated "scope"
	// claim or an "scp" array); missing ones → 403 / PERMISSION_DENIED.
	Scopes []string `yaml:"scopes"`
	// Cookie names a cookie read for the token when no Authorization
	// header carries one.
	Cookie string `yaml:"cookie"`
	// ClaimsToHeaders sends claims to the upstream as headers (gRPC
	// metadata), e.g. {sub: x-user-id}. The client's own fields of those
	// names are removed first.
	ClaimsToHeaders map[string]string `yaml:"claims_to_headers"`
}

// KeyAuth authenticates a call by an API key that belongs to one of the
// top-level consumers.
type KeyAuth struct {
	// Header is the request header carrying the key. Default "apikey".
	Header string `yaml:"header"`
	// Query, when set, is a query parameter also read for the key.
	Query string `yaml:"query"`
	// Optional lets calls without any credential pass anonymously (no
	// consumer), while a wrong key is still refused: a call that sends
	// a key is counted as its consumer's (plans, usage). Default false.
	Optional bool `yaml:"optional"`
}

// RateLimiting allows at most Limit calls per Period for each key,
// smoothly (GCRA: never 2×Limit across a boundary).
type RateLimiting struct {
	// Limit is the number of calls allowed per Period. Required.
	Limit int64 `yaml:"limit"`
	// Period is seconds as an integer (3600) or a duration ("1h").
	// Required.
	Period Period `yaml:"period"`
	// Key is what is counted: consumer (default when the call is
	// authenticated), ip (default otherwise), route, header:<name> or
	// claim:<name>.
	Key string `yaml:"key"`
	// Policy is local (default: in memory, per instance) or redis (shared
	// by every instance; needs the top-level redis block).
	Policy string `yaml:"policy"`
	// Fail is what happens while Redis is unreachable: open (default:
	// allow, logged once per outage) or closed (503 / UNAVAILABLE).
	Fail string `yaml:"fail"`
	// PerMessage also counts each WebSocket message; an over-limit message
	// closes the socket with 4008.
	PerMessage bool `yaml:"per_message"`
}

// ConcurrencyLimit caps the calls in flight on a route (a stream counts
// until it ends); over it → 503 / UNAVAILABLE at once.
type ConcurrencyLimit struct {
	// Max is the number of calls allowed in flight. Required.
	Max int `yaml:"max"`
}

// ProxyCache answers calls from stored backend answers while they are
// fresh:
//
//	plugins:
//	  - proxy-cache: {ttl: 30s, vary: [accept-language], key: [consumer], max_bytes: 64MiB}
//
// It stores the answers to GET requests (REST GET bindings, Connect GET,
// plain HTTP GET on uri routes) and, with NoSideEffects, to unary calls of
// methods declared side-effect free, on every protocol. An answer is
// stored when it succeeded (gRPC OK; on uri routes HTTP 200, 203 or 204
// without Set-Cookie), is at most MaxEntryBytes and the backend did not
// mark it Cache-Control: no-store or no-cache; one marked private is
// stored only when the key holds the caller's consumer (key includes
// consumer and a plugin authenticated the call), so that it reaches no
// one else. Streams are never cached. A call that carries Authorization
// or Cookie and that no plugin authenticated bypasses the cache (the
// backend may judge those headers itself). Answers carry X-Cache (HIT,
// MISS or STALE) and, from the cache, Age.
type ProxyCache struct {
	// TTL is how long a stored answer is served without asking the
	// backend again; the backend's s-maxage, else max-age, shortens it
	// (never lengthens it). Required; greater than 0, e.g. ttl: 30s.
	TTL Duration `yaml:"ttl"`
	// Vary lists request headers (case-insensitive names) whose values
	// are part of the cache key, so that callers who send different
	// values get different entries, e.g. [accept-language]. Default none.
	Vary StringList `yaml:"vary"`
	// Key says whose answers may be shared: consumer (each consumer gets
	// its own entries; anonymous calls share theirs), ip (the client's
	// address, after trusted_proxies) and header:<name> (a request
	// header's value), combined. Default [consumer]. key: [] shares every
	// entry among all callers: one caller's answer may reach another, so
	// use it only for public data.
	Key StringList `yaml:"key" normalize:"keepempty"`
	// MaxBytes bounds the memory store of this plugins entry (answers and
	// keys; a top-level entry is one store for every route): the least
	// recently used entries are dropped to stay under it. A size: bytes
	// as an integer, or with a unit ("64MiB", "512KiB", "1GB"). Default
	// 64MiB. store: memory only (Redis's maxmemory bounds a redis store).
	MaxBytes Size `yaml:"max_bytes" normalize:"omitzero"`
	// MaxEntryBytes is the largest answer stored (its body, encoded as
	// the backend sent it); larger answers are passed on, not stored. A
	// size, default 1MiB; at most MaxBytes.
	MaxEntryBytes Size `yaml:"max_entry_bytes"`
	// Store is where entries live: memory (default: in this instance) or
	// redis (shared by every instance; needs the top-level redis block).
	Store string `yaml:"store"`
	// StaleWhileRevalidate is how long after TTL an answer may still be
	// served while one call refreshes it from the backend. Default 0s
	// (none); a stale-while-revalidate in the backend's Cache-Control is
	// honoured too (the longer of the two applies).
	StaleWhileRevalidate Duration `yaml:"stale_while_revalidate"`
	// NoSideEffects also caches unary calls of methods whose descriptor
	// says idempotency_level: NO_SIDE_EFFECTS, whatever the protocol
	// (gRPC, gRPC-Web, Connect POST, REST POST bindings). Default false:
	// only GET requests are cached. Not allowed on uri routes (they have
	// no descriptors).
	NoSideEffects bool `yaml:"no_side_effects"`
}

// Consumer is a known caller of the gateway. Rate limits count by the
// consumer, which is forwarded to upstreams as x-consumer.
type Consumer struct {
	// Name identifies the consumer. Required, unique.
	Name string `yaml:"name"`
	// Keys are the consumer's API keys (for key-auth), a string or a
	// list, e.g. ["${ALICE_KEY}"]. Unique across consumers. key-auth keeps
	// only their SHA-256 hashes; normalized output shows "<redacted>".
	Keys StringList `yaml:"keys" redact:"true"`
	// JWTSubject makes a JWT whose "sub" is this value this consumer.
	JWTSubject string `yaml:"jwt_subject"`
	// Plan names the consumer's plan in plans (quota and rate).
	Plan string `yaml:"plan"`

	// Pos is where this consumer is in the config file.
	Pos Pos `yaml:"-"`
}

// Redis is the shared store of rate limits (policy: redis) and of
// response caches (proxy-cache with store: redis).
type Redis struct {
	// Address is host:port of the Redis server.
	Address string `yaml:"address"`
	// Username and Password authenticate (Redis 6 ACLs, or Password
	// alone for requirepass).
	Username string `yaml:"username"`
	// Password is the Redis password; normalized output shows
	// "<redacted>".
	Password string `yaml:"password" redact:"true"`
	// DB is the database number. Default 0.
	DB int `yaml:"db"`
	// TLS enables TLS to Redis.
	TLS *ClientTLS `yaml:"tls"`
	// Timeout bounds each Redis round trip of a rate-limit or quota
	// decision; past it the decision takes its fail mode. Default 100ms.
	Timeout Duration `yaml:"timeout"`
}

// Period is a rate-limit period: an integer number of seconds (3600) or
// a duration string ("1h", "90s"). It must be greater than zero.
type Period Duration

// Std returns p as a [time.Duration].
func (p Period) Std() time.Duration { return time.Duration(p) }

// String formats p like [time.Duration.String], e.g. "1h0m0s".
func (p Period) String() string { return time.Duration(p).String() }

// MarshalText formats p like [Period.String].
func (p Period) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Size is a number of bytes, written as an integer (1048576) or as a
// string with a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB
// (powers of 1024), e.g. "64MiB", "512KiB", "1GB". Normalized output
// shows the byte count.
type Size int64

// Size units, in bytes.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

// Bytes returns s as a byte count.
func (s Size) Bytes() int64 { return int64(s) }

// String formats s with the largest unit that divides it, binary units
// first, e.g. "64MiB", "1MB", "1500B".
func (s Size) String() string {
	for _, u := range []struct {
		name string
		size Size
	}{{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if s != 0 && s%u.size == 0 {
			return strconv.FormatInt(int64(s/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// StringList is a string or a list of strings: audience: api and
// audience: [api, admin] both decode.
type StringList []string

// Plugin names, as written in plugins lists.
const (
	PluginJWTAuth          = "jwt-auth"
	PluginKeyAuth          = "key-auth"
	PluginRateLimiting     = "rate-limiting"
	PluginConcurrencyLimit = "concurrency-limit"
	PluginCORS             = "cors"
	PluginProxyCache       = "proxy-cache"
)

// PluginNames returns the plugin names a plugins entry may use, sorted.
func PluginNames() []string {
	return append([]string(nil), pluginNames...)
}

// pluginNames are the yaml names of Plugin's fields, sorted.
var pluginNames = func() []string {
	var names []string
	for _, f := range fieldsOf(reflect.TypeFor[Plugin]()) {
		names = append(names, f.name)
	}
	slices.Sort(names)
	return names
}()

// Name returns the name of the plugin p configures ("jwt-auth"), or ""
// for an empty entry. A valid entry sets exactly one plugin.
func (p *Plugin) Name() string {
	switch {
	case p.JWTAuth != nil:
		return PluginJWTAuth
	case p.KeyAuth != nil:
		return PluginKeyAuth
	case p.RateLimiting != nil:
		return PluginRateLimiting
	case p.ConcurrencyLimit != nil:
		return PluginConcurrencyLimit
	case p.CORS != nil:
		return PluginCORS
	case p.ProxyCache != nil:
		return PluginProxyCache
	}
	return ""
}

// ReadPublicKey returns the public key of a jwt-auth public_key setting:
// an inline PEM block, or the path of a PEM file (relative paths are
// resolved against baseDir, the config file's directory). It accepts
// PUBLIC KEY (PKIX: RSA, ECDSA on P-256/384/521, Ed25519), RSA PUBLIC KEY
// (PKCS #1) and CERTIFICATE blocks, and refuses private keys. Errors never
// quote the value.
func ReadPublicKey(value, baseDir string) (crypto.PublicKey, error) {
	data := []byte(value)
	if !isInlinePEM(value) {
		path := value
		if !filepath.IsAbs(path) && baseDir != "" {
			path = filepath.Join(baseDir, path)
		}
		var err error
		if data, err = os.ReadFile(path); err != nil {
			msg := err.Error()
			if pe := (*os.PathError)(nil); errors.As(err, &pe) {
				msg = pe.Err.Error()
				if errors.Is(err, os.ErrNotExist) {
					msg = "no such file"
				}
			}
			return nil, fmt.Errorf("open %s: %s", value, msg)
		}
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("the PEM block is a %s, not a public key", block.Type)
		}
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().Name {
		case "P-256", "P-384", "P-521":
			return k, nil
		}
		return nil, fmt.Errorf("unsupported ECDSA curve %s (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	}
	return nil, fmt.Errorf("unsupported public key type %T (want RSA, ECDSA or Ed25519)", key)
}

// isInlinePEM reports whether a public_key setting holds the PEM text
// itself rather than a file path.
func isInlinePEM(s string) bool {
	return strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN ")
}
