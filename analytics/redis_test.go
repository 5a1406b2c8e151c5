package analytics

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// newRedisInstance is one gateway instance: its own client, clock and
// Aggregator, all on the shared server.
func newRedisInstance(t *testing.T, addr string, clock *fakeClock, o Options) (*Aggregator, *testkit.LogBuffer) {
	t.Helper()
	logs := &testkit.LogBuffer{}
	o.Redis = newRedisClient(t, addr)
	o.Now = clock.Now
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return newAggregator(t, o), logs
}

func calls(t *testing.T, a *Aggregator, q Query) int64 {
	t.Helper()
	return totals(mustQuery(t, a, q)).Calls
}

// Two instances share one Redis: each sees its own unflushed calls at
// once, and after both flush either sees the exact sum.
func TestRedisTwoInstances(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	b, _ := newRedisInstance(t, srv.Addr, clock, Options{})

	for i := range 5 {
		a.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", "2xx", time.Duration(i+1)*time.Millisecond))
	}
	for range 6 {
		b.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/List", "bob", "5xx", 20*time.Millisecond))
	}
	clock.Add(time.Minute) // 10:59:30
	b.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", "2xx", 3*time.Millisecond))

	q := lastHour(clock)
	q.GroupBy = []string{"consumer"}
	if got := calls(t, a, q); got != 5 {
		t.Errorf("a before flush: got %d calls; want its own 5", got)
	}
	if got := calls(t, b, q); got != 7 {
		t.Errorf("b before flush: got %d calls; want its own 7", got)
	}
	mustFlush(t, a)
	if got := calls(t, b, q); got != 12 {
		t.Errorf("b after a flushed: got %d calls; want 5 + 7", got)
	}
	mustFlush(t, b)
	ra, rb := mustQuery(t, a, q), mustQuery(t, b, q)
	if !cmp.Equal(ra, rb) {
		t.Errorf("a and b disagree: %s", cmp.Diff(ra, rb))
	}
	alice, bob := byLabel(t, ra, "consumer", "alice").Totals, byLabel(t, ra, "consumer", "bob").Totals
	if alice.Calls != 6 || alice.Errors != 0 || bob.Calls != 6 || bob.Errors != 6 || bob.BytesOut != 600 {
		t.Errorf("got alice %+v bob %+v; want 6 calls each, bob 6 errors", alice, bob)
	}
	// Percentiles merge exactly: memory-only recording of the same calls
	// gives the same answer.
	mem := newAggregator(t, Options{Now: clock.Now})
	clock.Add(-time.Minute)
	for i := range 5 {
		mem.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", "2xx", time.Duration(i+1)*time.Millisecond))
	}
	clock.Add(time.Minute)
	mem.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", "2xx", 3*time.Millisecond))
	q.Filter = map[string]string{"consumer": "alice"}
	if m, r := mustQuery(t, mem, q), mustQuery(t, a, q); !cmp.Equal(m.Series, r.Series) {
		t.Errorf("redis vs memory: %s", cmp.Diff(m.Series, r.Series))
	}

	// Flushing again writes nothing; memory keeps nothing flushed.
	mustFlush(t, a)
	mustFlush(t, b)
	if got := calls(t, a, lastHour(clock)); got != 12 {
		t.Errorf("after second flush: got %d calls; want 12", got)
	}
	if s := a.Stats(); s.PendingCells != 0 {
		t.Errorf("pending cells after flush: got %d; want 0", s.PendingCells)
	}

	// Layout: minute and hour hashes with their TTLs.
	rdb := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	m := t0.Unix() / 60
	mk, hk := "rosetta:analytics:m:"+strconv.FormatInt(m, 10), "rosetta:analytics:h:"+strconv.FormatInt(t0.Unix()/3600, 10)
	if ttl := rdb.TTL(ctx, mk).Val(); ttl < 24*time.Hour || ttl > 25*time.Hour+6*time.Minute {
		t.Errorf("TTL %s: got %s; want about 25h", mk, ttl)
	}
	if ttl := rdb.TTL(ctx, hk).Val(); ttl < 31*24*time.Hour || ttl > 32*24*time.Hour {
		t.Errorf("TTL %s: got %s; want about 32d", hk, ttl)
	}
	d := dims{"lib.v1.Lib", "/lib.v1.Lib", "/lib.v1.Lib/List", "grpc", "bob", "5xx"}
	field := string(appendDims(nil, &d))
	if want := "10:lib.v1.Lib11:/lib.v1.Lib16:/lib.v1.Lib/List4:grpc3:bob3:5xx"; field != want {
		t.Errorf("field: got %q; want %q", field, want)
	}
	got := rdb.HMGet(ctx, mk, field+"c", field+"e", field+"i", field+"o", field+"h"+strconv.Itoa(bucketIndex(20*time.Millisecond))).Val()
	if want := []any{"6", "6", "60", "600", "6"}; !cmp.Equal(got, want) {
		t.Errorf("bob's fields in %s: got %v; want %v", mk, got, want)
	}
}

