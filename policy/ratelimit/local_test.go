package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
)

func hourly(limit int64) config.RateLimiting {
	return config.RateLimiting{Limit: limit, Period: config.Period(time.Hour)}
}

// A full bucket passes exactly Limit calls at once; the next is refused
// with the documented shape, and every decision fills RateLimit.
func TestBurstThenRefusal(t *testing.T) {
	clk := newFakeClock()
	l := newTestLimiter(t, policy.Env{}, hourly(1000), WithClock(clk.Now))
	c := peerCall("192.0.2.1")

	err, st := decide(t, l, c)
	if err != nil {
		t.Fatalf("first call: got %v; want allowed", err)
	}
	want := policy.RateLimit{Set: true, Limit: 1000, Remaining: 999, ResetSeconds: 4} // 3.6s rounded up
	if st.RateLimit != want {
		t.Fatalf("RateLimit after one call: got %+v; want %+v", st.RateLimit, want)
	}
	if got := allowedN(t, l, c, 999); got != 999 {
		t.Fatalf("calls 2..1000: got %d allowed; want 999", got)
	}
	err, st = decide(t, l, c)
	if err == nil {
		t.Fatal("call 1001: got allowed; want refused")
	}
	if err.Code != codes.ResourceExhausted {
		t.Errorf("code: got %v; want ResourceExhausted", err.Code)
	}
	if want := "rate limit exceeded: 1000 calls per 1h0m0s; retry in 4s"; err.Msg != want {
		t.Errorf("message: got %q; want %q", err.Msg, want)
	}
	if want := []policy.Field{{Name: "retry-after", Value: "4"}}; len(st.Response) != 1 || st.Response[0] != want[0] {
		t.Errorf("response fields: got %v; want %v", st.Response, want)
	}
	want = policy.RateLimit{Set: true, Limit: 1000, Remaining: 0, ResetSeconds: 3600}
	if st.RateLimit != want {
		t.Errorf("RateLimit when refused: got %+v; want %+v", st.RateLimit, want)
	}

	// One emission interval (3.6s) later exactly one call passes again.
	clk.Add(3599 * time.Millisecond)
	if err, _ := decide(t, l, c); err == nil {
		t.Fatal("1ms before the interval: got allowed; want refused")
	}
	clk.Add(time.Millisecond)
	if got := allowedN(t, l, c, 2); got != 1 {
		t.Fatalf("after one interval: got %d allowed; want 1", got)
	}
}

// Spending the whole limit just before a fixed-window boundary leaves
// nothing to spend just after it: never 2×Limit across a boundary.
func TestNoDoubleBurstAcrossBoundary(t *testing.T) {
	clk := newFakeClock()
	cfg := config.RateLimiting{Limit: 100, Period: config.Period(time.Minute)} // T = 600ms
	l := newTestLimiter(t, policy.Env{}, cfg, WithClock(clk.Now))
	c := peerCall("192.0.2.1")

	clk.Add(59*time.Second + 999*time.Millisecond)
	if got := allowedN(t, l, c, 100); got != 100 {
		t.Fatalf("before the boundary: got %d allowed; want 100", got)
	}
	clk.Add(2 * time.Millisecond) // now 1ms past the minute
	if got := allowedN(t, l, c, 100); got != 0 {
		t.Fatalf("1ms after the boundary: got %d allowed; want 0", got)
	}
	clk.Add(600 * time.Millisecond)
	if got := allowedN(t, l, c, 100); got != 1 {
		t.Fatalf("one interval later: got %d allowed; want 1", got)
	}
}

// A client that tries every 100ms for 100 periods gets the initial burst
// and then exactly one call per emission interval: every window of one
// period that starts after the burst holds at most Limit calls, and one
// that starts within it at most 2·Limit−1 (the documented bound).
func TestSmoothUnderSteadyLoad(t *testing.T) {
	clk := newFakeClock()
	const limit, period = 5, 10 * time.Second // T = 2s
	l := newTestLimiter(t, policy.Env{}, config.RateLimiting{Limit: limit, Period: config.Period(period)}, WithClock(clk.Now))
	c := peerCall("192.0.2.1")

	var passed []time.Duration
	for at := time.Duration(0); at < 100*period; at += 100 * time.Millisecond {
		if err, _ := decide(t, l, c); err == nil {
			passed = append(passed, at)
		}
		clk.Add(100 * time.Millisecond)
	}
	if want := limit + int(100*period/(2*time.Second)) - 1; len(passed) != want {
		t.Fatalf("allowed over 100 periods: got %d; want %d", len(passed), want)
	}
	most := 0
	for i, start := range passed {
		n := 0
		for _, at := range passed[i:] {
			if at < start+period {
				n++
			}
		}
		// The burst (the first Limit calls) may share a window with the
		// calls earned back after it; later windows may not.
		bound := limit
		if i < limit {
			bound = 2*limit - 1
		}
		if n > bound {
			t.Fatalf("window [%v, %v): got %d calls; want at most %d", start, start+period, n, bound)
		}
		most = max(most, n)
	}
	if most != 2*limit-1 {
		t.Errorf("busiest window: got %d calls; want %d", most, 2*limit-1)
	}
	for i := limit + 1; i < len(passed); i++ {
		if gap := passed[i] - passed[i-1]; gap != 2*time.Second {
			t.Fatalf("gap before call %d: got %v; want 2s", i, gap)
		}
	}
}

