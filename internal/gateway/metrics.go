package gateway

import (
	"sort"

	"github.com/rosetta-gateway/rosetta/observe"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// metricsState fills s with the current generation's state, for a
// scrape: every upstream's targets (health, ejection, availability,
// calls in flight, breaker refusals), ejections, retries, the
// proxy-caches' counters, rate-limiting's fail-opens, the descriptor
// snapshot and registry counters, and how the config's reloads went.
func (g *Gateway) metricsState(s *observe.State) {
	gen := g.cur.Load()
	if gen == nil {
		return
	}
	names := make([]string, 0, len(gen.cfg.Upstreams))
	for name := range gen.cfg.Upstreams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var c *upstream.Cluster
		if u, ok := gen.ups.Get(name); ok {
			c = u.Cluster
		} else if gen.uri != nil && gen.uri.ups != nil {
			if hu, ok := gen.uri.ups.Get(name); ok {
				c = hu.Cluster
			}
		}
		if c == nil {
			continue
		}
		appendClusterState(s, name, c)
	}
	if gen.caches != nil {
		for _, c := range gen.caches.list {
			cs := c.Stats()
			s.Cache.Hits += cs.Hits
			s.Cache.Misses += cs.Misses
			s.Cache.Stale += cs.Stale
		}
	}
	for _, p := range gen.pols.Plugins() {
		// FailOpens is shared by the limiters of one redis block: the
		// largest is the block's.
		if fo, ok := p.(interface{ FailOpens() uint64 }); ok {
			s.RateLimitFailOpens = max(s.RateLimitFailOpens, fo.FailOpens())
		}
	}
	if st := g.state.Load(); st != nil && st.snap != nil {
		s.SnapshotVersion = st.snap.Version
	}
	rs := gen.reg.Stats()
	s.Descriptors = observe.DescriptorState{Refreshes: rs.Loads, RefreshErrors: rs.FailedUpstreamLoads, Problems: len(gen.reg.Problems())}
	cs := g.ConfigStatus()
	s.Config = observe.ConfigState{Generation: gen.version, Reloads: cs.Reloads, Failures: cs.Failures, LoadedAt: cs.LoadedAt, LastOK: cs.OK}
	if cs.Version == 0 {
		s.Config.LastOK = true // not started yet: the config New was given
	}
}

// appendClusterState adds one upstream's targets and counters to s.
func appendClusterState(s *observe.State, name string, c *upstream.Cluster) {
	bal := c.Balancer()
	for _, e := range bal.Snapshot() {
		t := observe.TargetState{
			Upstream:  name,
			Target:    e.Addr,
			Healthy:   e.Healthy,
			Ejected:   !e.EjectedUntil.IsZero(),
			Available: e.Available,
			InFlight:  e.InFlight,
		}
		if tb := c.TargetBreaker(e.Addr); tb != nil {
			t.BreakerRejected = tb.Stats().Rejected
		}
		s.Targets = append(s.Targets, t)
	}
	u := observe.UpstreamState{Upstream: name, Ejections: bal.Stats().Ejections}
	if b := c.Breaker(); b != nil {
		u.BreakerRejected = b.Stats().Rejected
	}
	if _, budget := c.Retry(); budget != nil {
		bs := budget.Stats()
		u.Retries, u.RetriesDenied = bs.Allowed, bs.Denied
	}
	s.Upstreams = append(s.Upstreams, u)
}
