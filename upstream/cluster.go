package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
	"github.com/rosetta-gateway/rosetta/upstream/breaker"
	"github.com/rosetta-gateway/rosetta/upstream/retry"
)

// Cluster is the one view of an upstream's targets that every path asks
// (the gRPC relay, the gRPC handler path, the transcoding dialects and
// plain HTTP proxying): the balancer (per-call pick, active health,
// outlier ejection, connection state), the circuit breakers, the retry
// policy and budget, and DNS re-resolution of targets given by name. It
// is safe for concurrent use.
type Cluster struct {
	// Name is the upstream's name.
	Name string

	cfg     *config.Upstream
	bal     *balance.Balancer
	breaker *breaker.Breaker // nil: no circuit_breaker block
	brkOpts breaker.Options
	retry   retry.Policy
	budget  *retry.Budget // nil: no retries
	hashOn  hashKey
	logger  *slog.Logger

	mu      sync.Mutex
	targets map[string]*targetInfo // by endpoint address
	closed  bool

	resolver *net.Resolver
	probe    func(ctx context.Context, addr string) error // redial probe
	check    func(ctx context.Context, addr string) error // active health check; nil: none
	onRemove func(addr string)                            // endpoint removed (close its connections)
	stop     context.CancelFunc
	quit     chan struct{} // closed by Close
	wg       sync.WaitGroup
}

// targetInfo is what the cluster keeps per endpoint besides the
// balancer's state.
type targetInfo struct {
	// serverName is the TLS name of a target given by DNS name.
	serverName string
	breaker    *breaker.Breaker // nil without circuit_breaker
	redialing  bool
	stopHealth context.CancelFunc
}

// ClusterOptions are the inputs of [NewCluster] besides the config.
type ClusterOptions struct {
	// Logger receives state changes (nil: discard).
	Logger *slog.Logger
	// Resolver resolves targets given by DNS name (nil: net.DefaultResolver).
	Resolver *net.Resolver
	// Probe checks that a target whose connection failed takes
	// connections again; it is called with backoff until it succeeds,
	// and then the target returns to the pick. Nil: a TCP connect.
	Probe func(ctx context.Context, addr string) error
	// Check runs one active health check of a target (nil: the upstream
	// has no active health check even with a health_check block).
	Check func(ctx context.Context, addr string) error
	// OnRemove runs when DNS re-resolution (or a reload) removes a
	// target, to close its connections.
	OnRemove func(addr string)
	// Clock drives ejection timers (nil: the system clock).
	Clock balance.Clock
}

