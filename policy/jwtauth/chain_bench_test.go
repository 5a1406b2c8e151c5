package jwtauth_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	_ "github.com/rosetta-gateway/rosetta/policy/ratelimit"
)

// headerMap is a call.Header of lower-case names, as the relay presents
// an HTTP/2 head.
type headerMap map[string]string

func (h headerMap) Get(name string) string { return h[name] }
func (h headerMap) Values(name string) []string {
	if v, ok := h[name]; ok {
		return []string{v}
	}
	return nil
}

// BenchmarkChainJWTRateLimit is the cost the benchmark scenario adds to
// a call: the seed's two plugins (jwt-auth HS256 with its verified-token
// cache, a local rate limit that never refuses), decided without I/O as
// the relay decides. A call reuses its State, as adapters allocate one
// per call with the call.
func BenchmarkChainJWTRateLimit(b *testing.B) {
	const secret = "0123456789abcdef0123456789abcdef"
	cfg := &config.Config{
		Plugins: []config.Plugin{
			{JWTAuth: &config.JWTAuth{Secret: secret}},
			{RateLimiting: &config.RateLimiting{Limit: 100_000_000, Period: config.Period(time.Second)}},
		},
	}
	set, err := policy.Build(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = set.Close() })
	chain := set.Default()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		b.Fatal(err)
	}
	hdr := headerMap{"authorization": "Bearer " + tok}
	peer := netip.MustParseAddrPort("10.1.2.3:4567")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := &call.Call{Protocol: call.GRPC, Procedure: "/pkg.Svc/M", Header: hdr, Peer: peer}
		st := &policy.State{}
		for pb.Next() {
			c.Consumer = ""
			*st = policy.State{Upstream: st.Upstream[:0]}
			if err, pending := chain.TryCheck(c, st); err != nil || pending {
				b.Fatalf("TryCheck: %v, pending %v", err, pending)
			}
			chain.Done(st)
		}
	})
}
