package balance

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a Clock tests move by hand. Advance runs the timers that
// fall due synchronously, in order, on the caller's goroutine (never
// under the balancer's lock, which Advance's callers do not hold).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	f  func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}

// Advance moves the clock by d and runs the timers due by then.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if !t.at.After(c.now) {
			due = append(due, t)
			return true
		}
		return false
	})
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.f()
	}
}

// pending returns the number of timers not yet run or stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// seeded returns a deterministic Rand for single-goroutine tests.
func seeded(seed uint64) func() uint64 {
	return rand.New(rand.NewPCG(seed, seed^0x5eed)).Uint64
}

// specs returns targets 10.0.0.1:80, 10.0.0.2:80, … with the weights.
func specs(weights ...uint32) []Spec {
	out := make([]Spec, len(weights))
	for i, w := range weights {
		out[i] = Spec{Addr: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w}
	}
	return out
}

// newBalancer builds a balancer on a fake clock with a seeded random
// source and closes it when the test ends.
func newBalancer(t *testing.T, s []Spec, o Options) (*Balancer, *fakeClock) {
	t.Helper()
	c := newFakeClock()
	if o.Clock == nil {
		o.Clock = c
	}
	if o.Rand == nil {
		o.Rand = seeded(1)
	}
	b, err := New(s, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(b.Close)
	return b, c
}

// countPicks picks n times with random keys and counts picks per address.
func countPicks(t *testing.T, b *Balancer, n int, avoid *Endpoint) map[string]int {
	t.Helper()
	keys := seeded(99)
	got := map[string]int{}
	for range n {
		e, err := b.Pick(keys(), avoid)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[e.Addr()]++
	}
	return got
}

// chiSquare returns Pearson's statistic of counts against the expected
// shares (weights), in the order of specs.
func chiSquare(s []Spec, got map[string]int) float64 {
	var n, wsum float64
	for _, sp := range s {
		n += float64(got[sp.Addr])
		wsum += float64(sp.Weight)
	}
	var x2 float64
	for _, sp := range s {
		exp := n * float64(sp.Weight) / wsum
		d := float64(got[sp.Addr]) - exp
		x2 += d * d / exp
	}
	return x2
}

// chi2Crit999 holds the 0.999 quantile of the chi-square distribution by
// degrees of freedom: a fair picker exceeds it one time in a thousand,
// and the seeds are fixed, so the tests are deterministic.
var chi2Crit999 = map[int]float64{1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 9: 27.88}

func endpoint(t *testing.T, b *Balancer, addr string) *Endpoint {
	t.Helper()
	e := b.Lookup(addr)
	if e == nil {
		t.Fatalf("no endpoint %s", addr)
	}
	return e
}
