package jwtauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
)

// Cache bounds.
const (
	// DefaultCacheSize is how many verified tokens a plugin remembers.
	DefaultCacheSize = 10_000
	// MaxCachedTokenBytes is the size of the largest token remembered;
	// larger ones are verified every time.
	MaxCachedTokenBytes = 8 << 10
)

const (
	defaultClockSkew      = 30 * time.Second
	defaultJWKSRefresh    = time.Hour
	defaultJWKSRefreshMin = 30 * time.Second
)

func init() {
	policy.Register(config.PluginJWTAuth, func(env policy.Env, spec config.Plugin) (policy.Plugin, error) {
		if spec.JWTAuth == nil {
			return nil, errors.New("no jwt-auth settings")
		}
		return New(*spec.JWTAuth, env)
	})
}

// Option tunes a [Plugin] built by [New].
type Option func(*options)

type options struct {
	now       func() time.Time
	client    *http.Client
	cacheSize int
	ticks     <-chan time.Time // replaces the JWKS refresh ticker (tests)
}

// WithClock makes the plugin read the time from now (exp, nbf and iat
// checks, JWKS refetch limits). Default time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithHTTPClient fetches the JWKS with client. Default: a client with
// the default transport; every fetch is bounded to 10s regardless.
func WithHTTPClient(client *http.Client) Option { return func(o *options) { o.client = client } }

// WithCacheSize bounds the verified-token cache to n tokens; n <= 0
// disables it. Default [DefaultCacheSize].
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// Plugin is a configured jwt-auth. It is immutable (its cache aside) and
// safe for concurrent use.
type Plugin struct {
	keys    keySource
	jwks    *jwks // nil for a secret or a public key
	ownJWKS bool  // closed by Close (no Shared to hold it)

	allow      []string // accepted "alg" values
	asymmetric bool
	parser     *jwt.Parser
	issuer     string
	skew       time.Duration
	now        func() time.Time
	scopes     []string
	cookie     string
	subjects   map[string]string // jwt_subject → consumer name
	claims     []claimHeader

	cache *tokenCache // nil when disabled

	// WWW-Authenticate values.
	challenge, invalidToken, insufficientScope string
}

// tokenCache holds verified tokens. Plugins with the same settings share
// one (through policy.Shared): every route a top-level jwt-auth applies
// to, and the next config snapshot.
type tokenCache struct {
	lru     *lru.Cache[string, *entry]
	seenGen atomic.Uint64 // key-set generation the cache holds entries of
}

// claimHeader sends one claim upstream as a header.
type claimHeader struct{ claim, header string }

// entry is a verified token. It is immutable once cached.
type entry struct {
	gen          uint64 // key-set generation it was verified with
	exp, nbf     time.Time
	hasExp       bool
	hasNbf       bool
	claims       map[string]any
	consumer     string
	upstream     []policy.Field
	missingScope string
}

