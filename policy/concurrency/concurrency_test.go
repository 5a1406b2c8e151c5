package concurrency_test

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/concurrency"
	"github.com/rosetta-gateway/rosetta/policy/ratelimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLimiter(t testing.TB, shared *policy.Shared, route string, max int) *concurrency.Limiter {
	t.Helper()
	l, err := concurrency.New(policy.Env{Route: route, Shared: shared}, config.ConcurrencyLimit{Max: max})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newCall() *call.Call {
	return &call.Call{
		Route:  "/users/*",
		Peer:   netip.MustParseAddrPort("192.0.2.1:4711"),
		Header: call.HTTPHeader{},
	}
}

func TestAcquireRelease(t *testing.T) {
	l := newLimiter(t, &policy.Shared{}, "/users/*", 2)
	chain := policy.NewChain([]policy.Plugin{l}, nil)
	c := newCall()
	a, b := &policy.State{}, &policy.State{}
	if err := chain.Check(context.Background(), c, a); err != nil {
		t.Fatalf("first: %v", err)
	}
	if err, pending := chain.TryCheck(c, b); err != nil || pending {
		t.Fatalf("second: %v, pending %v", err, pending)
	}
	if got := l.Slots().InFlight(); got != 2 {
		t.Fatalf("in flight: got %d; want 2", got)
	}
	refused := &policy.State{}
	err := chain.Check(context.Background(), c, refused)
	if err == nil || err.Code != codes.Unavailable {
		t.Fatalf("third: got %v; want Unavailable", err)
	}
	if want := "concurrency limit of 2 calls in flight reached on route /users/*"; err.Msg != want {
		t.Errorf("message: got %q; want %q", err.Msg, want)
	}
	chain.Done(refused)
	if got := l.Slots().InFlight(); got != 2 {
		t.Fatalf("after the refused call's Done: got %d; want 2", got)
	}
	chain.Done(a)
	chain.Done(a) // idempotent
	if got := l.Slots().InFlight(); got != 1 {
		t.Fatalf("after one Done (twice): got %d; want 1", got)
	}
	if err := chain.Check(context.Background(), c, &policy.State{}); err != nil {
		t.Fatalf("after a release: got %v; want allowed", err)
	}
}

func TestNeverOverMax(t *testing.T) {
	const max = 3
	l := newLimiter(t, &policy.Shared{}, "/users/*", max)
	chain := policy.NewChain([]policy.Plugin{l}, nil)
	var highest atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := newCall()
			for range 2000 {
				st := &policy.State{}
				if err, _ := chain.TryCheck(c, st); err == nil {
					n := l.Slots().InFlight()
					for h := highest.Load(); n > h && !highest.CompareAndSwap(h, n); h = highest.Load() {
					}
				}
				chain.Done(st)
			}
		})
	}
	wg.Wait()
	if h := highest.Load(); h > max || h < 1 {
		t.Fatalf("most in flight: got %d; want 1..%d", h, max)
	}
	if got := l.Slots().InFlight(); got != 0 {
		t.Fatalf("after every Done: got %d in flight; want 0", got)
	}
}

