package retry

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNow is a clock tests move by hand.
type fakeNow struct{ ns atomic.Int64 }

func (f *fakeNow) Now() time.Time          { return time.Unix(0, f.ns.Load()) }
func (f *fakeNow) Advance(d time.Duration) { f.ns.Add(int64(d)) }
func newBudget(t testing.TB, o BudgetOptions) (*Budget, *fakeNow) {
	t.Helper()
	clk := &fakeNow{}
	clk.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	o.Now = clk.Now
	b, err := NewBudget(o)
	if err != nil {
		t.Fatal(err)
	}
	return b, clk
}

func TestParseOutcome(t *testing.T) {
	t.Parallel()
	for _, o := range retryable {
		if got, err := ParseOutcome(o.String()); err != nil || got != o {
			t.Errorf("ParseOutcome(%q) = %v, %v; want %v", o.String(), got, err, o)
		}
	}
	_, err := ParseOutcome("success")
	if err == nil || !strings.Contains(err.Error(), "known: connect_failure, refused_stream, goaway, reset, unavailable, per_try_timeout, 5xx") {
		t.Errorf("ParseOutcome(success) error = %v; want one listing the retryable names", err)
	}
	if s := SetOf(Reset, ServerError).String(); s != "[reset 5xx]" {
		t.Errorf("set String = %q", s)
	}
}

// TestDecideSafety is the outcome × sent × idempotent table of the
// package documentation.
func TestDecideSafety(t *testing.T) {
	t.Parallel()
	all := SetOf(retryable...)
	for _, o := range []Outcome{Success, ConnectFailure, RefusedStream, GoAway, Reset, Unavailable, PerTryTimeout, ServerError, Other} {
		for _, sent := range []bool{false, true} {
			for _, idem := range []bool{false, true} {
				name := fmt.Sprintf("%s/sent=%v/idempotent=%v", o, sent, idem)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					p := Policy{Attempts: 3, RetryOn: all}
					d := p.Decide(Attempt{Number: 1, Outcome: o, Sent: sent, Idempotent: idem}, nil)
					var want Reason
					switch {
					case o == Success:
						want = Succeeded
					case o == Other:
						want = NotRetryable
					case idem:
						want = Retrying
					case (o == ConnectFailure || o == RefusedStream || o == GoAway) && !sent:
						want = Retrying
					default:
						want = NotIdempotent
					}
					if d.Reason != want || d.Retry != (want == Retrying) {
						t.Errorf("Decide = %+v; want %s", d, want)
					}
				})
			}
		}
	}
}

func TestDecideLimits(t *testing.T) {
	t.Parallel()
	half := func() uint64 { return math.MaxUint64 / 2 } // backoff = limit/2
	cases := []struct {
		name   string
		policy Policy
		a      Attempt
		want   Reason
	}{
		{name: "default attempts allow one retry", a: Attempt{Number: 1, Outcome: Unavailable, Idempotent: true}, want: Retrying},
		{name: "default attempts stop at two", a: Attempt{Number: 2, Outcome: Unavailable, Idempotent: true}, want: AttemptsExhausted},
		{name: "attempts 1 means no retry", policy: Policy{Attempts: 1}, a: Attempt{Number: 1, Outcome: ConnectFailure}, want: AttemptsExhausted},
		{name: "attempts 4 allow a third retry", policy: Policy{Attempts: 4}, a: Attempt{Number: 3, Outcome: ConnectFailure}, want: Retrying},
		{name: "5xx is not in the default set", a: Attempt{Number: 1, Outcome: ServerError, Idempotent: true}, want: NotRetryable},
		{name: "custom set", policy: Policy{RetryOn: SetOf(ServerError)}, a: Attempt{Number: 1, Outcome: ServerError, Idempotent: true}, want: Retrying},
		{name: "custom set leaves others out", policy: Policy{RetryOn: SetOf(ServerError)}, a: Attempt{Number: 1, Outcome: ConnectFailure}, want: NotRetryable},
		// Backoff of retry 1 is 12.5ms with half: 25ms base.
		{name: "deadline after backoff", policy: Policy{Rand: half}, a: Attempt{Number: 1, Outcome: ConnectFailure, Remaining: 13 * time.Millisecond}, want: Retrying},
		{name: "deadline before backoff ends", policy: Policy{Rand: half}, a: Attempt{Number: 1, Outcome: ConnectFailure, Remaining: 12 * time.Millisecond}, want: DeadlineTooClose},
		{name: "deadline passed", a: Attempt{Number: 1, Outcome: ConnectFailure, Remaining: -time.Millisecond}, want: DeadlineTooClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if d := c.policy.Decide(c.a, nil); d.Reason != c.want || d.Retry != (c.want == Retrying) {
				t.Errorf("Decide = %+v; want %s", d, c.want)
			}
		})
	}
}

