package balance

import (
	"strings"
	"testing"
	"time"
)

// picked returns the set of addresses that n picks reach.
func picked(t *testing.T, b *Balancer, n int) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for a := range countPicks(t, b, n, nil) {
		out[a] = true
	}
	return out
}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		specs []Spec
		opts  Options
		want  string
	}{
		"empty address":     {specs: []Spec{{Addr: ""}}, want: "empty address"},
		"duplicate address": {specs: []Spec{{Addr: "a:1"}, {Addr: "a:1"}}, want: "duplicate address a:1"},
		"weight over max":   {specs: []Spec{{Addr: "a:1", Weight: 1001}}, want: "weight 1001 is over 1000"},
		"percent over 100":  {opts: Options{Outlier: OutlierOptions{MaxEjectionPercent: 101}}, want: "max_ejection_percent 101 is over 100"},
		"max below base": {opts: Options{Outlier: OutlierOptions{BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second}},
			want: "max_ejection_time 1s is below base_ejection_time 1m0s"},
		"negative threshold": {opts: Options{Health: HealthOptions{Healthy: -1}}, want: "healthy threshold -1 is negative"},
		"unknown algorithm":  {opts: Options{Algorithm: 9}, want: "unknown balancing algorithm 9"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New(c.specs, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New error = %v; want one containing %q", err, c.want)
			}
		})
	}
}

func TestPanicModeSpreadsOverAll(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			s := specs(1, 1, 1)
			b, _ := newBalancer(t, s, Options{Algorithm: alg})
			eps := b.Endpoints()
			b.ConnFailed(eps[0])
			for range 2 {
				b.ReportHealth(eps[1], false)
			}
			if got := picked(t, b, 300); len(got) != 1 || !got[eps[2].Addr()] {
				t.Fatalf("picked %v; want only the available %s", got, eps[2].Addr())
			}
			if st := b.Stats(); st.Panic || st.PanicPicks != 0 {
				t.Fatalf("stats %+v; want no panic yet", st)
			}
			b.ConnFailed(eps[2])
			if got := picked(t, b, 3000); len(got) != 3 {
				t.Errorf("panic mode picked %v; want all 3 endpoints", got)
			}
			if st := b.Stats(); !st.Panic || st.PanicPicks != 3000 {
				t.Errorf("stats %+v; want Panic and 3000 panic picks", st)
			}
			// PickNear picks in panic mode too, and counts it.
			if e, err := b.PickNear(1, eps[0]); err != nil || e == nil {
				t.Errorf("PickNear in panic mode = %v, %v; want an endpoint", e, err)
			} else if st := b.Stats(); st.PanicPicks != 3001 {
				t.Errorf("panic picks after PickNear: %d; want 3001", st.PanicPicks)
			}
			b.ConnReady(eps[0])
			if got := picked(t, b, 300); len(got) != 1 || !got[eps[0].Addr()] {
				t.Errorf("after recovery picked %v; want only %s", got, eps[0].Addr())
			}
		})
	}
}

func TestHealthThresholds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name               string
		unhealthy, healthy int
		reports            string // f = failed check, p = passed check
		wantHealthy        bool
	}{
		{name: "one failure keeps it", reports: "f", wantHealthy: true},
		{name: "two failures mark down", reports: "ff", wantHealthy: false},
		{name: "a pass resets the failures", reports: "fpf", wantHealthy: true},
		{name: "one pass does not mark up", reports: "ffp", wantHealthy: false},
		{name: "two passes mark up", reports: "ffpp", wantHealthy: true},
		{name: "a failure resets the passes", reports: "ffpfp", wantHealthy: false},
		{name: "custom thresholds down", unhealthy: 3, healthy: 1, reports: "ff", wantHealthy: true},
		{name: "custom thresholds down at 3", unhealthy: 3, healthy: 1, reports: "fff", wantHealthy: false},
		{name: "custom thresholds up at 1", unhealthy: 3, healthy: 1, reports: "fffp", wantHealthy: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b, _ := newBalancer(t, specs(1, 1), Options{Health: HealthOptions{Unhealthy: c.unhealthy, Healthy: c.healthy}})
			e := b.Endpoints()[0]
			for _, r := range c.reports {
				b.ReportHealth(e, r == 'p')
			}
			if got := b.Snapshot()[0].Healthy; got != c.wantHealthy {
				t.Errorf("after %q healthy = %v; want %v", c.reports, got, c.wantHealthy)
			}
			if got := picked(t, b, 100)[e.Addr()]; got != c.wantHealthy {
				t.Errorf("after %q picked = %v; want %v", c.reports, got, c.wantHealthy)
			}
		})
	}
}

