package jwtauth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
)

const secret = "0123456789abcdef0123456789abcdef"

// check runs p.Check and p.TryCheck on fresh copies of c and fails the
// test when they disagree; it returns Check's answer.
func check(t *testing.T, p *Plugin, c *call.Call) (*call.Error, *call.Call, *policy.State) {
	t.Helper()
	tc, tst := *c, &policy.State{}
	terr, pending := p.TryCheck(&tc, tst)
	cc, st := *c, &policy.State{}
	err := p.Check(context.Background(), &cc, st)
	if !pending && (terr == nil) != (err == nil) || terr != nil && err != nil && (terr.Code != err.Code || terr.Msg != err.Msg) {
		t.Errorf("TryCheck answered %v; Check %v", terr, err)
	}
	return err, &cc, st
}

// challenge returns the WWW-Authenticate value of st.
func challenge(st *policy.State) string {
	for _, f := range st.Response {
		if f.Name == "www-authenticate" {
			return f.Value
		}
	}
	return ""
}

func TestAccepts(t *testing.T) {
	t.Parallel()
	testKeys(t)
	cases := []struct {
		name   string
		cfg    config.JWTAuth
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", config.JWTAuth{Secret: secret}, jwt.SigningMethodHS256, []byte(secret)},
		{"HS384", config.JWTAuth{Secret: secret}, jwt.SigningMethodHS384, []byte(secret)},
		{"HS512", config.JWTAuth{Secret: secret}, jwt.SigningMethodHS512, []byte(secret)},
		{"RS256", config.JWTAuth{PublicKey: pemOf(t, &rsaKey1.PublicKey)}, jwt.SigningMethodRS256, rsaKey1},
		{"RS512", config.JWTAuth{PublicKey: pemOf(t, &rsaKey1.PublicKey)}, jwt.SigningMethodRS512, rsaKey1},
		{"PS256", config.JWTAuth{PublicKey: pemOf(t, &rsaKey1.PublicKey)}, jwt.SigningMethodPS256, rsaKey1},
		{"ES256", config.JWTAuth{PublicKey: pemOf(t, &ecKey.PublicKey)}, jwt.SigningMethodES256, ecKey},
		{"EdDSA", config.JWTAuth{PublicKey: pemOf(t, edKey.Public())}, jwt.SigningMethodEdDSA, edKey},
		{"allow-listed", config.JWTAuth{Secret: secret, Algorithms: []string{"HS384"}}, jwt.SigningMethodHS384, []byte(secret)},
		{"issuer and audience list", config.JWTAuth{Secret: secret, Issuer: "https://id.example.com", Audience: config.StringList{"other", "api"}},
			jwt.SigningMethodHS256, []byte(secret)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			p := newPlugin(t, tc.cfg, policy.Env{}, WithClock(clock.Now))
			claims := validClaims(jwt.MapClaims{"iss": "https://id.example.com", "aud": []string{"api", "web"}})
			err, c, st := check(t, p, bearer(sign(t, tc.method, tc.key, "", claims)))
			if err != nil {
				t.Fatalf("got %v; want accepted", err)
			}
			if c.Consumer != "user-1" {
				t.Errorf("Consumer: got %q; want user-1", c.Consumer)
			}
			if st.Claims["sub"] != "user-1" {
				t.Errorf("Claims: got %v; want sub user-1", st.Claims)
			}
			if len(st.Response) != 0 {
				t.Errorf("Response: got %v; want none on success", st.Response)
			}
		})
	}
}