// NewCluster builds the view of cfg's targets and starts its background
// work: DNS re-resolution every dns_refresh for targets given by name,
// and active health checks when cfg has a health_check block and
// opts.Check is set. Close stops it.
func NewCluster(cfg *config.Upstream, opts ClusterOptions) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		Name:     cfg.Name,
		cfg:      cfg,
		logger:   logger,
		targets:  map[string]*targetInfo{},
		resolver: opts.Resolver,
		probe:    opts.Probe,
		onRemove: opts.OnRemove,
		quit:     make(chan struct{}),
	}
	if cfg.HealthCheck != nil {
		c.check = opts.Check
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.probe == nil {
		c.probe = tcpProbe
	}
	bopts, err := balanceOptions(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	bopts.Clock = opts.Clock
	if c.hashOn, err = parseHashOn(cfg.HashOn); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	if cb := cfg.CircuitBreaker; cb != nil {
		c.brkOpts = breaker.Options{MaxRequests: cb.MaxRequests, MaxPending: -1}
		if cb.MaxPending != nil && *cb.MaxPending > 0 {
			c.brkOpts.MaxPending = *cb.MaxPending
		}
		if c.breaker, err = breaker.New("upstream "+cfg.Name, c.brkOpts); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	specs, names := c.resolve(ctx, time.Second)
	if c.bal, err = balance.New(specs, bopts); err != nil {
		cancel()
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	c.mu.Lock()
	c.syncTargetsLocked(specs, names)
	c.mu.Unlock()
	if err := c.setRetry(cfg.Retry); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	c.mu.Lock()
	c.startHealthLocked(ctx)
	c.mu.Unlock()
	if hasNames(cfg) {
		c.wg.Add(1)
		go c.refreshLoop(ctx)
	}
	return c, nil
}

// Balancer returns the cluster's balancer.
func (c *Cluster) Balancer() *balance.Balancer { return c.bal }

// Breaker returns the upstream's circuit breaker, nil without a
// circuit_breaker block.
func (c *Cluster) Breaker() *breaker.Breaker { return c.breaker }

// TargetBreaker returns the circuit breaker of one target, nil without a
// circuit_breaker block.
func (c *Cluster) TargetBreaker(addr string) *breaker.Breaker {
	if c.breaker == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.targets[addr]; t != nil {
		return t.breaker
	}
	return nil
}

// ServerName returns the TLS server name for a target address: the DNS
// name it was resolved from, "" for a target given as an address.
func (c *Cluster) ServerName(addr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.targets[addr]; t != nil {
		return t.serverName
	}
	return ""
}

// CanRetry reports whether the upstream's calls may be retried at all (a
// retry block with more than one attempt).
func (c *Cluster) CanRetry() bool { return c.budget != nil && c.retry.Attempts > 1 }

// Retry returns the upstream's retry policy and budget; the budget is
// nil when the upstream has no retry block (no retries).
func (c *Cluster) Retry() (retry.Policy, *retry.Budget) { return c.retry, c.budget }

// PickEndpoint chooses the target of one call. It never blocks and does
// no I/O. key is the ring_hash key ([Cluster.HashKey]); avoid, when not
// nil, is a target a retry should not go back to when another exists.
// The caller brackets the call with the endpoint's Start and Done.
func (c *Cluster) PickEndpoint(key uint64, avoid *balance.Endpoint) (*balance.Endpoint, error) {
	e, err := c.bal.Pick(key, avoid)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", c.Name, err)
	}
	return e, nil
}

// PickEndpointNear is [Cluster.PickEndpoint] for a call that arrived in
// one read with others, the previous of which went to prefer (see
// [balance.Balancer.PickNear]).
func (c *Cluster) PickEndpointNear(key uint64, prefer *balance.Endpoint) (*balance.Endpoint, error) {
	e, err := c.bal.PickNear(key, prefer)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", c.Name, err)
	}
	return e, nil
}

// ConnFailed takes a target whose connection failed or broke out of the
// pick at once and redials it with backoff in the background; once a
// connection succeeds it returns to the pick.
func (c *Cluster) ConnFailed(addr string) {
	e := c.bal.Lookup(addr)
	if e == nil {
		return
	}
	c.bal.ConnFailed(e)
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.targets[addr]
	if c.closed || t == nil || t.redialing {
		return
	}
	t.redialing = true
	c.wg.Add(1)
	go c.redial(addr)
}

// ConnReady reports that a connection to addr works.
func (c *Cluster) ConnReady(addr string) {
	if e := c.bal.Lookup(addr); e != nil {
		c.bal.ConnReady(e)
	}
}

// redial probes a failed target with exponential backoff (100 ms to 10 s,
// jittered) until it answers, then returns it to the pick.
func (c *Cluster) redial(addr string) {
	defer c.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.probe(ctx, addr)
		cancel()
		c.mu.Lock()
		t := c.targets[addr]
		if c.closed || t == nil {
			c.mu.Unlock()
			return
		}
		if err == nil {
			t.redialing = false
			c.mu.Unlock()
			c.ConnReady(addr)
			c.logger.Info("upstream target reachable again", "upstream", c.Name, "target", addr)
			return
		}
		c.mu.Unlock()
		d := backoff/2 + rand.N(backoff)
		select {
		case <-time.After(d):
		case <-c.quit:
			return
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Close stops DNS refresh, health checks and redials, and the balancer's
// timers.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for _, t := range c.targets {
		if t.stopHealth != nil {
			t.stopHealth()
		}
	}
	c.mu.Unlock()
	c.stop()
	close(c.quit)
	c.wg.Wait()
	if c.bal != nil {
		c.bal.Close()
	}
}

// UpdateTargets takes a reloaded config whose targets (or dns_refresh)
// changed: the new set is resolved and applied at once; targets that stay
// keep their state and connections, removed ones are closed.
func (c *Cluster) UpdateTargets(cfg *config.Upstream) {
	c.mu.Lock()
	c.cfg = cfg
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	specs, names := c.resolve(ctx, 2*time.Second)
	c.update(context.Background(), specs, names)
}

// targetsChanged reports whether cfg's targets or DNS refresh differ
// from those the cluster runs with.
func (c *Cluster) targetsChanged(cfg *config.Upstream) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !reflect.DeepEqual(c.cfg.Targets, cfg.Targets) || c.cfg.DNSRefresh != cfg.DNSRefresh
}

