package ratelimit

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a clock tests move by hand.
type fakeClock = testkit.Clock

func newFakeClock() *fakeClock {
	return testkit.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
}

// newTestLimiter builds a limiter of cfg (for route "/users/*" unless
// env names one), failing the test on error.
func newTestLimiter(t testing.TB, env policy.Env, cfg config.RateLimiting, opts ...Option) *Limiter {
	t.Helper()
	if env.Route == "" {
		env.Route = "/users/*"
	}
	if env.Shared == nil {
		env.Shared = &policy.Shared{}
	}
	p, err := New(env, cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	switch p := p.(type) {
	case *Limiter:
		return p
	case *MessageLimiter:
		return p.Limiter
	}
	t.Fatalf("New returned %T", p)
	return nil
}

// peerCall returns a call from addr (port 4711) with the given headers.
func peerCall(addr string, header ...string) *call.Call {
	h := call.HTTPHeader{}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = append(h[header[i]], header[i+1])
	}
	return &call.Call{
		Procedure: "/pkg.Users/Get",
		Route:     "/users/*",
		Peer:      netip.AddrPortFrom(netip.MustParseAddr(addr), 4711),
		Header:    h,
	}
}

// decide runs Check on a fresh state and returns both.
func decide(t testing.TB, l *Limiter, c *call.Call) (*call.Error, *policy.State) {
	t.Helper()
	st := &policy.State{}
	return l.Check(context.Background(), c, st), st
}

// allowedN counts how many of n calls of c pass.
func allowedN(t testing.TB, l *Limiter, c *call.Call, n int) int {
	t.Helper()
	ok := 0
	for range n {
		if err, _ := decide(t, l, c); err == nil {
			ok++
		}
	}
	return ok
}

func newLogger() (*slog.Logger, *testkit.LogBuffer) {
	b := &testkit.LogBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}
