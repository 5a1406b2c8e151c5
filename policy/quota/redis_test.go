package quota_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/quota"
)

// Redis keys expire on the instances' clock: the fake clocks of these
// tests stay in the future of the machine's.
var jun15 = time.Date(2031, 6, 15, 10, 0, 0, 0, time.UTC)

// redisPlans is plans and consumers with the redis block of srv.
func redisPlans(srv *testkit.Redis, plans string) string {
	// A loaded CI machine must not make a Redis decision fail open.
	return plans + "redis: {address: \"" + srv.Addr + "\", timeout: 5s}\n"
}

func newRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Two instances (two sets, two Shared, two clients) share one Redis:
// with concurrent callers on both, exactly limit calls pass per period,
// and the next period (read on the instances' clocks) starts afresh.
func TestRedisExactAcrossInstances(t *testing.T) {
	srv := testkit.StartRedis(t)
	const limit = 50
	cfg := redisPlans(srv, `
plans:
  free: {quota: {limit: 50, period: month, time_zone: Europe/Berlin}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: free}
  - {name: bob, keys: ["${BOB_KEY}"]}
`)
	a := newInstance(t, newConfig(t, cfg), jun15)
	b := newInstance(t, newConfig(t, cfg), jun15)

	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		in := a
		if g%2 == 1 {
			in = b
		}
		wg.Go(func() {
			chain := in.library()
			if g%4 >= 2 {
				chain = in.chain(routeUsers)
			}
			for range 30 {
				err, _ := check(chain, "ALICE_KEY")
				switch {
				case err == nil:
					allowed.Add(1)
				case err.Code == codes.ResourceExhausted:
					refused.Add(1)
				default:
					t.Errorf("got %v; want allowed or ResourceExhausted", err)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Errorf("got %d of 240 calls allowed; want %d", got, limit)
	}
	if got := refused.Load(); got != 240-limit {
		t.Errorf("got %d refused; want %d", got, 240-limit)
	}
	for _, in := range []*instance{a, b} {
		if n := in.plan(t).FailOpens(); n != 0 {
			t.Errorf("fail-opens: got %d; want 0", n)
		}
	}

	// One key per plan, consumer and period, holding the count, expiring
	// a minute after the period ends.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	start := time.Date(2031, 6, 1, 0, 0, 0, 0, berlin)
	end := time.Date(2031, 7, 1, 0, 0, 0, 0, berlin)
	key := "rosetta:quota:free:month:" + strconv.FormatInt(start.Unix(), 10) + ":alice"
	rc := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	if n, err := rc.Get(ctx, key).Int64(); err != nil || n != limit {
		t.Fatalf("GET %s: got %d, %v; want %d", key, n, err, limit)
	}
	ttl, err := rc.PTTL(ctx, key).Result()
	if want := time.Until(end.Add(time.Minute)); err != nil || ttl <= 0 || ttl > want+time.Second || ttl < want-time.Minute {
		t.Errorf("PTTL %s: got %v, %v; want about %v", key, ttl, err, want)
	}

	// Both instances read the same status.
	for _, in := range []*instance{a, b} {
		st, ok, err := in.plan(t).QuotaStatus(ctx, "alice")
		want := quota.QuotaStatus{Plan: "free", Limit: limit, Used: limit, Remaining: 0, Period: "month", ResetAt: end}
		if !ok || err != nil || !sameStatus(st, want) {
			t.Errorf("QuotaStatus: got %+v, %v, %v; want %+v", st, ok, err, want)
		}
	}
	// bob has no plan: unlimited, and no key.
	if got := allowedN(a.library(), "BOB_KEY", 60); got != 60 {
		t.Errorf("bob: got %d of 60 allowed; want 60", got)
	}

	// July, on both clocks: a fresh count.
	for _, in := range []*instance{a, b} {
		in.clock.Set(end)
	}
	if got := allowedN(a.library(), "ALICE_KEY", 30) + allowedN(b.chain(routeUsers), "ALICE_KEY", 30); got != limit {
		t.Errorf("next month: got %d of 60 allowed; want %d", got, limit)
	}
}

// The refusal is the same as in memory, naming the reset in the quota's
// zone.
func TestRedisRefusal(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newInstance(t, newConfig(t, redisPlans(srv, smallPlans("America/New_York"))), jun15)
	if got := allowedN(in.library(), "ALICE_KEY", 3); got != 3 {
		t.Fatalf("got %d allowed; want 3", got)
	}
	err, st := check(in.library(), "ALICE_KEY")
	want := `quota exhausted: plan "free" allows 3 calls per month; resets at 2031-07-01T00:00:00-04:00`
	if err == nil || err.Code != codes.ResourceExhausted || err.Msg != want || err.Plugin != "plan" {
		t.Fatalf("got %v; want ResourceExhausted %q", err, want)
	}
	// 15 days 18 hours to midnight in New York (UTC-4).
	seconds := int64(15*86400 + 18*3600)
	if len(st.Response) != 1 || st.Response[0] != (policy.Field{Name: "retry-after", Value: strconv.FormatInt(seconds, 10)}) {
		t.Errorf("response fields: got %v; want retry-after %d", st.Response, seconds)
	}
	if want := (policy.RateLimit{Set: true, Limit: 3, ResetSeconds: seconds}); st.RateLimit != want {
		t.Errorf("RateLimit: got %+v; want %+v", st.RateLimit, want)
	}
}

// The plan's rate in Redis counts per consumer across routes, and
// across instances.
func TestRedisRateAcrossRoutes(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newInstance(t, newConfig(t, redisPlans(srv, `
plans:
  hourly: {rate: {limit: 3, period: 1h}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: hourly}
  - {name: bob, keys: ["${BOB_KEY}"], plan: hourly}
`)), jun15)
	testRateAcrossRoutes(t, in)
	ttl, err := newRedisClient(t, srv.Addr).PTTL(context.Background(), "rosetta:rl:plan:hourly:consumer=alice").Result()
	if err != nil || ttl <= 0 || ttl > time.Hour {
		t.Errorf("rate key: got PTTL %v, %v; want an expiry within the hour", ttl, err)
	}
}

// With Redis, TryCheck is pending for a consumer with a plan and counts
// nothing; it decides at once for other calls.
func TestRedisTryCheck(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newInstance(t, newConfig(t, redisPlans(srv, smallPlans("UTC"))), jun15)
	chain := in.library()
	for range 5 {
		st := &policy.State{}
		c := keyCall("ALICE_KEY")
		if err, pending := chain.TryCheck(c, st); err != nil || !pending {
			t.Fatalf("alice: got %v, pending %v; want pending", err, pending)
		}
		if c.Consumer != "" || st.RateLimit.Set || len(st.Response)+len(st.Upstream) != 0 {
			t.Fatalf("alice: pending left state behind: consumer %q, %+v", c.Consumer, st)
		}
	}
	if st, _, err := in.plan(t).QuotaStatus(context.Background(), "alice"); err != nil || st.Used != 0 {
		t.Fatalf("after pending TryChecks: got %+v, %v; want nothing used", st, err)
	}
	st := &policy.State{}
	if err, pending := chain.TryCheck(keyCall("CAROL_KEY"), st); err != nil || pending {
		t.Fatalf("carol (no plan): got %v, pending %v; want allowed at once", err, pending)
	}
}

// A pending TryCheck followed by Check counts a call once, also for a
// route's own in-memory rate-limiting: the plan runs first of the
// limits, before anything local counts.
func TestRedisPendingCountsOnce(t *testing.T) {
	srv := testkit.StartRedis(t)
	cfg := newConfig(t, redisPlans(srv, `
plans:
  free: {quota: {limit: 4, period: day}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: free}
`)+`
plugins:
  - rate-limiting: {limit: 3, period: 1h, key: consumer}
`)
	in := newInstance(t, cfg, jun15)
	chain := in.library()
	allowed := 0
	for range 6 {
		st := &policy.State{}
		c := keyCall("ALICE_KEY")
		err, pending := chain.TryCheck(c, st)
		if pending {
			err = chain.Check(context.Background(), c, st)
		}
		chain.Done(st)
		if err == nil {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("got %d of 6 allowed; want 3 (the route's rate)", allowed)
	}
	// The quota counted the 6 calls once each, up to its limit of 4.
	if st, _, _ := in.plan(t).QuotaStatus(context.Background(), "alice"); st.Used != 4 {
		t.Errorf("quota used: got %d; want 4", st.Used)
	}
}

// A reload (a new set with the previous Shared) keeps the count and the
// client.
func TestRedisReload(t *testing.T) {
	srv := testkit.StartRedis(t)
	cfg := redisPlans(srv, smallPlans("UTC"))
	in := newInstance(t, newConfig(t, cfg), jun15)
	if got := allowedN(in.library(), "ALICE_KEY", 2); got != 2 {
		t.Fatalf("before the reload: got %d allowed; want 2", got)
	}
	in.reload(t, newConfig(t, cfg))
	if got := allowedN(in.library(), "ALICE_KEY", 3); got != 1 {
		t.Errorf("after the reload: got %d of 3 allowed; want 1", got)
	}
}

// Redis down: calls fail open (allowed, uncounted), the outage is logged
// once; Redis back: quotas are enforced again and the recovery logged.
func TestRedisDownFailsOpen(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newInstance(t, newConfig(t, redisPlans(srv, `
plans:
  free: {quota: {limit: 2, period: day}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: free}
`)), jun15)
	p := in.plan(t)
	if got := allowedN(in.library(), "ALICE_KEY", 1); got != 1 {
		t.Fatal("before the outage: refused")
	}

	srv.Stop()
	for i := range 10 {
		err, st := check(in.library(), "ALICE_KEY")
		if err != nil {
			t.Fatalf("call %d during the outage: got %v; want allowed (fail open)", i+1, err)
		}
		if st.RateLimit.Set || len(st.Response) != 0 {
			t.Fatalf("call %d during the outage: got %+v; want nothing reported", i+1, st)
		}
	}
	if got := p.FailOpens(); got != 10 {
		t.Errorf("fail-opens: got %d; want 10", got)
	}
	warn := in.logs.Lines("level=WARN")
	if len(warn) != 1 || !strings.Contains(warn[0], "quota store unreachable") || !strings.Contains(warn[0], "plugin=plan") {
		t.Errorf("warnings: got %q; want one quota store unreachable line", warn)
	}
	if _, _, err := p.QuotaStatus(context.Background(), "alice"); err == nil {
		t.Error("QuotaStatus during the outage: got no error")
	}

	srv.Start()
	in.clock.Add(2 * time.Second) // past the probe interval
	// The restarted server lost its keys: a fresh count of 2.
	if got := allowedN(in.library(), "ALICE_KEY", 3); got != 2 {
		t.Errorf("after recovery: got %d of 3 allowed; want 2", got)
	}
	if got := in.logs.Lines("quota store reachable again"); len(got) != 1 {
		t.Errorf("recovery lines: got %q; want one", got)
	}
	if got := in.logs.Lines("level=WARN"); len(got) != 1 {
		t.Errorf("warnings after recovery: got %q; want still one", got)
	}
}

// A caller that gives up is refused with its context's error, and is
// not an outage.
func TestRedisCanceledCaller(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newInstance(t, newConfig(t, redisPlans(srv, smallPlans("UTC"))), jun15)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := in.library().Check(ctx, keyCall("ALICE_KEY"), &policy.State{})
	if err == nil || err.Code != codes.Canceled {
		t.Fatalf("got %v; want Canceled", err)
	}
	if got := in.plan(t).FailOpens(); got != 0 {
		t.Errorf("fail-opens: got %d; want 0", got)
	}
	if got := allowedN(in.library(), "ALICE_KEY", 3); got != 3 {
		t.Errorf("next calls: got %d of 3 allowed; want 3", got)
	}
}