func TestRejects(t *testing.T) {
	t.Parallel()
	testKeys(t)
	rsaPEM := pemOf(t, &rsaKey1.PublicKey)
	hs := func(claims jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims) }
	noneToken := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", validClaims(nil))
	cases := []struct {
		name  string
		cfg   config.JWTAuth
		token string
		code  codes.Code
		msg   string
	}{
		{"alg none", config.JWTAuth{Secret: secret}, noneToken, codes.Unauthenticated, "unsigned token (alg none) not accepted"},
		{"key confusion", config.JWTAuth{PublicKey: rsaPEM},
			// An HS256 token whose "secret" is the public key's PEM.
			sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), "", validClaims(nil)),
			codes.Unauthenticated, "signing algorithm HS256 not accepted: this route verifies tokens with public keys"},
		{"algorithm not allow-listed", config.JWTAuth{Secret: secret, Algorithms: []string{"HS512"}}, hs(validClaims(nil)),
			codes.Unauthenticated, "signing algorithm HS256 not accepted"},
		{"RSA token for an EC key", config.JWTAuth{PublicKey: pemOf(t, &ecKey.PublicKey)},
			sign(t, jwt.SigningMethodRS256, rsaKey1, "", validClaims(nil)), codes.Unauthenticated, "signing algorithm RS256 not accepted"},
		{"ES384 for a P-256 key", config.JWTAuth{PublicKey: pemOf(t, &ecKey.PublicKey)},
			sign(t, jwt.SigningMethodES256, ecKey, "", validClaims(nil))[:0] + forgeAlg(t, "ES384"),
			codes.Unauthenticated, "signing algorithm ES384 not accepted"},
		{"bad signature", config.JWTAuth{Secret: secret}, sign(t, jwt.SigningMethodHS256, []byte("another secret"), "", validClaims(nil)),
			codes.Unauthenticated, "invalid token signature"},
		{"other RSA key", config.JWTAuth{PublicKey: rsaPEM}, sign(t, jwt.SigningMethodRS256, rsaKey2, "", validClaims(nil)),
			codes.Unauthenticated, "invalid token signature"},
		{"expired", config.JWTAuth{Secret: secret}, hs(validClaims(jwt.MapClaims{"exp": t0.Add(-31 * time.Second).Unix()})),
			codes.Unauthenticated, "token expired"},
		{"expired, no skew", config.JWTAuth{Secret: secret, ClockSkew: durationPtr(0)}, hs(validClaims(jwt.MapClaims{"exp": t0.Unix()})),
			codes.Unauthenticated, "token expired"},
		{"not yet valid", config.JWTAuth{Secret: secret}, hs(validClaims(jwt.MapClaims{"nbf": t0.Add(time.Minute).Unix()})),
			codes.Unauthenticated, "token not yet valid"},
		{"issued in the future", config.JWTAuth{Secret: secret}, hs(validClaims(jwt.MapClaims{"iat": t0.Add(time.Minute).Unix()})),
			codes.Unauthenticated, "token issued in the future"},
		{"wrong issuer", config.JWTAuth{Secret: secret, Issuer: "https://id.example.com"}, hs(validClaims(jwt.MapClaims{"iss": "https://evil.example.com"})),
			codes.Unauthenticated, "issuer mismatch"},
		{"no issuer", config.JWTAuth{Secret: secret, Issuer: "https://id.example.com"}, hs(validClaims(nil)),
			codes.Unauthenticated, "issuer mismatch"},
		{"wrong audience", config.JWTAuth{Secret: secret, Audience: config.StringList{"api"}}, hs(validClaims(jwt.MapClaims{"aud": "web"})),
			codes.Unauthenticated, "audience mismatch"},
		{"no audience", config.JWTAuth{Secret: secret, Audience: config.StringList{"api"}}, hs(validClaims(nil)),
			codes.Unauthenticated, "audience mismatch"},
		{"malformed", config.JWTAuth{Secret: secret}, "not.a.jwt-token", codes.Unauthenticated, "malformed token"},
		{"exp of the wrong type", config.JWTAuth{Secret: secret}, hs(validClaims(jwt.MapClaims{"exp": "tomorrow"})),
			codes.Unauthenticated, "malformed token claims"},
		{"missing scope", config.JWTAuth{Secret: secret, Scopes: []string{"read", "write"}}, hs(validClaims(jwt.MapClaims{"scope": "read"})),
			codes.PermissionDenied, "missing scope: write"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			p := newPlugin(t, tc.cfg, policy.Env{}, WithClock(clock.Now))
			err, c, st := check(t, p, bearer(tc.token))
			if err == nil || err.Code != tc.code || err.Msg != tc.msg {
				t.Fatalf("got %v; want %v %q", err, tc.code, tc.msg)
			}
			if tc.token != "" && strings.Contains(err.Msg, tc.token) {
				t.Errorf("message echoes the token: %q", err.Msg)
			}
			if policy.IsMissingCredentials(err) {
				t.Errorf("a bad token is reported as missing credentials")
			}
			if c.Consumer != "" || st.Claims != nil || len(st.Upstream) != 0 {
				t.Errorf("refused call got Consumer %q, Claims %v, Upstream %v", c.Consumer, st.Claims, st.Upstream)
			}
			want := `Bearer realm="rosetta", error="invalid_token"`
			if tc.code == codes.PermissionDenied {
				want = `Bearer realm="rosetta", error="insufficient_scope", scope="read write"`
			}
			if got := challenge(st); got != want {
				t.Errorf("www-authenticate: got %q; want %q", got, want)
			}
		})
	}
}

