package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoEndpoints is returned by [Balancer.Pick] when the upstream has no
// endpoints at all. (When it has endpoints but none is available, Pick
// answers in panic mode instead.)
var ErrNoEndpoints = errors.New("upstream has no endpoints")

// Balancer holds one upstream's endpoints and their state, and picks the
// endpoint of each call. Create it with [New].
//
// All methods are safe for concurrent use. [Balancer.Pick] never blocks,
// does no I/O and allocates nothing. The other methods take a short
// internal lock (a rebuild of the picker runs under it; building a
// ring_hash ring is the costliest, O(points · log points)), never do I/O
// and never call back into the caller.
type Balancer struct {
	opts          Options
	rnd           func() uint64
	failThreshold uint32 // 0 when outlier ejection is disabled

	picker     atomic.Pointer[picker]
	panicPicks atomic.Uint64

	mu               sync.Mutex
	eps              []*Endpoint
	ring             *hashRing // ring_hash only: the ring over eps
	byAddr           map[string]*Endpoint
	nEjected         int
	ejections        uint64
	ejectionsSkipped uint64
	closed           bool
}

// New returns a balancer over specs (which may be empty) with opts. It
// returns an error, naming each problem, when a spec or an option is
// invalid. New starts no goroutine; [Balancer.Close] stops its timers.
func New(specs []Spec, opts Options) (*Balancer, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	b := &Balancer{opts: o, rnd: o.Rand, byAddr: map[string]*Endpoint{}}
	if b.rnd == nil {
		b.rnd = rand.Uint64
	}
	if !o.Outlier.Disabled {
		b.failThreshold = uint32(o.Outlier.ConsecutiveFailures)
	}
	if err := b.Update(specs); err != nil {
		return nil, err
	}
	return b, nil
}

// Algorithm returns the balancer's algorithm.
func (b *Balancer) Algorithm() Algorithm { return b.opts.Algorithm }

// Update replaces the endpoint set with specs (after a DNS re-resolution
// or a config reload). An endpoint whose address is in both sets keeps its
// *Endpoint and all its state (health, ejection, connection state,
// in-flight count) and takes the new weight; new addresses start healthy,
// ready and not ejected; removed endpoints leave every future pick, and
// reports about them are ignored (calls in flight on them may still call
// Done). An invalid spec list is an error and changes nothing.
func (b *Balancer) Update(specs []Spec) error {
	weights, err := checkSpecs(specs)
	if err != nil {
		return fmt.Errorf("update targets: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := make([]*Endpoint, len(specs))
	byAddr := make(map[string]*Endpoint, len(specs))
	for i, s := range specs {
		e := b.byAddr[s.Addr]
		if e == nil {
			e = &Endpoint{addr: s.Addr, b: b, healthy: true}
		}
		e.weight.Store(weights[i])
		next[i] = e
		byAddr[s.Addr] = e
	}
	for _, e := range b.eps {
		if byAddr[e.addr] == nil {
			e.removed = true
			if !e.ejectedUntil.IsZero() {
				b.nEjected--
			}
			b.stopTimerLocked(e)
		}
	}
	b.eps, b.byAddr = next, byAddr
	if b.opts.Algorithm == RingHash && (b.ring == nil || !b.ring.matches(next)) {
		b.ring = newHashRing(next, b.opts.Ring)
	}
	b.rebuildLocked()
	return nil
}

// Pick returns the endpoint for the next call, and does not start it (see
// [Endpoint.Start]). key is used by ring_hash only: the caller hashes what
// the route names (a header, a claim, the consumer, the client address)
// into it, and Pick mixes it once more, so small or sequential keys are
// fine; a caller with nothing to hash passes a random key. avoid, when not
// nil, is an endpoint Pick should not return (the target a failed attempt
// just used): Pick returns another when one is in the picker, and avoid
// itself only when it is the only choice.
//
// When no endpoint is available (all unhealthy, ejected or failed) Pick
// chooses among all endpoints (panic mode) and counts the pick in
// [Stats].PanicPicks. Its only error is [ErrNoEndpoints].
//
// Pick never blocks, does no I/O, allocates nothing and may be called
// concurrently with every other method.
func (b *Balancer) Pick(key uint64, avoid *Endpoint) (*Endpoint, error) {
	p, err := b.current()
	if err != nil {
		return nil, err
	}
	return p.pick(key, avoid, b.rnd), nil
}

// PickNear is [Balancer.Pick], with nothing to avoid, for a call that
// arrived together with others whose previous one went to prefer (nil
// for the first): calls that reach the gateway in one read of a
// connection. Under least_request it keeps prefer while prefer is still
// a candidate, answers about as fast as the power of two choices' winner
// (its latency estimate, [Endpoint.ObserveLatency], at most three times
// the winner's or within a millisecond of it; both measured) and carries
// at most [NearSlack] calls in flight more than the winner (both weighed
// by their weights). So such calls travel to one target together, in
// one write, instead of being spread one by one over every target's
// connection. Across arrivals the picks are least_request's. The other
// algorithms ignore prefer: round_robin's order, random's draw and
// ring_hash's key are kept exactly.
//
// Like Pick it never blocks, does no I/O and allocates nothing.
func (b *Balancer) PickNear(key uint64, prefer *Endpoint) (*Endpoint, error) {
	p, err := b.current()
	if err != nil {
		return nil, err
	}
	if p.alg != LeastRequest || prefer == nil || len(p.eps) == 1 {
		return p.pick(key, nil, b.rnd), nil
	}
	return p.pickNear(prefer, b.rnd), nil
}

// current returns the picker a pick uses, counting the pick when the
// picker is in panic mode.
func (b *Balancer) current() (*picker, error) {
	p := b.picker.Load()
	if p == nil || len(p.eps) == 0 {
		return nil, ErrNoEndpoints
	}
	if p.panic {
		b.panicPicks.Add(1)
	}
	return p, nil
}

// Endpoints returns the current endpoints, in the order of the last
// [Balancer.Update]; a health checker walks it. It allocates a new slice.
func (b *Balancer) Endpoints() []*Endpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Endpoint(nil), b.eps...)
}

