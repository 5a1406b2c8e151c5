package observe

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// State is what the gateway reports of itself at scrape time: upstream
// targets, breakers, retries, caches, rate limits, descriptors.
type State struct {
	// Targets are every upstream target, in the order of their
	// upstream's balancer.
	Targets []TargetState
	// Upstreams are each upstream's counters.
	Upstreams []UpstreamState
	// Cache sums the proxy-cache counters of every cache.
	Cache CacheState
	// RateLimitFailOpens counts calls allowed uncounted because Redis
	// was unreachable (rate-limiting with fail: open).
	RateLimitFailOpens uint64
	// SnapshotVersion is the current descriptor snapshot's version.
	SnapshotVersion uint64
	// Descriptors are the descriptor registry's counters.
	Descriptors DescriptorState
	// Config is how the config's loads and reloads went.
	Config ConfigState
}

// ConfigState is how the config's loads and reloads went.
type ConfigState struct {
	// Generation is the running config's generation (1 for the config
	// the gateway started with); 0 when unknown (no config metrics).
	Generation uint64
	// Reloads and Failures count successful and refused reloads.
	Reloads, Failures uint64
	// LoadedAt is when the running config was loaded.
	LoadedAt time.Time
	// LastOK reports whether the last load or reload succeeded.
	LastOK bool
}

// TargetState is one upstream target, as its balancer sees it.
type TargetState struct {
	Upstream, Target string
	// Healthy is the health check's verdict (true without checks).
	Healthy bool
	// Ejected is true while outlier detection keeps it out.
	Ejected bool
	// Available is true when the balancer may pick it.
	Available bool
	// InFlight is the number of calls in progress on it.
	InFlight int64
	// BreakerRejected counts calls its circuit breaker refused.
	BreakerRejected uint64
}

// UpstreamState is one upstream's counters.
type UpstreamState struct {
	Upstream string
	// Ejections counts outlier ejections of its targets.
	Ejections uint64
	// BreakerRejected counts calls the upstream-wide circuit breaker
	// refused.
	BreakerRejected uint64
	// Retries counts the retries made; RetriesDenied those the retry
	// budget refused.
	Retries, RetriesDenied uint64
}

// CacheState are proxy-cache counters.
type CacheState struct {
	Hits, Misses, Stale int64
}

// DescriptorState are the descriptor registry's counters.
type DescriptorState struct {
	// Refreshes counts descriptor loads; RefreshErrors counts upstream
	// loads within them that failed.
	Refreshes, RefreshErrors uint64
	// Problems is the number of problems of the latest load.
	Problems int
}

// StateFunc fills s with the gateway's current state. It runs at each
// scrape, on the scraping goroutine.
type StateFunc func(s *State)

// SetState sets what scrapes read the gateway's state from (nil: no
// state metrics).
func (m *Metrics) SetState(fn StateFunc) {
	if fn == nil {
		m.state.Store(nil)
		return
	}
	m.state.Store(&fn)
}

// stateCollector turns a State into metrics at scrape time.
type stateCollector struct{ m *Metrics }

