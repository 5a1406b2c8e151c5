package balance

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Outcome is what one attempt on an endpoint said about that endpoint. It
// feeds outlier ejection; retry decisions use upstream/retry's richer
// outcomes, which the integration maps onto these.
type Outcome uint8

const (
	// Success: the target answered. An application-level error status
	// (HTTP 4xx, gRPC NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED, …)
	// is a Success here: the target worked. It resets the endpoint's
	// consecutive-failure count.
	Success Outcome = iota
	// ConnectFailure: the gateway could not reach the target (dial, TLS
	// handshake, connection refused or reset before any answer). It
	// counts toward ejection. To take the target out of the pick at once,
	// the integration also calls [Balancer.ConnFailed].
	ConnectFailure
	// ServerFailure: the target answered with a server failure (HTTP 5xx,
	// gRPC UNAVAILABLE), reset the stream, or did not answer within the
	// per-try timeout. It counts toward ejection.
	ServerFailure
	// Other: the attempt ended without a verdict on the target (the
	// client canceled, the call's own deadline passed, the gateway gave
	// up before sending). It neither counts nor resets the count.
	Other
)

var outcomeNames = [...]string{Success: "success", ConnectFailure: "connect_failure", ServerFailure: "server_failure", Other: "other"}

// String returns a snake_case name for logs and metrics.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", o)
}

// ConnState is the state of the integration's connection to an endpoint,
// as reported by [Balancer.ConnFailed] and [Balancer.ConnReady].
type ConnState uint8

const (
	// ConnReady: the endpoint may be picked (a new endpoint starts here,
	// since connections are dialed lazily).
	ConnReady ConnState = iota
	// ConnFailure: the last connection attempt failed; the endpoint is out
	// of the pick until [Balancer.ConnReady] (grpc-go's
	// TRANSIENT_FAILURE).
	ConnFailure
)

// String returns "ready" or "transient_failure".
func (s ConnState) String() string {
	switch s {
	case ConnReady:
		return "ready"
	case ConnFailure:
		return "transient_failure"
	}
	return fmt.Sprintf("ConnState(%d)", s)
}

// Endpoint is one target of an upstream with its live state, shared by
// every picker its [Balancer] builds. Endpoints are created by [New] and
// [Balancer.Update]; an Update that keeps an address keeps its *Endpoint.
//
// Its methods are safe for concurrent use; [Endpoint.Start] and
// [Endpoint.Done] never block.
type Endpoint struct {
	addr string
	b    *Balancer

	weight     atomic.Uint32
	inflight   atomic.Int64
	consecFail atomic.Uint32
	// latency estimates the time e takes to answer, in nanoseconds (see
	// ObserveLatency); 0 until the first observation.
	latency atomic.Int64
	ejected atomic.Bool // mirrors ejectedUntil != zero, read by Done without the lock

	// Guarded by b.mu.
	removed      bool
	healthy      bool
	hcPass       int // consecutive passed health checks (since the last failure or ejection)
	hcFail       int // consecutive failed health checks
	conn         ConnState
	ejectedUntil time.Time
	multiplier   int       // ejection multiplier before decay
	unejectedAt  time.Time // when the last ejection ended
	timer        Timer
	timerGen     uint64
}

// Addr returns the endpoint's address.
func (e *Endpoint) Addr() string { return e.addr }

// Weight returns the endpoint's current weight.
func (e *Endpoint) Weight() uint32 { return e.weight.Load() }

// InFlight returns the number of calls started and not yet done.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// ObserveLatency feeds the time e took to answer one call (to its
// response head) into e's latency estimate, which [Balancer.PickNear]
// reads. The estimate tracks how fast e answers when calls do not queue:
// it moves half the way to a faster answer and 1/16 of the way to a
// slower one, so calls that waited behind others (load, which
// least_request weighs by calls in flight) move it little, while a
// target slow on every call shows it from its first answer on.
// Concurrent observations may overwrite one another, which an estimate
// can afford. It never blocks and allocates nothing.
func (e *Endpoint) ObserveLatency(d time.Duration) {
	x := max(int64(d), 1)
	if old := e.latency.Load(); old != 0 {
		if x < old {
			x = old - (old-x)/2
		} else {
			x = old + (x-old)/16
		}
	}
	e.latency.Store(x)
}

// Latency returns e's latency estimate (see [Endpoint.ObserveLatency]),
// 0 before the first observation.
func (e *Endpoint) Latency() time.Duration { return time.Duration(e.latency.Load()) }

// Start records that a call (one attempt) on e has begun. Each Start must
// be matched by exactly one [Endpoint.Done]. least_request reads the
// resulting in-flight count. It never blocks and allocates nothing.
func (e *Endpoint) Start() { e.inflight.Add(1) }

// Done records the end of a call begun with [Endpoint.Start] and what it
// said about e. Consecutive [ConnectFailure]s and [ServerFailure]s feed
// outlier ejection: when their count reaches a multiple of
// OutlierOptions.ConsecutiveFailures, Done takes the balancer's lock to
// eject e (and then may rebuild the picker), so a refused ejection is
// tried again after as many more failures. Otherwise Done is a few atomic
// operations. Failures reported while e is ejected, or after e left the
// balancer, are not counted.
//
// Done is safe for concurrent use and never waits for anything but the
// balancer's own short critical section.
func (e *Endpoint) Done(o Outcome) {
	e.inflight.Add(-1)
	switch o {
	case Success:
		if e.consecFail.Load() != 0 {
			e.consecFail.Store(0)
		}
	case ConnectFailure, ServerFailure:
		th := e.b.failThreshold
		if th == 0 || e.ejected.Load() {
			return
		}
		if n := e.consecFail.Add(1); n%th == 0 {
			e.b.onFailures(e)
		}
	}
}

// available reports whether e may be picked outside panic mode. Called
// with b.mu held.
func (e *Endpoint) available() bool {
	return e.healthy && e.ejectedUntil.IsZero() && e.conn == ConnReady
}

// EndpointState is a copy of one endpoint's state for the admin API.
type EndpointState struct {
	Addr   string
	Weight uint32
	// Healthy is the active health verdict (true when no checker reports).
	Healthy bool
	// EjectedUntil is when the current outlier ejection ends; zero when
	// the endpoint is not ejected.
	EjectedUntil time.Time
	// EjectionMultiplier is the number of recent ejections that the next
	// ejection's length is based on (after decay).
	EjectionMultiplier int
	// ConsecutiveFailures counts failures since the last success.
	ConsecutiveFailures uint32
	InFlight            int64
	// Latency is the estimate of how fast the endpoint answers (see
	// [Endpoint.ObserveLatency]); 0 before the first observation.
	Latency time.Duration
	Conn    ConnState
	// Available reports whether the endpoint takes calls outside panic
	// mode: healthy, not ejected, connection ready.
	Available bool
}
