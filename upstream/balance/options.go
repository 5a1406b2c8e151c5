package balance

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Algorithm names how a picker chooses among the available endpoints.
// Every algorithm respects endpoint weights.
type Algorithm uint8

const (
	// RoundRobin (config "round_robin", the default) walks a precomputed
	// smooth weighted schedule with one atomic counter: over any window of
	// picks each endpoint's share follows its weight, with its picks
	// spread out rather than bunched.
	RoundRobin Algorithm = iota
	// LeastRequest (config "least_request") draws two distinct endpoints
	// at random by weight and takes the one with the higher effective
	// weight, weight / (calls in flight + 1), as Envoy does (power of two
	// choices; with equal weights, the one with fewer calls in flight). An
	// idle first draw is kept, so that with little load picks follow the
	// weights.
	LeastRequest
	// RingHash (config "ring_hash") places each endpoint on a consistent
	// hash ring with virtual nodes in proportion to its weight, and maps
	// the pick key to the next point clockwise.
	RingHash
	// Random (config "random") draws an endpoint at random by weight.
	Random
)

var algorithmNames = [...]string{
	RoundRobin:   "round_robin",
	LeastRequest: "least_request",
	RingHash:     "ring_hash",
	Random:       "random",
}

// String returns the algorithm's config name, e.g. "least_request".
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return fmt.Sprintf("Algorithm(%d)", a)
}

// ParseAlgorithm returns the algorithm a config name stands for. The empty
// name means [RoundRobin]. An unknown name is an error that lists the
// known ones.
func ParseAlgorithm(name string) (Algorithm, error) {
	if name == "" {
		return RoundRobin, nil
	}
	for i, n := range algorithmNames {
		if n == name {
			return Algorithm(i), nil
		}
	}
	return 0, fmt.Errorf("unknown balancing algorithm %q (known: %s)", name, strings.Join(algorithmNames[:], ", "))
}

// MaxWeight is the largest endpoint weight.
const MaxWeight = 1000

// Spec describes one target of an upstream, as config or DNS gives it.
type Spec struct {
	// Addr is the target's address, usually host:port. It identifies the
	// endpoint across [Balancer.Update] calls.
	Addr string
	// Weight is the target's share of calls relative to the others, 1 to
	// [MaxWeight]. Zero means 1.
	Weight uint32
}

// Options tunes a [Balancer]. The zero value means the defaults stated on
// each field.
type Options struct {
	// Algorithm chooses the picker. Default [RoundRobin].
	Algorithm Algorithm
	// Health holds the active health check thresholds.
	Health HealthOptions
	// Outlier holds passive outlier ejection settings.
	Outlier OutlierOptions
	// Ring tunes the ring_hash ring.
	Ring RingOptions
	// Clock is the time source and timer factory. Default [SystemClock].
	Clock Clock
	// Rand returns uniformly random 64-bit numbers for the random and
	// least_request pickers and the round-robin starting point. It must be
	// safe for concurrent use, must not block and should not allocate.
	// Default math/rand/v2.Uint64.
	Rand func() uint64
}

// HealthOptions are the thresholds applied to the results an active
// health checker reports through [Balancer.ReportHealth].
type HealthOptions struct {
	// Unhealthy is the number of consecutive failed checks that mark a
	// healthy endpoint unhealthy. Default 2.
	Unhealthy int
	// Healthy is the number of consecutive passed checks that mark an
	// unhealthy endpoint healthy again, and that readmit an ejected one.
	// Default 2.
	Healthy int
}

// OutlierOptions tunes passive outlier ejection, fed by [Endpoint.Done].
// It follows Envoy's consecutive_5xx detector.
type OutlierOptions struct {
	// Disabled turns outlier ejection off.
	Disabled bool
	// ConsecutiveFailures is the number of consecutive failures
	// ([ConnectFailure] or [ServerFailure]) that eject an endpoint.
	// Default 5.
	ConsecutiveFailures int
	// BaseEjectionTime is how long the first ejection lasts; the n-th
	// lasts n times as long (see DecayInterval), capped by
	// MaxEjectionTime. Default 30s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps one ejection's length; it must not be below
	// BaseEjectionTime. Default 300s.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent caps the share of an upstream's endpoints
	// ejected at once, 1 to 100. An ejection happens only if, counting
	// it, at most this percentage of the endpoints would be ejected
	// (Envoy's rule since 1.31): with the default 50, one of two
	// endpoints may be ejected, but the only endpoint of an upstream may
	// not, unless AlwaysEjectOne is set. Default 50.
	MaxEjectionPercent int
	// AlwaysEjectOne lets one endpoint be ejected when none is, whatever
	// MaxEjectionPercent says (Envoy's always_eject_one_host).
	AlwaysEjectOne bool
	// DecayInterval is how often the ejection multiplier drops by one
	// while the endpoint is not ejected, so that an endpoint that
	// recovered for good is ejected for BaseEjectionTime again next time
	// (Envoy's interval does the same). Default 10s.
	DecayInterval time.Duration
}

