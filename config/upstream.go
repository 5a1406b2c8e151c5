package config

import (
	"slices"
	"time"
)

// Target is one address of an upstream. In YAML it is a "host:port"
// string (weight 1) or a mapping:
//
//	targets: ["10.0.0.5:9000", {address: "10.0.0.7:9000", weight: 3}]
type Target struct {
	// Address is host:port; the host is an IP address or a DNS name,
	// e.g. "10.0.0.5:9000" or "library.internal:9000". Required; unique
	// within the upstream.
	Address string `yaml:"address"`
	// Weight is the target's share of calls relative to the upstream's
	// other targets: a target of weight 3 takes three times the calls of
	// a target of weight 1. 1 to 1000; default 1. Every address a DNS
	// name resolves to gets the name's weight.
	Weight int `yaml:"weight"`
}

// MaxTargetWeight is the largest [Target.Weight].
const MaxTargetWeight = 1000

// Balancing algorithms, the values of [Upstream.Balance].
const (
	BalanceRoundRobin   = "round_robin"
	BalanceLeastRequest = "least_request"
	BalanceRingHash     = "ring_hash"
	BalanceRandom       = "random"
)

// HealthCheck probes each target of an upstream every Interval. A target
// that fails Unhealthy checks in a row takes no more calls until it
// passes Healthy checks in a row. When no target is healthy, calls are
// spread over all of them rather than refused.
//
//	health_check: {interval: 5s, timeout: 1s, unhealthy: 2, healthy: 2}
type HealthCheck struct {
	// Interval is the time between two checks of a target. Default 5s;
	// it must be longer than Timeout.
	Interval Duration `yaml:"interval"`
	// Timeout is how long one check may take before it counts as failed.
	// Default 1s, or half of Interval when Interval is 2s or shorter;
	// shorter than Interval.
	Timeout Duration `yaml:"timeout"`
	// Unhealthy is the number of failed checks in a row that take a
	// healthy target out. Default 2; at least 1.
	Unhealthy int `yaml:"unhealthy"`
	// Healthy is the number of passed checks in a row that bring an
	// unhealthy target back. Default 2; at least 1.
	Healthy int `yaml:"healthy"`
	// Service is, for gRPC upstreams, the service name sent in the
	// grpc.health.v1.Health/Check request; a check passes when the answer
	// is SERVING. Default "" (the whole server's health). A backend that
	// does not implement the health service (UNIMPLEMENTED) counts as
	// healthy, as in grpc-go. Not allowed with kind http.
	Service string `yaml:"service"`
	// Path is, for http upstreams, the path (and query) of the GET request
	// a check sends, e.g. "/healthz". Required with kind http: no path
	// is right for every backend, and a wrong guess (a 404, or a redirect
	// from "/") would take every target out. Not allowed with kind grpc.
	Path string `yaml:"path"`
	// ExpectedStatuses are, for http upstreams, the HTTP status codes
	// (100 to 599) of a passed check; redirects are not followed.
	// Default [200]. Not allowed with kind grpc.
	ExpectedStatuses []int `yaml:"expected_statuses"`
}