// TestDecideSpendsBudgetLast: only a retry about to be made spends
// budget, and an exhausted budget refuses.
func TestDecideSpendsBudgetLast(t *testing.T) {
	t.Parallel()
	b, _ := newBudget(t, BudgetOptions{Percent: -1, MinPerSecond: 0.1}) // floor: 1 retry per 10s window
	p := Policy{Attempts: 3}
	if d := p.Decide(Attempt{Number: 3, Outcome: ConnectFailure}, b); d.Reason != AttemptsExhausted {
		t.Fatalf("Decide = %+v", d)
	}
	if d := p.Decide(Attempt{Number: 1, Outcome: Reset}, b); d.Reason != NotIdempotent {
		t.Fatalf("Decide = %+v", d)
	}
	if s := b.Stats(); s.Retries != 0 || s.Denied != 0 {
		t.Fatalf("budget spent by refused decisions: %+v", s)
	}
	if d := p.Decide(Attempt{Number: 1, Outcome: ConnectFailure}, b); !d.Retry {
		t.Fatalf("Decide = %+v; want a retry", d)
	}
	if d := p.Decide(Attempt{Number: 1, Outcome: ConnectFailure}, b); d.Reason != BudgetExhausted {
		t.Fatalf("Decide = %+v; want budget_exhausted", d)
	}
	if s := b.Stats(); s.Retries != 1 || s.Denied != 1 {
		t.Errorf("stats %+v; want 1 retry, 1 denied", s)
	}
}

// TestBackoffBounds: the n-th retry waits in [0, min(max, base·2^(n-1))),
// reaching close to the cap and averaging half of it (full jitter).
func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	p := Policy{BackoffBase: 10 * time.Millisecond, BackoffMax: 300 * time.Millisecond, Rand: rand.New(rand.NewPCG(1, 2)).Uint64}
	for n, limit := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 5: 160, 6: 300, 7: 300, 64: 300, 1000: 300} {
		limit *= time.Millisecond
		var sum, top time.Duration
		const samples = 20_000
		for range samples {
			d := p.Backoff(n)
			if d < 0 || d >= limit {
				t.Fatalf("retry %d: backoff %v outside [0, %v)", n, d, limit)
			}
			sum += d
			top = max(top, d)
		}
		if top < limit*99/100 {
			t.Errorf("retry %d: largest backoff %v; want close to %v", n, top, limit)
		}
		if mean := sum / samples; mean < limit*47/100 || mean > limit*53/100 {
			t.Errorf("retry %d: mean backoff %v; want about %v", n, mean, limit/2)
		}
	}
	if d := p.backoff(1, math.MaxUint64); d != 10*time.Millisecond-1 {
		t.Errorf("largest draw gives %v; want just under 10ms", d)
	}
	if d := p.backoff(1, 0); d != 0 {
		t.Errorf("smallest draw gives %v; want 0", d)
	}
	var zero Policy
	if d := zero.backoff(3, math.MaxUint64); d != 100*time.Millisecond-1 {
		t.Errorf("default backoff of retry 3 = %v; want under 25ms·4", d)
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		p    Policy
		want string
	}{
		"zero is valid":     {p: Policy{}},
		"negative attempts": {p: Policy{Attempts: -1}, want: "attempts -1 is negative"},
		"max below base":    {p: Policy{BackoffBase: time.Second, BackoffMax: time.Millisecond}, want: "backoff max 1ms is below backoff base 1s"},
		"success in set":    {p: Policy{RetryOn: SetOf(Success, Reset)}, want: "never retried"},
		"negative duration": {p: Policy{PerTryTimeout: -1}, want: "must not be negative"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := c.p.Validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Validate = %v; want %q", err, c.want)
			}
		})
	}
}