// New returns a jwt-auth plugin for cfg, a validated config entry. env
// supplies the consumers (jwt_subject), the config file's directory (for
// a relative public_key), the Shared that keeps a JWKS across snapshots
// (without one the plugin owns its JWKS and Close stops it) and the
// logger. With jwks_uri, the first fetch starts in the background; until
// it succeeds TryCheck is pending and Check waits for it.
func New(cfg config.JWTAuth, env policy.Env, opts ...Option) (*Plugin, error) {
	o := options{now: time.Now, cacheSize: DefaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Plugin{
		issuer:   cfg.Issuer,
		skew:     defaultClockSkew,
		now:      o.now,
		scopes:   cfg.Scopes,
		cookie:   cfg.Cookie,
		subjects: map[string]string{},
	}
	if cfg.ClockSkew != nil {
		p.skew = cfg.ClockSkew.Std()
	}
	var family []string
	switch {
	case cfg.Secret != "" && cfg.PublicKey == "" && cfg.JWKSURI == "":
		family = []string{"HS256", "HS384", "HS512"}
		p.keys = staticKeys{newKeySet(1, []*verifyKey{{key: []byte(cfg.Secret), algs: family}})}
	case cfg.PublicKey != "" && cfg.Secret == "" && cfg.JWKSURI == "":
		base := ""
		if env.Config != nil && env.Config.File != "" {
			base = filepath.Dir(env.Config.File)
		}
		key, err := config.ReadPublicKey(cfg.PublicKey, base)
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		family = config.KeyAlgorithms(key)
		p.keys = staticKeys{newKeySet(1, []*verifyKey{{key: key, algs: family}})}
		p.asymmetric = true
	case cfg.JWKSURI != "" && cfg.Secret == "" && cfg.PublicKey == "":
		family = []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}
		p.asymmetric = true
		if err := p.startJWKS(cfg, env, o, logger); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("set exactly one of secret, public_key or jwks_uri")
	}
	p.allow = family
	if len(cfg.Algorithms) > 0 {
		for _, a := range cfg.Algorithms {
			if !slices.Contains(family, a) {
				_ = p.Close()
				return nil, fmt.Errorf("algorithm %q does not fit the key material, which verifies %s", a, strings.Join(family, ", "))
			}
		}
		p.allow = cfg.Algorithms
	}
	popts := []jwt.ParserOption{
		jwt.WithJSONNumber(),
		jwt.WithLeeway(p.skew),
		jwt.WithTimeFunc(p.now),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(cfg.Issuer))
	}
	if len(cfg.Audience) > 0 {
		popts = append(popts, jwt.WithAudience(cfg.Audience...))
	}
	p.parser = jwt.NewParser(popts...)
	if env.Config != nil {
		for _, c := range env.Config.Consumers {
			if c.JWTSubject != "" {
				p.subjects[c.JWTSubject] = c.Name
			}
		}
	}
	for claim, header := range cfg.ClaimsToHeaders {
		p.claims = append(p.claims, claimHeader{claim, strings.ToLower(header)})
	}
	sort.Slice(p.claims, func(i, j int) bool { return p.claims[i].header < p.claims[j].header })
	if o.cacheSize > 0 {
		newCache := func() (any, error) {
			c, err := lru.New[string, *entry](o.cacheSize)
			if err != nil {
				return nil, fmt.Errorf("token cache: %w", err)
			}
			return &tokenCache{lru: c}, nil
		}
		var (
			v   any
			err error
		)
		if env.Shared != nil {
			v, err = env.Shared.Get("jwt-auth cache "+fingerprint(cfg, p.subjects, o.cacheSize), newCache)
		} else {
			v, err = newCache()
		}
		if err != nil {
			_ = p.Close()
			return nil, err
		}
		p.cache = v.(*tokenCache)
	}
	p.challenge = `Bearer realm="rosetta"`
	p.invalidToken = p.challenge + `, error="invalid_token"`
	p.insufficientScope = p.challenge + `, error="insufficient_scope"`
	if len(p.scopes) > 0 {
		p.insufficientScope += fmt.Sprintf(`, scope="%s"`, strings.Join(p.scopes, " "))
	}
	return p, nil
}

// startJWKS finds (in env.Shared) or starts the key source of jwks_uri.
func (p *Plugin) startJWKS(cfg config.JWTAuth, env policy.Env, o options, logger *slog.Logger) error {
	refresh, minRefresh := defaultJWKSRefresh, defaultJWKSRefreshMin
	if cfg.JWKSRefresh != nil && *cfg.JWKSRefresh > 0 {
		refresh = cfg.JWKSRefresh.Std()
	}
	if cfg.JWKSRefreshMin != nil {
		minRefresh = cfg.JWKSRefreshMin.Std()
	}
	client := o.client
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	params := jwksParams{
		url:        cfg.JWKSURI,
		refresh:    refresh,
		minRefresh: minRefresh,
		client:     client,
		now:        o.now,
		logger:     logger,
		ticks:      o.ticks,
	}
	if env.Shared == nil {
		p.jwks, p.ownJWKS = startJWKS(params), true
	} else {
		key := fmt.Sprintf("jwt-auth jwks %s refresh=%s refresh_min=%s", cfg.JWKSURI, refresh, minRefresh)
		v, err := env.Shared.Get(key, func() (any, error) { return startJWKS(params), nil })
		if err != nil {
			return err
		}
		p.jwks = v.(*jwks)
	}
	p.keys = p.jwks
	return nil
}