func fail(e *Endpoint, n int, o Outcome) {
	for range n {
		e.Start()
		e.Done(o)
	}
}

func TestOutlierEjectionAndTimer(t *testing.T) {
	t.Parallel()
	b, clk := newBalancer(t, specs(1, 1, 1), Options{})
	e := b.Endpoints()[0]
	start := clk.Now()

	fail(e, 4, ServerFailure)
	if st := b.Snapshot()[0]; !st.EjectedUntil.IsZero() || st.ConsecutiveFailures != 4 {
		t.Fatalf("after 4 failures: %+v; want not ejected, 4 failures", st)
	}
	fail(e, 1, ConnectFailure) // both kinds count
	st := b.Snapshot()[0]
	if want := start.Add(30 * time.Second); !st.EjectedUntil.Equal(want) || st.Available || st.EjectionMultiplier != 1 {
		t.Fatalf("after 5 failures: %+v; want ejected until %v, multiplier 1", st, want)
	}
	if picked(t, b, 100)[e.Addr()] {
		t.Fatal("ejected endpoint picked")
	}
	if s := b.Stats(); s.Ejections != 1 || s.Ejected != 1 {
		t.Fatalf("stats %+v; want 1 ejection, 1 ejected", s)
	}
	// Failures of calls that were in flight when it was ejected do not count.
	fail(e, 10, ServerFailure)
	if s := b.Stats(); s.Ejections != 1 {
		t.Fatalf("stats %+v; want failures while ejected ignored", s)
	}

	clk.Advance(30*time.Second - time.Nanosecond)
	if picked(t, b, 100)[e.Addr()] {
		t.Fatal("endpoint back before its ejection time")
	}
	clk.Advance(time.Nanosecond)
	if !picked(t, b, 100)[e.Addr()] {
		t.Fatal("endpoint not back after its ejection time")
	}

	// The second ejection lasts twice as long.
	fail(e, 5, ServerFailure)
	if st := b.Snapshot()[0]; st.EjectionMultiplier != 2 || !st.EjectedUntil.Equal(clk.Now().Add(60*time.Second)) {
		t.Fatalf("second ejection: %+v; want multiplier 2, 60s", st)
	}
	clk.Advance(60 * time.Second)
	if !b.Snapshot()[0].Available {
		t.Fatal("not back after the second ejection")
	}
	// While not ejected the multiplier decays by one per 10s.
	clk.Advance(10 * time.Second)
	if m := b.Snapshot()[0].EjectionMultiplier; m != 1 {
		t.Fatalf("multiplier after 10s = %d; want 1", m)
	}
	fail(e, 5, ServerFailure)
	if st := b.Snapshot()[0]; st.EjectionMultiplier != 2 || !st.EjectedUntil.Equal(clk.Now().Add(60*time.Second)) {
		t.Fatalf("third ejection after decay: %+v; want multiplier 2, 60s", st)
	}
	if clk.pending() != 1 {
		t.Fatalf("%d timers pending; want 1", clk.pending())
	}
}

