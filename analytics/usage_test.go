package analytics

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustUsage(t *testing.T, a *Aggregator, q UsageQuery) *Usage {
	t.Helper()
	u, err := a.Usage(context.Background(), q)
	if err != nil {
		t.Fatalf("Usage(%+v): %v", q, err)
	}
	return u
}

// recordUsageFixture records calls at 10:58:30 and 11:01:10.
func recordUsageFixture(a *Aggregator, clock *fakeClock) {
	for range 3 {
		a.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", "2xx", time.Millisecond))
	}
	a.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", "4xx", time.Millisecond))
	// A consumer name that needs CSV quoting and JSON escaping.
	a.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/List", `bo,b "the" 2`, "2xx", time.Millisecond))
	clock.Set(time.Date(2025, 3, 10, 11, 1, 10, 0, time.UTC))
	a.Record(rec(clock, "lib.v1.Lib", "/lib.v1.Lib/Get", "alice", "2xx", time.Millisecond))
	a.Record(rec(clock, "web", "/hello", "", "5xx", time.Millisecond))
}

func TestUsageExport(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	recordUsageFixture(a, clock)

	// From/To truncate to the minute: 10:58:59 → 10:58, 11:01:59 → 11:01
	// (exclusive), so the 11:01 calls are out.
	u := mustUsage(t, a, UsageQuery{
		From: time.Date(2025, 3, 10, 10, 58, 59, 0, time.UTC),
		To:   time.Date(2025, 3, 10, 11, 1, 59, 0, time.UTC),
	})
	var js bytes.Buffer
	if err := u.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"from":"2025-03-10T10:58:00Z","to":"2025-03-10T11:01:00Z","rows":[` +
		`{"consumer":"alice","api":"lib.v1.Lib","method":"/lib.v1.Lib/Get","status_class":"2xx","calls":3,"bytes_in":30,"bytes_out":300},` +
		`{"consumer":"alice","api":"lib.v1.Lib","method":"/lib.v1.Lib/Get","status_class":"4xx","calls":1,"bytes_in":10,"bytes_out":100},` +
		`{"consumer":"bo,b \"the\" 2","api":"lib.v1.Lib","method":"/lib.v1.Lib/List","status_class":"2xx","calls":1,"bytes_in":10,"bytes_out":100}]}` + "\n"
	if js.String() != wantJSON {
		t.Errorf("JSON:\ngot  %s\nwant %s", js.String(), wantJSON)
	}

	u = mustUsage(t, a, UsageQuery{From: t0.Add(-time.Hour), To: t0.Add(time.Hour)})
	var csv bytes.Buffer
	if err := u.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	wantCSV := "consumer,api,method,status_class,calls,bytes_in,bytes_out\n" +
		",web,/hello,5xx,1,10,100\n" +
		"alice,lib.v1.Lib,/lib.v1.Lib/Get,2xx,4,40,400\n" +
		"alice,lib.v1.Lib,/lib.v1.Lib/Get,4xx,1,10,100\n" +
		`"bo,b ""the"" 2",lib.v1.Lib,/lib.v1.Lib/List,2xx,1,10,100` + "\n"
	if csv.String() != wantCSV {
		t.Errorf("CSV:\ngot\n%s\nwant\n%s", csv.String(), wantCSV)
	}

	u = mustUsage(t, a, UsageQuery{From: t0.Add(-time.Hour), To: t0.Add(time.Hour), Consumer: "alice"})
	want := []UsageRow{
		{"alice", "lib.v1.Lib", "/lib.v1.Lib/Get", "2xx", 4, 40, 400},
		{"alice", "lib.v1.Lib", "/lib.v1.Lib/Get", "4xx", 1, 10, 100},
	}
	if !cmp.Equal(u.Rows, want) {
		t.Errorf("consumer=alice: %s", cmp.Diff(want, u.Rows))
	}

	empty := mustUsage(t, a, UsageQuery{From: t0, To: t0})
	js.Reset()
	_ = empty.WriteJSON(&js)
	if want := `{"from":"2025-03-10T10:58:00Z","to":"2025-03-10T10:58:00Z","rows":[]}` + "\n"; js.String() != want {
		t.Errorf("empty JSON: got %s; want %s", js.String(), want)
	}
}

// A long range reads whole hours from roll-ups and the partial edges
// from minutes; edges older than 25h widen to the hour.
func TestUsageSegments(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	oldest := at("2025-03-09T10:00:00Z")
	cases := []struct {
		name, from, to string
		segs           []segment
		gotFrom, gotTo string
	}{
		{"inside one hour", "2025-03-10T10:05:00Z", "2025-03-10T10:35:00Z",
			[]segment{{false, at("2025-03-10T10:05:00Z").Unix() / 60, at("2025-03-10T10:35:00Z").Unix() / 60}},
			"2025-03-10T10:05:00Z", "2025-03-10T10:35:00Z"},
		{"edges and hours", "2025-03-10T07:30:00Z", "2025-03-10T10:15:00Z",
			[]segment{
				{false, at("2025-03-10T07:30:00Z").Unix() / 60, at("2025-03-10T08:00:00Z").Unix() / 60},
				{false, at("2025-03-10T10:00:00Z").Unix() / 60, at("2025-03-10T10:15:00Z").Unix() / 60},
				{true, at("2025-03-10T08:00:00Z").Unix() / 3600, at("2025-03-10T10:00:00Z").Unix() / 3600},
			},
			"2025-03-10T07:30:00Z", "2025-03-10T10:15:00Z"},
		{"old start widens", "2025-03-01T07:30:00Z", "2025-03-10T10:15:00Z",
			[]segment{
				{false, at("2025-03-10T10:00:00Z").Unix() / 60, at("2025-03-10T10:15:00Z").Unix() / 60},
				{true, at("2025-03-01T07:00:00Z").Unix() / 3600, at("2025-03-10T10:00:00Z").Unix() / 3600},
			},
			"2025-03-01T07:00:00Z", "2025-03-10T10:15:00Z"},
		{"all old", "2025-03-01T07:30:00Z", "2025-03-01T07:45:00Z",
			[]segment{{true, at("2025-03-01T07:00:00Z").Unix() / 3600, at("2025-03-01T08:00:00Z").Unix() / 3600}},
			"2025-03-01T07:00:00Z", "2025-03-01T08:00:00Z"},
		{"old both edges", "2025-03-01T07:30:00Z", "2025-03-02T07:45:00Z",
			[]segment{{true, at("2025-03-01T07:00:00Z").Unix() / 3600, at("2025-03-02T08:00:00Z").Unix() / 3600}},
			"2025-03-01T07:00:00Z", "2025-03-02T08:00:00Z"},
	}
	for _, c := range cases {
		segs, from, to := usageSegments(at(c.from), at(c.to), oldest)
		if !cmp.Equal(segs, c.segs, cmp.AllowUnexported(segment{})) ||
			from.Format(time.RFC3339) != c.gotFrom || to.Format(time.RFC3339) != c.gotTo {
			t.Errorf("%s: got %v %s %s; want %v %s %s", c.name, segs, from.Format(time.RFC3339), to.Format(time.RFC3339), c.segs, c.gotFrom, c.gotTo)
		}
	}
}

// A usage range spanning hours counts each call once (edge minutes plus
// whole-hour roll-ups), in memory.
func TestUsageAcrossHours(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	a := newAggregator(t, Options{Now: clock.Now})
	// One call every 10 minutes from 07:05 to 10:55: 24 calls.
	start := time.Date(2025, 3, 10, 7, 5, 0, 0, time.UTC)
	for i := range 24 {
		clock.Set(start.Add(time.Duration(i) * 10 * time.Minute))
		a.Record(rec(clock, "api", "/m", "alice", "2xx", time.Millisecond))
	}
	clock.Set(t0.Add(time.Hour))
	// [07:30, 10:20): 07:35 07:45 07:55 (3) + 08:xx 09:xx (12) + 10:05 10:15 (2).
	u := mustUsage(t, a, UsageQuery{From: time.Date(2025, 3, 10, 7, 30, 0, 0, time.UTC), To: time.Date(2025, 3, 10, 10, 20, 0, 0, time.UTC)})
	if len(u.Rows) != 1 || u.Rows[0].Calls != 17 {
		t.Errorf("got %+v; want one row of 17 calls", u.Rows)
	}
}

func TestUsageCSVFormulaCells(t *testing.T) {
	u := &Usage{Rows: []UsageRow{{Consumer: "=HYPERLINK(\"x\")", API: "+api", Method: "/m", StatusClass: "2xx", Calls: 1}}}
	var b strings.Builder
	if err := u.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	want := "consumer,api,method,status_class,calls,bytes_in,bytes_out\n\"'=HYPERLINK(\"\"x\"\")\",'+api,/m,2xx,1,0,0\n"
	if b.String() != want {
		t.Errorf("CSV:\n%s\nwant:\n%s", b.String(), want)
	}
}
