package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

var (
	balances    = []string{BalanceRoundRobin, BalanceLeastRequest, BalanceRingHash, BalanceRandom}
	hashOnForms = []string{"header:<name>", "claim:<name>", "consumer", "ip"}
)

const (
	maxRetryAttempts = 10
	minDNSRefresh    = time.Second
)

// targets checks an upstream's targets: at least one, each a valid
// host:port of weight 1 to 1000, none listed twice.
func (v *validator) targets(p string, u *Upstream) {
	if len(u.Targets) == 0 {
		v.report(p+".targets", Pos{}, false, "at least one target is required", `e.g. targets: ["127.0.0.1:9000"]`)
		return
	}
	first := map[string]int{}
	for i, t := range u.Targets {
		tp := fmt.Sprintf("%s.targets[%d]", p, i)
		ap := tp
		_, address := v.index.exact(tp+".address", true)
		_, weight := v.index.exact(tp+".weight", true)
		if address || weight {
			// Written as a mapping: name the address key.
			ap = tp + ".address"
		}
		if v.address(ap, t.Address, targetAddr) {
			k := targetKey(t.Address)
			if j, dup := first[k]; dup {
				v.report(ap, Pos{}, false, fmt.Sprintf("duplicate target %q (first at targets[%d])", t.Address, j),
					fmt.Sprintf("list each address once; to send it more calls, raise its weight, e.g. {address: %q, weight: 2}", t.Address))
			} else {
				first[k] = i
			}
		}
		v.intIn(tp+".weight", t.Weight, 1, MaxTargetWeight, "a target's share of calls relative to the others; the default is 1")
	}
}

// targetKey is the form of a valid target address under which two
// spellings of one address compare equal: DNS names are case-insensitive
// and IPv6 addresses have several spellings.
func targetKey(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

// resilience checks an upstream's balancing, DNS, health check, outlier
// detection, retry and circuit breaker settings. kindOK says whether
// u.Kind is valid; kind-specific checks are skipped when it is not.
func (v *validator) resilience(p string, u *Upstream, kindOK bool) {
	kind := u.Kind
	if kind == "" {
		kind = defaultKind
	}
	balanceOK := u.Balance == "" || slices.Contains(balances, u.Balance)
	if !balanceOK {
		v.unknown(p+".balance", Pos{}, "balance", u.Balance, balances)
	}
	if u.HashOn != "" && v.keyForm(p+".hash_on", Pos{}, "hash_on", u.HashOn, hashOnForms) &&
		u.Balance != BalanceRingHash && balanceOK {
		// A warning, not an error: the syntax of issue 11, which tests
		// outside the repository use as written, sets hash_on with
		// balance: least_request.
		b := u.Balance
		if b == "" {
			b = defaultBalance + ", the default"
		}
		v.warn(p+".hash_on", Pos{}, true, fmt.Sprintf("hash_on has no effect: it applies only with balance: ring_hash (balance is %s)", b),
			"set balance: ring_hash to keep calls with the same key on the same target, or remove hash_on")
	}
	v.durationAtLeast(p+".dns_refresh", u.DNSRefresh, minDNSRefresh,
		"it is how often DNS names among the targets are resolved again; the default is 30s")
	if h := u.HealthCheck; h != nil {
		v.healthCheck(p+".health_check", h, kind, kindOK)
	}
	if o := u.OutlierDetection; o != nil {
		op := p + ".outlier_detection"
		v.intIn(op+".consecutive_failures", o.ConsecutiveFailures, 1, 0, "the failed calls in a row that eject a target; the default is 5")
		baseOK := v.positiveDuration(op+".base_ejection_time", o.BaseEjectionTime, "how long a first ejection lasts; the default is 30s")
		maxOK := v.positiveDuration(op+".max_ejection_time", o.MaxEjectionTime, "the longest ejection; the default is 300s")
		if baseOK && maxOK && o.BaseEjectionTime > 0 && o.MaxEjectionTime > 0 && o.MaxEjectionTime < o.BaseEjectionTime {
			v.report(op+".max_ejection_time", Pos{}, false,
				fmt.Sprintf("max_ejection_time %s is shorter than base_ejection_time %s", o.MaxEjectionTime, o.BaseEjectionTime),
				"max_ejection_time caps the ejections that grow from base_ejection_time")
		}
		v.intIn(op+".max_ejection_percent", o.MaxEjectionPercent, 1, 100,
			"the share of targets that may be ejected at once; to never eject, remove outlier_detection")
	}
	if u.Retry != nil {
		v.retry(p+".retry", u.Retry, kind, kindOK, false)
	}
	if b := u.CircuitBreaker; b != nil {
		bp := p + ".circuit_breaker"
		v.intIn(bp+".max_requests", b.MaxRequests, 1, 0, "the calls in flight to this upstream; the default is 1000")
		if b.MaxPending != nil && *b.MaxPending < 0 {
			v.nonNegativeInt(bp+".max_pending", int64(*b.MaxPending))
		}
	}
}

// healthCheck checks a health_check block of an upstream of kind.
func (v *validator) healthCheck(hp string, h *HealthCheck, kind string, kindOK bool) {
	intervalOK := v.positiveDuration(hp+".interval", h.Interval, "the time between two checks of a target; the default is 5s")
	timeoutOK := v.positiveDuration(hp+".timeout", h.Timeout, "how long one check may take; the default is 1s")
	if intervalOK && timeoutOK && h.Interval > 0 && h.Timeout >= h.Interval {
		v.report(hp+".timeout", Pos{}, false, fmt.Sprintf("timeout %s must be shorter than interval %s", h.Timeout, h.Interval),
			fmt.Sprintf("a check must end before the next one starts, e.g. timeout: %s", time.Duration(h.Interval/2)))
	}
	v.intIn(hp+".unhealthy", h.Unhealthy, 1, 0, "the failed checks in a row that take a target out; the default is 2")
	v.intIn(hp+".healthy", h.Healthy, 1, 0, "the passed checks in a row that bring a target back; the default is 2")
	if !kindOK {
		return
	}
	if kind == "http" {
		switch {
		case h.Service != "":
			v.report(hp+".service", Pos{}, true, "service applies only to upstreams of kind grpc (this one is http)",
				"http upstreams are checked with a GET request: set path, e.g. path: /healthz")
		case h.Path == "":
			v.report(hp+".path", Pos{}, true, "path is required for an upstream of kind http",
				"name a path every target answers with 200 when it is well, e.g. path: /healthz")
		}
		if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			v.report(hp+".path", Pos{}, false, fmt.Sprintf("path %q must start with \"/\"", h.Path), "e.g. path: /healthz")
		}
		if h.ExpectedStatuses != nil && len(h.ExpectedStatuses) == 0 {
			v.report(hp+".expected_statuses", Pos{}, false, "at least one status is required", "e.g. expected_statuses: [200, 204]; the default is [200]")
		}
		for i, s := range h.ExpectedStatuses {
			if s < 100 || s > 599 {
				v.report(fmt.Sprintf("%s.expected_statuses[%d]", hp, i), Pos{}, false, fmt.Sprintf("invalid HTTP status %d", s), "use codes from 100 to 599")
			}
		}
		return
	}
	for _, k := range []struct {
		key string
		set bool
	}{{"path", h.Path != ""}, {"expected_statuses", h.ExpectedStatuses != nil}} {
		if k.set {
			v.report(hp+"."+k.key, Pos{}, true, k.key+" applies only to upstreams of kind http (this one is grpc)",
				`gRPC upstreams are checked with grpc.health.v1: set service to the name to check, or leave it out for the whole server`)
		}
	}
}