// Name returns "jwt-auth".
func (p *Plugin) Name() string { return config.PluginJWTAuth }

// Phase returns [policy.Authenticate].
func (p *Plugin) Phase() policy.Phase { return policy.Authenticate }

// UpstreamHeaders returns the header names the plugin sets upstream
// (claims_to_headers targets, lower case).
func (p *Plugin) UpstreamHeaders() []string {
	names := make([]string, len(p.claims))
	for i, c := range p.claims {
		names[i] = c.header
	}
	return names
}

// Check verifies the call's bearer token. On success it sets c.Consumer
// (the consumer whose jwt_subject is the token's sub, else sub),
// st.Claims and the claims_to_headers fields of st.Upstream. It refuses
// with Unauthenticated (a missing token is [policy.MissingCredentials]),
// PermissionDenied for a missing scope, and adds WWW-Authenticate to
// st.Response. It may wait for a JWKS fetch, bounded by ctx.
func (p *Plugin) Check(ctx context.Context, c *call.Call, st *policy.State) *call.Error {
	err, _ := p.decide(ctx, c, st, true)
	return err
}

// TryCheck answers as Check from the token cache or by verifying with the
// keys already held (CPU only). It is pending when a JWKS fetch is
// needed: no keys loaded yet, or a kid the set lacks that may be
// refetched now.
func (p *Plugin) TryCheck(c *call.Call, st *policy.State) (*call.Error, bool) {
	return p.decide(context.Background(), c, st, false)
}

// Close stops the plugin's own JWKS source (one not kept in a Shared).
func (p *Plugin) Close() error {
	if p.ownJWKS && p.jwks != nil {
		return p.jwks.Close()
	}
	return nil
}

// decide is Check (mayFetch) and TryCheck (not mayFetch: pending instead
// of fetching).
func (p *Plugin) decide(ctx context.Context, c *call.Call, st *policy.State, mayFetch bool) (*call.Error, bool) {
	tok := p.token(c)
	if tok == "" {
		p.respond(st, p.challenge)
		return policy.MissingCredentials("missing bearer token"), false
	}
	if e := p.cached(tok); e != nil {
		return p.accept(e, c, st), false
	}
	for attempt := 0; attempt < 3; attempt++ {
		ks := p.keys.current()
		if ks == nil {
			if !mayFetch {
				return nil, true
			}
			if err := p.jwks.fetch(ctx, fetchEmpty); err != nil && p.keys.current() == nil {
				if ctx.Err() != nil {
					return call.FromError(ctx.Err()), false
				}
				return call.Errorf(codes.Unavailable, "JWT signing keys are not available yet").WithCause(err), false
			}
			continue
		}
		e, err, unknownKID := p.verify(tok, ks)
		if unknownKID && attempt == 0 {
			if !mayFetch {
				if p.jwks.unknownMayFetch() {
					return nil, true
				}
			} else if ferr := p.jwks.fetch(ctx, fetchUnknownKID); ferr == nil {
				continue
			} else if ctx.Err() != nil {
				return call.FromError(ctx.Err()), false
			}
		}
		if err != nil {
			p.respond(st, p.invalidToken)
			return err, false
		}
		p.remember(tok, e)
		return p.accept(e, c, st), false
	}
	p.respond(st, p.invalidToken)
	return call.Errorf(codes.Unauthenticated, "unknown signing key id"), false
}

// respond adds a WWW-Authenticate challenge to the answer.
func (p *Plugin) respond(st *policy.State, challenge string) {
	if st != nil {
		st.Response = append(st.Response, policy.Field{Name: "www-authenticate", Value: challenge})
	}
}