// OutlierDetection ejects a target after ConsecutiveFailures failed calls
// in a row: it takes no calls for a while, then comes back. A failure is
// a call that could not connect or was reset, or that was answered
// UNAVAILABLE (gRPC) or 502, 503 or 504 (http); any other answer resets
// the count. Ejections follow Envoy's consecutive failure detector.
//
//	outlier_detection: {consecutive_failures: 5, base_ejection_time: 30s}
type OutlierDetection struct {
	// ConsecutiveFailures is the number of failed calls in a row that
	// eject a target. Default 5; at least 1.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// BaseEjectionTime is how long a first ejection lasts; the n-th
	// ejection of a target lasts n times as long, up to MaxEjectionTime.
	// Default 30s.
	BaseEjectionTime Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps the length of one ejection. Default 300s, or
	// BaseEjectionTime when that is longer; not less than
	// BaseEjectionTime.
	MaxEjectionTime Duration `yaml:"max_ejection_time"`
	// MaxEjectionPercent caps the share of the upstream's targets ejected
	// at once: a target is ejected only if, counting it, at most this
	// percentage of the targets would be out. With the default 50, one of
	// two targets may be ejected, and the only target of an upstream never
	// is. Default 50; 1 to 100 (to never eject, leave outlier_detection
	// out).
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// Retry says when and how often a failed call is tried again, on another
// target when there is one. It is used for an upstream's retry block and
// for a route's override of it ([Route.EffectiveRetry]); in an override,
// every field left unset (0 or nil) inherits.
//
//	retry: {attempts: 3, on: [connect-failure, unavailable], per_try_timeout: 1s}
//
// A call is retried only while its deadline has time left, while the
// upstream's Budget allows it, and only if it can be sent again: a unary
// call, or a server stream before its first answer message. connect-failure
// and refused-stream prove the backend never ran the call: they are
// retried for every call whose request had not begun to leave the
// gateway. Other failures, and those once the request was on its way, are
// retried only for idempotent calls (see [Route.Idempotent]).
type Retry struct {
	// Attempts is the number of tries of a call, the first included: 1
	// means no retry. 1 to 10; default 3 when a retry block is written
	// (an upstream without one tries once).
	Attempts int `yaml:"attempts" normalize:"omitzero"`
	// On lists the failures that are retried. For both kinds:
	// connect-failure (no connection could be made), refused-stream (the
	// backend refused the HTTP/2 stream before reading it: REFUSED_STREAM,
	// or a GOAWAY that leaves it out), reset (the connection or stream
	// broke before a complete answer) and unavailable (gRPC UNAVAILABLE,
	// HTTP 503). For kind grpc (and selector routes): resource-exhausted
	// and deadline-exceeded (the backend's status, or a try that outlived
	// PerTryTimeout). For kind http (and uri routes): 5xx (any status
	// 500-599) and gateway-error (502, 503, 504, or a try that outlived
	// PerTryTimeout). Default [connect-failure, refused-stream,
	// unavailable]. An empty list retries nothing. The values are Envoy's
	// retry_on names.
	On []string `yaml:"on" normalize:"keepempty"`
	// PerTryTimeout bounds each try; a try that outlives it is cancelled
	// and counts as deadline-exceeded (gRPC) or gateway-error (http).
	// Default: none (each try may use what is left of the call's
	// deadline). "0s" also means none, which lets a route drop the
	// upstream's.
	PerTryTimeout *Duration `yaml:"per_try_timeout"`
	// Backoff is the wait before each retry. Default {base: 25ms, max:
	// 250ms}.
	Backoff *Backoff `yaml:"backoff"`
	// Budget caps the retries of the whole upstream, so that retries
	// cannot multiply the load on a failing backend. Upstreams only; it
	// is shared by every route's calls. Default {percent: 20,
	// min_per_second: 3}.
	Budget *RetryBudget `yaml:"budget"`
}

// Backoff is an exponential backoff with full jitter: before the n-th
// retry the call waits a random time between 0 and min(Max, Base ×
// 2^(n-1)).
type Backoff struct {
	// Base is the upper bound of the first wait. Default 25ms; greater
	// than 0.
	Base Duration `yaml:"base" normalize:"omitzero"`
	// Max caps every wait. Default 250ms, or Base when Base is longer;
	// not less than Base.
	Max Duration `yaml:"max" normalize:"omitzero"`
}

// RetryBudget caps an upstream's retries: at any time, retries in the
// last 10 seconds may be at most Percent percent of the calls in that
// window plus MinPerSecond per second. A retry over the budget is not
// made, and the call fails with the last try's error. The budget is
// counted per gateway instance.
type RetryBudget struct {
	// Percent is the share of calls that may be retried, 0 to 100.
	// Default 20.
	Percent *int `yaml:"percent"`
	// MinPerSecond is the number of retries per second always allowed,
	// whatever the share, so that an upstream with little traffic can
	// still retry. Default 3; 0 or more.
	MinPerSecond *int `yaml:"min_per_second"`
}

// CircuitBreaker caps the load one gateway instance puts on an upstream
// (all its targets together). A call over a cap fails at once with 503 /
// UNAVAILABLE, so that a slow backend makes calls fail fast instead of
// piling up in the gateway.
//
//	circuit_breaker: {max_requests: 1000, max_pending: 100}
//
// Without the block there are no caps: Envoy's implicit 1024 has surprised
// many with 503s under load, and route concurrency-limit plugins exist
// for deliberate caps.
type CircuitBreaker struct {
	// MaxRequests is the number of calls in flight to the upstream
	// (streams count until they end; each retry counts as a call).
	// Default 1000; at least 1.
	MaxRequests int `yaml:"max_requests"`
	// MaxPending is the number of calls that may wait for a connection
	// or a stream (every connection at its HTTP/2 stream limit, or still
	// connecting); more fail at once. Default 100; 0 fails every call
	// that would wait.
	MaxPending *int `yaml:"max_pending"`
}

// Defaults of the upstream resilience settings.
const (
	defaultBalance             = BalanceRoundRobin
	defaultHashOn              = "ip"
	defaultDNSRefresh          = 30 * time.Second
	defaultHealthInterval      = 5 * time.Second
	defaultHealthTimeout       = time.Second
	defaultHealthThreshold     = 2
	defaultConsecutiveFailures = 5
	defaultBaseEjectionTime    = 30 * time.Second
	defaultMaxEjectionTime     = 300 * time.Second
	defaultMaxEjectionPercent  = 50
	defaultRetryAttempts       = 3
	defaultBackoffBase         = 25 * time.Millisecond
	defaultBackoffMax          = 250 * time.Millisecond
	defaultBudgetPercent       = 20
	defaultBudgetMinPerSecond  = 3
	defaultMaxRequests         = 1000
	defaultMaxPending          = 100
)

// Retry conditions, the values of [Retry.On].
var (
	retryOnGRPC = []string{"connect-failure", "refused-stream", "reset", "unavailable", "resource-exhausted", "deadline-exceeded"}
	retryOnHTTP = []string{"connect-failure", "refused-stream", "reset", "unavailable", "5xx", "gateway-error"}
	retryOnAll  = []string{"connect-failure", "refused-stream", "reset", "unavailable", "resource-exhausted", "deadline-exceeded", "5xx", "gateway-error"}
)

// defaultRetryOn returns the default [Retry.On], for both kinds. It is a
// new slice each time: callers may keep it in a config.
func defaultRetryOn() []string {
	return []string{"connect-failure", "refused-stream", "unavailable"}
}

// TargetsOf returns one [Target] of weight 1 per address, for configs
// built in code: Upstream{Targets: config.TargetsOf("127.0.0.1:9000")}.
func TargetsOf(addrs ...string) []Target {
	ts := make([]Target, len(addrs))
	for i, a := range addrs {
		ts[i] = Target{Address: a, Weight: 1}
	}
	return ts
}

// Addresses returns the address of every target, in config order.
func (u *Upstream) Addresses() []string {
	addrs := make([]string, len(u.Targets))
	for i, t := range u.Targets {
		addrs[i] = t.Address
	}
	return addrs
}

// Merge returns r with every field override sets replaced by override's
// value, field by field (Backoff's too); unset fields (0, nil) keep r's.
// On is replaced as a whole. Budget is always r's.
func (r Retry) Merge(override Retry) Retry {
	out := r
	if override.Attempts != 0 {
		out.Attempts = override.Attempts
	}
	if override.On != nil {
		out.On = override.On
	}
	if override.PerTryTimeout != nil {
		out.PerTryTimeout = override.PerTryTimeout
	}
	if o := override.Backoff; o != nil {
		b := Backoff{}
		if r.Backoff != nil {
			b = *r.Backoff
		}
		if o.Base != 0 {
			b.Base = o.Base
		}
		if o.Max != 0 {
			b.Max = o.Max
		}
		out.Backoff = &b
	}
	return out
}

// EffectiveRetry returns the retry settings of this route's calls to an
// upstream whose retry block is up (nil when it has none). The route's
// retry overrides up field by field ([Retry.Merge]); when up is nil the
// route's retry overrides the defaults instead. Unset fields are then
// filled with the defaults, so the result is complete: Attempts ≥ 1, On,
// Backoff and Budget set, PerTryTimeout nil or set ("0s" means none).
//
// When neither the route nor the upstream has a retry block the result
// is Retry{Attempts: 1}: no retry. r may be nil, for calls that no route
// covers: then the upstream's retry applies as is. The result shares
// slices and pointers with the config; treat it as read-only.
func (r *Route) EffectiveRetry(up *Retry) Retry {
	var own *Retry
	if r != nil {
		own = r.Retry
	}
	if own == nil && up == nil {
		return Retry{Attempts: 1}
	}
	var eff Retry
	if up != nil {
		eff = *up
	}
	if own != nil {
		eff = eff.Merge(*own)
	}
	eff.setDefaults()
	return eff
}

// setDefaults fills the unset fields of a retry block.
func (r *Retry) setDefaults() {
	if r.Attempts == 0 {
		r.Attempts = defaultRetryAttempts
	}
	if r.On == nil {
		r.On = defaultRetryOn()
	}
	// Backoff and Budget are copied before they are filled: r may be a
	// copy (EffectiveRetry) whose pointers are the config's.
	if b := r.Backoff; b == nil || b.Base == 0 || b.Max == 0 {
		nb := Backoff{}
		if b != nil {
			nb = *b
		}
		setDuration(&nb.Base, defaultBackoffBase)
		if nb.Max == 0 {
			nb.Max = Duration(max(defaultBackoffMax, nb.Base.Std()))
		}
		r.Backoff = &nb
	}
	if b := r.Budget; b == nil || b.Percent == nil || b.MinPerSecond == nil {
		nb := RetryBudget{}
		if b != nil {
			nb = *b
		}
		if nb.Percent == nil {
			nb.Percent = ptr(defaultBudgetPercent)
		}
		if nb.MinPerSecond == nil {
			nb.MinPerSecond = ptr(defaultBudgetMinPerSecond)
		}
		r.Budget = &nb
	}
}

// setResilienceDefaults fills the unset balancing, health, outlier, retry
// and circuit breaker settings of u. It is idempotent.
func (u *Upstream) setResilienceDefaults() {
	for i := range u.Targets {
		if u.Targets[i].Weight == 0 {
			u.Targets[i].Weight = 1
		}
	}
	if u.Balance == "" {
		u.Balance = defaultBalance
	}
	if u.Balance == BalanceRingHash && u.HashOn == "" {
		u.HashOn = defaultHashOn
	}
	setDuration(&u.DNSRefresh, defaultDNSRefresh)
	if h := u.HealthCheck; h != nil {
		setDuration(&h.Interval, defaultHealthInterval)
		if h.Timeout == 0 {
			// Half the interval when the interval is 2s or shorter, so
			// that health_check: {interval: 1s} is valid as written.
			h.Timeout = Duration(min(defaultHealthTimeout, h.Interval.Std()/2))
		}
		if h.Unhealthy == 0 {
			h.Unhealthy = defaultHealthThreshold
		}
		if h.Healthy == 0 {
			h.Healthy = defaultHealthThreshold
		}
		if u.Kind == "http" && h.ExpectedStatuses == nil {
			h.ExpectedStatuses = []int{200}
		}
	}
	if o := u.OutlierDetection; o != nil {
		if o.ConsecutiveFailures == 0 {
			o.ConsecutiveFailures = defaultConsecutiveFailures
		}
		setDuration(&o.BaseEjectionTime, defaultBaseEjectionTime)
		if o.MaxEjectionTime == 0 {
			o.MaxEjectionTime = Duration(max(defaultMaxEjectionTime, o.BaseEjectionTime.Std()))
		}
		if o.MaxEjectionPercent == 0 {
			o.MaxEjectionPercent = defaultMaxEjectionPercent
		}
	}
	if u.Retry != nil {
		u.Retry.setDefaults()
	}
	if b := u.CircuitBreaker; b != nil {
		if b.MaxRequests == 0 {
			b.MaxRequests = defaultMaxRequests
		}
		if b.MaxPending == nil {
			b.MaxPending = ptr(defaultMaxPending)
		}
	}
}

// retryConditions returns the retry conditions of an upstream kind.
func retryConditions(kind string) []string {
	if kind == "http" {
		return retryOnHTTP
	}
	return retryOnGRPC
}

// isRetryCondition reports whether s is a retry condition of any kind.
func isRetryCondition(s string) bool { return slices.Contains(retryOnAll, s) }