// retry checks a retry block whose calls go to backends of kind: an
// upstream's, or a route's override when route is set.
func (v *validator) retry(rp string, r *Retry, kind string, kindOK, route bool) {
	v.intIn(rp+".attempts", r.Attempts, 1, maxRetryAttempts, "the tries of a call, the first included: 1 means no retry")
	seen := map[string]int{}
	for i, c := range r.On {
		cp := fmt.Sprintf("%s.on[%d]", rp, i)
		valid := retryConditions(kind)
		switch {
		case !isRetryCondition(c):
			if !kindOK {
				valid = retryOnAll
			}
			v.unknown(cp, Pos{}, "retry condition", c, valid)
		case kindOK && !slices.Contains(valid, c):
			where, hint := "upstreams of kind http", "for plain HTTP backends use unavailable (503), 5xx or gateway-error"
			if kind != "http" {
				where, hint = "upstreams of kind grpc", "for gRPC backends use unavailable, resource-exhausted or deadline-exceeded"
			}
			switch {
			case route && kind == "http":
				where = "uri routes (they call plain HTTP backends)"
			case route:
				where = "selector routes (they call gRPC backends)"
			}
			v.report(cp, Pos{}, false, fmt.Sprintf("retry condition %q does not apply to %s", c, where), hint)
		default:
			if j, dup := seen[c]; dup {
				v.report(cp, Pos{}, false, fmt.Sprintf("%q is listed twice (first at on[%d])", c, j), "")
			} else {
				seen[c] = i
			}
		}
	}
	if b := r.Backoff; b != nil {
		bp := rp + ".backoff"
		baseOK := v.positiveDuration(bp+".base", b.Base, "the bound of the first wait; the default is 25ms")
		maxOK := v.positiveDuration(bp+".max", b.Max, "the bound of every wait; the default is 250ms")
		if baseOK && maxOK && b.Base > 0 && b.Max > 0 && b.Max < b.Base {
			v.report(bp+".max", Pos{}, false, fmt.Sprintf("max %s is shorter than base %s", b.Max, b.Base), "max caps the waits that grow from base")
		}
	}
	if bu := r.Budget; bu != nil {
		bp := rp + ".budget"
		if route {
			v.report(bp, Pos{}, true, "budget is set per upstream, not per route",
				"move it to the upstream's retry block: one budget guards the upstream against the retries of every route")
			return
		}
		if bu.Percent != nil && (*bu.Percent < 0 || *bu.Percent > 100) {
			v.report(bp+".percent", Pos{}, false, fmt.Sprintf("must be between 0 and 100, got %d", *bu.Percent), "the share of calls that may be retried; the default is 20")
		}
		if bu.MinPerSecond != nil && *bu.MinPerSecond < 0 {
			v.nonNegativeInt(bp+".min_per_second", int64(*bu.MinPerSecond))
		}
	}
}

