// Package gctune keeps the garbage collector from running too often when
// the live heap is small.
//
// Go starts a collection when the heap has grown by GOGC percent (100)
// over what the last one left live, and at 4 MiB at the least. A gateway
// keeps little live (a few MiB: routes, descriptors, pools) and allocates
// a few KiB per request, so at tens of thousands of requests a second it
// collected dozens of times a second, a tenth of its CPU. The tuner
// raises GOGC after each collection so that the next one waits until the
// heap reaches a floor (MinHeap), and lowers it back to 100 once the live
// heap alone is half the floor, so that a large live heap (a big response
// cache) grows by GOGC's usual share and no more. The cost is memory the
// process may hold between collections: at most the floor.
//
// This is the technique of Uber's GOGC tuner; the floor is a heap size,
// not a limit (GOMEMLIMIT, when set, still applies). A GOGC set in the
// environment is the operator's choice: the tuner then does nothing.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// MinHeap is the default heap floor: 32 MiB.
const MinHeap = 32 << 20

// maxPercent bounds the GOGC the tuner sets.
const maxPercent = 1000

// Tuner adjusts GOGC after every collection until stopped.
type Tuner struct {
	floor   uint64
	stopped atomic.Bool
	percent atomic.Int64 // what it set last
	sample  []metrics.Sample
}

// Start starts a tuner for a heap floor of floor bytes, unless GOGC is
// set in the environment (then it returns nil). Stop it with Stop.
func Start(floor uint64) *Tuner {
	if _, set := os.LookupEnv("GOGC"); set {
		return nil
	}
	t := &Tuner{floor: floor, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.adjust()
	t.arm()
	return t
}

// Percent returns the GOGC the tuner set last.
func (t *Tuner) Percent() int { return int(t.percent.Load()) }

// Stop stops tuning and puts GOGC back to 100.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(100)
}

// sentinel is an object that lives until the next collection: its cleanup
// runs after it, once per cycle. Its pointer field keeps it out of the
// tiny allocator, whose blocks hold several objects and can outlive a
// cycle.
type sentinel struct{ _ *Tuner }

func (t *Tuner) arm() {
	runtime.AddCleanup(&sentinel{}, func(t *Tuner) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	}, t)
}

// adjust sets GOGC from the live heap the last collection left.
func (t *Tuner) adjust() {
	metrics.Read(t.sample)
	live := uint64(0)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	p := Percent(live, t.floor)
	if t.stopped.Load() {
		return
	}
	t.percent.Store(int64(p))
	debug.SetGCPercent(p)
}

// Percent is the GOGC for a live heap of live bytes and a floor: the
// percent that lets the heap reach the floor before the next collection,
// between 100 and 1000, and 100 once live is half the floor or more.
func Percent(live, floor uint64) int {
	if live == 0 || live >= floor/2 {
		return 100
	}
	p := (floor - live) * 100 / live
	return int(min(max(p, 100), maxPercent))
}