// Calls recorded but not flushed count once, whether or not earlier
// calls of the same minute were flushed.
func TestRedisPendingCountedOnce(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	q := lastHour(clock)
	for range 3 {
		a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	}
	mustFlush(t, a)
	for range 2 {
		a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	}
	if got := calls(t, a, q); got != 5 {
		t.Errorf("3 flushed + 2 pending: got %d; want 5", got)
	}
	a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	if got := calls(t, a, q); got != 6 {
		t.Errorf("after another call: got %d; want 6", got)
	}
	mustFlush(t, a)
	if got := calls(t, a, q); got != 6 {
		t.Errorf("after flush: got %d; want 6", got)
	}
}

// Redis goes away: Record keeps working, flushes fail (logged once) and
// keep the data, and after a restart everything lands exactly once.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, logs := newRedisInstance(t, srv.Addr, clock, Options{})
	b, _ := newRedisInstance(t, srv.Addr, clock, Options{})

	for range 3 {
		a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	}
	srv.Stop()
	ctx := context.Background()
	if err := a.Flush(ctx); err == nil {
		t.Fatal("flush with redis down: got nil; want an error")
	}
	for range 2 {
		a.Record(rec(clock, "api", "/m", "c", "4xx", time.Millisecond))
	}
	clock.Add(time.Minute)
	a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	if err := a.Flush(ctx); err == nil {
		t.Fatal("second flush with redis down: got nil; want an error")
	}
	if _, err := a.Query(ctx, lastHour(clock)); err == nil {
		t.Error("query with redis down: got nil; want an error")
	}
	if s := a.Stats(); s.FlushErrors != 2 || s.PendingCells != 3 {
		t.Errorf("stats during outage: got %+v; want 2 flush errors, 3 pending cells", s)
	}
	if n := strings.Count(logs.String(), "flush to redis failed"); n != 1 {
		t.Errorf("outage logged %d times; want once:\n%s", n, logs)
	}

	srv.Start() // empty: nothing had reached it
	mustFlush(t, a)
	mustFlush(t, a)
	r := mustQuery(t, b, lastHour(clock))
	if got, want := totals(r), (Metrics{Calls: 6, Errors: 2, BytesIn: 60, BytesOut: 600}); got != want {
		t.Errorf("after restart, from b: got %+v; want %+v", got, want)
	}
	if !strings.Contains(logs.String(), "flush to redis recovered") {
		t.Errorf("recovery not logged:\n%s", logs)
	}
	if s := a.Stats(); s.PendingCells != 0 || s.Dropped != 0 {
		t.Errorf("stats after recovery: got %+v; want nothing pending or dropped", s)
	}
}