// Lookup returns the current endpoint with address addr, or nil.
func (b *Balancer) Lookup(addr string) *Endpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byAddr[addr]
}

// ReportHealth records the result of one active health check of e.
// HealthOptions.Unhealthy consecutive failures mark a healthy endpoint
// unhealthy; HealthOptions.Healthy consecutive passes mark an unhealthy
// one healthy again and readmit an endpoint that outlier detection ejected
// (Envoy's successful_active_health_check_uneject_host), counting only
// passes since the ejection. Endpoints start healthy, so an upstream
// without a checker is always healthy. Reports about an endpoint no longer
// in the balancer are ignored.
func (b *Balancer) ReportHealth(e *Endpoint, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ownsLocked(e) {
		return
	}
	changed := false
	if ok {
		e.hcFail = 0
		e.hcPass++
		if e.hcPass >= b.opts.Health.Healthy {
			if !e.healthy {
				e.healthy = true
				changed = true
			}
			if !e.ejectedUntil.IsZero() {
				b.unejectLocked(e)
				changed = true
			}
		}
	} else {
		e.hcPass = 0
		e.hcFail++
		if e.healthy && e.hcFail >= b.opts.Health.Unhealthy {
			e.healthy = false
			changed = true
		}
	}
	if changed {
		b.rebuildLocked()
	}
}

// ConnFailed records that the integration's connection to e failed: e
// leaves the pick at once, before any health check or outlier count would
// notice, until [Balancer.ConnReady]. Failed calls must still be reported
// through [Endpoint.Done].
func (b *Balancer) ConnFailed(e *Endpoint) { b.setConn(e, ConnFailure) }

// ConnReady records that the integration connected to e again (it redials
// with backoff on its own): e returns to the pick if it is healthy and not
// ejected.
func (b *Balancer) ConnReady(e *Endpoint) { b.setConn(e, ConnReady) }

func (b *Balancer) setConn(e *Endpoint, s ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ownsLocked(e) || e.conn == s {
		return
	}
	e.conn = s
	b.rebuildLocked()
}

// Stats are a balancer's counters since [New].
type Stats struct {
	// Ejections counts outlier ejections.
	Ejections uint64
	// EjectionsSkipped counts ejections refused by
	// OutlierOptions.MaxEjectionPercent.
	EjectionsSkipped uint64
	// PanicPicks counts picks made while no endpoint was available.
	PanicPicks uint64
	// Ejected is the number of endpoints ejected now.
	Ejected int
	// Panic reports whether the current picker is in panic mode.
	Panic bool
}

// Stats returns the balancer's counters.
func (b *Balancer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{
		Ejections:        b.ejections,
		EjectionsSkipped: b.ejectionsSkipped,
		PanicPicks:       b.panicPicks.Load(),
		Ejected:          b.nEjected,
	}
	if p := b.picker.Load(); p != nil {
		s.Panic = p.panic
	}
	return s
}