// routeResilience checks a route's idempotent and retry settings.
func (v *validator) routeResilience(p string, r *Route) {
	uri := r.URI != "" || r.Service != ""
	if uri && r.Idempotent {
		v.report(p+".idempotent", r.Pos, true, "idempotent applies only to selector routes",
			"a uri route resends a request only when its HTTP method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE); remove idempotent")
	}
	if r.Retry == nil {
		return
	}
	kind := "grpc"
	if uri {
		kind = "http"
	}
	v.retry(p+".retry", r.Retry, kind, true, true)
}

// intIn checks an integer setting whose 0 means "unset": lo to hi, or
// at least lo when hi is 0. A 0 written in the file is checked as 0, even
// when defaults have replaced it since. It reports whether n is fine.
func (v *validator) intIn(path string, n, lo, hi int, hint string) bool {
	if v.zero[path] {
		n = 0
	} else if n == 0 {
		return true
	}
	switch {
	case hi == 0 && n < lo:
		v.report(path, Pos{}, false, fmt.Sprintf("must be at least %d, got %d", lo, n), hint)
	case hi != 0 && (n < lo || n > hi):
		v.report(path, Pos{}, false, fmt.Sprintf("must be between %d and %d, got %d", lo, hi, n), hint)
	default:
		return true
	}
	return false
}

// positiveDuration checks a duration setting whose 0 means "unset"
// (a "0s" written in the file is an error, even when defaults have
// replaced it since), and reports whether it is fine.
func (v *validator) positiveDuration(path string, d Duration, hint string) bool {
	switch {
	case v.zero[path]:
		v.report(path, Pos{}, false, `must be greater than 0, got "0s"`, hint)
		return false
	case d < 0:
		v.nonNegative(path, d)
		return false
	}
	return true
}

// durationAtLeast checks a duration setting whose 0 means "unset": at
// least least (a "0s" written in the file is checked as 0).
func (v *validator) durationAtLeast(path string, d Duration, least time.Duration, hint string) {
	if v.zero[path] {
		d = 0
	} else if d == 0 {
		return
	}
	if d.Std() < least {
		v.report(path, Pos{}, false, fmt.Sprintf("must be at least %s, got %q", least, d.String()), hint)
	}
}

// keyForm checks s, a value of one of forms such as "consumer" or
// "header:<name>" (what names the setting in messages: "key",
// "hash_on"), and reports whether it is valid.
func (v *validator) keyForm(path string, at Pos, what, s string, forms []string) bool {
	var kinds, named []string
	for _, f := range forms {
		k, _, hasName := strings.Cut(f, ":")
		kinds = append(kinds, k)
		if hasName {
			named = append(named, k)
		}
	}
	slices.Sort(kinds)
	kind, name, hasName := strings.Cut(s, ":")
	switch {
	case !slices.Contains(kinds, kind):
		hint := ""
		if best := closest(kind, kinds); best != "" {
			if hasName {
				best += ":" + name
			}
			hint = fmt.Sprintf("did you mean %q?", best)
		}
		v.report(path, at, false, fmt.Sprintf("unknown %s %q (known: %s)", what, s, strings.Join(forms, ", ")), hint)
	case slices.Contains(named, kind) && (!hasName || name == ""):
		v.report(path, at, false, fmt.Sprintf("%s %q needs a name", what, s), fmt.Sprintf("e.g. %s:x-tenant", kind))
	case kind == "header" && !validToken(name):
		v.report(path, at, false, fmt.Sprintf("invalid header name %q in %s %q", name, what, s), "e.g. header:x-tenant")
	case !slices.Contains(named, kind) && hasName:
		v.report(path, at, false, fmt.Sprintf("%s %q takes no name after %q", what, s, kind), fmt.Sprintf("write %s: %s", what, kind))
	default:
		return true
	}
	return false
}