func TestOutlierEjectionTimeCapped(t *testing.T) {
	t.Parallel()
	b, clk := newBalancer(t, specs(1, 1), Options{Outlier: OutlierOptions{BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 100 * time.Second}})
	e := b.Endpoints()[0]
	for i, want := range []time.Duration{30, 60, 90, 100, 100, 100} {
		fail(e, 5, ServerFailure)
		until := b.Snapshot()[0].EjectedUntil
		if got := until.Sub(clk.Now()); got != want*time.Second {
			t.Fatalf("ejection %d lasts %v; want %v", i+1, got, want*time.Second)
		}
		clk.Advance(until.Sub(clk.Now()))
	}
}

func TestOutlierCountingRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		outcomes  []Outcome
		wantEject bool
	}{
		{"five failures", []Outcome{ServerFailure, ServerFailure, ServerFailure, ServerFailure, ServerFailure}, true},
		{"a success resets", []Outcome{ServerFailure, ServerFailure, ServerFailure, ServerFailure, Success, ServerFailure}, false},
		{"other neither counts nor resets", []Outcome{ServerFailure, ServerFailure, Other, ServerFailure, Other, ServerFailure, ServerFailure}, true},
		{"other alone never ejects", []Outcome{Other, Other, Other, Other, Other, Other}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b, _ := newBalancer(t, specs(1, 1), Options{})
			e := b.Endpoints()[0]
			for _, o := range c.outcomes {
				e.Start()
				e.Done(o)
			}
			if got := !b.Snapshot()[0].EjectedUntil.IsZero(); got != c.wantEject {
				t.Errorf("ejected = %v; want %v", got, c.wantEject)
			}
			if e.InFlight() != 0 {
				t.Errorf("in flight = %d; want 0", e.InFlight())
			}
		})
	}
}

func TestOutlierDisabled(t *testing.T) {
	t.Parallel()
	b, _ := newBalancer(t, specs(1, 1), Options{Outlier: OutlierOptions{Disabled: true}})
	e := b.Endpoints()[0]
	fail(e, 100, ServerFailure)
	if st := b.Stats(); st.Ejections != 0 {
		t.Errorf("stats %+v; want no ejections", st)
	}
}

// TestOutlierMaxEjectionPercent follows Envoy's rule: an ejection happens
// only if, counting it, at most max_ejection_percent of the endpoints are
// ejected; always_eject_one_host lets the first through anyway.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		n, percent  int
		alwaysOne   bool
		wantEjected int
	}{
		{name: "half of four", n: 4, percent: 50, wantEjected: 2},
		{name: "half of five", n: 5, percent: 50, wantEjected: 2},
		{name: "one of two", n: 2, percent: 50, wantEjected: 1},
		{name: "the only endpoint is kept", n: 1, percent: 50, wantEjected: 0},
		{name: "always eject one", n: 1, percent: 50, alwaysOne: true, wantEjected: 1},
		{name: "ten percent of five", n: 5, percent: 10, wantEjected: 0},
		{name: "ten percent of five, always one", n: 5, percent: 10, alwaysOne: true, wantEjected: 1},
		{name: "all", n: 3, percent: 100, wantEjected: 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ws := make([]uint32, c.n)
			for i := range ws {
				ws[i] = 1
			}
			b, _ := newBalancer(t, specs(ws...), Options{Outlier: OutlierOptions{MaxEjectionPercent: c.percent, AlwaysEjectOne: c.alwaysOne}})
			for _, e := range b.Endpoints() {
				fail(e, 5, ServerFailure)
			}
			st := b.Stats()
			if st.Ejected != c.wantEjected || st.Ejections != uint64(c.wantEjected) || st.EjectionsSkipped != uint64(c.n-c.wantEjected) {
				t.Errorf("stats %+v; want %d ejected, %d skipped", st, c.wantEjected, c.n-c.wantEjected)
			}
			if st.Panic != (c.wantEjected == c.n) {
				t.Errorf("panic = %v with %d of %d ejected", st.Panic, c.wantEjected, c.n)
			}
		})
	}
}