// The pure algorithm at the edges: remaining, reset and retry.
func TestGCRA(t *testing.T) {
	const interval, limit = 10, 3
	tat, v := gcra(0, 100, interval, limit)
	if tat != 110 || v != (verdict{allowed: true, remaining: 2, reset: 10}) {
		t.Fatalf("fresh: got tat %d %+v", tat, v)
	}
	tat, _ = gcra(tat, 100, interval, limit)
	tat, v = gcra(tat, 100, interval, limit)
	if tat != 130 || v != (verdict{allowed: true, remaining: 0, reset: 30}) {
		t.Fatalf("third: got tat %d %+v", tat, v)
	}
	tat, v = gcra(tat, 105, interval, limit)
	if tat != 130 || v != (verdict{reset: 25, retry: 5}) {
		t.Fatalf("refused: got tat %d %+v", tat, v)
	}
	if _, v = gcra(tat, 110, interval, limit); !v.allowed || v.remaining != 0 {
		t.Fatalf("after one interval: got %+v", v)
	}
}

func TestKeyKinds(t *testing.T) {
	claims := func(m map[string]any) func(*policy.State) {
		return func(st *policy.State) { st.Claims = m }
	}
	type req struct {
		c     *call.Call
		state func(*policy.State)
	}
	consumer := func(name, addr string) *call.Call {
		c := peerCall(addr)
		c.Consumer = name
		return c
	}
	for _, tc := range []struct {
		name string
		key  string
		// a and same share a bucket; other has its own.
		a, same, other req
	}{
		{"auto/consumer", "", req{c: consumer("alice", "192.0.2.1")}, req{c: consumer("alice", "192.0.2.2")}, req{c: consumer("bob", "192.0.2.1")}},
		{"auto/ip", "", req{c: peerCall("192.0.2.1")}, req{c: peerCall("192.0.2.1")}, req{c: peerCall("192.0.2.2")}},
		{"consumer", "consumer", req{c: consumer("alice", "192.0.2.1")}, req{c: consumer("alice", "192.0.2.2")}, req{c: consumer("bob", "192.0.2.1")}},
		{"consumer/anonymous→ip", "consumer", req{c: peerCall("192.0.2.1")}, req{c: peerCall("192.0.2.1")}, req{c: peerCall("192.0.2.2")}},
		{"ip", "ip", req{c: consumer("alice", "192.0.2.1")}, req{c: consumer("bob", "192.0.2.1")}, req{c: consumer("alice", "2001:db8::1")}},
		{"ip/4in6", "ip", req{c: peerCall("192.0.2.1")}, req{c: peerCall("::ffff:192.0.2.1")}, req{c: peerCall("192.0.2.2")}},
		{"route", "route", req{c: consumer("alice", "192.0.2.1")}, req{c: consumer("bob", "192.0.2.2")}, req{}},
		{"header", "header:X-Tenant", req{c: peerCall("192.0.2.1", "X-Tenant", "acme")}, req{c: peerCall("192.0.2.2", "X-Tenant", "acme")}, req{c: peerCall("192.0.2.1", "X-Tenant", "globex")}},
		{"header/missing→ip", "header:x-tenant", req{c: peerCall("192.0.2.1")}, req{c: peerCall("192.0.2.1")}, req{c: peerCall("192.0.2.2")}},
		{"header/value-not-ip", "header:x-tenant", req{c: peerCall("192.0.2.1", "X-Tenant", "192.0.2.1")}, req{c: peerCall("192.0.2.9", "X-Tenant", "192.0.2.1")}, req{c: peerCall("192.0.2.1")}},
		{"claim/string", "claim:org", req{c: peerCall("192.0.2.1"), state: claims(map[string]any{"org": "acme"})}, req{c: peerCall("192.0.2.2"), state: claims(map[string]any{"org": "acme"})}, req{c: peerCall("192.0.2.1"), state: claims(map[string]any{"org": "globex"})}},
		{"claim/number", "claim:tier", req{c: peerCall("192.0.2.1"), state: claims(map[string]any{"tier": float64(3)})}, req{c: peerCall("192.0.2.2"), state: claims(map[string]any{"tier": "3"})}, req{c: peerCall("192.0.2.1"), state: claims(map[string]any{"tier": 3.5})}},
		{"claim/missing→ip", "claim:org", req{c: peerCall("192.0.2.1")}, req{c: peerCall("192.0.2.1"), state: claims(map[string]any{"sub": "x"})}, req{c: peerCall("192.0.2.2")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newTestLimiter(t, policy.Env{}, config.RateLimiting{Limit: 1, Period: config.Period(time.Hour), Key: tc.key})
			run := func(r req) *call.Error {
				st := &policy.State{}
				if r.state != nil {
					r.state(st)
				}
				return l.Check(context.Background(), r.c, st)
			}
			if err := run(tc.a); err != nil {
				t.Fatalf("first call: got %v; want allowed", err)
			}
			if err := run(tc.same); err == nil {
				t.Fatal("same bucket: got allowed; want refused")
			}
			if tc.other.c != nil {
				if err := run(tc.other); err != nil {
					t.Fatalf("other bucket: got %v; want allowed", err)
				}
			}
		})
	}
}