// token returns the bearer token of c: "Authorization: Bearer", else the
// token the protocol carried (WebSocket), else the configured cookie.
func (p *Plugin) token(c *call.Call) string {
	if c.Header != nil {
		if h := c.Header.Get("authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			if t := strings.TrimSpace(h[7:]); t != "" {
				return t
			}
		}
	}
	if c.Bearer != "" {
		return c.Bearer
	}
	if p.cookie != "" && c.Header != nil {
		// HTTP/2 and HTTP/3 may split cookies over several fields
		// (RFC 9113 §8.2.3); HTTP/1.1 sends one.
		if v := cookieValue(c.Header.Get("cookie"), p.cookie); v != "" {
			return v
		}
		for _, line := range c.Header.Values("cookie") {
			if v := cookieValue(line, p.cookie); v != "" {
				return v
			}
		}
		return ""
	}
	return ""
}

// cookieValue returns the value of cookie name in a Cookie header,
// without allocating.
func cookieValue(header, name string) string {
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && k == name {
			return strings.TrimSuffix(strings.TrimPrefix(v, `"`), `"`)
		}
	}
	return ""
}

// cached returns the cached verification of tok made with the keys held
// now, or nil. A change of key set empties the cache.
func (p *Plugin) cached(tok string) *entry {
	if p.cache == nil || len(tok) > MaxCachedTokenBytes {
		return nil
	}
	ks := p.keys.current()
	if ks == nil {
		return nil
	}
	if p.cache.seenGen.Load() != ks.gen {
		p.cache.seenGen.Store(ks.gen)
		p.cache.lru.Purge()
		return nil
	}
	e, ok := p.cache.lru.Get(tok)
	if !ok || e.gen != ks.gen {
		return nil
	}
	return e
}

// remember caches a verification, keyed by the whole token.
func (p *Plugin) remember(tok string, e *entry) {
	if p.cache == nil || len(tok) > MaxCachedTokenBytes {
		return
	}
	if ks := p.keys.current(); ks == nil || ks.gen != e.gen || p.cache.seenGen.Load() != e.gen {
		return
	}
	p.cache.lru.Add(strings.Clone(tok), e)
}

// accept applies a verified token to the call, after checking its time
// window against the clock again (it may come from the cache) and its
// scopes.
func (p *Plugin) accept(e *entry, c *call.Call, st *policy.State) *call.Error {
	now := p.now()
	switch {
	case e.hasExp && !now.Before(e.exp.Add(p.skew)):
		p.respond(st, p.invalidToken)
		return call.Errorf(codes.Unauthenticated, "token expired")
	case e.hasNbf && now.Before(e.nbf.Add(-p.skew)):
		p.respond(st, p.invalidToken)
		return call.Errorf(codes.Unauthenticated, "token not yet valid")
	case e.missingScope != "":
		p.respond(st, p.insufficientScope)
		return call.Errorf(codes.PermissionDenied, "missing scope: %s", e.missingScope)
	}
	c.Consumer = e.consumer
	if st != nil {
		st.Claims = e.claims
		st.Upstream = append(st.Upstream, e.upstream...)
	}
	return nil
}

// fingerprint identifies everything a cache entry depends on: the key
// material, the claim checks, the consumer mapping and the claim headers.
// It is a SHA-256, so the secret never appears in clear in a Shared key.
func fingerprint(cfg config.JWTAuth, subjects map[string]string, size int) string {
	h := sha256.New()
	w := func(parts ...string) {
		for _, s := range parts {
			fmt.Fprintf(h, "%d:%s;", len(s), s)
		}
	}
	w(cfg.Secret, cfg.PublicKey, cfg.JWKSURI, cfg.Issuer, strconv.Itoa(size))
	w(cfg.Algorithms...)
	w("|")
	w(cfg.Audience...)
	w("|")
	w(cfg.Scopes...)
	w("|")
	for _, k := range slices.Sorted(maps.Keys(cfg.ClaimsToHeaders)) {
		w(k, strings.ToLower(cfg.ClaimsToHeaders[k]))
	}
	w("|")
	for _, k := range slices.Sorted(maps.Keys(subjects)) {
		w(k, subjects[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

var (
	_ policy.Plugin       = (*Plugin)(nil)
	_ policy.LocalChecker = (*Plugin)(nil)
)
