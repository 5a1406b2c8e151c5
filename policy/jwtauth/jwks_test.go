package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
)

// jwksPlugin is a plugin on srv's key set with a test clock and a
// refresh ticker the test drives.
type jwksPlugin struct {
	*Plugin
	clock *testClock
	ticks chan time.Time
}

func newJWKSPlugin(t *testing.T, srv *jwksServer, env policy.Env, cfg config.JWTAuth) jwksPlugin {
	t.Helper()
	cfg.JWKSURI = srv.url()
	clock := newClock()
	ticks := make(chan time.Time)
	p := newPlugin(t, cfg, env, WithClock(clock.Now), WithHTTPClient(srv.client), withTicks(ticks))
	return jwksPlugin{p, clock, ticks}
}

// waitFor polls cond until it holds; the bound only keeps a broken test
// from hanging, it asserts nothing about time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// loaded waits for the first key set.
func (p jwksPlugin) loaded(t *testing.T) {
	t.Helper()
	waitFor(t, "the JWKS to load", func() bool { return p.jwks.current() != nil })
}

func rs256(t *testing.T, key any, kid string) *call.Call {
	return bearer(sign(t, jwt.SigningMethodRS256, key, kid, validClaims(nil)))
}

func TestJWKSPendingUntilLoaded(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := startJWKSServer(t, jwk{kid: "k1", key: &rsaKey1.PublicKey})
	release := srv.hold()
	t.Cleanup(release)
	p := newJWKSPlugin(t, srv, policy.Env{}, config.JWTAuth{})
	c := rs256(t, rsaKey1, "k1")

	var st policy.State
	if err, pending := p.TryCheck(c, &st); !pending || err != nil || len(st.Response) != 0 || c.Consumer != "" {
		t.Fatalf("TryCheck before the keys load: got %v, pending %v, st %+v; want pending, untouched", err, pending, st)
	}
	done := make(chan *call.Error)
	go func() {
		cc := *c
		done <- p.Check(context.Background(), &cc, &policy.State{})
	}()
	release()
	if err := <-done; err != nil {
		t.Fatalf("Check waiting for the keys: got %v; want accepted", err)
	}
	if err, pending := p.TryCheck(c, &policy.State{}); pending || err != nil {
		t.Errorf("TryCheck once loaded: got %v, pending %v; want accepted at once", err, pending)
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Errorf("fetches: got %d; want 1 (Check joined the first fetch)", got)
	}
}