var (
	descTargetHealthy = prometheus.NewDesc("rosetta_upstream_target_healthy",
		"1 when the upstream target passes its health checks (always, without checks).", []string{"upstream", "target"}, nil)
	descTargetEjected = prometheus.NewDesc("rosetta_upstream_target_ejected",
		"1 while outlier detection keeps the upstream target out of the pick.", []string{"upstream", "target"}, nil)
	descTargetAvailable = prometheus.NewDesc("rosetta_upstream_target_available",
		"1 when the balancer may pick the upstream target (healthy, not ejected, reachable).", []string{"upstream", "target"}, nil)
	descTargetInFlight = prometheus.NewDesc("rosetta_upstream_target_in_flight",
		"Calls in progress on the upstream target, on every path.", []string{"upstream", "target"}, nil)
	descBreakerRejections = prometheus.NewDesc("rosetta_upstream_breaker_rejections_total",
		"Calls a circuit breaker refused, by upstream and target (target \"\" for the upstream-wide breaker).", []string{"upstream", "target"}, nil)
	descEjections = prometheus.NewDesc("rosetta_upstream_ejections_total",
		"Outlier ejections of the upstream's targets.", []string{"upstream"}, nil)
	descRetries = prometheus.NewDesc("rosetta_upstream_retries_total",
		"Retries sent to the upstream.", []string{"upstream"}, nil)
	descRetriesDenied = prometheus.NewDesc("rosetta_upstream_retries_denied_total",
		"Retries the upstream's retry budget refused.", []string{"upstream"}, nil)
	descCache = prometheus.NewDesc("rosetta_cache_requests_total",
		"Calls a proxy-cache answered or looked up, by result (hit, miss, stale).", []string{"result"}, nil)
	descFailOpens = prometheus.NewDesc("rosetta_ratelimit_fail_opens_total",
		"Calls rate-limiting allowed uncounted because Redis was unreachable (fail: open).", nil, nil)
	descSnapshot = prometheus.NewDesc("rosetta_descriptor_snapshot_version",
		"Version of the current descriptor snapshot (it increases with every change).", nil, nil)
	descRefreshes = prometheus.NewDesc("rosetta_descriptor_refreshes_total",
		"Descriptor loads (start, refresh interval, on demand).", nil, nil)
	descRefreshErrors = prometheus.NewDesc("rosetta_descriptor_refresh_errors_total",
		"Upstream descriptor loads that failed (the upstream keeps its previous descriptors).", nil, nil)
	descProblems = prometheus.NewDesc("rosetta_descriptor_problems",
		"Problems found by the latest descriptor load (unreachable upstreams, conflicts, schema drift).", nil, nil)
	descGeneration = prometheus.NewDesc("rosetta_config_generation",
		"Generation of the running config: 1 at start, one more with each successful reload.", nil, nil)
	descReloads = prometheus.NewDesc("rosetta_config_reloads_total",
		"Config reloads, by result (success, or failure: the running config kept serving).", []string{"result"}, nil)
	descReloadOK = prometheus.NewDesc("rosetta_config_last_reload_successful",
		"1 when the last config load or reload succeeded.", nil, nil)
	descLoadedAt = prometheus.NewDesc("rosetta_config_last_reload_success_timestamp_seconds",
		"Unix time the running config was loaded.", nil, nil)
)

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTargetHealthy, descTargetEjected, descTargetAvailable, descTargetInFlight,
		descBreakerRejections, descEjections, descRetries, descRetriesDenied, descCache, descFailOpens,
		descSnapshot, descRefreshes, descRefreshErrors, descProblems, descGeneration, descReloads, descReloadOK, descLoadedAt} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.m.state.Load()
	if fn == nil {
		return
	}
	var s State
	(*fn)(&s)
	for _, t := range s.Targets {
		ch <- prometheus.MustNewConstMetric(descTargetHealthy, prometheus.GaugeValue, b2f(t.Healthy), t.Upstream, t.Target)
		ch <- prometheus.MustNewConstMetric(descTargetEjected, prometheus.GaugeValue, b2f(t.Ejected), t.Upstream, t.Target)
		ch <- prometheus.MustNewConstMetric(descTargetAvailable, prometheus.GaugeValue, b2f(t.Available), t.Upstream, t.Target)
		ch <- prometheus.MustNewConstMetric(descTargetInFlight, prometheus.GaugeValue, float64(t.InFlight), t.Upstream, t.Target)
		ch <- prometheus.MustNewConstMetric(descBreakerRejections, prometheus.CounterValue, float64(t.BreakerRejected), t.Upstream, t.Target)
	}
	for _, u := range s.Upstreams {
		ch <- prometheus.MustNewConstMetric(descBreakerRejections, prometheus.CounterValue, float64(u.BreakerRejected), u.Upstream, "")
		ch <- prometheus.MustNewConstMetric(descEjections, prometheus.CounterValue, float64(u.Ejections), u.Upstream)
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(u.Retries), u.Upstream)
		ch <- prometheus.MustNewConstMetric(descRetriesDenied, prometheus.CounterValue, float64(u.RetriesDenied), u.Upstream)
	}
	ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(s.Cache.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(s.Cache.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(s.Cache.Stale), "stale")
	ch <- prometheus.MustNewConstMetric(descFailOpens, prometheus.CounterValue, float64(s.RateLimitFailOpens))
	ch <- prometheus.MustNewConstMetric(descSnapshot, prometheus.GaugeValue, float64(s.SnapshotVersion))
	ch <- prometheus.MustNewConstMetric(descRefreshes, prometheus.CounterValue, float64(s.Descriptors.Refreshes))
	ch <- prometheus.MustNewConstMetric(descRefreshErrors, prometheus.CounterValue, float64(s.Descriptors.RefreshErrors))
	ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(s.Descriptors.Problems))
	if cs := s.Config; cs.Generation > 0 {
		ch <- prometheus.MustNewConstMetric(descGeneration, prometheus.GaugeValue, float64(cs.Generation))
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(cs.Reloads), "success")
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(cs.Failures), "failure")
		ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, b2f(cs.LastOK))
		ch <- prometheus.MustNewConstMetric(descLoadedAt, prometheus.GaugeValue, unixSeconds(cs.LoadedAt))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t as Prometheus timestamps are written.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