// forgeAlg returns a token whose header says alg, with a junk signature:
// it must be refused for its algorithm before any key is tried.
func forgeAlg(t *testing.T, alg string) string {
	t.Helper()
	h := jwtEncode([]byte(`{"alg":"` + alg + `","typ":"JWT"}`))
	b := jwtEncode([]byte(`{"sub":"user-1"}`))
	return h + "." + b + "." + jwtEncode([]byte("signature"))
}

func durationPtr(d time.Duration) *config.Duration {
	c := config.Duration(d)
	return &c
}

func TestClockSkew(t *testing.T) {
	t.Parallel()
	clock := newClock()
	p := newPlugin(t, config.JWTAuth{Secret: secret}, policy.Env{}, WithClock(clock.Now), WithCacheSize(0))
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(jwt.MapClaims{
		"exp": t0.Add(-29 * time.Second).Unix(),
		"nbf": t0.Add(29 * time.Second).Unix(),
		"iat": t0.Add(29 * time.Second).Unix(),
	}))
	if err, _, _ := check(t, p, bearer(tok)); err != nil {
		t.Fatalf("within the 30s default skew: got %v; want accepted", err)
	}
}

func TestMissingToken(t *testing.T) {
	t.Parallel()
	p := newPlugin(t, config.JWTAuth{Secret: secret, Cookie: "session"}, policy.Env{})
	for name, c := range map[string]*call.Call{
		"no header":    {Header: call.HTTPHeader{}},
		"basic auth":   {Header: call.HTTPHeader{"Authorization": {"Basic dXNlcjpwYXNz"}}},
		"empty bearer": {Header: call.HTTPHeader{"Authorization": {"Bearer   "}}},
		"other cookie": {Header: call.HTTPHeader{"Cookie": {"theme=dark; sessionid=x"}}},
		"nil header":   {},
	} {
		err, _, st := check(t, p, c)
		if err == nil || err.Code != codes.Unauthenticated || err.Msg != "missing bearer token" || !policy.IsMissingCredentials(err) {
			t.Errorf("%s: got %v; want MissingCredentials(missing bearer token)", name, err)
		}
		if got, want := challenge(st), `Bearer realm="rosetta"`; got != want {
			t.Errorf("%s: www-authenticate got %q; want %q", name, got, want)
		}
	}
}