func TestJWKSRotationAndRateLimit(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := startJWKSServer(t, jwk{kid: "k1", key: &rsaKey1.PublicKey})
	p := newJWKSPlugin(t, srv, policy.Env{}, config.JWTAuth{})
	p.loaded(t)
	if err, _, _ := check(t, p.Plugin, rs256(t, rsaKey1, "k1")); err != nil {
		t.Fatal(err)
	}

	// The issuer rotates: a new kid appears and is picked up at once.
	srv.setKeys(jwk{kid: "k1", key: &rsaKey1.PublicKey}, jwk{kid: "k2", key: &ecKey.PublicKey})
	k2 := bearer(sign(t, jwt.SigningMethodES256, ecKey, "k2", validClaims(nil)))
	if err, pending := p.TryCheck(k2, &policy.State{}); !pending || err != nil {
		t.Fatalf("TryCheck, new kid: got %v, pending %v; want pending (a refetch is due)", err, pending)
	}
	if err := p.Check(context.Background(), k2, &policy.State{}); err != nil {
		t.Fatalf("Check, new kid: got %v; want accepted after a refetch", err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("fetches: got %d; want 2", got)
	}

	// Another unknown kid right after: refused at once, no fetch.
	k3 := rs256(t, rsaKey2, "k3")
	err, pending := p.TryCheck(k3, &policy.State{})
	if pending || err == nil || err.Code != codes.Unauthenticated || err.Msg != "unknown signing key id" {
		t.Fatalf("TryCheck, unknown kid within jwks_refresh_min: got %v, pending %v; want unknown signing key id", err, pending)
	}
	if err := p.Check(context.Background(), k3, &policy.State{}); err == nil || err.Msg != "unknown signing key id" {
		t.Fatalf("Check, unknown kid: got %v", err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("fetches after a rate-limited unknown kid: got %d; want 2", got)
	}

	// jwks_refresh_min (30s) later, an unknown kid may refetch again.
	p.clock.Add(30 * time.Second)
	if _, pending := p.TryCheck(k3, &policy.State{}); !pending {
		t.Fatal("TryCheck 30s later: not pending; want a refetch due")
	}
	if err := p.Check(context.Background(), k3, &policy.State{}); err == nil || err.Msg != "unknown signing key id" {
		t.Fatalf("Check, still unknown kid: got %v", err)
	}
	if got := srv.fetches.Load(); got != 3 {
		t.Errorf("fetches: got %d; want 3", got)
	}
	if _, pending := p.TryCheck(k3, &policy.State{}); pending {
		t.Fatal("TryCheck right after that refetch: pending; want refused at once")
	}

	// A scheduled refresh re-arms the immediate refetch.
	p.ticks <- t0
	waitFor(t, "the scheduled refresh", func() bool { return srv.fetches.Load() == 4 && p.jwks.unknownMayFetch() })
}

func TestJWKSKeyRemoved(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := startJWKSServer(t, jwk{kid: "k1", key: &rsaKey1.PublicKey}, jwk{kid: "k2", key: &rsaKey2.PublicKey})
	p := newJWKSPlugin(t, srv, policy.Env{}, config.JWTAuth{})
	p.loaded(t)
	k1, k2 := rs256(t, rsaKey1, "k1"), rs256(t, rsaKey2, "k2")
	for range 2 { // the first check notes the key generation, the second caches
		if err, _, _ := check(t, p.Plugin, k1); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.cache.lru.Len(); got != 1 {
		t.Fatalf("cache: got %d tokens; want 1", got)
	}

	// A refresh that brings the same keys keeps the cache.
	gen := p.jwks.current().gen
	p.jwks.scheduled()
	if p.jwks.current().gen != gen || p.cache.lru.Len() != 1 {
		t.Fatalf("an unchanged key set changed the generation (%d → %d) or emptied the cache", gen, p.jwks.current().gen)
	}

	// k1 leaves the set: its cached token stops working.
	srv.setKeys(jwk{kid: "k2", key: &rsaKey2.PublicKey})
	p.jwks.scheduled()
	err, _, st := check(t, p.Plugin, k1)
	if err == nil || err.Msg != "unknown signing key id" {
		t.Fatalf("token of a removed key: got %v; want unknown signing key id", err)
	}
	if got := challenge(st); got != `Bearer realm="rosetta", error="invalid_token"` {
		t.Errorf("www-authenticate: got %q", got)
	}
	if got := p.cache.lru.Len(); got != 0 {
		t.Errorf("cache after the key set changed: got %d tokens; want 0", got)
	}
	if err, _, _ := check(t, p.Plugin, k2); err != nil {
		t.Errorf("token of a kept key: got %v; want accepted", err)
	}
}

func TestJWKSKeySelection(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := startJWKSServer(t,
		jwk{kid: "hmac", key: []byte(secret)},
		jwk{kid: "enc", key: &rsaKey2.PublicKey, use: "enc"},
		jwk{kid: "rs", key: &rsaKey1.PublicKey, alg: "RS256"},
		jwk{key: &ecKey.PublicKey},
		jwk{kid: "ed", key: edKey.Public()},
	)
	p := newJWKSPlugin(t, srv, policy.Env{}, config.JWTAuth{})
	p.loaded(t)
	cases := []struct {
		name string
		c    *call.Call
		msg  string
	}{
		{"RS256 with kid", rs256(t, rsaKey1, "rs"), ""},
		{"EdDSA with kid", bearer(sign(t, jwt.SigningMethodEdDSA, edKey, "ed", validClaims(nil))), ""},
		{"ES256 without kid", bearer(sign(t, jwt.SigningMethodES256, ecKey, "", validClaims(nil))), ""},
		{"RS256 without kid", rs256(t, rsaKey1, ""), ""},
		{"symmetric JWK", bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), "hmac", validClaims(nil))),
			"signing algorithm HS256 not accepted: this route verifies tokens with public keys"},
		{"encryption JWK", rs256(t, rsaKey2, "enc"), "unknown signing key id"},
		{"alg the JWK rules out", bearer(sign(t, jwt.SigningMethodPS256, rsaKey1, "rs", validClaims(nil))), "no signing key for the token's algorithm"},
		{"no key for alg without kid", bearer(sign(t, jwt.SigningMethodES384, mustEC384(t), "", validClaims(nil))), "no signing key for the token's algorithm"},
	}
	for _, tc := range cases {
		err, _, _ := check(t, p.Plugin, tc.c)
		switch {
		case tc.msg == "" && err != nil:
			t.Errorf("%s: got %v; want accepted", tc.name, err)
		case tc.msg != "" && (err == nil || err.Code != codes.Unauthenticated || err.Msg != tc.msg):
			t.Errorf("%s: got %v; want %q", tc.name, err, tc.msg)
		}
	}
}

