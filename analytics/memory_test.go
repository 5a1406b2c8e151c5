package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Grouping, filtering, errors, bytes and percentiles from memory.
func TestMemoryGroupAndFilter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	// alice: 10 calls of 1..10ms on Get, 2 of them 5xx; bob: 5 calls of
	// 100ms on List (one 4xx); anonymous: 1 call on another API.
	for i := 1; i <= 10; i++ {
		st := "2xx"
		if i > 8 {
			st = "5xx"
		}
		a.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", st, time.Duration(i)*time.Millisecond))
	}
	for i := range 5 {
		st := "2xx"
		if i == 0 {
			st = "4xx"
		}
		a.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/List", "bob", st, 100*time.Millisecond))
	}
	a.Record(rec(clock, "other", "/x", "", "2xx", time.Millisecond))

	all := mustQuery(t, a, lastHour(clock))
	if len(all.Series) != 1 {
		t.Fatalf("no group-by: got %d series; want 1", len(all.Series))
	}
	want := Metrics{Calls: 16, Errors: 3, BytesIn: 160, BytesOut: 1600}
	if got := totals(all); got != want {
		t.Errorf("totals: got %+v; want %+v", got, want)
	}
	if len(all.Series[0].Labels) != 0 {
		t.Errorf("labels without group-by: got %v; want none", all.Series[0].Labels)
	}

	q := lastHour(clock)
	q.GroupBy = []string{"consumer"}
	q.Filter = map[string]string{"api": "lib.v1.Lib"}
	r := mustQuery(t, a, q)
	if len(r.Series) != 2 {
		t.Fatalf("group by consumer, api=lib: got %d series; want 2", len(r.Series))
	}
	// Sorted by calls: alice (10) then bob (5).
	if r.Series[0].Labels["consumer"] != "alice" || r.Series[1].Labels["consumer"] != "bob" {
		t.Errorf("order: got %v, %v; want alice, bob", r.Series[0].Labels, r.Series[1].Labels)
	}
	alice, bob := r.Series[0].Totals, r.Series[1].Totals
	if alice.Calls != 10 || alice.Errors != 2 || bob.Calls != 5 || bob.Errors != 1 {
		t.Errorf("calls/errors: got alice %d/%d bob %d/%d; want 10/2 5/1", alice.Calls, alice.Errors, bob.Calls, bob.Errors)
	}
	// alice's p50 is 5ms, p99 10ms; bob's all 100ms (one bucket).
	within := func(name string, got, want float64) {
		t.Helper()
		if r := got / want; r < 0.79 || r > 1.26 {
			t.Errorf("%s: got %.3fms; want %vms ±26%%", name, got, want)
		}
	}
	within("alice p50", alice.P50, 5)
	within("alice p99", alice.P99, 10)
	within("bob p50", bob.P50, 100)
	within("bob p95", bob.P95, 100)
	i := bucketIndex(100 * time.Millisecond)
	if lo, hi := float64(bounds[i-1])/1e6, float64(bounds[i])/1e6; bob.P50 < lo || bob.P99 > hi {
		t.Errorf("bob percentiles %v..%v outside 100ms's bucket (%v, %v]", bob.P50, bob.P99, lo, hi)
	}

	q.GroupBy = []string{"method", "status_class"}
	q.Filter = map[string]string{"consumer": "bob", "status_class": "4xx"}
	r = mustQuery(t, a, q)
	if len(r.Series) != 1 || r.Series[0].Totals.Calls != 1 ||
		!cmp.Equal(r.Series[0].Labels, map[string]string{"method": "/lib.v1.Lib/List", "status_class": "4xx"}) {
		t.Errorf("bob 4xx by method/status: got %+v", r.Series)
	}

	q.Filter = map[string]string{"consumer": "nobody"}
	if r = mustQuery(t, a, q); len(r.Series) != 0 {
		t.Errorf("filter on unknown consumer: got %d series; want 0", len(r.Series))
	}
}

