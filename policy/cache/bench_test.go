package cache

import (
	"context"
	"testing"

	"github.com/rosetta-gateway/rosetta/call"
)

// BenchmarkCacheHit measures a hit on the memory store: the key of a
// ~100-byte request with a vary header and a consumer, and the lookup.
func BenchmarkCacheHit(b *testing.B) {
	c, _ := newTestCache(&testing.T{}, "vary", nil)
	defer c.Close()
	req := make([]byte, 100)
	cl := &call.Call{HTTPMethod: "GET", Consumer: "alice", Header: call.HTTPHeader{"Accept-Language": {"en"}}}
	var k Key
	c.RPCKey(&k, "route", "/pkg.Svc/M", req, cl)
	if _, err := c.Do(context.Background(), &k, &backend{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var k Key
		for pb.Next() {
			c.RPCKey(&k, "route", "/pkg.Svc/M", req, cl)
			r, err := c.Do(context.Background(), &k, nil)
			if err != nil || r.Status != call.CacheHit {
				b.Errorf("got %v, %v; want HIT", r.Status, err)
				return
			}
		}
	})
}

// BenchmarkRPCKey measures computing a key alone.
func BenchmarkRPCKey(b *testing.B) {
	c, _ := newTestCache(&testing.T{}, "vary", nil)
	defer c.Close()
	req := make([]byte, 100)
	cl := &call.Call{HTTPMethod: "GET", Consumer: "alice", Header: call.HTTPHeader{"Accept-Language": {"en"}}}
	b.ReportAllocs()
	var k Key
	for b.Loop() {
		c.RPCKey(&k, "route", "/pkg.Svc/M", req, cl)
	}
}