func TestJWKSUnavailable(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := startJWKSServer(t, jwk{kid: "k1", key: &rsaKey1.PublicKey})
	srv.setStatus(http.StatusInternalServerError)
	p := newJWKSPlugin(t, srv, policy.Env{}, config.JWTAuth{})
	c := rs256(t, rsaKey1, "k1")
	if _, pending := p.TryCheck(c, &policy.State{}); !pending {
		t.Fatal("TryCheck without keys: not pending")
	}
	err := p.Check(context.Background(), c, &policy.State{})
	if err == nil || err.Code != codes.Unavailable || err.Msg != "JWT signing keys are not available yet" {
		t.Fatalf("Check, key server failing: got %v; want Unavailable", err)
	}
	// Within a second of a failure, calls do not refetch.
	n := srv.fetches.Load()
	if err := p.Check(context.Background(), c, &policy.State{}); err == nil || err.Code != codes.Unavailable {
		t.Fatalf("Check again: got %v; want Unavailable", err)
	}
	if got := srv.fetches.Load(); got != n {
		t.Errorf("fetches: got %d; want %d (retry limited)", got, n)
	}
	// The server recovers; a call after the retry gap loads the keys.
	srv.setStatus(http.StatusOK)
	p.clock.Add(time.Second)
	if err := p.Check(context.Background(), c, &policy.State{}); err != nil {
		t.Fatalf("Check after recovery: got %v; want accepted", err)
	}
}

func TestJWKSCheckCanceled(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := startJWKSServer(t, jwk{kid: "k1", key: &rsaKey1.PublicKey})
	release := srv.hold()
	t.Cleanup(release)
	p := newJWKSPlugin(t, srv, policy.Env{}, config.JWTAuth{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Check(ctx, rs256(t, rsaKey1, "k1"), &policy.State{})
	if err == nil || err.Code != codes.Canceled {
		t.Fatalf("Check with a canceled context: got %v; want Canceled", err)
	}
}

func TestJWKSShared(t *testing.T) {
	t.Parallel()
	testKeys(t)
	srv := startJWKSServer(t, jwk{kid: "k1", key: &rsaKey1.PublicKey})
	shared := &policy.Shared{}
	t.Cleanup(func() { _ = shared.Close() })
	env := policy.Env{Shared: shared}
	a := newJWKSPlugin(t, srv, env, config.JWTAuth{})
	b := newJWKSPlugin(t, srv, env, config.JWTAuth{Issuer: "other"})
	if a.jwks != b.jwks {
		t.Fatal("two plugins on one jwks_uri got two key sources; want one, kept in Shared")
	}
	if a.cache == b.cache {
		t.Error("plugins with different issuers share a token cache")
	}
	if c := newJWKSPlugin(t, srv, env, config.JWTAuth{}); c.cache != a.cache {
		t.Error("plugins with the same settings got two token caches; want one, kept in Shared")
	}
	a.loaded(t)
	if err, _, _ := check(t, b.Plugin, rs256(t, rsaKey1, "k1")); err == nil || err.Msg != "issuer mismatch" {
		t.Errorf("b: got %v; want its own settings (issuer mismatch)", err)
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Errorf("fetches: got %d; want 1", got)
	}
}

func mustEC384(t *testing.T) any {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