// Snapshot returns a copy of every endpoint's state, in the order of the
// last [Balancer.Update], for the admin API.
func (b *Balancer) Snapshot() []EndpointState {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.opts.Clock.Now()
	out := make([]EndpointState, len(b.eps))
	for i, e := range b.eps {
		out[i] = EndpointState{
			Addr:                e.addr,
			Weight:              e.weight.Load(),
			Healthy:             e.healthy,
			EjectedUntil:        e.ejectedUntil,
			EjectionMultiplier:  b.multiplierLocked(e, now),
			ConsecutiveFailures: e.consecFail.Load(),
			InFlight:            e.inflight.Load(),
			Latency:             time.Duration(e.latency.Load()),
			Conn:                e.conn,
			Available:           e.available(),
		}
	}
	return out
}

// Close stops the ejection timers. Later state changes are ignored; Pick
// keeps answering from the last picker. Close is idempotent.
func (b *Balancer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, e := range b.eps {
		b.stopTimerLocked(e)
	}
}

func (b *Balancer) ownsLocked(e *Endpoint) bool {
	return e != nil && e.b == b && !e.removed && !b.closed
}

// onFailures runs when e's consecutive-failure count reached a multiple of
// the threshold: it ejects e if the max-percent rule allows.
func (b *Balancer) onFailures(e *Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ownsLocked(e) || !e.ejectedUntil.IsZero() || e.consecFail.Load() < b.failThreshold {
		return // a success reset the count meanwhile, or another failure ejected e
	}
	if !b.ejectLocked(e) {
		return
	}
	b.rebuildLocked()
}

// ejectLocked ejects e if OutlierOptions.MaxEjectionPercent allows: at
// most that share of all endpoints, counting this one, may be ejected at
// once; AlwaysEjectOne lets the first one through regardless.
func (b *Balancer) ejectLocked(e *Endpoint) bool {
	o := b.opts.Outlier
	n := len(b.eps)
	if (b.nEjected+1)*100 > o.MaxEjectionPercent*n && !(o.AlwaysEjectOne && b.nEjected == 0) {
		b.ejectionsSkipped++
		return false
	}
	now := b.opts.Clock.Now()
	m := b.multiplierLocked(e, now) + 1
	if maxM := int((o.MaxEjectionTime + o.BaseEjectionTime - 1) / o.BaseEjectionTime); m > maxM {
		m = maxM // beyond it the length is capped anyway; keeps decay short
	}
	e.multiplier = m
	d := time.Duration(m) * o.BaseEjectionTime
	if d > o.MaxEjectionTime {
		d = o.MaxEjectionTime
	}
	e.ejectedUntil = now.Add(d)
	e.ejected.Store(true)
	e.consecFail.Store(0)
	e.hcPass = 0 // readmission needs Healthy passes after the ejection
	b.nEjected++
	b.ejections++
	b.stopTimerLocked(e)
	gen := e.timerGen
	e.timer = b.opts.Clock.AfterFunc(d, func() { b.ejectionEnded(e, gen) })
	return true
}

// multiplierLocked returns e's ejection multiplier at now: while e is not
// ejected it drops by one per DecayInterval since the last ejection ended.
func (b *Balancer) multiplierLocked(e *Endpoint, now time.Time) int {
	m := e.multiplier
	if m == 0 || !e.ejectedUntil.IsZero() || e.unejectedAt.IsZero() {
		return m
	}
	if k := now.Sub(e.unejectedAt) / b.opts.Outlier.DecayInterval; k > 0 {
		m = max(0, m-int(min(k, time.Duration(m))))
	}
	return m
}

// ejectionEnded is the ejection timer's callback.
func (b *Balancer) ejectionEnded(e *Endpoint, gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ownsLocked(e) || e.timerGen != gen || e.ejectedUntil.IsZero() {
		return // stale timer: readmitted, re-ejected or removed meanwhile
	}
	b.unejectLocked(e)
	b.rebuildLocked()
}

func (b *Balancer) unejectLocked(e *Endpoint) {
	// The multiplier stays; it decays from now on (multiplierLocked).
	e.ejectedUntil = time.Time{}
	e.unejectedAt = b.opts.Clock.Now()
	e.ejected.Store(false)
	e.consecFail.Store(0)
	b.nEjected--
	b.stopTimerLocked(e)
}

func (b *Balancer) stopTimerLocked(e *Endpoint) {
	e.timerGen++
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

// rebuildLocked stores a new picker when the available set (or a weight)
// changed since the current one was built.
func (b *Balancer) rebuildLocked() {
	avail := make([]*Endpoint, 0, len(b.eps))
	for _, e := range b.eps {
		if e.available() {
			avail = append(avail, e)
		}
	}
	panicMode := false
	if len(avail) == 0 && len(b.eps) > 0 {
		avail = append(avail, b.eps...)
		panicMode = true
	}
	if old := b.picker.Load(); old != nil && old.same(avail, panicMode, b.ring) {
		return
	}
	b.picker.Store(buildPicker(b.opts, avail, panicMode, b.ring, b.rnd()))
}