// TestBudgetMath checks retries ≤ percent% × calls + min_per_second ×
// window.
func TestBudgetMath(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		opts        BudgetOptions
		calls       int
		wantAllowed int
	}{
		{name: "defaults with no calls: the floor", calls: 0, wantAllowed: 30},
		{name: "defaults with 100 calls", calls: 100, wantAllowed: 50},
		{name: "ratio only", opts: BudgetOptions{MinPerSecond: -1}, calls: 100, wantAllowed: 20},
		{name: "ratio only, 7 calls", opts: BudgetOptions{MinPerSecond: -1}, calls: 7, wantAllowed: 1},
		{name: "floor only", opts: BudgetOptions{Percent: -1, MinPerSecond: 2, Window: 5 * time.Second}, calls: 1000, wantAllowed: 10},
		{name: "fifty percent", opts: BudgetOptions{Percent: 50, MinPerSecond: -1}, calls: 9, wantAllowed: 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b, _ := newBudget(t, c.opts)
			for range c.calls {
				b.Call()
			}
			allowed := 0
			for range c.wantAllowed + 10 {
				if b.Allow() {
					allowed++
				}
			}
			if allowed != c.wantAllowed {
				t.Errorf("allowed %d retries; want %d", allowed, c.wantAllowed)
			}
			if s := b.Stats(); s.Calls != uint64(c.calls) || s.Retries != uint64(allowed) || s.Denied != 10 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestBudgetWindowSlides: calls and retries leave the counts a window
// later, bucket by bucket.
func TestBudgetWindowSlides(t *testing.T) {
	t.Parallel()
	b, clk := newBudget(t, BudgetOptions{MinPerSecond: -1}) // 20% of calls, 10s window in 1s buckets
	for range 50 {
		b.Call()
	}
	clk.Advance(5 * time.Second)
	for range 50 {
		b.Call()
	}
	for range 20 {
		if !b.Allow() {
			t.Fatal("retry refused within 20% of 100 calls")
		}
	}
	if b.Allow() {
		t.Fatal("21st retry allowed for 100 calls")
	}
	clk.Advance(5 * time.Second) // the first 50 calls leave; 20 retries stay
	if s := b.Stats(); s.Calls != 50 || s.Retries != 20 {
		t.Fatalf("stats %+v; want 50 calls, 20 retries", s)
	}
	if b.Allow() {
		t.Fatal("retry allowed with 20 retries for 50 calls")
	}
	clk.Advance(5 * time.Second) // everything left
	if s := b.Stats(); s.Calls != 0 || s.Retries != 0 {
		t.Fatalf("stats %+v; want an empty window", s)
	}
	b.Call()
	b.Call()
	b.Call()
	b.Call()
	b.Call()
	if !b.Allow() {
		t.Fatal("retry refused for 5 calls in a fresh window")
	}
	// A bucket reused ten slots later is restarted, not added to.
	clk.Advance(10 * time.Second)
	b.Call()
	if s := b.Stats(); s.Calls != 1 {
		t.Fatalf("stats %+v; want 1 call", s)
	}
}

// TestBudgetConcurrent runs Call and Allow from many goroutines (run it
// with -race): no call is lost, and the overshoot stays below the number
// of goroutines.
func TestBudgetConcurrent(t *testing.T) {
	t.Parallel()
	b, _ := newBudget(t, BudgetOptions{MinPerSecond: -1})
	const goroutines, calls = 8, 5_000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for i := range calls {
				b.Call()
				if i%2 == 0 {
					b.Allow()
				}
			}
		})
	}
	wg.Wait()
	s := b.Stats()
	if s.Calls != goroutines*calls {
		t.Errorf("calls %d; want %d", s.Calls, goroutines*calls)
	}
	if limit := uint64(goroutines * calls / 5); s.Retries > limit+goroutines {
		t.Errorf("retries %d; want ≤ %d + %d racing", s.Retries, limit, goroutines)
	}
	if s.Retries+s.Denied != goroutines*calls/2 {
		t.Errorf("retries %d + denied %d; want %d asked", s.Retries, s.Denied, goroutines*calls/2)
	}
}

func TestNewBudgetRejectsBadWindow(t *testing.T) {
	t.Parallel()
	for _, w := range []time.Duration{-time.Second, 5} {
		if _, err := NewBudget(BudgetOptions{Window: w}); err == nil {
			t.Errorf("NewBudget(window %v) succeeded", w)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	budget, _ := newBudget(b, BudgetOptions{Percent: 100, MinPerSecond: 1e12})
	p := Policy{Attempts: 3}
	a := Attempt{Number: 1, Outcome: Unavailable, Idempotent: true, Remaining: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(a, budget); !d.Retry {
			b.Fatal(d)
		}
	}
}

func BenchmarkBudgetCall(b *testing.B) {
	budget, err := NewBudget(BudgetOptions{}) // real clock
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			budget.Call()
		}
	})
}

func BenchmarkBudgetAllow(b *testing.B) {
	budget, err := NewBudget(BudgetOptions{Percent: 100, MinPerSecond: 1e12})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			budget.Allow()
		}
	})
}