// RingOptions sizes the ring of the ring_hash picker. The ring holds every
// endpoint of the upstream, available or not; a pick walks clockwise past
// the points of endpoints that are not available, which maps keys exactly
// as a ring of the available endpoints would, without rebuilding the ring
// when availability changes. An endpoint's points depend only on its
// address and its point count, so a key stays on its target while the set
// is stable, and when one of N equal targets leaves only its ~1/N of the
// keys move.
type RingOptions struct {
	// VirtualNodes is the number of ring points per unit of weight, after
	// the weights are divided by their greatest common divisor (so weights
	// 100, 100, 200 make 160, 160 and 320 points). Default 160 (as
	// ketama), which keeps each endpoint's share of keys within a few
	// percent of its weight.
	VirtualNodes int
	// MaxSize caps the ring's points, and so the picker's memory (12
	// bytes a point); a larger ring is scaled down, every endpoint
	// keeping at least one point (point counts then depend on the whole
	// set). Default 262144.
	MaxSize int
}

// Defaults of a zero [Options]. The outlier ones are Envoy's except
// MaxEjectionPercent (Envoy: 10, which ejects nothing from an upstream of
// fewer than ten targets); Envoy has no default health thresholds.
const (
	DefaultUnhealthyThreshold  = 2
	DefaultHealthyThreshold    = 2
	DefaultConsecutiveFailures = 5
	DefaultBaseEjectionTime    = 30 * time.Second
	DefaultMaxEjectionTime     = 300 * time.Second
	DefaultMaxEjectionPercent  = 50
	DefaultDecayInterval       = 10 * time.Second
	DefaultVirtualNodes        = 160
	DefaultMaxRingSize         = 1 << 18
)

// normalize fills in defaults and checks ranges.
func (o Options) normalize() (Options, error) {
	var errs []error
	if int(o.Algorithm) >= len(algorithmNames) {
		errs = append(errs, fmt.Errorf("unknown balancing algorithm %d", o.Algorithm))
	}
	def := func(p *int, d int, name string) {
		switch {
		case *p == 0:
			*p = d
		case *p < 0:
			errs = append(errs, fmt.Errorf("%s %d is negative", name, *p))
		}
	}
	defDur := func(p *time.Duration, d time.Duration, name string) {
		switch {
		case *p == 0:
			*p = d
		case *p < 0:
			errs = append(errs, fmt.Errorf("%s %s is negative", name, *p))
		}
	}
	def(&o.Health.Unhealthy, DefaultUnhealthyThreshold, "unhealthy threshold")
	def(&o.Health.Healthy, DefaultHealthyThreshold, "healthy threshold")
	def(&o.Outlier.ConsecutiveFailures, DefaultConsecutiveFailures, "consecutive_failures")
	def(&o.Outlier.MaxEjectionPercent, DefaultMaxEjectionPercent, "max_ejection_percent")
	defDur(&o.Outlier.BaseEjectionTime, DefaultBaseEjectionTime, "base_ejection_time")
	defDur(&o.Outlier.MaxEjectionTime, DefaultMaxEjectionTime, "max_ejection_time")
	defDur(&o.Outlier.DecayInterval, DefaultDecayInterval, "decay interval")
	def(&o.Ring.VirtualNodes, DefaultVirtualNodes, "ring virtual nodes")
	def(&o.Ring.MaxSize, DefaultMaxRingSize, "ring max size")
	if o.Outlier.MaxEjectionPercent > 100 {
		errs = append(errs, fmt.Errorf("max_ejection_percent %d is over 100", o.Outlier.MaxEjectionPercent))
	}
	if o.Outlier.MaxEjectionTime < o.Outlier.BaseEjectionTime {
		errs = append(errs, fmt.Errorf("max_ejection_time %s is below base_ejection_time %s", o.Outlier.MaxEjectionTime, o.Outlier.BaseEjectionTime))
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	return o, errors.Join(errs...)
}

// checkSpecs validates a target list: non-empty distinct addresses and
// weights up to [MaxWeight]. It returns the weights with 0 read as 1.
func checkSpecs(specs []Spec) ([]uint32, error) {
	var errs []error
	seen := make(map[string]bool, len(specs))
	weights := make([]uint32, len(specs))
	for i, s := range specs {
		switch {
		case s.Addr == "":
			errs = append(errs, fmt.Errorf("target %d: empty address", i))
		case seen[s.Addr]:
			errs = append(errs, fmt.Errorf("target %d: duplicate address %s", i, s.Addr))
		}
		seen[s.Addr] = true
		w := s.Weight
		if w == 0 {
			w = 1
		}
		if w > MaxWeight {
			errs = append(errs, fmt.Errorf("target %s: weight %d is over %d", s.Addr, s.Weight, MaxWeight))
		}
		weights[i] = w
	}
	return weights, errors.Join(errs...)
}
