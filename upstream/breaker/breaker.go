package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
)

// Defaults (Envoy's).
const (
	DefaultMaxRequests = 1024
	DefaultMaxPending  = 1024
)

// Options sets a [Breaker]'s limits.
type Options struct {
	// MaxRequests is the number of calls in flight at once. Zero means the
	// default 1024.
	MaxRequests int
	// MaxPending is the number of calls that may wait for a slot when
	// MaxRequests are in flight. Zero means the default 1024; a negative
	// value means none: a call beyond MaxRequests is refused at once.
	MaxPending int
}

// ErrOpen matches every [*OpenError] with errors.Is.
var ErrOpen = errors.New("circuit breaker is open")

// OpenError is the refusal of a call by a full breaker.
type OpenError struct {
	// Name is the breaker's name, e.g. "upstream books".
	Name string
	// InFlight and Waiting are the breaker's counts when it refused.
	InFlight, Waiting int64
}

// Error returns e.g. "circuit breaker of upstream books is open: 100 calls
// in flight, 50 waiting".
func (e *OpenError) Error() string {
	return fmt.Sprintf("circuit breaker of %s is open: %d calls in flight, %d waiting", e.Name, e.InFlight, e.Waiting)
}

// Is reports whether target is [ErrOpen].
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// CallError returns the error to answer the refused call with:
// UNAVAILABLE (HTTP 503) with e's message, which is safe to show clients
// (it names the upstream, not its targets' addresses, when the breaker's
// name does not). It is a refusal (call.Error.Refusal): load shed on
// purpose is an answer, not a failure, and is not logged as one.
func (e *OpenError) CallError() *call.Error {
	return &call.Error{Code: codes.Unavailable, Msg: e.Error(), Cause: e, Refusal: true}
}

// Breaker limits the calls in flight to one upstream or target. Create it
// with [New].
//
// All methods are safe for concurrent use. TryAcquire and Release never
// block and allocate nothing (Release takes a short internal lock only
// when calls are waiting); Acquire blocks only while its call waits for a
// slot.
type Breaker struct {
	name            string
	max, maxPending int64

	inflight atomic.Int64
	waiting  atomic.Int64 // len of the queue; read without the lock

	rejected atomic.Uint64
	waited   atomic.Uint64
	canceled atomic.Uint64

	mu         sync.Mutex
	head, tail *waiter
}

// waiter is one call blocked in Acquire. Guarded by Breaker.mu.
type waiter struct {
	ready      chan struct{}
	granted    bool
	prev, next *waiter
}

