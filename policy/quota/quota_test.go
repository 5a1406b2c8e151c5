package quota_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/quota"
)

// contractPlans is the plans and consumers block of the contract, as
// written, plus bob on free and carol without a plan.
const contractPlans = `
plans:
  free:  { quota: { limit: 10000, period: month }, rate: { limit: 10, period: 1 } }
  gold:  { quota: { limit: 10000000, period: month } }
consumers:
  - { name: alice, keys: ["${ALICE_KEY}"], plan: gold }
  - { name: bob, keys: ["${BOB_KEY}"], plan: free }
  - { name: carol, keys: ["${CAROL_KEY}"] }
`

// smallPlans gives alice a quota of 3 per month in zone tz and bob a
// rate of 3 per hour; carol has no plan.
func smallPlans(tz string) string {
	return `
plans:
  free: {quota: {limit: 3, period: month, time_zone: ` + tz + `}}
  hourly: {rate: {limit: 3, period: 1h}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: free}
  - {name: bob, keys: ["${BOB_KEY}"], plan: hourly}
  - {name: carol, keys: ["${CAROL_KEY}"]}
`
}

var dec15 = time.Date(2026, 12, 15, 10, 0, 0, 0, time.UTC)

// The contract's YAML builds, and plans apply to its consumers.
func TestContractConfig(t *testing.T) {
	t.Parallel()
	in := newInstance(t, newConfig(t, contractPlans), dec15)
	p := in.plan(t)
	for consumer, want := range map[string]string{"alice": "gold", "bob": "free", "carol": ""} {
		if got := p.PlanOf(consumer); got != want {
			t.Errorf("PlanOf(%q): got %q; want %q", consumer, got, want)
		}
	}
	// bob's rate: 10 per second, shared by both routes.
	ok := allowedN(in.library(), "BOB_KEY", 6) + allowedN(in.chain(routeUsers), "BOB_KEY", 6)
	if ok != 10 {
		t.Errorf("bob: got %d of 12 calls allowed in one second; want 10", ok)
	}
	st, found, err := p.QuotaStatus(context.Background(), "bob")
	if err != nil || !found {
		t.Fatalf("QuotaStatus(bob): got %v, %v", found, err)
	}
	want := quota.QuotaStatus{Plan: "free", Limit: 10000, Used: 10, Remaining: 9990, Period: "month",
		ResetAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	if !sameStatus(st, want) {
		t.Errorf("QuotaStatus(bob): got %+v; want %+v", st, want)
	}
}

// The refusal: its code, message, plugin, retry-after and RateLimit.
func TestRefusal(t *testing.T) {
	t.Parallel()
	cases := []struct {
		tz, reset string
		seconds   int64
	}{
		// 16 days and 14 hours to 2027-01-01T00:00:00Z.
		{"UTC", "2027-01-01T00:00:00Z", 16*86400 + 14*3600},
		// Berlin's new year is an hour earlier.
		{"Europe/Berlin", "2027-01-01T00:00:00+01:00", 16*86400 + 13*3600},
		{"America/New_York", "2027-01-01T00:00:00-05:00", 16*86400 + 19*3600},
	}
	for _, tc := range cases {
		t.Run(tc.tz, func(t *testing.T) {
			t.Parallel()
			in := newInstance(t, newConfig(t, smallPlans(tc.tz)), dec15)
			for i := range 3 {
				err, st := check(in.library(), "ALICE_KEY")
				if err != nil {
					t.Fatalf("call %d: got %v; want allowed", i+1, err)
				}
				want := policy.RateLimit{Set: true, Limit: 3, Remaining: int64(2 - i), ResetSeconds: tc.seconds}
				if st.RateLimit != want {
					t.Errorf("call %d: got RateLimit %+v; want %+v", i+1, st.RateLimit, want)
				}
			}
			err, st := check(in.library(), "ALICE_KEY")
			if err == nil {
				t.Fatal("call 4: allowed; want refused")
			}
			want := `quota exhausted: plan "free" allows 3 calls per month; resets at ` + tc.reset
			if err.Code != codes.ResourceExhausted || err.Msg != want {
				t.Errorf("call 4: got %v %q; want ResourceExhausted %q", err.Code, err.Msg, want)
			}
			if err.Plugin != "plan" || !err.Refusal {
				t.Errorf("call 4: got Plugin %q, Refusal %v; want plan, true", err.Plugin, err.Refusal)
			}
			retry := policy.Field{Name: "retry-after", Value: itoa(tc.seconds)}
			if len(st.Response) != 1 || st.Response[0] != retry {
				t.Errorf("call 4: got response fields %v; want [%v]", st.Response, retry)
			}
			if want := (policy.RateLimit{Set: true, Limit: 3, Remaining: 0, ResetSeconds: tc.seconds}); st.RateLimit != want {
				t.Errorf("call 4: got RateLimit %+v; want %+v", st.RateLimit, want)
			}
			// Every route and protocol shares the count.
			if err, _ := check(in.chain(routeUsers), "ALICE_KEY"); err == nil || err.Code != codes.ResourceExhausted {
				t.Errorf("uri route: got %v; want the quota refusal", err)
			}
		})
	}
}

// sameStatus compares statuses, their ResetAt as instants.
func sameStatus(a, b quota.QuotaStatus) bool {
	reset := a.ResetAt.Equal(b.ResetAt)
	a.ResetAt, b.ResetAt = time.Time{}, time.Time{}
	return reset && a == b
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// In memory, exactly limit calls pass whatever the concurrency, through
// Check and TryCheck alike.
func TestMemoryExactConcurrent(t *testing.T) {
	t.Parallel()
	const limit = 100
	in := newInstance(t, newConfig(t, `
plans:
  free: {quota: {limit: 100, period: day}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: free}
`), dec15)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			chain := in.library()
			if g%2 == 1 {
				chain = in.chain(routeUsers)
			}
			for range 40 {
				st := &policy.State{}
				var err *call.Error
				if g < 4 {
					var pending bool
					err, pending = chain.TryCheck(keyCall("ALICE_KEY"), st)
					if pending {
						t.Error("TryCheck: pending with in-memory counters")
						return
					}
				} else {
					err = chain.Check(context.Background(), keyCall("ALICE_KEY"), st)
				}
				if err == nil {
					allowed.Add(1)
				}
				chain.Done(st)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Errorf("got %d of 320 calls allowed; want %d", got, limit)
	}
}

// A consumer without a plan, and a route without authentication, are
// not counted; the plan plugin joins only chains that authenticate.
func TestUncounted(t *testing.T) {
	t.Parallel()
	in := newInstance(t, newConfig(t, smallPlans("UTC")), dec15)
	if got := allowedN(in.library(), "CAROL_KEY", 50); got != 50 {
		t.Errorf("carol (no plan): got %d of 50 allowed; want 50", got)
	}
	if !in.chain(routePublic).Empty() {
		t.Error("the route without authentication got a chain; want none (the plan plugin joins authenticated chains only)")
	}
	// The plugin itself passes anonymous calls uncounted.
	p := in.plan(t)
	for range 10 {
		if err := p.Check(context.Background(), &call.Call{}, &policy.State{}); err != nil {
			t.Fatalf("anonymous: got %v; want allowed", err)
		}
	}
	if st, ok, err := p.QuotaStatus(context.Background(), "carol"); ok || err != nil || st != (quota.QuotaStatus{}) {
		t.Errorf("QuotaStatus(carol): got %+v, %v, %v; want nothing", st, ok, err)
	}
	// A plan with a rate only has no quota status, but names the plan.
	if st, ok, err := p.QuotaStatus(context.Background(), "bob"); ok || err != nil || st.Plan != "hourly" {
		t.Errorf("QuotaStatus(bob): got %+v, %v, %v; want plan hourly, not ok", st, ok, err)
	}
}

// The plan's rate counts per consumer across routes.
func TestRateAcrossRoutes(t *testing.T) {
	t.Parallel()
	in := newInstance(t, newConfig(t, `
plans:
  hourly: {rate: {limit: 3, period: 1h}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: hourly}
  - {name: bob, keys: ["${BOB_KEY}"], plan: hourly}
`), dec15)
	testRateAcrossRoutes(t, in)
}

func testRateAcrossRoutes(t *testing.T, in *instance) {
	t.Helper()
	chains := []*policy.Chain{in.library(), in.chain(routeUsers)}
	for i := range 3 {
		if err, _ := check(chains[i%2], "ALICE_KEY"); err != nil {
			t.Fatalf("alice call %d: got %v; want allowed", i+1, err)
		}
	}
	for i, chain := range chains {
		err, st := check(chain, "ALICE_KEY")
		if err == nil {
			t.Fatalf("alice call 4 on route %d: allowed; want refused by the rate", i)
		}
		if !strings.HasPrefix(err.Msg, `plan "hourly": rate limit exceeded: 3 calls per 1h0m0s; retry in `) || err.Code != codes.ResourceExhausted {
			t.Errorf("route %d: got %v %q; want the plan's rate refusal", i, err.Code, err.Msg)
		}
		if err.Plugin != "plan" {
			t.Errorf("route %d: got Plugin %q; want plan", i, err.Plugin)
		}
		if len(st.Response) != 1 || st.Response[0].Name != "retry-after" {
			t.Errorf("route %d: got response fields %v; want retry-after", i, st.Response)
		}
	}
	// bob's bucket is his own.
	if got := allowedN(chains[1], "BOB_KEY", 4); got != 3 {
		t.Errorf("bob: got %d of 4 allowed; want 3", got)
	}
}

// A reload (a new set with the previous Shared) keeps the counts; the
// set after it still counts to the limit only.
func TestReloadKeepsCount(t *testing.T) {
	t.Parallel()
	cfg := smallPlans("UTC")
	in := newInstance(t, newConfig(t, cfg), dec15)
	if got := allowedN(in.library(), "ALICE_KEY", 2); got != 2 {
		t.Fatalf("before the reload: got %d allowed; want 2", got)
	}
	in.reload(t, newConfig(t, cfg))
	if got := allowedN(in.library(), "ALICE_KEY", 3); got != 1 {
		t.Errorf("after the reload: got %d of 3 allowed; want 1 (the count is kept)", got)
	}
	st, _, _ := in.plan(t).QuotaStatus(context.Background(), "alice")
	if st.Used != 3 || st.Remaining != 0 {
		t.Errorf("QuotaStatus: got %+v; want 3 used, 0 remaining", st)
	}
	// A reload that raises the limit lets the consumer go on at once.
	in.reload(t, newConfig(t, strings.Replace(cfg, "limit: 3,", "limit: 5,", 1)))
	if got := allowedN(in.library(), "ALICE_KEY", 3); got != 2 {
		t.Errorf("after raising the limit to 5: got %d of 3 allowed; want 2", got)
	}
}

// Periods roll over on calendar boundaries of the quota's zone.
func TestRollover(t *testing.T) {
	t.Parallel()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	newYork, _ := time.LoadLocation("America/New_York")
	cases := []struct {
		name, period, tz string
		// last is the last instant of a period; the next starts 1ns
		// later, at reset.
		last  time.Time
		reset string
	}{
		// DST began on 2027-03-28: April starts at 00:00 CEST (+02:00),
		// 22:00 UTC on March 31.
		{"month/Europe/Berlin", "month", "Europe/Berlin",
			time.Date(2027, 3, 31, 23, 59, 59, 999999999, berlin), "2027-04-01T00:00:00+02:00"},
		// 2027-01-03 is a Sunday.
		{"week/America/New_York", "week", "America/New_York",
			time.Date(2027, 1, 3, 23, 59, 59, 999999999, newYork), "2027-01-04T00:00:00-05:00"},
		{"week/UTC", "week", "UTC",
			time.Date(2027, 1, 3, 23, 59, 59, 999999999, time.UTC), "2027-01-04T00:00:00Z"},
		// New York's DST ends on 2026-11-01: that day lasts 25 hours.
		{"day/America/New_York/25h", "day", "America/New_York",
			time.Date(2026, 11, 1, 23, 59, 59, 999999999, newYork), "2026-11-02T00:00:00-05:00"},
		{"year/Europe/Berlin", "year", "Europe/Berlin",
			time.Date(2026, 12, 31, 23, 59, 59, 999999999, berlin), "2027-01-01T00:00:00+01:00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := newInstance(t, newConfig(t, `
plans:
  free: {quota: {limit: 2, period: `+tc.period+`, time_zone: `+tc.tz+`}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: free}
`), tc.last.Add(-time.Second))
			if got := allowedN(in.library(), "ALICE_KEY", 2); got != 2 {
				t.Fatalf("first period: got %d allowed; want 2", got)
			}
			in.clock.Set(tc.last)
			err, st := check(in.library(), "ALICE_KEY")
			if err == nil || !strings.HasSuffix(err.Msg, "; resets at "+tc.reset) {
				t.Fatalf("last instant: got %v; want a refusal that resets at %s", err, tc.reset)
			}
			if st.RateLimit.ResetSeconds != 1 {
				t.Errorf("last instant: got ResetSeconds %d; want 1", st.RateLimit.ResetSeconds)
			}
			in.clock.Add(time.Nanosecond)
			if got := allowedN(in.library(), "ALICE_KEY", 3); got != 2 {
				t.Errorf("next period: got %d of 3 allowed; want 2", got)
			}
		})
	}
}

// The 25-hour day: a day quota reset at the day's end, 25 hours after
// its start, not 24.
func TestRolloverLongDay(t *testing.T) {
	t.Parallel()
	newYork, _ := time.LoadLocation("America/New_York")
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, newYork)
	in := newInstance(t, newConfig(t, `
plans:
  free: {quota: {limit: 1, period: day, time_zone: America/New_York}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: free}
`), start)
	if got := allowedN(in.library(), "ALICE_KEY", 2); got != 1 {
		t.Fatalf("got %d allowed; want 1", got)
	}
	in.clock.Add(24 * time.Hour) // 23:00 local, still November 1st
	if got := allowedN(in.library(), "ALICE_KEY", 1); got != 0 {
		t.Fatalf("24h later: got %d allowed; want 0 (the day lasts 25h)", got)
	}
	in.clock.Add(time.Hour)
	if got := allowedN(in.library(), "ALICE_KEY", 1); got != 1 {
		t.Fatalf("25h later: got %d allowed; want 1", got)
	}
}

// QuotaStatus reads without counting, and a period's status resets.
func TestQuotaStatusMemory(t *testing.T) {
	t.Parallel()
	in := newInstance(t, newConfig(t, smallPlans("Europe/Berlin")), dec15)
	p := in.plan(t)
	allowedN(in.library(), "ALICE_KEY", 2)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	want := quota.QuotaStatus{Plan: "free", Limit: 3, Used: 2, Remaining: 1, Period: "month",
		ResetAt: time.Date(2027, 1, 1, 0, 0, 0, 0, berlin)}
	for range 3 {
		st, ok, err := p.QuotaStatus(context.Background(), "alice")
		if !ok || err != nil || !sameStatus(st, want) {
			t.Fatalf("got %+v, %v, %v; want %+v", st, ok, err, want)
		}
	}
	if st, _, _ := p.QuotaStatus(context.Background(), "alice"); st.ResetAt.Location().String() != "Europe/Berlin" {
		t.Errorf("ResetAt: got zone %v; want Europe/Berlin", st.ResetAt.Location())
	}
	in.clock.Set(time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC))
	if st, _, _ := p.QuotaStatus(context.Background(), "alice"); st.Used != 0 || st.Remaining != 3 {
		t.Errorf("next month: got %+v; want 0 used", st)
	}
}

// A config without plans has no plan plugin.
func TestNoPlans(t *testing.T) {
	t.Parallel()
	in := newInstance(t, newConfig(t, `
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"]}
`), dec15)
	if p := quota.Find(in.set); p != nil {
		t.Errorf("Find: got %v; want nil", p)
	}
}

// A plan with both a rate and a quota reports the limit closer to
// refusing in RateLimit, and a call the rate refuses does not count
// against the quota.
func TestRateAndQuota(t *testing.T) {
	t.Parallel()
	in := newInstance(t, newConfig(t, `
plans:
  both: {quota: {limit: 5, period: day}, rate: {limit: 2, period: 1m}}
consumers:
  - {name: alice, keys: ["${ALICE_KEY}"], plan: both}
`), dec15)
	_, st := check(in.library(), "ALICE_KEY")
	// Rate: 1 of 2 left; quota: 4 of 5 left.
	if st.RateLimit.Limit != 2 || st.RateLimit.Remaining != 1 {
		t.Errorf("call 1: got RateLimit %+v; want the rate's (2, 1 left)", st.RateLimit)
	}
	check(in.library(), "ALICE_KEY")
	if err, _ := check(in.library(), "ALICE_KEY"); err == nil || !strings.Contains(err.Msg, "rate limit exceeded") {
		t.Fatalf("call 3: got %v; want the rate's refusal", err)
	}
	if st, _, _ := in.plan(t).QuotaStatus(context.Background(), "alice"); st.Used != 2 {
		t.Errorf("quota used: got %d; want 2 (the refused call is not counted)", st.Used)
	}
	in.clock.Add(time.Minute)
	check(in.library(), "ALICE_KEY")
	_, st = check(in.library(), "ALICE_KEY")
	// Rate: 0 of 2 left; quota: 1 of 5 left.
	if st.RateLimit.Limit != 2 || st.RateLimit.Remaining != 0 {
		t.Errorf("call 5: got RateLimit %+v; want the rate's, 0 left", st.RateLimit)
	}
	in.clock.Add(time.Minute)
	_, st = check(in.library(), "ALICE_KEY")
	// Rate: 1 of 2 left; quota: 0 of 5 left.
	if st.RateLimit.Limit != 5 || st.RateLimit.Remaining != 0 {
		t.Errorf("call 6: got RateLimit %+v; want the quota's, 0 left", st.RateLimit)
	}
	err, st := check(in.library(), "ALICE_KEY")
	if err == nil || !strings.HasPrefix(err.Msg, "quota exhausted") {
		t.Fatalf("call 7: got %v; want the quota's refusal", err)
	}
	if st.RateLimit.Limit != 5 {
		t.Errorf("call 7: got RateLimit %+v; want the quota's", st.RateLimit)
	}
}
