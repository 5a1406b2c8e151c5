package breaker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newBreaker(t testing.TB, maxRequests, maxPending int) *Breaker {
	t.Helper()
	b, err := New("upstream books", Options{MaxRequests: maxRequests, MaxPending: maxPending})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls until cond holds: it waits for goroutines to reach a
// state, never for a fixed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func TestTryAcquireLimits(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, 2, 1)
	for i := range 2 {
		if ok, _ := b.TryAcquire(); !ok {
			t.Fatalf("TryAcquire %d refused under the limit", i)
		}
	}
	if ok, wait := b.TryAcquire(); ok || !wait {
		t.Fatalf("TryAcquire at the limit = %v, %v; want would wait", ok, wait)
	}
	b.Release()
	if ok, _ := b.TryAcquire(); !ok {
		t.Fatal("TryAcquire refused after a Release")
	}
	if s := b.Stats(); s.InFlight != 2 || s.Rejected != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestRefusalWhenPendingFull(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, 1, 1)
	if ok, _ := b.TryAcquire(); !ok {
		t.Fatal("first TryAcquire refused")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- b.Acquire(ctx) }()
	waitFor(t, "the call to wait", func() bool { return b.Stats().Waiting == 1 })

	if ok, wait := b.TryAcquire(); ok || wait {
		t.Fatalf("TryAcquire with waiting places full = %v, %v; want refused", ok, wait)
	}
	err := b.Acquire(context.Background())
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) {
		t.Fatalf("Acquire = %v; want an *OpenError", err)
	}
	if want := "circuit breaker of upstream books is open: 1 calls in flight, 1 waiting"; err.Error() != want {
		t.Errorf("message %q; want %q", err.Error(), want)
	}
	if ce := oe.CallError(); ce.Code != codes.Unavailable || ce.Msg != err.Error() {
		t.Errorf("CallError = %v; want UNAVAILABLE with the message", ce)
	}
	if s := b.Stats(); s.Rejected != 2 {
		t.Errorf("stats %+v; want 2 rejected", s)
	}
	b.Release()
	if err := <-got; err != nil {
		t.Fatalf("waiting Acquire = %v; want the released slot", err)
	}
	b.Release()
	if s := b.Stats(); s.InFlight != 0 || s.Waiting != 0 || s.Waited != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestNoPending(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, 1, -1)
	b.TryAcquire()
	if ok, wait := b.TryAcquire(); ok || wait {
		t.Fatalf("TryAcquire = %v, %v; want refused with no waiting places", ok, wait)
	}
	if err := b.Acquire(context.Background()); !errors.Is(err, ErrOpen) {
		t.Fatalf("Acquire = %v; want ErrOpen", err)
	}
}

// TestAcquireFirstComeFirstServed: waiters get slots in arrival order,
// and TryAcquire does not overtake them.
func TestAcquireFirstComeFirstServed(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, 1, 10)
	b.TryAcquire()
	order := make(chan int, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if err := b.Acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			order <- i
		})
		waitFor(t, "the call to wait", func() bool { return b.Stats().Waiting == int64(i+1) })
	}
	for want := range 3 {
		b.Release()
		if ok, wait := b.TryAcquire(); ok || !wait && want < 2 {
			t.Fatalf("TryAcquire overtook waiters: %v, %v", ok, wait)
		}
		if got := <-order; got != want {
			t.Fatalf("slot went to waiter %d; want %d", got, want)
		}
	}
	wg.Wait()
	b.Release()
	if s := b.Stats(); s.InFlight != 0 || s.Waiting != 0 || s.Waited != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestAcquireCanceled(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, 1, 2)
	b.TryAcquire()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { got <- b.Acquire(ctx) }()
	waitFor(t, "the call to wait", func() bool { return b.Stats().Waiting == 1 })
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v; want context.Canceled", err)
	}
	if s := b.Stats(); s.Waiting != 0 || s.Canceled != 1 || s.InFlight != 1 {
		t.Fatalf("stats %+v; want the canceled call gone from the line", s)
	}
	b.Release()
	if s := b.Stats(); s.InFlight != 0 {
		t.Errorf("stats %+v; want no slot given to the canceled call", s)
	}
	// An already-ended context never takes a slot.
	if err := b.Acquire(ctx); !errors.Is(err, context.Canceled) || b.Stats().InFlight != 0 {
		t.Errorf("Acquire(done ctx) = %v, in flight %d", err, b.Stats().InFlight)
	}
}

// TestConcurrentLimits hammers a breaker from many goroutines with waits,
// cancellations and non-blocking tries (run it with -race): the calls in
// flight never exceed the limit, and every slot comes back.
func TestConcurrentLimits(t *testing.T) {
	t.Parallel()
	const limit = 3
	b := newBreaker(t, limit, 4)
	var inside, peak atomic.Int64
	enter := func() {
		n := inside.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		inside.Add(-1)
		b.Release()
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				switch (g + i) % 3 {
				case 0:
					if ok, _ := b.TryAcquire(); ok {
						enter()
					}
				case 1:
					if b.Acquire(context.Background()) == nil {
						enter()
					}
				case 2:
					ctx, cancel := context.WithCancel(context.Background())
					if i%2 == 0 {
						cancel() // sometimes before, sometimes racing the grant
					}
					go cancel()
					if b.Acquire(ctx) == nil {
						enter()
					}
					cancel()
				}
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Errorf("%d calls in flight at once; want ≤ %d", p, limit)
	}
	if s := b.Stats(); s.InFlight != 0 || s.Waiting != 0 {
		t.Errorf("stats %+v; want every slot back", s)
	}
}

func TestNewRejectsNegative(t *testing.T) {
	t.Parallel()
	if _, err := New("upstream x", Options{MaxRequests: -1}); err == nil {
		t.Error("New with max_requests -1 succeeded")
	}
	b, err := New("upstream x", Options{})
	if err != nil || b.max != DefaultMaxRequests || b.maxPending != DefaultMaxPending {
		t.Errorf("defaults: %v, %+v", err, b)
	}
}

func BenchmarkTryAcquireRelease(b *testing.B) {
	br := newBreaker(b, 1<<20, 0)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := br.TryAcquire(); !ok {
			b.Fatal("refused")
		}
		br.Release()
	}
}

func BenchmarkTryAcquireReleaseParallel(b *testing.B) {
	br := newBreaker(b, 1<<20, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _ := br.TryAcquire(); !ok {
				b.Error("refused")
				return
			}
			br.Release()
		}
	})
}

// BenchmarkAcquireUncontended is Acquire's path when a slot is free.
func BenchmarkAcquireUncontended(b *testing.B) {
	br := newBreaker(b, 1<<20, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		br.Release()
	}
}