// A flush whose reply is lost (the script ran, the client saw an error)
// is retried with the same batch: the markers make it a no-op, and a
// query meanwhile counts the batch once.
func TestRedisAmbiguousFlush(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	a.chunk = 2 // several scripts per key
	for _, c := range []string{"a", "b", "c", "d"} {
		for range 2 {
			a.Record(rec(clock, "api", "/m", c, "2xx", time.Millisecond))
		}
	}
	ctx := context.Background()

	// Apply only the first chunk of the first key, as if the connection
	// broke after it.
	if err := a.lock(ctx); err != nil {
		t.Fatal(err)
	}
	a.sealLocked()
	head := a.pending[0]
	head.attempted, head.plan = true, a.buildPlan(head)
	if len(head.plan[0].chunks) < 2 {
		a.unlock()
		t.Fatalf("plan key 0 has %d chunks; want several", len(head.plan[0].chunks))
	}
	partial := &batch{seq: head.seq, plan: []planKey{head.plan[0]}}
	partial.plan[0].chunks = partial.plan[0].chunks[:1]
	err := a.execPlan(ctx, partial, true)
	a.unlock()
	if err != nil {
		t.Fatal(err)
	}
	q := lastHour(clock)
	q.GroupBy = []string{"consumer"}
	want := mustQuery(t, newAggregatorWith(t, clock, a), q)
	if got := mustQuery(t, a, q); !cmp.Equal(got, want) {
		t.Errorf("partly applied batch: %s", cmp.Diff(want, got))
	}

	// The whole batch applied, reply lost: still pending locally.
	if err := a.lock(ctx); err != nil {
		t.Fatal(err)
	}
	err = a.writeBatch(ctx, head)
	a.unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := mustQuery(t, a, q); !cmp.Equal(got, want) {
		t.Errorf("applied but pending batch: %s", cmp.Diff(want, got))
	}
	mustFlush(t, a) // resends the whole batch: every script is a no-op
	if got := mustQuery(t, a, q); !cmp.Equal(got, want) {
		t.Errorf("after retry: %s", cmp.Diff(want, got))
	}
	b, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	if got := mustQuery(t, b, q); !cmp.Equal(got, want) {
		t.Errorf("from another instance: %s", cmp.Diff(want, got))
	}
}

// newAggregatorWith returns a memory-only Aggregator that recorded the
// same calls as TestRedisAmbiguousFlush's.
func newAggregatorWith(t *testing.T, clock *fakeClock, _ *Aggregator) *Aggregator {
	m := newAggregator(t, Options{Now: clock.Now})
	for _, c := range []string{"a", "b", "c", "d"} {
		for range 2 {
			m.Record(rec(clock, "api", "/m", c, "2xx", time.Millisecond))
		}
	}
	return m
}

// SCRIPT FLUSH (or a restart) between flushes: EVALSHA fails with
// NOSCRIPT, nothing ran, and the flush resends the script source.
func TestRedisNoScript(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	mustFlush(t, a)
	if err := newRedisClient(t, srv.Addr).ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	mustFlush(t, a)
	if got := calls(t, a, lastHour(clock)); got != 2 {
		t.Errorf("got %d calls; want 2", got)
	}
}

// While Redis is down, pending memory is bounded: the oldest unflushed
// minutes go, counted and logged once.
func TestRedisPendingBound(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, logs := newRedisInstance(t, srv.Addr, clock, Options{MaxPending: 3})
	srv.Stop()
	ctx := context.Background()
	for range 6 { // one cell per minute, one flush attempt per minute
		a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
		_ = a.Flush(ctx)
		clock.Add(time.Minute)
	}
	// The first batch was attempted (kept whole); the tail lost its 3
	// oldest minutes.
	if s := a.Stats(); s.PendingCells != 3 || s.Dropped != 3 {
		t.Errorf("stats: got %+v; want 3 pending cells, 3 dropped calls", s)
	}
	if n := strings.Count(logs.String(), "dropping the oldest unflushed minutes"); n != 1 {
		t.Errorf("drop logged %d times; want once:\n%s", n, logs)
	}
	srv.Start()
	mustFlush(t, a)
	r := mustQuery(t, a, Query{From: t0.Add(-time.Minute), To: t0.Add(6 * time.Minute), Step: time.Minute})
	var got []int64
	for _, p := range r.Series[0].Points {
		got = append(got, p.Calls)
	}
	if want := []int64{0, 1, 0, 0, 0, 1, 1, 0}; !cmp.Equal(got, want) {
		t.Errorf("calls per minute from 10:57: got %v; want %v", got, want)
	}
}