// New returns a breaker named name (used in [OpenError] messages, e.g.
// "upstream books" or "target 10.0.0.7:8080 of upstream books") with
// opts. Its only error is a negative MaxRequests.
func New(name string, opts Options) (*Breaker, error) {
	switch {
	case opts.MaxRequests < 0:
		return nil, fmt.Errorf("circuit breaker of %s: max_requests %d is negative", name, opts.MaxRequests)
	case opts.MaxRequests == 0:
		opts.MaxRequests = DefaultMaxRequests
	}
	switch {
	case opts.MaxPending == 0:
		opts.MaxPending = DefaultMaxPending
	case opts.MaxPending < 0:
		opts.MaxPending = 0
	}
	return &Breaker{name: name, max: int64(opts.MaxRequests), maxPending: int64(opts.MaxPending)}, nil
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// tryFast takes a slot if one is free.
func (b *Breaker) tryFast() bool {
	for {
		n := b.inflight.Load()
		if n >= b.max {
			return false
		}
		if b.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// TryAcquire takes a slot without blocking. ok reports that the call may
// go (it must call [Breaker.Release] when it ends). Otherwise wouldWait
// reports that a waiting place is free, so the call may wait in
// [Breaker.Acquire] on a goroutine that is allowed to block; when both
// are false the call is refused ([Breaker.OpenError] describes why) and
// counted in [Stats].Rejected. TryAcquire does not overtake calls already
// waiting: while any waits it answers wouldWait (or a refusal).
//
// TryAcquire never blocks and allocates nothing.
func (b *Breaker) TryAcquire() (ok, wouldWait bool) {
	if b.waiting.Load() == 0 && b.tryFast() {
		return true, false
	}
	if b.waiting.Load() < b.maxPending {
		return false, true
	}
	b.rejected.Add(1)
	return false, false
}

// Acquire takes a slot, waiting in line (first come, first served) while
// MaxRequests calls are in flight and fewer than MaxPending wait. It
// returns nil when the call may go (it must call [Breaker.Release] when
// it ends), an [*OpenError] at once when the waiting places are full too
// (counted in [Stats].Rejected), or ctx's error, wrapped, when ctx ends
// first (then it holds no slot).
func (b *Breaker) Acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wait for circuit breaker of %s: %w", b.name, err)
	}
	if b.waiting.Load() == 0 && b.tryFast() {
		return nil
	}
	b.mu.Lock()
	if b.waiting.Load() >= b.maxPending {
		b.mu.Unlock()
		b.rejected.Add(1)
		return b.OpenError()
	}
	w := &waiter{ready: make(chan struct{})}
	b.pushLocked(w)
	// A slot freed since the fast try, by a Release that saw no waiter,
	// is granted here.
	b.grantLocked()
	b.mu.Unlock()

	select {
	case <-w.ready:
		b.waited.Add(1)
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	if w.granted { // the slot came as ctx ended: give it on
		b.mu.Unlock()
		b.Release()
	} else {
		b.removeLocked(w)
		b.mu.Unlock()
	}
	b.canceled.Add(1)
	return fmt.Errorf("wait for circuit breaker of %s: %w", b.name, ctx.Err())
}

// Release returns a slot taken by TryAcquire or Acquire, handing it to the
// first waiting call if any. Call it exactly once per slot taken. It never
// blocks beyond a short internal lock and allocates nothing.
func (b *Breaker) Release() {
	b.inflight.Add(-1)
	// Acquire enqueues (waiting++) before it tries for a slot, and
	// Release frees a slot before it looks for waiters, so one of the two
	// always sees the other: no waiter sleeps past a free slot.
	if b.waiting.Load() > 0 {
		b.mu.Lock()
		b.grantLocked()
		b.mu.Unlock()
	}
}

// grantLocked gives free slots to waiters, first in line first.
func (b *Breaker) grantLocked() {
	for b.head != nil && b.tryFast() {
		w := b.head
		b.removeLocked(w)
		w.granted = true
		close(w.ready)
	}
}

func (b *Breaker) pushLocked(w *waiter) {
	w.prev = b.tail
	if b.tail != nil {
		b.tail.next = w
	} else {
		b.head = w
	}
	b.tail = w
	b.waiting.Add(1)
}

func (b *Breaker) removeLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		b.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		b.tail = w.prev
	}
	w.prev, w.next = nil, nil
	b.waiting.Add(-1)
}

// OpenError returns the refusal error with the breaker's current counts.
// It allocates; call it only to answer a refused call.
func (b *Breaker) OpenError() *OpenError {
	return &OpenError{Name: b.name, InFlight: b.inflight.Load(), Waiting: b.waiting.Load()}
}

// Stats are a breaker's counts, for metrics and the admin API.
type Stats struct {
	// InFlight and Waiting are the current counts.
	InFlight, Waiting int64
	// Rejected counts refused calls; Waited, calls that got a slot after
	// waiting; Canceled, waits that ended with their context.
	Rejected, Waited, Canceled uint64
}

// Stats returns the breaker's counts.
func (b *Breaker) Stats() Stats {
	return Stats{
		InFlight: b.inflight.Load(),
		Waiting:  b.waiting.Load(),
		Rejected: b.rejected.Load(),
		Waited:   b.waited.Load(),
		Canceled: b.canceled.Load(),
	}
}
