package cache

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a hand-moved clock.
type clock = testkit.Clock

func newClock() *clock { return testkit.NewClock(time.Unix(1_800_000_000, 0)) }

// backend is a Fetcher that counts its calls and answers with its
// settings.
type backend struct {
	calls   atomic.Int64
	control string
	body    string
	err     error
	hold    chan struct{} // when set, each fetch waits for it
}

func (b *backend) Fetch(ctx context.Context) (*Entry, bool, error) {
	n := b.calls.Add(1)
	if b.hold != nil {
		select {
		case <-b.hold:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	if b.err != nil {
		return nil, false, b.err
	}
	body := b.body
	if body == "" {
		body = fmt.Sprintf("answer %d", n)
	}
	var cc []string
	if b.control != "" {
		cc = []string{b.control}
	}
	return &Entry{Header: map[string][]string{"x": {"1"}}, Body: []byte(body), Control: ParseControl(cc)}, true, nil
}

func newTestCache(t *testing.T, cfg string, store Store) (*Cache, *clock) {
	t.Helper()
	pc := &config.ProxyCache{TTL: config.Duration(30 * time.Second), MaxEntryBytes: config.MiB, Key: config.StringList{"consumer"}}
	switch cfg {
	case "swr":
		pc.StaleWhileRevalidate = config.Duration(time.Minute)
	case "vary":
		pc.Vary = config.StringList{"Accept-Language"}
	case "shared":
		pc.Key = nil
	case "ip":
		pc.Key = config.StringList{"ip"}
	}
	if store == nil {
		store = NewMemory(64<<20, 1<<20)
	}
	clk := newClock()
	c := New(pc, store, WithClock(clk.Now), WithTrustedProxies([]string{"10.0.0.0/8"}))
	t.Cleanup(func() { _ = c.Close() })
	return c, clk
}

func key(c *Cache, req string, cl *call.Call) *Key {
	k := &Key{}
	if cl == nil {
		cl = &call.Call{HTTPMethod: "GET"}
	}
	c.RPCKey(k, "route", "/pkg.Svc/M", []byte(req), cl)
	return k
}

func do(t *testing.T, c *Cache, k *Key, b Fetcher) Result {
	t.Helper()
	r, err := c.Do(context.Background(), k, b)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	return r
}

func TestCacheHitMissTTL(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(t, "", nil)
	b := &backend{}
	k := key(c, "req", nil)
	if r := do(t, c, k, b); r.Status != call.CacheMiss || string(r.Entry.Body) != "answer 1" {
		t.Fatalf("first: got %v %q; want MISS answer 1", r.Status, r.Entry.Body)
	}
	clk.Add(29 * time.Second)
	if r := do(t, c, k, b); r.Status != call.CacheHit || r.Age != 29 || string(r.Entry.Body) != "answer 1" {
		t.Fatalf("within ttl: got %v age %d %q; want HIT 29 answer 1", r.Status, r.Age, r.Entry.Body)
	}
	clk.Add(time.Second)
	if r := do(t, c, k, b); r.Status != call.CacheMiss || string(r.Entry.Body) != "answer 2" {
		t.Fatalf("at ttl: got %v %q; want MISS answer 2", r.Status, r.Entry.Body)
	}
	if got := c.Stats(); got != (Stats{Hits: 1, Misses: 2}) {
		t.Errorf("stats: got %+v", got)
	}
}

func TestCacheControl(t *testing.T) {
	t.Parallel()
	cases := []struct {
		control    string
		consumer   string
		wantStored bool
		fresh      time.Duration // when stored: the last second still fresh
	}{
		{"", "", true, 29 * time.Second},
		{"no-store", "", false, 0},
		{"no-cache", "", false, 0},
		{"private", "", false, 0},
		{"private", "alice", true, 29 * time.Second},
		{"max-age=5", "", true, 4 * time.Second},
		{"max-age=60", "", true, 29 * time.Second},
		{"s-maxage=3, max-age=60", "", true, 2 * time.Second},
		{"max-age=0", "", false, 0},
		{`max-age="7", public`, "", true, 6 * time.Second},
		{"max-age=bad", "", false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.control+"/"+tc.consumer, func(t *testing.T) {
			t.Parallel()
			c, clk := newTestCache(t, "", nil)
			b := &backend{control: tc.control}
			k := key(c, "req", &call.Call{HTTPMethod: "GET", Consumer: tc.consumer})
			do(t, c, k, b)
			if !tc.wantStored {
				if r := do(t, c, k, b); r.Status != call.CacheMiss {
					t.Errorf("got %v; want MISS (not stored)", r.Status)
				}
				return
			}
			clk.Add(tc.fresh)
			if r := do(t, c, k, b); r.Status != call.CacheHit {
				t.Errorf("after %v: got %v; want HIT", tc.fresh, r.Status)
			}
			clk.Add(time.Second)
			if r := do(t, c, k, b); r.Status != call.CacheMiss {
				t.Errorf("after %v: got %v; want MISS", tc.fresh+time.Second, r.Status)
			}
		})
	}
}

func TestParseControl(t *testing.T) {
	t.Parallel()
	got := ParseControl([]string{"Public, MAX-AGE=10", `stale-while-revalidate=30, must-revalidate, private="x-a"`})
	want := Control{Private: true, MustRevalidate: true, MaxAge: 10 * time.Second, SMaxAge: -1, StaleWhileRevalidate: 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCacheStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(t, "swr", nil)
	b := &backend{}
	k := key(c, "req", nil)
	do(t, c, k, b)
	clk.Add(31 * time.Second)
	r := do(t, c, k, b)
	if r.Status != call.CacheStale || string(r.Entry.Body) != "answer 1" || r.Age != 31 {
		t.Fatalf("past ttl: got %v %q age %d; want STALE answer 1 age 31", r.Status, r.Entry.Body, r.Age)
	}
	for i := 0; b.calls.Load() < 2 || do(t, c, k, b).Status != call.CacheHit; i++ {
		if i == 1000 {
			t.Fatal("no background refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := do(t, c, k, b); r.Status != call.CacheHit || string(r.Entry.Body) != "answer 2" || r.Age != 0 {
		t.Errorf("refreshed: got %v %q age %d; want HIT answer 2 age 0", r.Status, r.Entry.Body, r.Age)
	}
	if n := b.calls.Load(); n != 2 {
		t.Errorf("backend calls: got %d; want 2 (one refresh)", n)
	}
	// must-revalidate turns the stale window off.
	b2 := &backend{control: "must-revalidate"}
	k2 := key(c, "other", nil)
	do(t, c, k2, b2)
	clk.Add(31 * time.Second)
	if r := do(t, c, k2, b2); r.Status != call.CacheMiss {
		t.Errorf("must-revalidate: got %v; want MISS", r.Status)
	}
	// The backend's stale-while-revalidate counts when longer.
	c3, clk3 := newTestCache(t, "", nil)
	b3 := &backend{control: "stale-while-revalidate=100"}
	k3 := key(c3, "req", nil)
	do(t, c3, k3, b3)
	clk3.Add(120 * time.Second)
	if r := do(t, c3, k3, b3); r.Status != call.CacheStale {
		t.Errorf("backend's stale-while-revalidate: got %v; want STALE", r.Status)
	}
}

func TestCacheCoalescing(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(t, "", nil)
	b := &backend{hold: make(chan struct{})}
	const n = 20
	var wg sync.WaitGroup
	results := make(chan Result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Do(context.Background(), key(c, "req", nil), b)
			if err != nil {
				t.Errorf("Do: %v", err)
			}
			results <- r
		}()
	}
	for c.Stats().Waiting < n {
		time.Sleep(time.Millisecond)
	}
	close(b.hold)
	wg.Wait()
	close(results)
	for r := range results {
		if r.Status != call.CacheMiss || string(r.Entry.Body) != "answer 1" {
			t.Errorf("got %v %q; want MISS answer 1", r.Status, r.Entry.Body)
		}
	}
	if got := b.calls.Load(); got != 1 {
		t.Errorf("backend calls: got %d; want 1", got)
	}
}

// TestCacheCoalescingNotShared: waiters on an answer the cache may not
// keep ask the backend themselves; an error is everyone's.
func TestCacheCoalescingNotShared(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		b         *backend
		wantCalls int64
		wantErr   bool
	}{
		{"no-store", &backend{control: "no-store"}, 3, false},
		{"error", &backend{err: status.Error(codes.NotFound, "nope")}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newTestCache(t, "", nil)
			hold := make(chan struct{})
			tc.b.hold = hold
			var wg sync.WaitGroup
			for i := 0; i < 3; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := c.Do(context.Background(), key(c, "req", nil), tc.b)
					if (err != nil) != tc.wantErr {
						t.Errorf("err: %v", err)
					}
				}()
			}
			for c.Stats().Waiting < 3 {
				time.Sleep(time.Millisecond)
			}
			close(hold)
			wg.Wait()
			if got := tc.b.calls.Load(); got != tc.wantCalls {
				t.Errorf("backend calls: got %d; want %d", got, tc.wantCalls)
			}
		})
	}
}