// Ranges older than 25h read hour hashes; usage combines hour hashes and
// edge minutes. Arbitrary dimension values survive the field encoding.
func TestRedisHoursAndUsage(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	b, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	odd := "3:x~\x00|é:c"
	a.Record(rec(clock, "api", "/m", odd, "2xx", time.Millisecond))
	clock.Add(2 * time.Hour) // 12:58:30
	b.Record(rec(clock, "api", "/m", odd, "5xx", time.Millisecond))
	b.Record(rec(clock, "api", "/m", "alice", "2xx", time.Millisecond))
	mustFlush(t, a)
	// b's calls stay pending for now.

	clock.Add(3 * 24 * time.Hour)
	from, to, step, _ := Window("7d", clock.Now())
	q := Query{From: from, To: to, Step: step, GroupBy: []string{"consumer"}}
	r := mustQuery(t, b, q)
	if r.Step != time.Hour || len(r.Series) != 2 {
		t.Fatalf("7d: got step %s, %d series; want 1h, 2", r.Step, len(r.Series))
	}
	s := byLabel(t, r, "consumer", odd)
	if s.Totals.Calls != 2 || s.Totals.Errors != 1 {
		t.Errorf("odd consumer: got %+v; want 2 calls, 1 error", s.Totals)
	}
	hourIdx := int(time.Date(2025, 3, 10, 10, 0, 0, 0, time.UTC).Sub(from) / time.Hour)
	if p := s.Points[hourIdx]; p.Calls != 1 || p.T != time.Date(2025, 3, 10, 10, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("10:00 point: got %+v; want 1 call", p)
	}
	mustFlush(t, b)
	if got := mustQuery(t, a, q); !cmp.Equal(got, r) {
		t.Errorf("a after b flushed: %s", cmp.Diff(r, got))
	}

	u, err := a.Usage(context.Background(), UsageQuery{From: t0.Add(-30 * time.Minute), To: t0.Add(3 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := []UsageRow{
		{odd, "api", "/m", "2xx", 1, 10, 100},
		{odd, "api", "/m", "5xx", 1, 10, 100},
		{"alice", "api", "/m", "2xx", 1, 10, 100},
	}
	if !cmp.Equal(u.Rows, want) || !u.From.Equal(time.Date(2025, 3, 10, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("usage: got %s %+v; want from 10:00 %+v", u.From, u.Rows, want)
	}
}

// The background flusher writes on its own, and Close flushes the rest.
func TestRedisBackgroundFlushAndClose(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRedis(t)
	clock := newFakeClock()
	a, _ := newRedisInstance(t, srv.Addr, clock, Options{FlushInterval: 10 * time.Millisecond})
	b, _ := newRedisInstance(t, srv.Addr, clock, Options{})
	a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	rdb := newRedisClient(t, srv.Addr)
	key := "rosetta:analytics:m:" + strconv.FormatInt(t0.Unix()/60, 10)
	// Wait for the flusher (a readiness bound, not a timing assertion).
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Exists(context.Background(), key).Val() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("background flusher wrote nothing in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := calls(t, b, lastHour(clock)); got != 2 {
		t.Errorf("after close, from b: got %d; want 2", got)
	}
	var _ redis.UniversalClient = rdb
}