// waitIdle returns once no call is in flight on any target (polled every
// 200 ms): an upstream a reload dropped is closed only then.
func (c *Cluster) waitIdle() {
	for {
		busy := false
		for _, e := range c.bal.Endpoints() {
			if e.InFlight() > 0 {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-c.quit:
			return
		}
	}
}

// tcpProbe is the default redial probe: a TCP connect.
func tcpProbe(ctx context.Context, addr string) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return nc.Close()
}

// hashKey is what ring_hash hashes: a header, a JWT claim, the consumer
// or the client's IP.
type hashKey struct {
	kind uint8 // hashIP, hashHeader, hashClaim, hashConsumer
	name string
}

const (
	hashIP uint8 = iota
	hashHeader
	hashClaim
	hashConsumer
)

func parseHashOn(s string) (hashKey, error) {
	switch {
	case s == "" || s == "ip":
		return hashKey{kind: hashIP}, nil
	case s == "consumer":
		return hashKey{kind: hashConsumer}, nil
	case strings.HasPrefix(s, "header:"):
		return hashKey{kind: hashHeader, name: strings.ToLower(s[len("header:"):])}, nil
	case strings.HasPrefix(s, "claim:"):
		return hashKey{kind: hashClaim, name: s[len("claim:"):]}, nil
	}
	return hashKey{}, fmt.Errorf("hash_on %q: want header:<name>, claim:<name>, consumer or ip", s)
}

// HashKey returns the ring_hash key of a call (0 for other algorithms):
// FNV-1a of the hash_on value, so every gateway instance maps a key to
// the same target. claims are the verified JWT's (nil without one). A
// call that lacks the value (no such header or an empty one, no such
// claim, no consumer) hashes on its client's address, as config.Upstream
// HashOn documents. A string claim hashes as it is, another (a number)
// as fmt.Sprint writes it.
func (c *Cluster) HashKey(cl *call.Call, claims map[string]any) uint64 {
	if c.bal.Algorithm() != balance.RingHash || cl == nil {
		return 0
	}
	switch c.hashOn.kind {
	case hashHeader:
		if cl.Header != nil {
			if v := cl.Header.Get(c.hashOn.name); v != "" {
				return fnv(v)
			}
		}
	case hashClaim:
		switch v := claims[c.hashOn.name].(type) {
		case nil:
		case string:
			if v != "" {
				return fnv(v)
			}
		default:
			return fnv(fmt.Sprint(v))
		}
	case hashConsumer:
		if cl.Consumer != "" {
			return fnv(cl.Consumer)
		}
	}
	a := cl.Peer.Addr().As16()
	return fnvBytes(a[:])
}

// HashOnCaller reports whether the upstream's ring_hash keys depend on
// the policy chain's decision (hash_on consumer or claim:<name>): a path
// that picks a target before the chain runs must run the chain's
// authentication first. It is false for other algorithms.
func (c *Cluster) HashOnCaller() bool {
	return c.bal.Algorithm() == balance.RingHash && (c.hashOn.kind == hashConsumer || c.hashOn.kind == hashClaim)
}

func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func fnvBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// balanceOptions maps an upstream's config onto the balancer's options.
func balanceOptions(cfg *config.Upstream) (balance.Options, error) {
	var o balance.Options
	if cfg.Balance != "" {
		alg, err := balance.ParseAlgorithm(cfg.Balance)
		if err != nil {
			return o, err
		}
		o.Algorithm = alg
	}
	if h := cfg.HealthCheck; h != nil {
		o.Health = balance.HealthOptions{Unhealthy: h.Unhealthy, Healthy: h.Healthy}
	}
	if od := cfg.OutlierDetection; od != nil {
		o.Outlier = balance.OutlierOptions{
			ConsecutiveFailures: od.ConsecutiveFailures,
			BaseEjectionTime:    od.BaseEjectionTime.Std(),
			MaxEjectionTime:     od.MaxEjectionTime.Std(),
			MaxEjectionPercent:  od.MaxEjectionPercent,
		}
	} else {
		o.Outlier.Disabled = true
	}
	return o, nil
}