func TestQueryErrors(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	now := clock.Now()
	for name, q := range map[string]Query{
		"empty range":     {From: now, To: now},
		"unknown group":   {From: now.Add(-time.Hour), To: now, GroupBy: []string{"user"}},
		"unknown filter":  {From: now.Add(-time.Hour), To: now, Filter: map[string]string{"user": "x"}},
		"too many points": {From: now.Add(-500 * 24 * time.Hour), To: now, Step: time.Minute},
		"negative step":   {From: now.Add(-time.Hour), To: now, Step: -time.Minute},
	} {
		if _, err := a.Query(context.Background(), q); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%s: got %v; want ErrInvalidQuery", name, err)
		}
	}
	if _, err := a.Usage(context.Background(), UsageQuery{From: now, To: now.Add(-time.Hour)}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("usage to before from: got %v; want ErrInvalidQuery", err)
	}
}

// Calls land in the minute of their end time; points follow the step
// across a minute and an hour boundary; hour steps read hour roll-ups.
func TestMinuteBucketsAcrossHour(t *testing.T) {
	t.Parallel()
	clock := newFakeClock() // 10:58:30
	a := newAggregator(t, Options{Now: clock.Now})
	// 10:58:30 ×1, 10:59:59.999 ×2, 11:00:00 ×3, 11:01:10 ×4
	steps := []struct {
		to time.Time
		n  int
	}{
		{t0, 1},
		{time.Date(2025, 3, 10, 10, 59, 59, 999e6, time.UTC), 2},
		{time.Date(2025, 3, 10, 11, 0, 0, 0, time.UTC), 3},
		{time.Date(2025, 3, 10, 11, 1, 10, 0, time.UTC), 4},
	}
	for i, s := range steps {
		clock.Set(s.to)
		for range s.n {
			a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
		}
		if i == 1 {
			mustFlush(t, a) // seal half way: sealed and open data both count
		}
	}
	from := time.Date(2025, 3, 10, 10, 57, 0, 0, time.UTC)
	r := mustQuery(t, a, Query{From: from, To: time.Date(2025, 3, 10, 11, 2, 0, 0, time.UTC), Step: time.Minute})
	var got []int64
	for _, p := range r.Series[0].Points {
		got = append(got, p.Calls)
	}
	if want := []int64{0, 1, 2, 3, 4}; !cmp.Equal(got, want) {
		t.Errorf("calls per minute from 10:57: got %v; want %v", got, want)
	}
	if p := r.Series[0].Points[1]; p.T != from.Add(time.Minute).Unix() {
		t.Errorf("point 1 time: got %d; want %d", p.T, from.Add(time.Minute).Unix())
	}

	// Two-minute steps, To rounded up to the minute.
	r = mustQuery(t, a, Query{From: from, To: time.Date(2025, 3, 10, 11, 1, 30, 0, time.UTC), Step: 2 * time.Minute})
	got = got[:0]
	for _, p := range r.Series[0].Points {
		got = append(got, p.Calls)
	}
	if want := []int64{1, 5, 4}; !cmp.Equal(got, want) || !r.To.Equal(time.Date(2025, 3, 10, 11, 2, 0, 0, time.UTC)) {
		t.Errorf("2m steps: got %v to %s; want %v to 11:02", got, r.To, want)
	}

	// Hour steps over whole hours read hour roll-ups.
	r = mustQuery(t, a, Query{From: time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC), To: time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC), Step: time.Hour})
	got = got[:0]
	for _, p := range r.Series[0].Points {
		got = append(got, p.Calls)
	}
	if want := []int64{0, 3, 7}; !cmp.Equal(got, want) {
		t.Errorf("hour steps: got %v; want %v", got, want)
	}
}