func TestTokenSources(t *testing.T) {
	t.Parallel()
	p := newPlugin(t, config.JWTAuth{Secret: secret, Cookie: "session"}, policy.Env{}, WithClock(newClock().Now))
	good := sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(nil))
	bad := sign(t, jwt.SigningMethodHS256, []byte("wrong"), "", validClaims(nil))
	cases := []struct {
		name string
		c    *call.Call
		ok   bool
	}{
		{"authorization", &call.Call{Header: call.HTTPHeader{"Authorization": {"Bearer " + good}}}, true},
		{"authorization lower-case scheme", &call.Call{Header: call.HTTPHeader{"authorization": {"bearer " + good}}}, true},
		{"websocket bearer", &call.Call{Header: call.HTTPHeader{}, Bearer: good}, true},
		{"cookie", &call.Call{Header: call.HTTPHeader{"Cookie": {"theme=dark; session=" + good + "; x=y"}}}, true},
		{"quoted cookie", &call.Call{Header: call.HTTPHeader{"Cookie": {`session="` + good + `"`}}}, true},
		{"authorization before bearer", &call.Call{Header: call.HTTPHeader{"Authorization": {"Bearer " + bad}}, Bearer: good}, false},
		{"bearer before cookie", &call.Call{Header: call.HTTPHeader{"Cookie": {"session=" + good}}, Bearer: bad}, false},
		{"basic auth falls through to cookie", &call.Call{Header: call.HTTPHeader{"Authorization": {"Basic x"}, "Cookie": {"session=" + good}}}, true},
	}
	for _, tc := range cases {
		err, _, _ := check(t, p, tc.c)
		if tc.ok != (err == nil) {
			t.Errorf("%s: got %v; want accepted %v", tc.name, err, tc.ok)
		}
	}
}

func TestScopes(t *testing.T) {
	t.Parallel()
	p := newPlugin(t, config.JWTAuth{Secret: secret, Scopes: []string{"books.read", "books.write"}}, policy.Env{}, WithClock(newClock().Now))
	cases := []struct {
		name    string
		claims  jwt.MapClaims
		missing string
	}{
		{"scope string", jwt.MapClaims{"scope": "openid books.read books.write"}, ""},
		{"scp list", jwt.MapClaims{"scp": []string{"books.write", "books.read"}}, ""},
		{"scp string", jwt.MapClaims{"scp": "books.read books.write"}, ""},
		{"split across", jwt.MapClaims{"scope": "books.read", "scp": []string{"books.write"}}, ""},
		{"one missing", jwt.MapClaims{"scope": "books.read"}, "books.write"},
		{"none", nil, "books.read"},
		{"prefix is not a match", jwt.MapClaims{"scope": "books.readx books.write"}, "books.read"},
	}
	for _, tc := range cases {
		tok := sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(tc.claims))
		err, _, st := check(t, p, bearer(tok))
		if tc.missing == "" {
			if err != nil {
				t.Errorf("%s: got %v; want accepted", tc.name, err)
			}
			continue
		}
		if err == nil || err.Code != codes.PermissionDenied || err.Msg != "missing scope: "+tc.missing {
			t.Errorf("%s: got %v; want PermissionDenied missing scope: %s", tc.name, err, tc.missing)
		}
		if got, want := challenge(st), `Bearer realm="rosetta", error="insufficient_scope", scope="books.read books.write"`; got != want {
			t.Errorf("%s: www-authenticate got %q; want %q", tc.name, got, want)
		}
	}
}