// A slot taken before a later plugin refuses is given back by Done.
func TestNoLeakWhenRefusedLater(t *testing.T) {
	shared := &policy.Shared{}
	cl := newLimiter(t, shared, "/users/*", 5)
	rl, err := ratelimit.New(policy.Env{Route: "/users/*", Shared: shared},
		config.RateLimiting{Limit: 1, Period: config.Period(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// concurrency-limit first: the wrong order, still leak-free.
	chain := policy.NewChain([]policy.Plugin{cl, rl}, nil)
	c := newCall()
	for i, wantCode := range []codes.Code{codes.OK, codes.ResourceExhausted, codes.ResourceExhausted} {
		st := &policy.State{}
		var got codes.Code
		if i%2 == 0 {
			if err := chain.Check(context.Background(), c, st); err != nil {
				got = err.Code
			}
		} else if err, _ := chain.TryCheck(c, st); err != nil {
			got = err.Code
		}
		if got != wantCode {
			t.Fatalf("call %d: got %v; want %v", i, got, wantCode)
		}
		chain.Done(st)
		if n := cl.Slots().InFlight(); n != 0 {
			t.Fatalf("call %d: %d slots held after Done; want 0", i, n)
		}
	}
}

// A chain whose rate limit needs Redis answers pending from TryCheck;
// the slot the concurrency limit took is given back at once.
func TestPendingReleasesSlot(t *testing.T) {
	srv := testkit.StartRedis(t)
	shared := &policy.Shared{}
	t.Cleanup(func() { _ = shared.Close() })
	cl := newLimiter(t, shared, "/users/*", 1)
	rl, err := ratelimit.New(policy.Env{
		Route:  "/users/*",
		Shared: shared,
		Config: &config.Config{Redis: &config.Redis{Address: srv.Addr}},
	}, config.RateLimiting{Limit: 10, Period: config.Period(time.Hour), Policy: "redis"}, ratelimit.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, order := range [][]policy.Plugin{{cl, rl}, {rl, cl}} {
		chain := policy.NewChain(order, nil)
		st := &policy.State{}
		if err, pending := chain.TryCheck(newCall(), st); err != nil || !pending {
			t.Fatalf("%s first: got %v, pending %v; want pending", order[0].Name(), err, pending)
		}
		if n := cl.Slots().InFlight(); n != 0 {
			t.Fatalf("%s first: %d slots held after pending; want 0", order[0].Name(), n)
		}
		if err := chain.Check(context.Background(), newCall(), st); err != nil {
			t.Fatalf("%s first: Check: %v", order[0].Name(), err)
		}
		if n := cl.Slots().InFlight(); n != 1 {
			t.Fatalf("%s first: got %d slots held by the call; want 1", order[0].Name(), n)
		}
		chain.Done(st)
	}
}

// Two snapshots with the same route count the same calls in flight, even
// when the new one changes max.
func TestReloadKeepsCount(t *testing.T) {
	shared := &policy.Shared{}
	old := newLimiter(t, shared, "/users/*", 2)
	st := &policy.State{}
	oldChain := policy.NewChain([]policy.Plugin{old}, nil)
	if err := oldChain.Check(context.Background(), newCall(), st); err != nil {
		t.Fatal(err)
	}
	renewed := newLimiter(t, shared, "/users/*", 1)
	if err := policy.NewChain([]policy.Plugin{renewed}, nil).Check(context.Background(), newCall(), &policy.State{}); err == nil {
		t.Fatal("new snapshot: got allowed; want refused (the old snapshot's call is in flight)")
	}
	oldChain.Done(st)
	if n := renewed.Slots().InFlight(); n != 0 {
		t.Fatalf("after the old call ended: got %d in flight; want 0", n)
	}
	other := newLimiter(t, shared, "/books/*", 1)
	if other.Slots() == renewed.Slots() {
		t.Fatal("two routes share a counter")
	}
}

func TestAllocatesNothing(t *testing.T) {
	l := newLimiter(t, &policy.Shared{}, "/users/*", 10)
	chain := policy.NewChain([]policy.Plugin{l}, nil)
	c := newCall()
	var st policy.State
	allocs := testing.AllocsPerRun(1000, func() {
		if err, _ := chain.TryCheck(c, &st); err != nil {
			t.Fatal(err)
		}
		chain.Done(&st)
	})
	if allocs != 0 {
		t.Fatalf("got %v allocs per acquire and release; want 0", allocs)
	}
}

func TestRegistered(t *testing.T) {
	build, ok := policy.Lookup(concurrency.Name)
	if !ok {
		t.Fatalf("%q is not registered", concurrency.Name)
	}
	p, err := build(policy.Env{Shared: &policy.Shared{}}, config.Plugin{ConcurrencyLimit: &config.ConcurrencyLimit{Max: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != concurrency.Name || p.Phase() != policy.Limit {
		t.Fatalf("got %s in phase %d", p.Name(), p.Phase())
	}
	if _, err := build(policy.Env{}, config.Plugin{ConcurrencyLimit: &config.ConcurrencyLimit{}}); err == nil ||
		err.Error() != "concurrency-limit: max must be greater than 0, got 0" {
		t.Fatalf("max 0: got %v", err)
	}
}

// BenchmarkAcquireRelease takes and gives back a slot through a chain,
// from every P at once (one shared counter: the contended case).
func BenchmarkAcquireRelease(b *testing.B) {
	l := newLimiter(b, &policy.Shared{}, "/users/*", 1<<30)
	chain := policy.NewChain([]policy.Plugin{l}, nil)
	c := newCall()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var st policy.State
		for pb.Next() {
			if err, _ := chain.TryCheck(c, &st); err != nil {
				b.Fatal(err)
			}
			chain.Done(&st)
		}
	})
}
