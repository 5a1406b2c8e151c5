package retry

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strings"
	"time"
)

// Outcome is how one attempt of a call ended, as the integration
// classifies it. See the package documentation for which are retried.
type Outcome uint8

const (
	// Success: the attempt got an answer that is not a failure below
	// (including application errors such as NOT_FOUND or HTTP 404).
	Success Outcome = iota
	// ConnectFailure: no connection to the target (dial, TLS handshake);
	// the call was not sent. Config name "connect_failure".
	ConnectFailure
	// RefusedStream: HTTP/2 RST_STREAM REFUSED_STREAM; the server did not
	// process the stream. Config name "refused_stream".
	RefusedStream
	// GoAway: the connection got a GOAWAY whose last stream id is below
	// the attempt's stream, before the stream started; the server will
	// not process it. Config name "goaway".
	GoAway
	// Reset: the stream was reset (other than REFUSED_STREAM) or the
	// connection broke after the call started. Config name "reset".
	Reset
	// Unavailable: gRPC UNAVAILABLE or HTTP 503. Config name "unavailable".
	Unavailable
	// PerTryTimeout: the attempt's own timeout (Policy.PerTryTimeout)
	// passed before the answer. Config name "per_try_timeout".
	PerTryTimeout
	// ServerError: HTTP 500, 502 or 504 (a 503 is Unavailable). Config
	// name "5xx".
	ServerError
	// Other: any other failure; never retried.
	Other
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	Success:        "success",
	ConnectFailure: "connect_failure",
	RefusedStream:  "refused_stream",
	GoAway:         "goaway",
	Reset:          "reset",
	Unavailable:    "unavailable",
	PerTryTimeout:  "per_try_timeout",
	ServerError:    "5xx",
	Other:          "other",
}

// String returns the outcome's config name, e.g. "refused_stream".
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", o)
}

// notProcessed reports whether o proves the backend did not process the
// call (see the package documentation).
func (o Outcome) notProcessed() bool {
	return o == ConnectFailure || o == RefusedStream || o == GoAway
}

// retryable lists the outcomes a policy may name in RetryOn.
var retryable = []Outcome{ConnectFailure, RefusedStream, GoAway, Reset, Unavailable, PerTryTimeout, ServerError}

// ParseOutcome returns the retryable outcome a config name stands for
// (connect_failure, refused_stream, goaway, reset, unavailable,
// per_try_timeout, 5xx). An unknown name is an error that lists them.
func ParseOutcome(name string) (Outcome, error) {
	names := make([]string, len(retryable))
	for i, o := range retryable {
		if o.String() == name {
			return o, nil
		}
		names[i] = o.String()
	}
	return 0, fmt.Errorf("unknown retry outcome %q (known: %s)", name, strings.Join(names, ", "))
}

// OutcomeSet is a set of outcomes.
type OutcomeSet uint16

// SetOf returns the set of the given outcomes.
func SetOf(os ...Outcome) OutcomeSet {
	var s OutcomeSet
	for _, o := range os {
		s |= 1 << o
	}
	return s
}

// Has reports whether o is in s.
func (s OutcomeSet) Has(o Outcome) bool { return s&(1<<o) != 0 }

// String lists the set's outcomes by config name, e.g. "[reset unavailable]".
func (s OutcomeSet) String() string {
	var names []string
	for o := range numOutcomes {
		if s.Has(o) {
			names = append(names, o.String())
		}
	}
	return "[" + strings.Join(names, " ") + "]"
}

// DefaultRetryOn is the RetryOn of a zero Policy: every outcome but
// ServerError (an HTTP 500 is rarely cured by asking again).
var DefaultRetryOn = SetOf(ConnectFailure, RefusedStream, GoAway, Reset, Unavailable, PerTryTimeout)

// Defaults of a zero Policy.
const (
	DefaultAttempts    = 2
	DefaultBackoffBase = 25 * time.Millisecond
	DefaultBackoffMax  = 250 * time.Millisecond
)

// Policy is a route's retry settings. The zero value means the defaults
// stated on each field. A Policy is a plain value: safe for concurrent
// use as long as nobody writes it.
type Policy struct {
	// Attempts is the total number of tries, the first included: 1 means
	// no retry. Default 2.
	Attempts int
	// RetryOn is the set of outcomes that may be retried. Default
	// [DefaultRetryOn].
	RetryOn OutcomeSet
	// PerTryTimeout bounds each attempt; zero means none (only the call's
	// deadline). Decide does not use it: the integration sets each
	// attempt's deadline to the earlier of this and the call's deadline,
	// and reports [PerTryTimeout] when it passes.
	PerTryTimeout time.Duration
	// BackoffBase and BackoffMax shape the wait before each retry: the
	// n-th retry waits a uniformly random time in [0, min(BackoffMax,
	// BackoffBase·2^(n-1))) ("full jitter"). Defaults 25ms and 250ms
	// (Envoy's).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Rand, when set, replaces math/rand/v2.Uint64 as the jitter's
	// source (tests). It must be safe for concurrent use.
	Rand func() uint64
}

