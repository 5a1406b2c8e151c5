package ratelimit

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy"
)

// instance is one gateway instance's view of a Redis rate limit: its own
// Shared (so its own go-redis client) and its own clock for the circuit.
type instance struct {
	l      *Limiter
	clock  *fakeClock
	logs   *testkit.LogBuffer
	shared *policy.Shared
}

func newRedisInstance(t *testing.T, addr string, cfg config.RateLimiting) *instance {
	t.Helper()
	cfg.Policy = "redis"
	logger, logs := newLogger()
	in := &instance{clock: newFakeClock(), logs: logs, shared: &policy.Shared{}}
	t.Cleanup(func() { _ = in.shared.Close() })
	// A generous timeout (the redis block's): the tests must not fail
	// open because a loaded CI machine answered slowly.
	in.l = newTestLimiter(t, policy.Env{
		Config: &config.Config{Redis: &config.Redis{Address: addr, Timeout: config.Duration(5 * time.Second)}},
		Shared: in.shared,
		Logger: logger,
	}, cfg, WithClock(in.clock.Now))
	return in
}

// TestRedisTimeout: the redis block's timeout bounds each decision.
// Against a server that accepts connections and never answers, a limit
// with timeout 20ms and fail: closed refuses the call with UNAVAILABLE
// naming the store; with timeout 1h, the call's own deadline ends the
// wait first, and the answer is the caller's DEADLINE_EXCEEDED, not an
// outage.
func TestRedisTimeout(t *testing.T) {
	silent := testkit.SilentAddr(t)
	limiter := func(timeout time.Duration) *Limiter {
		shared := &policy.Shared{}
		t.Cleanup(func() { _ = shared.Close() })
		logger, _ := newLogger()
		cfg := hourly(10)
		cfg.Policy, cfg.Fail = "redis", "closed"
		return newTestLimiter(t, policy.Env{
			Config: &config.Config{Redis: &config.Redis{Address: silent, Timeout: config.Duration(timeout)}},
			Shared: shared,
			Logger: logger,
		}, cfg)
	}
	c := peerCall("192.0.2.1")
	err, _ := decide(t, limiter(20*time.Millisecond), c)
	if err == nil || err.Code != codes.Unavailable || err.Msg != "rate limit store unavailable" {
		t.Fatalf("timeout 20ms: got %v; want UNAVAILABLE rate limit store unavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = limiter(time.Hour).Check(ctx, c, &policy.State{})
	if err == nil || err.Code != codes.DeadlineExceeded {
		t.Fatalf("timeout 1h, call deadline 200ms: got %v; want DEADLINE_EXCEEDED", err)
	}
}

func newRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Two gateway instances (two Shared, two clients, skewed clocks) share
// one limit exactly, and the bucket is one expiring Redis key.
func TestRedisSharedByInstances(t *testing.T) {
	srv := testkit.StartRedis(t)
	a := newRedisInstance(t, srv.Addr, hourly(10))
	b := newRedisInstance(t, srv.Addr, hourly(10))
	// Their clocks disagree by an hour: the buckets run on Redis's clock.
	b.clock.Add(time.Hour)
	c := peerCall("192.0.2.1")

	for i := range 10 {
		in := a
		if i%2 == 1 {
			in = b
		}
		err, st := decide(t, in.l, c)
		if err != nil {
			t.Fatalf("call %d: got %v; want allowed", i+1, err)
		}
		if st.RateLimit.Remaining != int64(9-i) {
			t.Fatalf("call %d: got remaining %d; want %d", i+1, st.RateLimit.Remaining, 9-i)
		}
	}
	for _, in := range []*instance{a, b} {
		err, st := decide(t, in.l, c)
		if err == nil || err.Code != codes.ResourceExhausted {
			t.Fatalf("call 11: got %v; want ResourceExhausted", err)
		}
		if want := "rate limit exceeded: 10 calls per 1h0m0s; retry in 6m0s"; err.Msg != want {
			// 360s minus the few ms the test took, rounded up.
			t.Errorf("message: got %q; want %q", err.Msg, want)
		}
		if len(st.Response) != 1 || st.Response[0] != (policy.Field{Name: "retry-after", Value: "360"}) {
			t.Errorf("response fields: got %v", st.Response)
		}
		if st.RateLimit != (policy.RateLimit{Set: true, Limit: 10, ResetSeconds: 3600}) {
			t.Errorf("RateLimit: got %+v", st.RateLimit)
		}
	}
	// Another client has its own bucket.
	if err, _ := decide(t, b.l, peerCall("192.0.2.2")); err != nil {
		t.Fatalf("other client: got %v; want allowed", err)
	}

	rc := newRedisClient(t, srv.Addr)
	key := "rosetta:rl:/users/*:ip=192.0.2.1"
	ttl, err := rc.PTTL(context.Background(), key).Result()
	if err != nil || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("PTTL %s: got %v, %v; want an expiry within the period", key, ttl, err)
	}
	if n := a.l.FailOpens() + b.l.FailOpens(); n != 0 {
		t.Errorf("fail-opens: got %d; want 0", n)
	}
}

// TryCheck never decides with Redis: it answers pending, counting
// nothing.
func TestRedisTryCheckPending(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newRedisInstance(t, srv.Addr, hourly(1))
	st := &policy.State{}
	if err, pending := in.l.TryCheck(peerCall("192.0.2.1"), st); err != nil || !pending {
		t.Fatalf("got %v, pending %v; want pending", err, pending)
	}
	if st.RateLimit.Set || len(st.Response) != 0 {
		t.Fatalf("state touched: %+v", st)
	}
	n, err := newRedisClient(t, srv.Addr).Exists(context.Background(), "rosetta:rl:/users/*:ip=192.0.2.1").Result()
	if err != nil || n != 0 {
		t.Fatalf("key exists: %d, %v; want none", n, err)
	}
}

// Redis stops: fail open allows, uncounted, and logs once; calls skip
// Redis until the probe interval passes; Redis back on the same port:
// limits are enforced again and the recovery is logged once.
func TestRedisOutageFailOpen(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newRedisInstance(t, srv.Addr, hourly(2))
	c := peerCall("192.0.2.1")
	if err, _ := decide(t, in.l, c); err != nil {
		t.Fatalf("before the outage: %v", err)
	}

	srv.Stop()
	for i := range 20 {
		err, st := decide(t, in.l, c)
		if err != nil {
			t.Fatalf("call %d during the outage: got %v; want allowed (fail open)", i, err)
		}
		if st.RateLimit.Set {
			t.Fatalf("call %d during the outage: RateLimit set to %+v; want unset", i, st.RateLimit)
		}
	}
	if got := in.l.FailOpens(); got != 20 {
		t.Errorf("fail-opens: got %d; want 20", got)
	}
	if got := in.logs.Lines("level=WARN"); len(got) != 1 {
		t.Errorf("warnings: got %q; want one", got)
	}

	srv.Start()
	// Until redisclient.ProbeEvery has passed on the limiter's clock, calls do not try
	// Redis (the circuit is open), so they still fail open.
	if err, st := decide(t, in.l, c); err != nil || st.RateLimit.Set {
		t.Fatalf("before the next probe: got %v, %+v; want an uncounted allow", err, st.RateLimit)
	}
	in.clock.Add(redisclient.ProbeEvery)
	// The restarted server lost its keys: a full bucket of 2.
	if got := allowedN(t, in.l, c, 3); got != 2 {
		t.Fatalf("after recovery: got %d allowed; want 2", got)
	}
	if got := in.logs.Lines("level=INFO"); len(got) != 1 {
		t.Errorf("recovery lines: got %q; want one", got)
	}
	if got := in.logs.Lines("level=WARN"); len(got) != 1 {
		t.Errorf("warnings after recovery: got %q; want still one", got)
	}
}

// Redis stops: fail closed refuses with Unavailable; back: enforced.
func TestRedisOutageFailClosed(t *testing.T) {
	srv := testkit.StartRedis(t)
	cfg := hourly(1)
	cfg.Fail = "closed"
	in := newRedisInstance(t, srv.Addr, cfg)
	c := peerCall("192.0.2.1")

	srv.Stop()
	for range 3 {
		err, _ := decide(t, in.l, c)
		if err == nil || err.Code != codes.Unavailable || err.Msg != "rate limit store unavailable" {
			t.Fatalf("during the outage: got %v; want Unavailable: rate limit store unavailable", err)
		}
	}
	if got := in.l.FailOpens(); got != 0 {
		t.Errorf("fail-opens: got %d; want 0", got)
	}
	if got := in.logs.Lines("level=WARN"); len(got) != 1 {
		t.Errorf("warnings: got %q; want one", got)
	}

	srv.Start()
	in.clock.Add(redisclient.ProbeEvery)
	if err, _ := decide(t, in.l, c); err != nil {
		t.Fatalf("after recovery: got %v; want allowed", err)
	}
	if err, _ := decide(t, in.l, c); err == nil || err.Code != codes.ResourceExhausted {
		t.Fatalf("after recovery, over the limit: got %v; want ResourceExhausted", err)
	}
}

// A caller that gives up is not an outage.
func TestRedisCanceledCaller(t *testing.T) {
	srv := testkit.StartRedis(t)
	in := newRedisInstance(t, srv.Addr, hourly(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := in.l.Check(ctx, peerCall("192.0.2.1"), &policy.State{})
	if err == nil || err.Code != codes.Canceled {
		t.Fatalf("got %v; want Canceled", err)
	}
	if in.l.remote.Down() {
		t.Fatal("a canceled caller marked Redis down")
	}
	if err, _ := decide(t, in.l, peerCall("192.0.2.1")); err != nil {
		t.Fatalf("next call: got %v; want allowed (the canceled one counted nothing or once)", err)
	}
}

// Limiters of two snapshots with the same redis block share one client.
func TestRedisClientShared(t *testing.T) {
	shared := &policy.Shared{}
	defer func() { _ = shared.Close() }()
	env := policy.Env{Config: &config.Config{Redis: &config.Redis{Address: "127.0.0.1:1"}}, Shared: shared, Logger: slog.New(slog.DiscardHandler)}
	cfg := hourly(5)
	cfg.Policy = "redis"
	a := newTestLimiter(t, env, cfg)
	cfg.Limit = 7
	b := newTestLimiter(t, env, cfg)
	if a.remote != b.remote {
		t.Fatal("two limiters with one redis block got two clients")
	}
	env.Config = &config.Config{Redis: &config.Redis{Address: "127.0.0.1:1", DB: 2}}
	if c := newTestLimiter(t, env, cfg); c.remote == a.remote {
		t.Fatal("another redis block shares the client")
	}
}