// TestCacheWaiterGivesUp: a caller whose context ends stops waiting; the
// fetch goes on and fills the cache for the next.
func TestCacheWaiterGivesUp(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(t, "", nil)
	b := &backend{hold: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, key(c, "req", nil), b)
		done <- err
	}()
	for b.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Errorf("got %v; want CANCELED", err)
	}
	close(b.hold)
	for i := 0; do(t, c, key(c, "req", nil), b).Status != call.CacheHit; i++ {
		if i == 1000 {
			t.Fatal("the abandoned fetch did not fill the cache")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCacheKeys(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(t, "vary", nil)
	h := func(kv ...string) call.HTTPHeader {
		m := call.HTTPHeader{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	base := &call.Call{HTTPMethod: "GET", Header: h("Accept-Language", "en")}
	sum := func(req string, cl *call.Call) [32]byte { return key(c, req, cl).Sum }
	msg := func(fields ...int) string {
		var b []byte
		for _, f := range fields {
			b = protowire.AppendTag(b, protowire.Number(f), protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f))
		}
		return string(b)
	}
	if sum(msg(1, 2, 3), base) != sum(msg(3, 1, 2), base) {
		t.Error("field order changes the key")
	}
	if sum(msg(1, 2), base) == sum(msg(1, 3), base) {
		t.Error("different requests share a key")
	}
	if sum("x", base) == sum("x", &call.Call{HTTPMethod: "GET", Header: h("Accept-Language", "de")}) {
		t.Error("vary header ignored")
	}
	if sum("x", base) != sum("x", &call.Call{HTTPMethod: "POST", Header: h("Accept-Language", "en", "X-Other", "1")}) {
		t.Error("headers outside vary, or the HTTP method, change the key")
	}
	if sum("x", base) == sum("x", &call.Call{HTTPMethod: "GET", Header: h("Accept-Language", "en"), Consumer: "alice"}) {
		t.Error("consumer ignored")
	}
	var k1, k2 Key
	c.RPCKey(&k1, "r1", "/p.S/M", []byte("x"), base)
	c.RPCKey(&k2, "r2", "/p.S/M", []byte("x"), base)
	if k1.Sum == k2.Sum {
		t.Error("route ignored")
	}
	c.HTTPKey(&k2, "r1", "/p.S/M", "", base)
	if k1.Sum == k2.Sum {
		t.Error("an HTTP key equals an RPC key")
	}

	shared, _ := newTestCache(t, "shared", nil)
	if key(shared, "x", &call.Call{Consumer: "alice"}).Sum != key(shared, "x", &call.Call{Consumer: "bob"}).Sum {
		t.Error("key: [] still separates consumers")
	}
	ipc, _ := newTestCache(t, "ip", nil)
	peer := func(addr, xff string) *call.Call {
		cl := &call.Call{Peer: netip.MustParseAddrPort(addr)}
		if xff != "" {
			cl.Header = h("X-Forwarded-For", xff)
		}
		return cl
	}
	if key(ipc, "x", peer("192.0.2.1:1", "")).Sum == key(ipc, "x", peer("192.0.2.2:1", "")).Sum {
		t.Error("key: [ip] ignores the peer")
	}
	if key(ipc, "x", peer("10.0.0.1:1", "192.0.2.1")).Sum != key(ipc, "x", peer("192.0.2.1:9", "")).Sum {
		t.Error("key: [ip] does not believe a trusted proxy's X-Forwarded-For")
	}
	if key(ipc, "x", peer("192.0.2.7:1", "192.0.2.1")).Sum == key(ipc, "x", peer("192.0.2.1:9", "")).Sum {
		t.Error("key: [ip] believes an untrusted peer's X-Forwarded-For")
	}
}

func TestCacheAdmits(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(t, "", nil)
	nse := New(&config.ProxyCache{TTL: config.Duration(time.Second), NoSideEffects: true}, NewMemory(1<<20, 1<<10))
	t.Cleanup(func() { _ = nse.Close() })
	auth := call.HTTPHeader{"Authorization": {"Bearer x"}}
	cookie := call.HTTPHeader{"Cookie": {"a=b"}}
	cases := []struct {
		name string
		c    *Cache
		cl   call.Call
		nse  bool
		want bool
	}{
		{"GET", c, call.Call{HTTPMethod: "GET"}, false, true},
		{"POST", c, call.Call{HTTPMethod: "POST"}, true, false},
		{"POST, no_side_effects, side-effect-free", nse, call.Call{HTTPMethod: "POST"}, true, true},
		{"POST, no_side_effects, other method", nse, call.Call{HTTPMethod: "POST"}, false, false},
		{"Authorization, anonymous", c, call.Call{HTTPMethod: "GET", Header: auth}, false, false},
		{"Cookie, anonymous", c, call.Call{HTTPMethod: "GET", Header: cookie}, false, false},
		{"bearer, anonymous", c, call.Call{HTTPMethod: "GET", Bearer: "t"}, false, false},
		{"Authorization, authenticated", c, call.Call{HTTPMethod: "GET", Header: auth, Consumer: "alice"}, false, true},
	}
	for _, tc := range cases {
		if got := tc.c.Admits(&tc.cl, tc.nse); got != tc.want {
			t.Errorf("%s: got %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestMemoryBound(t *testing.T) {
	t.Parallel()
	m := NewMemory(64<<10, 8<<10)
	if len(m.shards) != 4 {
		t.Errorf("shards: got %d; want 4", len(m.shards))
	}
	body := make([]byte, 1000)
	var keys []*Key
	for i := 0; i < 300; i++ {
		k := &Key{Route: "r", Resource: fmt.Sprint(i % 3), Sum: [32]byte{byte(i), byte(i >> 8)}}
		e := &Entry{Body: body}
		e.computeSize()
		if err := m.Set(context.Background(), k, e, time.Minute); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if b := m.Bytes(); b > 64<<10 || b < 48<<10 {
		t.Errorf("bytes: got %d; want at most %d and close to it", b, 64<<10)
	}
	if e, _ := m.Get(context.Background(), keys[0]); e != nil {
		t.Error("the least recently used entry was kept")
	}
	if e, _ := m.Get(context.Background(), keys[299]); e == nil {
		t.Error("the newest entry was dropped")
	}
	// Replacing an entry keeps the count right.
	before := m.Bytes()
	e := &Entry{Body: body}
	e.computeSize()
	_ = m.Set(context.Background(), keys[299], e, time.Minute)
	if m.Bytes() != before {
		t.Errorf("replacing: bytes %d; want %d", m.Bytes(), before)
	}
	big := &Entry{Body: make([]byte, 32<<10)}
	big.computeSize()
	_ = m.Set(context.Background(), &Key{Sum: [32]byte{9, 9}}, big, time.Minute)
	if e, _ := m.Get(context.Background(), &Key{Sum: [32]byte{9, 9}}); e != nil {
		t.Error("an entry larger than its shard was stored")
	}
	n, _ := m.Purge(context.Background(), "r", false, "1")
	if n == 0 {
		t.Error("purge by resource dropped nothing")
	}
	for _, k := range keys {
		if e, _ := m.Get(context.Background(), k); e != nil && k.Resource == "1" {
			t.Fatal("purge by resource left an entry")
		}
	}
	if n, _ := m.Purge(context.Background(), "", true, ""); n == 0 || m.Bytes() != 0 {
		t.Errorf("purge all: %d dropped, %d bytes left", n, m.Bytes())
	}
}

func TestEntryEncoding(t *testing.T) {
	t.Parallel()
	e := &Entry{Status: 200, Header: map[string][]string{"a": {"1", "2"}, "b": {""}}, Trailer: map[string][]string{"t": {"x"}}, Body: []byte("body"), stored: 5, fresh: -7, stale: 1 << 40, shared: true}
	e.computeSize()
	got, err := decode(e.encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got, cmp.AllowUnexported(Entry{}), cmpopts.IgnoreTypes(atomic.Pointer[rendering]{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	b := e.encode(nil)
	for i := 0; i < len(b); i++ {
		if _, err := decode(b[:i]); err == nil {
			t.Errorf("a truncated entry (%d of %d bytes) decoded", i, len(b))
		}
	}
}

func TestEntryRendering(t *testing.T) {
	t.Parallel()
	owner, other := new(int), new(int)
	e := &Entry{Body: []byte("b"), shared: true}
	if _, _, ok := e.Rendering(owner, 0); ok {
		t.Error("a rendering before any was kept")
	}
	e.SetRendering(owner, 1, "application/json", []byte(`"b"`))
	if ct, b, ok := e.Rendering(owner, 1); !ok || ct != "application/json" || string(b) != `"b"` {
		t.Errorf("got %q %q %v", ct, b, ok)
	}
	for _, tc := range []struct {
		owner   any
		variant uint8
	}{{owner, 0}, {other, 1}} {
		if _, _, ok := e.Rendering(tc.owner, tc.variant); ok {
			t.Errorf("another owner or variant (%v) got the rendering", tc)
		}
	}
	unstored := &Entry{}
	unstored.SetRendering(owner, 0, "x", nil)
	if _, _, ok := unstored.Rendering(owner, 0); ok {
		t.Error("an entry that was not stored kept a rendering")
	}
}

func TestCacheLookup(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(t, "", nil)
	k := key(c, "req", nil)
	if _, ok := c.Lookup(context.Background(), k); ok {
		t.Fatal("a lookup before any fetch hit")
	}
	do(t, c, k, &backend{})
	clk.Add(time.Second)
	if r, ok := c.Lookup(context.Background(), k); !ok || r.Status != call.CacheHit || r.Age != 1 {
		t.Errorf("got %v %v age %d; want HIT age 1", ok, r.Status, r.Age)
	}
	clk.Add(time.Minute)
	if _, ok := c.Lookup(context.Background(), k); ok {
		t.Error("an expired entry hit")
	}
	if got := c.Stats(); got != (Stats{Hits: 1, Misses: 1}) {
		t.Errorf("stats: got %+v; want one hit (the lookup), one miss", got)
	}
}

func FuzzDecode(f *testing.F) {
	e := &Entry{Status: 200, Header: map[string][]string{"a": {"1"}}, Body: []byte("b")}
	f.Add(e.encode(nil))
	f.Add([]byte{1, 0, 0, 0, 0, 200, 200, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decode(b)
		if err == nil {
			if _, err := decode(e.encode(nil)); err != nil {
				t.Errorf("re-encoded entry does not decode: %v", err)
			}
		}
	})
}

// TestRedisStore runs a cache on a real redis-server: entries survive
// across two caches (two gateway instances), expire by the cache's clock,
// and purge by route and resource.
func TestRedisStore(t *testing.T) {
	t.Parallel()
	rd := testkit.StartRedis(t)
	var logs testkit.LogBuffer
	srv, err := redisclient.NewServer(&config.Redis{Address: rd.Addr}, StoreName, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c1, clk := newTestCache(t, "", NewRedis(srv, false))
	c2, _ := newTestCache(t, "", NewRedis(srv, false))
	c2.SetClock(clk.Now)
	b := &backend{}
	k := key(c1, "req", nil)
	do(t, c1, k, b)
	clk.Add(3 * time.Second)
	r := do(t, c2, key(c2, "req", nil), b)
	if r.Status != call.CacheHit || r.Age != 3 || string(r.Entry.Body) != "answer 1" || r.Entry.Header["x"][0] != "1" {
		t.Fatalf("other instance: got %v age %d %q; want HIT 3 answer 1", r.Status, r.Age, r.Entry.Body)
	}
	clk.Add(30 * time.Second)
	if r := do(t, c2, k, b); r.Status != call.CacheMiss {
		t.Errorf("past ttl: got %v; want MISS", r.Status)
	}
	var other Key
	c1.RPCKey(&other, "route", "/pkg.Svc/N", []byte("req"), &call.Call{})
	do(t, c1, &other, b)
	if n, err := c1.Purge(context.Background(), "route", false, "/pkg.Svc/M"); err != nil || n != 1 {
		t.Errorf("purge by key: got %d, %v; want 1", n, err)
	}
	if r := do(t, c2, &other, b); r.Status != call.CacheHit {
		t.Errorf("other key after purge: got %v; want HIT", r.Status)
	}
	if n, err := c2.Purge(context.Background(), "", true, ""); err != nil || n != 1 {
		t.Errorf("purge all: got %d, %v; want 1", n, err)
	}

	// Redis down: a miss, answered by the backend.
	rd.Stop()
	if r, err := c1.Do(context.Background(), key(c1, "down", nil), b); err != nil || r.Status != call.CacheMiss {
		t.Errorf("redis down: got %v, %v; want MISS", r.Status, err)
	}
	_, _ = c1.Do(context.Background(), key(c1, "down", nil), b) // logged once per outage
	if got := logs.Lines("cache store unreachable; calls go to the backend until it answers again"); len(got) != 1 {
		t.Errorf("outage log lines: %q; want one\n%s", got, logs.String())
	}
	// Redis back: answers are stored and hit again, and that is logged.
	rd.Start()
	do(t, c1, key(c1, "back", nil), b)
	if r := do(t, c2, key(c2, "back", nil), b); r.Status != call.CacheHit {
		t.Errorf("redis back: got %v; want HIT", r.Status)
	}
	if got := logs.Lines("cache store reachable again; answers are cached again"); len(got) != 1 {
		t.Errorf("recovery log lines: %q; want one\n%s", got, logs.String())
	}
}
