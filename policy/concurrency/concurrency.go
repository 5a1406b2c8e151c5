package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
)

// Name is the plugin's config name.
const Name = "concurrency-limit"

func init() {
	policy.Register(Name, func(env policy.Env, spec config.Plugin) (policy.Plugin, error) {
		if spec.ConcurrencyLimit == nil {
			return nil, errors.New("concurrency-limit: no settings")
		}
		return New(env, *spec.ConcurrencyLimit)
	})
}

// Limiter is one configured concurrency-limit plugin. It is immutable
// and safe for concurrent use.
//
// It runs in the [policy.Limit] phase like rate-limiting, in config
// order within the phase. List it after rate-limiting: then a call the
// rate limit refuses never takes a slot, and with a Redis rate limit no
// slot is held during the Redis round trip. In the other order it is
// still correct: the chain releases the slot when a later plugin
// refuses ([policy.Chain.Done]) or answers pending ([policy.Chain.TryCheck]).
type Limiter struct {
	max     int64
	slots   *Slots
	refusal string
}

// Slots counts the calls in flight on one route. It outlives config
// snapshots (it lives in [policy.Shared] under the route's name) and is
// the [policy.Releaser] a call holds: Release gives its slot back.
type Slots struct {
	n atomic.Int64
}

// InFlight returns the number of calls holding a slot.
func (s *Slots) InFlight() int64 { return s.n.Load() }

// Release gives back one slot. The chain calls it once per slot taken
// ([policy.Chain.Done] is idempotent).
func (s *Slots) Release() { s.n.Add(-1) }

// acquire takes a slot unless max are taken, without a lock.
func (s *Slots) acquire(max int64) bool {
	for {
		n := s.n.Load()
		if n >= max {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// New builds a concurrency limiter from cfg for the route env.Route. Its
// counter is looked up in env.Shared by the route alone, so a reload
// that changes max keeps counting the calls already in flight (a nil
// Shared gives the limiter a counter of its own).
func New(env policy.Env, cfg config.ConcurrencyLimit) (*Limiter, error) {
	if cfg.Max <= 0 {
		return nil, fmt.Errorf("concurrency-limit: max must be greater than 0, got %d", cfg.Max)
	}
	shared := env.Shared
	if shared == nil {
		shared = &policy.Shared{}
	}
	v, err := shared.Get("concurrency-limit|"+env.Route, func() (any, error) { return &Slots{}, nil })
	if err != nil {
		return nil, err
	}
	refusal := fmt.Sprintf("concurrency limit of %d calls in flight reached on route %s", cfg.Max, env.Route)
	if env.Route == "" {
		refusal = fmt.Sprintf("concurrency limit of %d calls in flight reached", cfg.Max)
	}
	return &Limiter{max: int64(cfg.Max), slots: v.(*Slots), refusal: refusal}, nil
}

// Name returns "concurrency-limit".
func (l *Limiter) Name() string { return Name }

// Phase returns [policy.Limit].
func (l *Limiter) Phase() policy.Phase { return policy.Limit }

// Slots returns the route's counter.
func (l *Limiter) Slots() *Slots { return l.slots }

// Check takes a slot for the call and holds it in st until the chain's
// Done, or refuses with Unavailable when max calls are in flight. It
// never blocks.
func (l *Limiter) Check(_ context.Context, c *call.Call, st *policy.State) *call.Error {
	err, _ := l.TryCheck(c, st)
	return err
}

// TryCheck decides as Check; it is never pending. Allowing allocates
// nothing; a refusal allocates its error.
func (l *Limiter) TryCheck(_ *call.Call, st *policy.State) (*call.Error, bool) {
	if !l.slots.acquire(l.max) {
		return &call.Error{Code: codes.Unavailable, Msg: l.refusal}, false
	}
	st.Hold(l.slots)
	return nil, false
}

var (
	_ policy.Plugin       = (*Limiter)(nil)
	_ policy.LocalChecker = (*Limiter)(nil)
	_ policy.Releaser     = (*Slots)(nil)
)