// setRetry maps the upstream's retry block onto the retry policy and
// budget; without a block there are no retries.
func (c *Cluster) setRetry(r *config.Retry) error {
	if r == nil {
		c.retry = retry.Policy{Attempts: 1}
		return nil
	}
	p, err := RetryPolicy(*r)
	if err != nil {
		return err
	}
	c.retry = p
	bo := retry.BudgetOptions{}
	if b := r.Budget; b != nil {
		if b.Percent != nil {
			bo.Percent = *b.Percent
			if bo.Percent == 0 {
				bo.Percent = -1
			}
		}
		if b.MinPerSecond != nil {
			bo.MinPerSecond = float64(*b.MinPerSecond)
			if bo.MinPerSecond == 0 {
				bo.MinPerSecond = -1
			}
		}
	}
	c.budget, err = retry.NewBudget(bo)
	return err
}

// RetryPolicy maps a retry block (an upstream's, or a route's merged over
// it: config.Route.EffectiveRetry) onto a retry policy.
func RetryPolicy(r config.Retry) (retry.Policy, error) {
	p := retry.Policy{Attempts: r.Attempts}
	if p.Attempts <= 0 {
		p.Attempts = 1
	}
	if r.PerTryTimeout != nil {
		p.PerTryTimeout = r.PerTryTimeout.Std()
	}
	if b := r.Backoff; b != nil {
		p.BackoffBase, p.BackoffMax = b.Base.Std(), b.Max.Std()
	}
	var set retry.OutcomeSet
	for _, on := range r.On {
		switch on {
		case "connect-failure":
			set |= retry.SetOf(retry.ConnectFailure)
		case "refused-stream":
			set |= retry.SetOf(retry.RefusedStream, retry.GoAway)
		case "reset":
			set |= retry.SetOf(retry.Reset)
		case "unavailable":
			set |= retry.SetOf(retry.Unavailable)
		case "deadline-exceeded":
			set |= retry.SetOf(retry.PerTryTimeout)
		case "5xx":
			set |= retry.SetOf(retry.ServerError, retry.Unavailable)
		case "gateway-error":
			set |= retry.SetOf(retry.ServerError, retry.Unavailable)
		case "resource-exhausted":
			// No retry outcome: RESOURCE_EXHAUSTED from a backend is
			// its own verdict (a quota), which another try at once
			// rarely changes. Accepted and ignored.
		default:
			return p, fmt.Errorf("retry on %q: unknown condition", on)
		}
	}
	if r.On != nil {
		if set == 0 {
			p.Attempts = 1
		}
		p.RetryOn = set
	}
	return p, p.Validate()
}

// hasNames reports whether some target is given by DNS name.
func hasNames(cfg *config.Upstream) bool {
	for _, t := range cfg.Targets {
		host, _, err := net.SplitHostPort(t.Address)
		if err != nil {
			continue
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return true
		}
	}
	return false
}