func TestConsumerAndClaims(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Consumers: []config.Consumer{
		{Name: "alice", JWTSubject: "user-1"},
		{Name: "bob", Keys: config.StringList{"k"}},
	}}
	p := newPlugin(t, config.JWTAuth{Secret: secret, ClaimsToHeaders: map[string]string{
		"sub":    "X-User-Id",
		"tenant": "x-tenant",
		"level":  "x-level",
		"ratio":  "x-ratio",
		"admin":  "x-admin",
		"roles":  "x-roles",
		"org":    "x-org",
		"absent": "x-absent",
		"evil":   "x-evil",
	}}, policy.Env{Config: cfg}, WithClock(newClock().Now))
	if diff := cmp.Diff([]string{"x-absent", "x-admin", "x-evil", "x-level", "x-org", "x-ratio", "x-roles", "x-tenant", "x-user-id"}, p.UpstreamHeaders()); diff != "" {
		t.Errorf("UpstreamHeaders (-want +got):\n%s", diff)
	}
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(jwt.MapClaims{
		"tenant": "acme",
		"level":  12345678901,
		"ratio":  0.5,
		"admin":  true,
		"roles":  []any{"reader", "writer", 3},
		"org":    map[string]any{"id": 7},
		"evil":   "a\r\nx-injected: 1",
	}))
	err, c, st := check(t, p, bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	if c.Consumer != "alice" {
		t.Errorf("Consumer: got %q; want alice (jwt_subject user-1)", c.Consumer)
	}
	want := []policy.Field{
		{Name: "authorization", Value: "Bearer " + tok}, // the verified token alone
		{Name: "x-admin", Value: "true"},
		{Name: "x-level", Value: "12345678901"},
		{Name: "x-org", Value: `{"id":7}`},
		{Name: "x-ratio", Value: "0.5"},
		{Name: "x-roles", Value: "reader,writer,3"},
		{Name: "x-tenant", Value: "acme"},
		{Name: "x-user-id", Value: "user-1"},
	}
	if diff := cmp.Diff(want, st.Upstream); diff != "" {
		t.Errorf("Upstream (-want +got):\n%s", diff)
	}

	// A subject no consumer claims is the consumer itself.
	tok = sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(jwt.MapClaims{"sub": "svc-42"}))
	if err, c, _ := check(t, p, bearer(tok)); err != nil || c.Consumer != "svc-42" {
		t.Errorf("unmapped subject: got %v, Consumer %q; want svc-42", err, c.Consumer)
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	clock := newClock()
	p := newPlugin(t, config.JWTAuth{Secret: secret}, policy.Env{}, WithClock(clock.Now), WithCacheSize(2))
	tokens := make([]string, 3)
	for i := range tokens {
		tokens[i] = sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(jwt.MapClaims{"n": i}))
	}
	for _, tok := range tokens {
		if err, _, _ := check(t, p, bearer(tok)); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.cache.lru.Len(); got != 2 {
		t.Errorf("cache holds %d tokens; want the bound, 2", got)
	}
	if !p.cache.lru.Contains(tokens[2]) || p.cache.lru.Contains(tokens[0]) {
		t.Errorf("cache keys: got %d entries; want the two most recent whole tokens", p.cache.lru.Len())
	}

	// A hit checks the time again: the cached token expires with the clock.
	clock.Add(time.Hour + 31*time.Second)
	err, _, st := check(t, p, bearer(tokens[2]))
	if err == nil || err.Msg != "token expired" {
		t.Fatalf("cached token past exp: got %v; want token expired", err)
	}
	if got := challenge(st); got != `Bearer realm="rosetta", error="invalid_token"` {
		t.Errorf("www-authenticate: got %q", got)
	}

	// Tokens over 8 KiB are verified but never cached.
	big := sign(t, jwt.SigningMethodHS256, []byte(secret), "", jwt.MapClaims{"sub": "u", "pad": strings.Repeat("x", MaxCachedTokenBytes)})
	p.cache.lru.Purge()
	if err, _, _ := check(t, p, bearer(big)); err != nil {
		t.Fatal(err)
	}
	if p.cache.lru.Len() != 0 {
		t.Errorf("a %d-byte token was cached", len(big))
	}
}