// Memory keeps minutes for 25h and hours for 31 days.
func TestMemoryRetention(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
	callAt := t0.Truncate(time.Minute)

	clock.Add(24 * time.Hour)
	r := mustQuery(t, a, Query{From: callAt, To: callAt.Add(time.Minute)})
	if r.Step != time.Minute || totals(r).Calls != 1 {
		t.Errorf("after 24h, minute query: got step %s calls %d; want 1m, 1", r.Step, totals(r).Calls)
	}

	clock.Add(2 * time.Hour)
	mustFlush(t, a)
	if len(a.minutes) != 0 {
		t.Errorf("after 26h: %d minutes kept; want 0", len(a.minutes))
	}
	// The range now starts before minute retention: hour roll-ups answer.
	r = mustQuery(t, a, Query{From: callAt, To: callAt.Add(time.Minute)})
	if r.Step != time.Hour || !r.From.Equal(callAt.Truncate(time.Hour)) || totals(r).Calls != 1 {
		t.Errorf("after 26h: got step %s from %s calls %d; want 1h, %s, 1", r.Step, r.From, totals(r).Calls, callAt.Truncate(time.Hour))
	}

	clock.Add(30 * 24 * time.Hour)
	from, to, step, err := Window("30d", clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	_ = from
	r = mustQuery(t, a, Query{From: callAt.Add(-time.Hour), To: to, Step: step})
	if totals(r).Calls != 0 || len(a.hours) != 0 {
		t.Errorf("after 31d+: got %d calls, %d hours kept; want 0, 0", totals(r).Calls, len(a.hours))
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 10, 10, 58, 30, 0, time.UTC)
	cases := []struct {
		name     string
		from, to string
		step     time.Duration
	}{
		{"1h", "2025-03-10T09:59:00Z", "2025-03-10T10:59:00Z", time.Minute},
		{"6h", "2025-03-10T05:00:00Z", "2025-03-10T11:00:00Z", 5 * time.Minute},
		{"24h", "2025-03-09T11:00:00Z", "2025-03-10T11:00:00Z", 15 * time.Minute},
		{"1d", "2025-03-09T11:00:00Z", "2025-03-10T11:00:00Z", 15 * time.Minute},
		{"7d", "2025-03-03T11:00:00Z", "2025-03-10T11:00:00Z", time.Hour},
		{"30d", "2025-02-09T00:00:00Z", "2025-03-11T00:00:00Z", 24 * time.Hour},
	}
	for _, c := range cases {
		from, to, step, err := Window(c.name, now)
		if err != nil {
			t.Fatalf("Window(%q): %v", c.name, err)
		}
		if got := fmt.Sprint(from.Format(time.RFC3339), " ", to.Format(time.RFC3339), " ", step); got != fmt.Sprint(c.from, " ", c.to, " ", c.step) {
			t.Errorf("Window(%q): got %s; want %s %s %s", c.name, got, c.from, c.to, c.step)
		}
	}
	if _, _, _, err := Window("2w", now); err == nil {
		t.Error("Window(2w): got nil error; want unknown window")
	}
}

// The 30-day window reads hour roll-ups with day points.
func TestWindow30dPoints(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	for range 3 {
		a.Record(rec(clock, "api", "/m", "c", "2xx", time.Millisecond))
		clock.Add(-48 * time.Hour)
	}
	from, to, step, _ := Window("30d", t0)
	clock.Set(t0)
	r := mustQuery(t, a, Query{From: from, To: to, Step: step})
	if len(r.Series) != 1 || len(r.Series[0].Points) != 30 || r.Step != 24*time.Hour {
		t.Fatalf("30d: got %d series, step %s; want 1 series of 30 day points", len(r.Series), r.Step)
	}
	pts := r.Series[0].Points
	for i, want := range map[int]int64{29: 1, 27: 1, 25: 1, 28: 0} {
		if pts[i].Calls != want {
			t.Errorf("day %d: got %d calls; want %d", i, pts[i].Calls, want)
		}
	}
}

// Past MaxKeysPerMinute tuples, new tuples collapse to _other; calls are
// kept; the next minute starts a fresh budget.
func TestCardinalityCap(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now, MaxKeysPerMinute: 3})
	for i := range 5 {
		for range 2 {
			a.Record(rec(clock, "api", "/m", fmt.Sprintf("c%d", i), "2xx", time.Millisecond))
		}
	}
	mustFlush(t, a)
	a.Record(rec(clock, "api", "/m", "c0", "2xx", time.Millisecond))   // admitted before: kept
	a.Record(rec(clock, "api", "/m", "c9", "4xx", time.Millisecond))   // over the cap
	a.Record(rec(clock, "api", "/m", "c9", "weird", time.Millisecond)) // unknown status too
	q := lastHour(clock)
	q.GroupBy = []string{"consumer", "method", "status_class"}
	r := mustQuery(t, a, q)
	got := map[string]int64{}
	for _, s := range r.Series {
		got[s.Labels["consumer"]+" "+s.Labels["method"]+" "+s.Labels["status_class"]] = s.Totals.Calls
	}
	want := map[string]int64{
		"c0 /m 2xx":            3,
		"c1 /m 2xx":            2,
		"c2 /m 2xx":            2,
		"_other _other 2xx":    4,
		"_other _other 4xx":    1,
		"_other _other _other": 1,
	}
	if !cmp.Equal(got, want) {
		t.Errorf("series: %s", cmp.Diff(want, got))
	}
	if s := a.Stats(); s.Collapsed != 6 {
		t.Errorf("collapsed: got %d; want 6", s.Collapsed)
	}
	clock.Add(time.Minute)
	a.Record(rec(clock, "api", "/m", "c4", "2xx", time.Millisecond))
	q = lastHour(clock)
	q.Filter = map[string]string{"consumer": "c4"}
	if got := totals(mustQuery(t, a, q)).Calls; got != 1 {
		t.Errorf("next minute c4: got %d calls; want 1", got)
	}
}

