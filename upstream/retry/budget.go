package retry

import (
	"fmt"
	"sync/atomic"
	"time"
)

// BudgetOptions tunes a [Budget]. The zero value means the defaults
// stated on each field.
type BudgetOptions struct {
	// Percent is the share of the window's calls that may be retries, on
	// top of MinPerSecond. Zero means the default 20; a negative value
	// means 0 (only MinPerSecond).
	Percent int
	// MinPerSecond is the rate of retries always allowed, however few the
	// calls, so that a quiet upstream can still retry. Zero means the
	// default 3; a negative value means 0.
	MinPerSecond float64
	// Window is the length of the sliding window the counts cover.
	// Default 10s.
	Window time.Duration
	// Now is the time source. Default time.Now.
	Now func() time.Time
}

// Budget defaults (Linkerd's shape: a ratio plus a floor, over a window).
const (
	DefaultBudgetPercent      = 20
	DefaultBudgetMinPerSecond = 3
	DefaultBudgetWindow       = 10 * time.Second
)

// Budget caps an upstream's retries: a retry is allowed only while, over
// the sliding window, retries (counting this one) ≤ Percent% × calls +
// MinPerSecond × Window seconds. With the defaults, 20% of the calls of
// the last 10 seconds plus 30 retries.
//
// The window moves in ten steps of Window/10: the counts cover between
// 0.9 and 1 Window. Counters are lock-free: [Budget.Call] is one
// compare-and-swap, [Budget.Allow] reads twenty words and does one CAS
// when it allows. Two retries racing at the limit may both be allowed, so
// the cap can be passed by the number of concurrent callers.
//
// A Budget is safe for concurrent use; no method blocks or allocates.
type Budget struct {
	percent   float64
	floor     float64 // MinPerSecond × window seconds
	bucketDur time.Duration
	now       func() time.Time
	start     time.Time

	calls   [numBuckets]atomic.Uint64
	retries [numBuckets]atomic.Uint64
	denied  atomic.Uint64
	allowed atomic.Uint64
}

// Each bucket word holds, above countBits bits of count, the low bits of
// the slot number it counts (so a stale bucket is recognized and
// restarted by the first writer of the new slot).
const (
	numBuckets = 10
	countBits  = 40
	tagMask    = 1<<(64-countBits) - 1
	countMask  = 1<<countBits - 1
)

// NewBudget returns a budget with opts. Its only error is a negative
// Window or one under ten nanoseconds.
func NewBudget(opts BudgetOptions) (*Budget, error) {
	if opts.Window < 0 || opts.Window > 0 && opts.Window < numBuckets {
		return nil, fmt.Errorf("retry budget window %s is too short", opts.Window)
	}
	if opts.Window == 0 {
		opts.Window = DefaultBudgetWindow
	}
	switch {
	case opts.Percent == 0:
		opts.Percent = DefaultBudgetPercent
	case opts.Percent < 0:
		opts.Percent = 0
	}
	switch {
	case opts.MinPerSecond == 0:
		opts.MinPerSecond = DefaultBudgetMinPerSecond
	case opts.MinPerSecond < 0:
		opts.MinPerSecond = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Budget{
		percent:   float64(opts.Percent),
		floor:     opts.MinPerSecond * opts.Window.Seconds(),
		bucketDur: opts.Window / numBuckets,
		now:       opts.Now,
	}
	b.start = b.now()
	return b, nil
}

func (b *Budget) slot() uint64 {
	d := b.now().Sub(b.start)
	if d < 0 {
		return 0
	}
	return uint64(d / b.bucketDur)
}

func add(w *atomic.Uint64, slot uint64) {
	tag := slot & tagMask
	for {
		old := w.Load()
		nw := tag<<countBits | 1
		if old>>countBits == tag {
			nw = old + 1
		}
		if w.CompareAndSwap(old, nw) {
			return
		}
	}
}

func sum(ws *[numBuckets]atomic.Uint64, slot uint64) uint64 {
	var n uint64
	for k := uint64(0); k < numBuckets && k <= slot; k++ {
		s := slot - k
		if w := ws[s%numBuckets].Load(); w>>countBits == s&tagMask {
			n += w & countMask
		}
	}
	return n
}

// Call records one call (its first attempt). Call it once per call, not
// per attempt.
func (b *Budget) Call() {
	slot := b.slot()
	add(&b.calls[slot%numBuckets], slot)
}

// Allow reports whether one more retry fits the budget and, when it does,
// records it. [Policy.Decide] calls it; call it directly only when not
// using Decide.
func (b *Budget) Allow() bool {
	slot := b.slot()
	calls, retries := sum(&b.calls, slot), sum(&b.retries, slot)
	if float64(retries+1) > b.percent/100*float64(calls)+b.floor {
		b.denied.Add(1)
		return false
	}
	add(&b.retries[slot%numBuckets], slot)
	b.allowed.Add(1)
	return true
}

// BudgetStats are a budget's counts, for metrics.
type BudgetStats struct {
	// Calls and Retries are the counts in the current window.
	Calls, Retries uint64
	// Denied counts the retries refused since NewBudget; Allowed, those
	// allowed.
	Denied, Allowed uint64
}

// Stats returns the budget's counts.
func (b *Budget) Stats() BudgetStats {
	slot := b.slot()
	return BudgetStats{Calls: sum(&b.calls, slot), Retries: sum(&b.retries, slot), Denied: b.denied.Load(), Allowed: b.allowed.Load()}
}