func TestCachedNotBefore(t *testing.T) {
	t.Parallel()
	clock := newClock()
	p := newPlugin(t, config.JWTAuth{Secret: secret, ClockSkew: durationPtr(0)}, policy.Env{}, WithClock(clock.Now))
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(jwt.MapClaims{"nbf": t0.Unix(), "iat": t0.Unix()}))
	if err, _, _ := check(t, p, bearer(tok)); err != nil {
		t.Fatal(err)
	}
	clock.Add(-time.Second) // the clock steps back
	if err, _, _ := check(t, p, bearer(tok)); err == nil || err.Msg != "token not yet valid" {
		t.Errorf("cached token before nbf: got %v; want token not yet valid", err)
	}
}

// TestCachedCheckAllocs runs alone: AllocsPerRun refuses parallel tests.
func TestCachedCheckAllocs(t *testing.T) {
	p := newPlugin(t, config.JWTAuth{Secret: secret, ClaimsToHeaders: map[string]string{"sub": "x-user"}}, policy.Env{}, WithClock(newClock().Now))
	c := bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), "", validClaims(nil)))
	st := &policy.State{Upstream: make([]policy.Field, 0, 4)}
	if err, _ := p.TryCheck(c, st); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		st.Upstream = st.Upstream[:0]
		if err, pending := p.TryCheck(c, st); err != nil || pending {
			t.Fatal(err, pending)
		}
	})
	if allocs != 0 {
		t.Errorf("a cached token check allocates %v times; want 0", allocs)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  config.JWTAuth
		want string
	}{
		{"no key", config.JWTAuth{}, "set exactly one of secret, public_key or jwks_uri"},
		{"two keys", config.JWTAuth{Secret: "s", JWKSURI: "https://x"}, "set exactly one of secret, public_key or jwks_uri"},
		{"bad public key", config.JWTAuth{PublicKey: "nope.pem"}, "public_key: open nope.pem: no such file"},
		{"algorithm of another family", config.JWTAuth{Secret: "s", Algorithms: []string{"RS256"}},
			`algorithm "RS256" does not fit the key material, which verifies HS256, HS384, HS512`},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg, policy.Env{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v; want %q", tc.name, err, tc.want)
		}
	}
}

func TestRegistered(t *testing.T) {
	t.Parallel()
	ctor, ok := policy.Lookup("jwt-auth")
	if !ok {
		t.Fatal(`"jwt-auth" is not registered`)
	}
	p, err := ctor(policy.Env{}, config.Plugin{JWTAuth: &config.JWTAuth{Secret: secret}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "jwt-auth" || p.Phase() != policy.Authenticate {
		t.Errorf("got %s in phase %d", p.Name(), p.Phase())
	}
	if _, err := ctor(policy.Env{}, config.Plugin{}); err == nil {
		t.Error("constructor accepted an entry without jwt-auth settings")
	}
}

func BenchmarkCheck(b *testing.B) {
	testKeys(b)
	now := func() time.Time { return t0 }
	hsToken := sign(b, jwt.SigningMethodHS256, []byte(secret), "", validClaims(jwt.MapClaims{"scope": "read"}))
	rsToken := sign(b, jwt.SigningMethodRS256, rsaKey1, "", validClaims(nil))
	cases := []struct {
		name  string
		cfg   config.JWTAuth
		token string
		cache int
	}{
		{"cached", config.JWTAuth{Secret: secret, Scopes: []string{"read"}, ClaimsToHeaders: map[string]string{"sub": "x-user"}}, hsToken, DefaultCacheSize},
		{"verify-HS256", config.JWTAuth{Secret: secret, Scopes: []string{"read"}, ClaimsToHeaders: map[string]string{"sub": "x-user"}}, hsToken, 0},
		{"verify-RS256", config.JWTAuth{PublicKey: pemOf(b, &rsaKey1.PublicKey)}, rsToken, 0},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			p := newPlugin(b, bc.cfg, policy.Env{}, WithClock(now), WithCacheSize(bc.cache))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := bearer(bc.token)
				st := &policy.State{Upstream: make([]policy.Field, 0, 4)}
				for pb.Next() {
					st.Upstream = st.Upstream[:0]
					if err, _ := p.TryCheck(c, st); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