// Many goroutines record while others flush and query; the race
// detector watches, and the total is exact.
func TestConcurrentRecord(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	const workers, per = 16, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = a.Flush(context.Background())
			if _, err := a.Query(context.Background(), Query{From: t0.Add(-time.Hour), To: t0.Add(time.Hour), GroupBy: []string{"consumer"}}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			r := Record{Time: t0, API: "api", Method: "/m", Protocol: "grpc", Consumer: fmt.Sprintf("c%d", w%4), StatusClass: "2xx", Duration: time.Millisecond, BytesIn: 1}
			for range per {
				a.Record(&r)
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	r := mustQuery(t, a, Query{From: t0.Add(-time.Hour), To: t0.Add(time.Hour), GroupBy: []string{"consumer"}})
	if got := totals(r); got.Calls != workers*per || got.BytesIn != workers*per || len(r.Series) != 4 {
		t.Errorf("got %d calls %d bytes in %d series; want %d, %d, 4", got.Calls, got.BytesIn, len(r.Series), workers*per, workers*per)
	}
}

func TestResultJSON(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	a.Record(rec(clock, "api", "/m", "alice", "5xx", 0))
	from := t0.Truncate(time.Minute)
	r := mustQuery(t, a, Query{From: from, To: from.Add(2 * time.Minute), GroupBy: []string{"consumer"}})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"from":"2025-03-10T10:58:00Z","to":"2025-03-10T11:00:00Z","step_seconds":60,"series":[` +
		`{"labels":{"consumer":"alice"},"points":[` +
		`{"t":1741604280,"calls":1,"errors":1,"bytes_in":10,"bytes_out":100,"p50_ms":0.025,"p95_ms":0.048,"p99_ms":0.05},` +
		`{"t":1741604340,"calls":0,"errors":0,"bytes_in":0,"bytes_out":0,"p50_ms":0,"p95_ms":0,"p99_ms":0}],` +
		`"totals":{"calls":1,"errors":1,"bytes_in":10,"bytes_out":100,"p50_ms":0.025,"p95_ms":0.048,"p99_ms":0.05}}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.From.Equal(r.From) || back.Step != r.Step || !cmp.Equal(back.Series, r.Series) {
		t.Errorf("round trip: got %+v; want %+v", back, *r)
	}
	empty, _ := json.Marshal(&Result{})
	if want := `{"from":"0001-01-01T00:00:00Z","to":"0001-01-01T00:00:00Z","step_seconds":0,"series":[]}`; string(empty) != want {
		t.Errorf("empty: got %s; want %s", empty, want)
	}
}