// TestOutlierRefusedEjectionRetried: a refused ejection is tried again
// after as many more failures, and succeeds once a slot is free.
func TestOutlierRefusedEjectionRetried(t *testing.T) {
	t.Parallel()
	b, clk := newBalancer(t, specs(1, 1), Options{})
	a, c := b.Endpoints()[0], b.Endpoints()[1]
	fail(a, 5, ServerFailure)
	fail(c, 5, ServerFailure)
	if st := b.Stats(); st.Ejected != 1 || st.EjectionsSkipped != 1 {
		t.Fatalf("stats %+v; want 1 ejected, 1 skipped", st)
	}
	clk.Advance(30 * time.Second) // a returns
	fail(c, 4, ServerFailure)
	if !b.Snapshot()[1].EjectedUntil.IsZero() {
		t.Fatal("c ejected after 9 consecutive failures; want the next try at 10")
	}
	fail(c, 1, ServerFailure)
	if b.Snapshot()[1].EjectedUntil.IsZero() {
		t.Fatal("c not ejected after 10 consecutive failures with a free slot")
	}
}

// TestOutlierReadmittedByHealthCheck: an ejected endpoint that passes the
// healthy threshold of active checks after its ejection is readmitted at
// once; the ejection timer firing later changes nothing.
func TestOutlierReadmittedByHealthCheck(t *testing.T) {
	t.Parallel()
	b, clk := newBalancer(t, specs(1, 1), Options{})
	e := b.Endpoints()[0]
	b.ReportHealth(e, true) // a pass before the ejection does not count
	fail(e, 5, ServerFailure)
	b.ReportHealth(e, true)
	if b.Snapshot()[0].Available {
		t.Fatal("readmitted after one pass; want Healthy = 2")
	}
	b.ReportHealth(e, true)
	if st := b.Snapshot()[0]; !st.Available || !st.EjectedUntil.IsZero() {
		t.Fatalf("after two passes: %+v; want readmitted", st)
	}
	if clk.pending() != 0 {
		t.Errorf("%d timers pending; want the ejection timer stopped", clk.pending())
	}
	// The multiplier stays: the next ejection is the second.
	fail(e, 5, ServerFailure)
	if m := b.Snapshot()[0].EjectionMultiplier; m != 2 {
		t.Errorf("multiplier = %d; want 2", m)
	}
	clk.Advance(60 * time.Second)
	if !b.Snapshot()[0].Available {
		t.Error("not back after the second ejection's time")
	}
}

func TestConnFailedRemovesAtOnce(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			b, _ := newBalancer(t, specs(3, 1), Options{Algorithm: alg})
			e := b.Endpoints()[0]
			b.ConnFailed(e)
			if st := b.Snapshot()[0]; st.Conn != ConnFailure || st.Available || !st.Healthy {
				t.Fatalf("after ConnFailed: %+v", st)
			}
			if picked(t, b, 1000)[e.Addr()] {
				t.Fatal("endpoint picked right after ConnFailed")
			}
			b.ConnReady(e)
			if !picked(t, b, 1000)[e.Addr()] {
				t.Fatal("endpoint not picked after ConnReady")
			}
		})
	}
}

