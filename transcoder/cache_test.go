package transcoder

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy/cache"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// countingConn answers every unary call with the request's bytes and a
// cache-control header, counting the calls.
type countingConn struct {
	grpc.ClientConnInterface
	calls atomic.Int64
}

func (c *countingConn) Invoke(_ context.Context, _ string, args, reply any, opts ...grpc.CallOption) error {
	c.calls.Add(1)
	*reply.(*[]byte) = append([]byte(nil), *args.(*[]byte)...)
	for _, o := range opts {
		if h, ok := o.(grpc.HeaderCallOption); ok {
			*h.HeaderAddr = metadata.Pairs("cache-control", "max-age=60")
		}
	}
	return nil
}

type oneCache struct{ c *cache.Cache }

func (o oneCache) CacheForMethod(string) (*cache.Cache, string) { return o.c, "route" }

func newCacheConn(t testing.TB) (grpc.ClientConnInterface, *countingConn) {
	c := cache.New(&config.ProxyCache{TTL: config.Duration(time.Minute), MaxEntryBytes: config.MiB, Key: config.StringList{"consumer"}}, cache.NewMemory(1<<20, 1<<16))
	t.Cleanup(func() { _ = c.Close() })
	next := &countingConn{}
	return CacheConn(next, oneCache{c}), next
}

// getContext is the context of a GET call, as WithUpstreamInfo makes it.
func getContext() (context.Context, *upstream.CallInfo) {
	ci := &upstream.CallInfo{Call: &call.Call{HTTPMethod: "GET"}}
	return upstream.WithCallInfo(context.Background(), ci), ci
}

func TestCacheConn(t *testing.T) {
	t.Parallel()
	conn, next := newCacheConn(t)
	for i, want := range []call.CacheStatus{call.CacheMiss, call.CacheHit} {
		ctx, ci := getContext()
		req, resp := []byte("req"), []byte(nil)
		var hdr metadata.MD
		if err := conn.Invoke(ctx, "/p.S/M", &req, &resp, RawCall, grpc.Header(&hdr)); err != nil {
			t.Fatal(err)
		}
		if ci.Cache != want || string(resp) != "req" || hdr.Get("cache-control")[0] != "max-age=60" {
			t.Errorf("call %d: got %v %q %v; want %v", i, ci.Cache, resp, hdr, want)
		}
	}
	// A POST is not cached.
	ci := &upstream.CallInfo{Call: &call.Call{HTTPMethod: "POST"}}
	req, resp := []byte("req"), []byte(nil)
	if err := conn.Invoke(upstream.WithCallInfo(context.Background(), ci), "/p.S/M", &req, &resp); err != nil || ci.Cache != call.CacheNone {
		t.Errorf("POST: got %v, %v; want no cache", ci.Cache, err)
	}
	if n := next.calls.Load(); n != 2 {
		t.Errorf("upstream calls: got %d; want 2", n)
	}
}

// BenchmarkCacheConnHit measures a unary call answered by the cache, as
// the REST fast path and Connect make it (raw codec, header and trailer
// options).
func BenchmarkCacheConnHit(b *testing.B) {
	conn, _ := newCacheConn(b)
	req := make([]byte, 100)
	ctx, _ := getContext()
	var warm []byte
	if err := conn.Invoke(ctx, "/p.S/M", &req, &warm, RawCall); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx, ci := getContext()
		for pb.Next() {
			var resp []byte
			var hdr, trl metadata.MD
			if err := conn.Invoke(ctx, "/p.S/M", &req, &resp, RawCall, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil || ci.Cache != call.CacheHit {
				b.Errorf("got %v, %v; want HIT", ci.Cache, err)
				return
			}
		}
	})
}