// headOnly is a call.Header of single-line fields, as a relayed HTTP/2
// head with one field of each name is.
type headOnly map[string]string

func (h headOnly) Get(name string) string { return h[name] }

func (h headOnly) Values(name string) []string {
	if v, ok := h[name]; ok {
		return []string{v}
	}
	return nil
}

func TestClientIP(t *testing.T) {
	env := policy.Env{Config: &config.Config{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.100", "2001:db8:ffff::/48"}}}
	l := newTestLimiter(t, env, config.RateLimiting{Limit: 1, Period: config.Period(time.Hour), Key: "ip"})
	for _, tc := range []struct {
		name   string
		peer   string
		header call.Header
		want   string
	}{
		{"untrusted peer/no header", "198.51.100.7", nil, "198.51.100.7"},
		{"untrusted peer/spoofed XFF ignored", "198.51.100.7", call.HTTPHeader{"X-Forwarded-For": {"203.0.113.9"}}, "198.51.100.7"},
		{"trusted peer/no XFF", "10.1.2.3", call.HTTPHeader{}, "10.1.2.3"},
		{"trusted peer/one hop", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9"},
		{"trusted peer/client-sent entry ignored", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"6.6.6.6, 203.0.113.9"}}, "203.0.113.9"},
		{"trusted chain skipped", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"6.6.6.6, 203.0.113.9, 192.0.2.100 , 10.9.9.9"}}, "203.0.113.9"},
		{"separate lines/last wins", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"6.6.6.6", "203.0.113.9"}}, "203.0.113.9"},
		{"separate lines/trusted last line", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"6.6.6.6, 203.0.113.9", "10.0.0.9"}}, "203.0.113.9"},
		{"lower-case metadata name", "10.1.2.3", call.HTTPHeader{"x-forwarded-for": {"203.0.113.9"}}, "203.0.113.9"},
		{"all trusted/leftmost", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"10.0.0.7, 10.0.0.8"}}, "10.0.0.7"},
		{"garbage stops at last trusted hop", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"203.0.113.9, not-an-ip"}}, "10.1.2.3"},
		{"garbage behind a trusted hop", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"garbage, 10.0.0.8"}}, "10.0.0.8"},
		{"entry with port", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"203.0.113.9:5555"}}, "203.0.113.9"},
		{"IPv6 entry with port", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"[2001:db8::1]:443"}}, "2001:db8::1"},
		{"IPv6 trusted peer", "2001:db8:ffff::2", call.HTTPHeader{"X-Forwarded-For": {"2001:db8::1"}}, "2001:db8::1"},
		{"4in6 trusted peer", "::ffff:10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"::ffff:203.0.113.9"}}, "203.0.113.9"},
		{"single-line header", "10.1.2.3", headOnly{"x-forwarded-for": "6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"empty entries", "10.1.2.3", call.HTTPHeader{"X-Forwarded-For": {"203.0.113.9, , "}}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &call.Call{Peer: netip.AddrPortFrom(netip.MustParseAddr(tc.peer), 4711), Header: tc.header}
			if got := l.clientIP(c); got != netip.MustParseAddr(tc.want) {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
	if got := l.clientIP(&call.Call{}); got.IsValid() {
		t.Errorf("peer without IP: got %v; want the zero address", got)
	}
}

// A client behind no trusted proxy cannot escape its limit by sending a
// new X-Forwarded-For each time.
func TestXFFSpoofingFromUntrustedPeer(t *testing.T) {
	env := policy.Env{Config: &config.Config{TrustedProxies: []string{"10.0.0.0/8"}}}
	l := newTestLimiter(t, env, hourly(3))
	allowed := 0
	for i := range 10 {
		c := peerCall("198.51.100.7", "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
		if err, _ := decide(t, l, c); err == nil {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("got %d allowed; want 3", allowed)
	}
	// Behind the trusted proxy, each forwarded client has its own bucket.
	for i := range 10 {
		c := peerCall("10.0.0.1", "X-Forwarded-For", fmt.Sprintf("6.6.6.6, 203.0.113.%d", i))
		if err, _ := decide(t, l, c); err != nil {
			t.Fatalf("forwarded client %d: got %v; want allowed", i, err)
		}
	}
}

func TestEvictionBoundsMemory(t *testing.T) {
	clk := newFakeClock()
	const maxKeys = 4 * numShards
	l := newTestLimiter(t, policy.Env{}, config.RateLimiting{Limit: 10, Period: config.Period(time.Minute), Key: "header:x-key"},
		WithClock(clk.Now), WithMaxKeys(maxKeys))
	for i := range 20 * maxKeys {
		c := peerCall("192.0.2.1", "X-Key", fmt.Sprintf("k%d", i))
		if err, _ := decide(t, l, c); err != nil {
			t.Fatalf("new key %d: got %v; want allowed", i, err)
		}
		if n := l.local.len(); n > maxKeys {
			t.Fatalf("after %d keys: got %d held; want at most %d", i+1, n, maxKeys)
		}
	}
	if l.local.evicted.Load() == 0 {
		t.Error("got no evictions at the cap")
	}

	// Once every TAT is in the past, the next decision in each shard
	// sweeps it: only the keys decided since remain.
	clk.Add(2 * time.Minute)
	fresh := map[*shard]bool{}
	for i := 0; len(fresh) < numShards; i++ {
		k := fmt.Sprintf("fresh%d", i)
		fresh[l.local.shardOf(bucketKey{s: k})] = true
		if err, _ := decide(t, l, peerCall("192.0.2.1", "X-Key", k)); err != nil {
			t.Fatalf("fresh key: got %v", err)
		}
		if i > 100*numShards {
			t.Fatal("could not reach every shard")
		}
	}
	n := 0
	for i := range l.local.shards {
		for k := range l.local.shards[i].tats {
			if k.s[:5] != "fresh" {
				t.Fatalf("idle key %q survived the sweep", k.s)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("got no keys; want the fresh ones")
	}
}

// Two builds with the same settings (a config reload) share counters;
// another limit starts afresh.
func TestReloadKeepsCounters(t *testing.T) {
	shared := &policy.Shared{}
	env := policy.Env{Route: "/users/*", Shared: shared}
	c := peerCall("192.0.2.1")
	first := newTestLimiter(t, env, hourly(2))
	if got := allowedN(t, first, c, 2); got != 2 {
		t.Fatalf("first snapshot: got %d allowed; want 2", got)
	}
	second := newTestLimiter(t, env, hourly(2))
	if err, _ := decide(t, second, c); err == nil {
		t.Fatal("second snapshot, same settings: got allowed; want refused (counter kept)")
	}
	other := newTestLimiter(t, env, hourly(3))
	if err, _ := decide(t, other, c); err != nil {
		t.Fatalf("new limit: got %v; want allowed (fresh counters)", err)
	}
	otherRoute := newTestLimiter(t, policy.Env{Route: "/books/*", Shared: shared}, hourly(2))
	if err, _ := decide(t, otherRoute, c); err != nil {
		t.Fatalf("other route: got %v; want allowed", err)
	}
}

func TestPerMessage(t *testing.T) {
	shared := &policy.Shared{}
	cfg := hourly(3)
	plain, err := New(policy.Env{Route: "/ws", Shared: shared}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := plain.(policy.MessageChecker); ok {
		t.Fatal("without per_message: the plugin counts messages")
	}
	cfg.PerMessage = true
	p, err := New(policy.Env{Route: "/ws", Shared: shared}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	chain := policy.NewChain([]policy.Plugin{p}, nil)
	if !chain.HasMessageLimits() {
		t.Fatal("with per_message: HasMessageLimits is false")
	}
	c := peerCall("192.0.2.1")
	st := &policy.State{}
	if err := chain.Check(context.Background(), c, st); err != nil {
		t.Fatalf("call: %v", err)
	}
	for i := range 2 {
		if err := chain.CheckMessage(context.Background(), c, st); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	err2 := chain.CheckMessage(context.Background(), c, st)
	if err2 == nil || err2.Code != codes.ResourceExhausted {
		t.Fatalf("message over the limit: got %v; want ResourceExhausted", err2)
	}
}

func TestLocalTryCheckDecides(t *testing.T) {
	l := newTestLimiter(t, policy.Env{}, hourly(1))
	c := peerCall("192.0.2.1")
	if err, pending := l.TryCheck(c, &policy.State{}); err != nil || pending {
		t.Fatalf("first: got %v, pending %v; want allowed", err, pending)
	}
	if err, pending := l.TryCheck(c, &policy.State{}); err == nil || pending {
		t.Fatalf("second: got %v, pending %v; want refused", err, pending)
	}
}

func TestAllowAllocatesNothing(t *testing.T) {
	for _, key := range []string{"", "ip", "route", "consumer", "header:x-tenant", "claim:org"} {
		t.Run("key="+key, func(t *testing.T) {
			l := newTestLimiter(t, policy.Env{Config: &config.Config{TrustedProxies: []string{"10.0.0.0/8"}}},
				config.RateLimiting{Limit: 1 << 40, Period: config.Period(time.Hour), Key: key})
			c := peerCall("10.0.0.1", "X-Tenant", "acme", "X-Forwarded-For", "203.0.113.9")
			c.Consumer = "alice"
			st := &policy.State{Claims: map[string]any{"org": "acme"}}
			l.TryCheck(c, st) // the key's first decision inserts it
			allocs := testing.AllocsPerRun(1000, func() {
				if err, _ := l.TryCheck(c, st); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("got %v allocs per decision; want 0", allocs)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	build, ok := policy.Lookup(Name)
	if !ok {
		t.Fatalf("%q is not registered", Name)
	}
	p, err := build(policy.Env{Route: "/x", Shared: &policy.Shared{}}, config.Plugin{RateLimiting: &config.RateLimiting{Limit: 10, Period: config.Period(time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != Name || p.Phase() != policy.Limit {
		t.Fatalf("got %s in phase %d", p.Name(), p.Phase())
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  policy.Env
		cfg  config.RateLimiting
		want string
	}{
		{"no limit", policy.Env{}, config.RateLimiting{Period: config.Period(time.Second)}, "rate-limiting: limit must be greater than 0, got 0"},
		{"no period", policy.Env{}, config.RateLimiting{Limit: 1}, "rate-limiting: period must be greater than 0, got 0s"},
		{"bad key", policy.Env{}, config.RateLimiting{Limit: 1, Period: config.Period(time.Second), Key: "header:"}, `rate-limiting: unknown key "header:" (known: consumer, ip, route, header:<name>, claim:<name>)`},
		{"bad key kind", policy.Env{}, config.RateLimiting{Limit: 1, Period: config.Period(time.Second), Key: "cookie"}, `rate-limiting: unknown key "cookie" (known: consumer, ip, route, header:<name>, claim:<name>)`},
		{"bad policy", policy.Env{}, config.RateLimiting{Limit: 1, Period: config.Period(time.Second), Policy: "memcached"}, `rate-limiting: unknown policy "memcached" (known: local, redis)`},
		{"redis without block", policy.Env{Config: &config.Config{}}, config.RateLimiting{Limit: 1, Period: config.Period(time.Second), Policy: "redis"}, "rate-limiting: policy redis needs the top-level redis block"},
		{"redis too fine", policy.Env{Config: &config.Config{Redis: &config.Redis{Address: "127.0.0.1:1"}}}, config.RateLimiting{Limit: 2_000_000, Period: config.Period(time.Second), Policy: "redis"}, "rate-limiting: limit 2000000 per 1s is more than one call per microsecond, finer than Redis's clock"},
		{"bad fail", policy.Env{Config: &config.Config{Redis: &config.Redis{Address: "127.0.0.1:1"}}}, config.RateLimiting{Limit: 1, Period: config.Period(time.Second), Policy: "redis", Fail: "sometimes"}, `rate-limiting: unknown fail mode "sometimes" (known: closed, open)`},
		{"bad proxy", policy.Env{Config: &config.Config{TrustedProxies: []string{"10.0.0.0/33"}}}, config.RateLimiting{Limit: 1, Period: config.Period(time.Second)}, `rate-limiting: trusted_proxies[0]: invalid trusted proxy "10.0.0.0/33"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.env, tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v; want %s", err, tc.want)
			}
		})
	}
}