func TestUpdateKeepsState(t *testing.T) {
	t.Parallel()
	s := specs(1, 1, 1, 1)
	b, clk := newBalancer(t, s, Options{})
	eps := b.Endpoints()
	ejected, sick, busy, dropped := eps[0], eps[1], eps[2], eps[3]
	fail(ejected, 5, ServerFailure)
	b.ReportHealth(sick, false)
	b.ReportHealth(sick, false)
	busy.Start()
	dropped.Start()
	fail(dropped, 3, ServerFailure)

	next := []Spec{s[0], s[1], {Addr: s[2].Addr, Weight: 7}, {Addr: "10.0.0.9:80"}}
	if err := b.Update(next); err != nil {
		t.Fatal(err)
	}
	got := b.Endpoints()
	if got[0] != ejected || got[1] != sick || got[2] != busy {
		t.Fatal("kept addresses got new *Endpoint values")
	}
	snap := b.Snapshot()
	if snap[0].EjectedUntil.IsZero() || snap[1].Healthy || snap[2].InFlight != 1 || snap[2].Weight != 7 {
		t.Errorf("state lost on update: %+v", snap)
	}
	if !snap[3].Healthy || !snap[3].Available || snap[3].Addr != "10.0.0.9:80" {
		t.Errorf("new endpoint %+v; want healthy and available", snap[3])
	}
	// Reports about the removed endpoint are ignored; its calls may end.
	b.ReportHealth(dropped, false)
	b.ConnFailed(dropped)
	fail(dropped, 10, ServerFailure)
	dropped.Done(Success)
	if st := b.Stats(); st.Ejections != 1 || st.Ejected != 1 {
		t.Errorf("stats %+v; want the removed endpoint's failures ignored", st)
	}
	if p := picked(t, b, 1000); p[dropped.Addr()] || p[ejected.Addr()] || p[sick.Addr()] {
		t.Errorf("picked %v; want only the busy and new endpoints", p)
	}
	// The ejection still ends on time, and removing an ejected endpoint
	// frees its place under max_ejection_percent.
	clk.Advance(30 * time.Second)
	if !b.Snapshot()[0].Available {
		t.Error("kept ejection did not end")
	}
	fail(ejected, 5, ServerFailure)
	if err := b.Update(next[1:]); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Ejected != 0 {
		t.Errorf("stats %+v; want 0 ejected after removing the ejected endpoint", st)
	}
	if clk.pending() != 0 {
		t.Errorf("%d timers pending; want the removed endpoint's timer stopped", clk.pending())
	}
}

func TestUpdateRejectsInvalidAndKeepsSet(t *testing.T) {
	t.Parallel()
	b, _ := newBalancer(t, specs(1, 1), Options{})
	before := b.Endpoints()
	if err := b.Update([]Spec{{Addr: "a:1"}, {Addr: "a:1"}}); err == nil {
		t.Fatal("Update with a duplicate address succeeded")
	}
	if after := b.Endpoints(); len(after) != 2 || after[0] != before[0] || after[1] != before[1] {
		t.Error("a failed Update changed the endpoints")
	}
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	b, clk := newBalancer(t, []Spec{{Addr: "a:1", Weight: 3}, {Addr: "b:2"}}, Options{})
	a := b.Lookup("a:1")
	a.Start()
	a.Start()
	fail(a, 5, ConnectFailure)
	b.ConnFailed(b.Lookup("b:2"))
	got := b.Snapshot()
	want := []EndpointState{
		{Addr: "a:1", Weight: 3, Healthy: true, EjectedUntil: clk.Now().Add(30 * time.Second), EjectionMultiplier: 1, InFlight: 2, Conn: ConnReady},
		{Addr: "b:2", Weight: 1, Healthy: true, Conn: ConnFailure},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("snapshot[%d] = %+v; want %+v", i, got[i], want[i])
		}
	}
	if s := got[1].Conn.String(); s != "transient_failure" {
		t.Errorf("ConnFailure.String() = %q", s)
	}
}

func TestCloseStopsTimers(t *testing.T) {
	t.Parallel()
	b, clk := newBalancer(t, specs(1, 1), Options{})
	fail(b.Endpoints()[0], 5, ServerFailure)
	if clk.pending() != 1 {
		t.Fatalf("%d timers; want 1", clk.pending())
	}
	b.Close()
	if clk.pending() != 0 {
		t.Errorf("%d timers after Close; want 0", clk.pending())
	}
	b.Close()
	if _, err := b.Pick(0, nil); err != nil {
		t.Errorf("Pick after Close: %v", err)
	}
}

// TestSystemClockEjection runs one ejection on the real clock, waiting
// for the timer through the picker rather than for any fixed time.
func TestSystemClockEjection(t *testing.T) {
	t.Parallel()
	b, err := New(specs(1, 1), Options{Outlier: OutlierOptions{BaseEjectionTime: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e := b.Endpoints()[0]
	fail(e, 5, ServerFailure)
	for !b.Snapshot()[0].Available {
		time.Sleep(time.Millisecond)
	}
}