// Validate reports invalid settings: negative counts or durations, a
// BackoffMax below BackoffBase, outcomes that are never retried in
// RetryOn.
func (p *Policy) Validate() error {
	var errs []error
	if p.Attempts < 0 {
		errs = append(errs, fmt.Errorf("attempts %d is negative", p.Attempts))
	}
	if p.PerTryTimeout < 0 || p.BackoffBase < 0 || p.BackoffMax < 0 {
		errs = append(errs, errors.New("per_try_timeout and backoff durations must not be negative"))
	}
	if base, mx := p.base(), p.max(); mx < base {
		errs = append(errs, fmt.Errorf("backoff max %s is below backoff base %s", mx, base))
	}
	if p.RetryOn&SetOf(Success, Other) != 0 || p.RetryOn>>numOutcomes != 0 {
		errs = append(errs, fmt.Errorf("retry_on %s names outcomes that are never retried", p.RetryOn))
	}
	return errors.Join(errs...)
}

func (p *Policy) attempts() int {
	if p.Attempts == 0 {
		return DefaultAttempts
	}
	return p.Attempts
}

func (p *Policy) retryOn() OutcomeSet {
	if p.RetryOn == 0 {
		return DefaultRetryOn
	}
	return p.RetryOn
}

func (p *Policy) base() time.Duration {
	if p.BackoffBase == 0 {
		return DefaultBackoffBase
	}
	return p.BackoffBase
}

func (p *Policy) max() time.Duration {
	if p.BackoffMax == 0 {
		return max(DefaultBackoffMax, p.base())
	}
	return p.BackoffMax
}

// Backoff returns the wait before the n-th retry (n ≥ 1): uniformly
// random in [0, min(BackoffMax, BackoffBase·2^(n-1))). It never blocks and
// allocates nothing.
func (p *Policy) Backoff(n int) time.Duration {
	r := p.Rand
	if r == nil {
		r = rand.Uint64
	}
	return p.backoff(n, r())
}

func (p *Policy) backoff(n int, r uint64) time.Duration {
	limit := p.max()
	if base := p.base(); n >= 1 && n < 63 {
		if c := base << (n - 1); c>>(n-1) == base && c < limit { // no overflow
			limit = c
		}
	}
	if limit <= 0 {
		return 0
	}
	hi, _ := bits.Mul64(r, uint64(limit))
	return time.Duration(hi)
}

// Attempt describes the attempt that just ended.
type Attempt struct {
	// Number is the attempt's number, 1 for the first try.
	Number int
	// Outcome is how it ended.
	Outcome Outcome
	// Sent reports whether any request message left the gateway on this
	// attempt (headers alone do not count).
	Sent bool
	// Idempotent reports whether the method may be run twice: gRPC
	// idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS, HTTP GET, HEAD,
	// OPTIONS, PUT, DELETE.
	Idempotent bool
	// Remaining is the time left before the call's deadline; zero means
	// no deadline, negative that it has passed. A retry whose backoff
	// would not end before the deadline is not made.
	Remaining time.Duration
}

// Reason says why [Policy.Decide] answered as it did, for logs and
// metrics.
type Reason uint8

const (
	// Retrying: the call is to be tried again.
	Retrying Reason = iota
	// Succeeded: the attempt succeeded.
	Succeeded
	// NotRetryable: the outcome is not in RetryOn, or is never retried.
	NotRetryable
	// NotIdempotent: the outcome needs an idempotent method (or, for one
	// that proves the call was not processed, an unsent request).
	NotIdempotent
	// AttemptsExhausted: Attempts tries were made.
	AttemptsExhausted
	// DeadlineTooClose: the backoff would not end before the call's
	// deadline.
	DeadlineTooClose
	// BudgetExhausted: the upstream's retry budget refused.
	BudgetExhausted
)

var reasonNames = [...]string{
	Retrying:          "retrying",
	Succeeded:         "succeeded",
	NotRetryable:      "not_retryable",
	NotIdempotent:     "not_idempotent",
	AttemptsExhausted: "attempts_exhausted",
	DeadlineTooClose:  "deadline_too_close",
	BudgetExhausted:   "budget_exhausted",
}

// String returns the reason's snake_case name, e.g. "budget_exhausted".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// Decision is the answer of [Policy.Decide].
type Decision struct {
	// Retry reports whether to try again.
	Retry bool
	// Backoff is how long to wait first (when Retry).
	Backoff time.Duration
	// Reason says why.
	Reason Reason
}

// Decide answers whether the call whose attempt a just ended may be tried
// again now, and after how long. The checks run in this order: success,
// RetryOn, idempotency (see the package documentation), Attempts, the
// call's deadline against the backoff, and last the budget, so that only a
// retry about to be made spends budget. budget may be nil (no budget);
// otherwise the caller must also call [Budget.Call] once per call.
//
// Decide is safe for concurrent use, never blocks and allocates nothing.
func (p *Policy) Decide(a Attempt, budget *Budget) Decision {
	switch {
	case a.Outcome == Success:
		return Decision{Reason: Succeeded}
	case a.Outcome >= Other || !p.retryOn().Has(a.Outcome):
		return Decision{Reason: NotRetryable}
	case !a.Idempotent && (!a.Outcome.notProcessed() || a.Sent):
		return Decision{Reason: NotIdempotent}
	case a.Number >= p.attempts():
		return Decision{Reason: AttemptsExhausted}
	}
	d := p.Backoff(a.Number)
	if a.Remaining < 0 || a.Remaining > 0 && d >= a.Remaining {
		return Decision{Reason: DeadlineTooClose}
	}
	if budget != nil && !budget.Allow() {
		return Decision{Reason: BudgetExhausted}
	}
	return Decision{Retry: true, Backoff: d, Reason: Retrying}
}
