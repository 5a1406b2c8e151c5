package ratelimit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy"
)

// benchCalls returns n calls from n client IPs.
func benchCalls(n int) []*call.Call {
	calls := make([]*call.Call, n)
	for i := range calls {
		calls[i] = peerCall(fmt.Sprintf("198.51.%d.%d", i/256, i%256))
	}
	return calls
}

// BenchmarkLocalAllow decides allowed calls of keys the store holds,
// from every P at once, each goroutine on its own keys (1024 in all).
func BenchmarkLocalAllow(b *testing.B) {
	l := newTestLimiter(b, policy.Env{}, config.RateLimiting{Limit: 1 << 40, Period: config.Period(time.Hour), Key: "ip"})
	calls := benchCalls(1024)
	for _, c := range calls {
		l.TryCheck(c, &policy.State{})
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(64))
		var st policy.State
		for pb.Next() {
			if err, _ := l.TryCheck(calls[i%len(calls)], &st); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkLocalAllowOneKey is the contended case: one bucket (key:
// route) decided from every P.
func BenchmarkLocalAllowOneKey(b *testing.B) {
	l := newTestLimiter(b, policy.Env{}, config.RateLimiting{Limit: 1 << 40, Period: config.Period(time.Hour), Key: "route"})
	c := peerCall("198.51.100.1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var st policy.State
		for pb.Next() {
			if err, _ := l.TryCheck(c, &st); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLocalRefuse decides calls over the limit: the refusal builds
// its error, message and retry-after field.
func BenchmarkLocalRefuse(b *testing.B) {
	l := newTestLimiter(b, policy.Env{}, config.RateLimiting{Limit: 1, Period: config.Period(time.Hour), Key: "ip"})
	calls := benchCalls(1024)
	for _, c := range calls {
		l.TryCheck(c, &policy.State{})
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(64))
		for pb.Next() {
			var st policy.State
			if err, _ := l.TryCheck(calls[i%len(calls)], &st); err == nil {
				b.Fatal("allowed")
			}
			i++
		}
	})
}

// BenchmarkRedisAllow decides allowed calls in a real local redis-server
// (one round trip running the GCRA script each).
func BenchmarkRedisAllow(b *testing.B) {
	srv := testkit.StartRedis(b)
	shared := &policy.Shared{}
	b.Cleanup(func() { _ = shared.Close() })
	l := newTestLimiter(b, policy.Env{Config: &config.Config{Redis: &config.Redis{Address: srv.Addr}}, Shared: shared},
		config.RateLimiting{Limit: 1 << 30, Period: config.Period(time.Hour), Key: "ip", Policy: "redis"}, WithTimeout(time.Second))
	calls := benchCalls(1024)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(64))
		ctx := context.Background()
		var st policy.State
		for pb.Next() {
			if err := l.Check(ctx, calls[i%len(calls)], &st); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	if n := l.FailOpens(); n != 0 {
		b.Fatalf("%d calls failed open", n)
	}
}