// resolve turns the configured targets into balancer specs: an address
// target as it is, a DNS name into one endpoint per address it resolves
// to (each with the target's weight). A name that does not resolve is
// kept as it is (the dialer resolves it then), logged. names maps each
// resolved endpoint to its DNS name, for TLS.
func (c *Cluster) resolve(ctx context.Context, timeout time.Duration) ([]balance.Spec, map[string]string) {
	var specs []balance.Spec
	names := map[string]string{}
	seen := map[string]bool{}
	add := func(addr string, w int, name string) {
		if seen[addr] {
			return
		}
		seen[addr] = true
		specs = append(specs, balance.Spec{Addr: addr, Weight: uint32(max(w, 1))})
		if name != "" {
			names[addr] = name
		}
	}
	c.mu.Lock()
	targets := c.cfg.Targets
	c.mu.Unlock()
	for _, t := range targets {
		host, port, err := net.SplitHostPort(t.Address)
		if err != nil {
			add(t.Address, t.Weight, "")
			continue
		}
		if _, err := netip.ParseAddr(host); err == nil {
			add(t.Address, t.Weight, "")
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		ips, err := c.resolver.LookupHost(lctx, host)
		cancel()
		if err != nil || len(ips) == 0 {
			if ctx.Err() == nil {
				c.logger.Warn("upstream target does not resolve; dialing it by name", "upstream", c.Name, "target", t.Address, "error", err)
			}
			add(t.Address, t.Weight, "")
			continue
		}
		slices.Sort(ips)
		for _, ip := range ips {
			add(net.JoinHostPort(ip, port), t.Weight, host)
		}
	}
	return specs, names
}

// refreshLoop re-resolves the targets given by name every dns_refresh and
// updates the balancer when the answers change.
func (c *Cluster) refreshLoop(ctx context.Context) {
	defer c.wg.Done()
	c.mu.Lock()
	every := c.cfg.DNSRefresh.Std()
	c.mu.Unlock()
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		specs, names := c.resolve(ctx, 5*time.Second)
		if ctx.Err() != nil {
			return
		}
		c.update(ctx, specs, names)
	}
}

// update replaces the endpoint set after re-resolution.
func (c *Cluster) update(ctx context.Context, specs []balance.Spec, names map[string]string) {
	if err := c.bal.Update(specs); err != nil {
		c.logger.Warn("upstream targets not updated", "upstream", c.Name, "error", err)
		return
	}
	c.mu.Lock()
	removed := c.syncTargetsLocked(specs, names)
	if !c.closed {
		c.startHealthLocked(ctx)
	}
	c.mu.Unlock()
	for _, addr := range removed {
		c.logger.Info("upstream target removed", "upstream", c.Name, "target", addr)
		if c.onRemove != nil {
			c.onRemove(addr)
		}
	}
}

// syncTargetsLocked makes c.targets match specs and returns the removed
// addresses.
func (c *Cluster) syncTargetsLocked(specs []balance.Spec, names map[string]string) []string {
	keep := map[string]bool{}
	for _, s := range specs {
		keep[s.Addr] = true
		t := c.targets[s.Addr]
		if t == nil {
			t = &targetInfo{}
			if c.breaker != nil {
				t.breaker, _ = breaker.New("target "+s.Addr+" of upstream "+c.Name, c.brkOpts)
			}
			c.targets[s.Addr] = t
		}
		t.serverName = names[s.Addr]
	}
	var removed []string
	for addr, t := range c.targets {
		if !keep[addr] {
			if t.stopHealth != nil {
				t.stopHealth()
			}
			delete(c.targets, addr)
			removed = append(removed, addr)
		}
	}
	return removed
}

// startHealthLocked starts the active health check of every target that
// has none running (all of them at start; new ones after re-resolution).
// Each target is checked every interval, with its own timeout; results
// feed the balancer's healthy/unhealthy thresholds.
func (c *Cluster) startHealthLocked(ctx context.Context) {
	if c.check == nil {
		return
	}
	hc := c.cfg.HealthCheck
	interval, timeout := hc.Interval.Std(), hc.Timeout.Std()
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if timeout <= 0 || timeout > interval {
		timeout = interval
	}
	for addr, t := range c.targets {
		if t.stopHealth != nil {
			continue
		}
		hctx, cancel := context.WithCancel(ctx)
		t.stopHealth = cancel
		c.wg.Add(1)
		go c.healthLoop(hctx, addr, interval, timeout)
	}
}

// healthLoop checks one target until ctx ends: once at once, then every
// interval.
func (c *Cluster) healthLoop(ctx context.Context, addr string, interval, timeout time.Duration) {
	defer c.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.check(cctx, addr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if e := c.bal.Lookup(addr); e != nil {
			c.bal.ReportHealth(e, err == nil)
		}
		if (err == nil) != healthy {
			healthy = err == nil
			if healthy {
				c.logger.Info("upstream health check passed", "upstream", c.Name, "target", addr)
			} else {
				c.logger.Warn("upstream health check failed", "upstream", c.Name, "target", addr, "error", err)
			}
		}
		t.Reset(interval)
	}
}
