package balance

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

var allAlgorithms = []Algorithm{RoundRobin, LeastRequest, RingHash, Random}

func TestParseAlgorithm(t *testing.T) {
	t.Parallel()
	for _, a := range allAlgorithms {
		got, err := ParseAlgorithm(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v", a.String(), got, err, a)
		}
	}
	if got, err := ParseAlgorithm(""); err != nil || got != RoundRobin {
		t.Errorf("ParseAlgorithm(\"\") = %v, %v; want round_robin", got, err)
	}
	_, err := ParseAlgorithm("least_conn")
	if err == nil || !strings.Contains(err.Error(), "known: round_robin, least_request, ring_hash, random") {
		t.Errorf("ParseAlgorithm(least_conn) error = %v; want one listing the known names", err)
	}
}

func TestPickNoEndpoints(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgorithms {
		b, _ := newBalancer(t, nil, Options{Algorithm: alg})
		if e, err := b.Pick(1, nil); !errors.Is(err, ErrNoEndpoints) || e != nil {
			t.Errorf("%s: Pick = %v, %v; want ErrNoEndpoints", alg, e, err)
		}
		if e, err := b.PickNear(1, nil); !errors.Is(err, ErrNoEndpoints) || e != nil {
			t.Errorf("%s: PickNear = %v, %v; want ErrNoEndpoints", alg, e, err)
		}
	}
}

// TestRoundRobinWeightsExact checks that whole periods of the schedule
// give each endpoint exactly its weight's share.
func TestRoundRobinWeightsExact(t *testing.T) {
	t.Parallel()
	for _, ws := range [][]uint32{{1, 1, 1}, {1, 2, 3, 4}, {5, 1}, {1000, 1, 7}, {300, 200, 100}} {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			t.Parallel()
			s := specs(ws...)
			b, _ := newBalancer(t, s, Options{})
			var g, sum uint32
			for _, w := range ws {
				g = gcd(g, w)
			}
			for _, w := range ws {
				sum += w / g
			}
			const periods = 7
			got := countPicks(t, b, int(sum)*periods, nil)
			for _, sp := range s {
				if want := int(sp.Weight/g) * periods; got[sp.Addr] != want {
					t.Errorf("%s: got %d picks; want %d", sp.Addr, got[sp.Addr], want)
				}
			}
		})
	}
}

// TestRoundRobinSmooth checks that picks are spread over the period: in
// every prefix of the schedule (over two periods) each endpoint's count
// stays within the number of endpoints of its exact share, for both the
// nginx order and the EDF fallback; and that the nginx order is nginx's.
func TestRoundRobinSmooth(t *testing.T) {
	t.Parallel()
	if got, want := fmt.Sprint(smoothSchedule([]uint32{5, 1, 1, 3})), "[0 3 0 1 0 3 2 0 3 0]"; got != want {
		t.Errorf("schedule of 5,1,1,3 = %s; want nginx's %s", got, want)
	}
	for _, ws := range [][]uint32{{5, 1, 1, 3}, {1, 1, 1}, {100, 1}, {7, 3, 2, 9, 4, 1}, {999, 1000, 998}} {
		w := reduce(ws, maxSchedule)
		var total int
		for _, x := range w {
			total += int(x)
		}
		for name, sched := range map[string][]uint32{"nginx": nginxSchedule(w, total), "edf": edfSchedule(w, total)} {
			counts := make([]int, len(w))
			for t0 := 1; t0 <= 2*len(sched); t0++ {
				counts[sched[(t0-1)%len(sched)]]++
				for i, x := range w {
					exact := float64(t0) * float64(x) / float64(total)
					if d := math.Abs(float64(counts[i]) - exact); d >= float64(len(w)) {
						t.Fatalf("%s %v: after %d picks endpoint %d has %d; want %.1f±%d", name, ws, t0, i, counts[i], exact, len(w))
					}
				}
			}
		}
	}
}

func TestRoundRobinScheduleScaledDown(t *testing.T) {
	t.Parallel()
	// 1000 endpoints of coprime-ish weights: the reduced sum is far
	// above maxSchedule, so the period is scaled to fit.
	ws := make([]uint32, 1000)
	for i := range ws {
		ws[i] = uint32(i%997 + 3)
	}
	sched := smoothSchedule(ws)
	if len(sched) > maxSchedule+len(ws) {
		t.Errorf("period %d; want about %d", len(sched), maxSchedule)
	}
	seen := make([]int, len(ws))
	for _, k := range sched {
		seen[k]++
	}
	for i, n := range seen {
		if n == 0 {
			t.Fatalf("endpoint %d never scheduled", i)
		}
	}
	// Shares stay within one slot of exact after scaling.
	var sum float64
	for _, w := range ws {
		sum += float64(w)
	}
	for i, w := range ws {
		exact := float64(w) / sum * float64(len(sched))
		if math.Abs(float64(seen[i])-exact) > 1.5 {
			t.Fatalf("endpoint %d: %d slots; want %.1f±1.5", i, seen[i], exact)
		}
	}
}

// TestWeightedDistribution checks the random algorithms' shares against
// the weights with a chi-square test at the 0.999 level (fixed seeds).
func TestWeightedDistribution(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{Random, LeastRequest} {
		for _, ws := range [][]uint32{{1, 1, 1, 1}, {1, 2, 3, 4}, {10, 1}, {1000, 500, 1, 1, 98}} {
			t.Run(fmt.Sprintf("%s/%v", alg, ws), func(t *testing.T) {
				t.Parallel()
				s := specs(ws...)
				b, _ := newBalancer(t, s, Options{Algorithm: alg})
				got := countPicks(t, b, 200_000, nil)
				if x2, crit := chiSquare(s, got), chi2Crit999[len(ws)-1]; x2 > crit {
					t.Errorf("chi-square = %.2f over %d picks %v; want ≤ %.2f", x2, 200_000, got, crit)
				}
			})
		}
	}
}

// TestLeastRequestPrefersLessLoaded: with two distinct candidates, the
// endpoint with the lowest weight / (calls in flight + 1) is never picked, and
// the least loaded one is picked most.
func TestLeastRequestPrefersLessLoaded(t *testing.T) {
	t.Parallel()
	s := specs(1, 1, 1)
	b, _ := newBalancer(t, s, Options{Algorithm: LeastRequest})
	busy, some, idle := endpoint(t, b, s[0].Addr), endpoint(t, b, s[1].Addr), endpoint(t, b, s[2].Addr)
	for range 10 {
		busy.Start()
	}
	some.Start()
	got := countPicks(t, b, 30_000, nil)
	if got[busy.Addr()] != 0 {
		t.Errorf("busiest endpoint picked %d times; want 0", got[busy.Addr()])
	}
	// idle wins every draw it is in: 2 of the 3 pairs.
	if n := got[idle.Addr()]; n < 19_000 || n > 21_000 {
		t.Errorf("idle endpoint picked %d of 30000; want about 20000", n)
	}

	// Load is weighed against weight: 4 in flight on weight 4 (4/5) is
	// lighter than 2 on weight 1 (1/3).
	s = specs(4, 1)
	b, _ = newBalancer(t, s, Options{Algorithm: LeastRequest})
	heavy, light := endpoint(t, b, s[0].Addr), endpoint(t, b, s[1].Addr)
	for range 4 {
		heavy.Start()
	}
	light.Start()
	light.Start()
	got = countPicks(t, b, 10_000, nil)
	if got[light.Addr()] != 0 {
		t.Errorf("weight-1 endpoint with 2 in flight picked %d times over weight-4 with 4; want 0", got[light.Addr()])
	}
}

// TestLeastRequestEffectiveWeight: with unequal weights the pair is
// compared on weight / (in flight + 1), as Envoy compares it: a weight-9
// endpoint with one call in flight beats an idle weight-1 one whenever it
// is drawn first (so it keeps its 90 %), and loses to it once it has 9.
func TestLeastRequestEffectiveWeight(t *testing.T) {
	t.Parallel()
	s := specs(1, 9)
	b, _ := newBalancer(t, s, Options{Algorithm: LeastRequest})
	light, heavy := endpoint(t, b, s[0].Addr), endpoint(t, b, s[1].Addr)
	heavy.Start()
	const n = 20_000
	got := countPicks(t, b, n, nil)
	if h := got[heavy.Addr()]; h < n*88/100 || h > n*92/100 {
		t.Errorf("weight 9 with 1 in flight against an idle weight 1: picked %d of %d; want about 90 %%", h, n)
	}
	for range 8 {
		heavy.Start()
	}
	got = countPicks(t, b, n, nil)
	if h := got[heavy.Addr()]; h != 0 {
		t.Errorf("weight 9 with 9 in flight (1/10 of its weight) against an idle weight 1: picked %d of %d; want 0", h, n)
	}
	light.Start()
	got = countPicks(t, b, n, nil)
	// 9/10 against 1/2: the heavy one wins every pair.
	if h := got[heavy.Addr()]; h != n {
		t.Errorf("weight 9 with 9 in flight against weight 1 with 1: picked %d of %d; want all", h, n)
	}
}

// TestRingHashSpreadsByWeight checks that random keys spread over the
// ring in proportion to weight (within 15% of each share with 160 points
// per unit of weight).
func TestRingHashSpreadsByWeight(t *testing.T) {
	t.Parallel()
	for _, ws := range [][]uint32{{1, 1, 1, 1, 1}, {1, 2, 3}, {100, 300}} {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			t.Parallel()
			s := specs(ws...)
			b, _ := newBalancer(t, s, Options{Algorithm: RingHash})
			const n = 200_000
			got := countPicks(t, b, n, nil)
			var sum float64
			for _, w := range ws {
				sum += float64(w)
			}
			for _, sp := range s {
				want := n * float64(sp.Weight) / sum
				if d := math.Abs(float64(got[sp.Addr])-want) / want; d > 0.15 {
					t.Errorf("%s (weight %d): %d keys; want %.0f ±15%%", sp.Addr, sp.Weight, got[sp.Addr], want)
				}
			}
		})
	}
}

// ringMap returns the endpoint address of each key.
func ringMap(t *testing.T, b *Balancer, keys []uint64) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		e, err := b.Pick(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e.Addr()
	}
	return out
}

// TestRingHashStability checks that a key keeps its endpoint while the
// set is stable (also across picker rebuilds caused by other endpoints),
// that when one of N endpoints leaves only its keys move (about 1/N of
// them), and that they come back when it returns. It runs for each way
// an endpoint leaves.
func TestRingHashStability(t *testing.T) {
	t.Parallel()
	const n = 10
	keys := make([]uint64, 50_000)
	for i := range keys {
		keys[i] = uint64(i) // sequential keys: Pick mixes them
	}
	leave := map[string]func(b *Balancer, s []Spec, e *Endpoint){
		"update": func(b *Balancer, s []Spec, e *Endpoint) {
			if err := b.Update(append(append([]Spec(nil), s[:3]...), s[4:]...)); err != nil {
				t.Fatal(err)
			}
		},
		"conn_failed": func(b *Balancer, _ []Spec, e *Endpoint) { b.ConnFailed(e) },
		"unhealthy": func(b *Balancer, _ []Spec, e *Endpoint) {
			b.ReportHealth(e, false)
			b.ReportHealth(e, false)
		},
	}
	for name, f := range leave {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := specs(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
			b, _ := newBalancer(t, s, Options{Algorithm: RingHash})
			before := ringMap(t, b, keys)
			// A rebuild that leaves the set as it was changes nothing.
			b.ConnFailed(endpoint(t, b, s[0].Addr))
			b.ConnReady(endpoint(t, b, s[0].Addr))
			if again := ringMap(t, b, keys); !equalStrings(before, again) {
				t.Fatal("keys moved while the set was stable")
			}
			gone := endpoint(t, b, s[3].Addr)
			f(b, s, gone)
			after := ringMap(t, b, keys)
			moved := 0
			for i := range keys {
				if before[i] != after[i] {
					moved++
					if before[i] != gone.Addr() {
						t.Fatalf("key %d moved from %s, which stayed", keys[i], before[i])
					}
				}
				if after[i] == gone.Addr() {
					t.Fatalf("key %d still on the endpoint that left", keys[i])
				}
			}
			if frac := float64(moved) / float64(len(keys)); frac < 0.5/n || frac > 1.5/n {
				t.Errorf("%.3f of the keys moved; want about 1/%d", frac, n)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRingHashReturnsKeysWhenEndpointComesBack(t *testing.T) {
	t.Parallel()
	s := specs(1, 2, 1, 3)
	b, _ := newBalancer(t, s, Options{Algorithm: RingHash})
	keys := make([]uint64, 10_000)
	for i := range keys {
		keys[i] = uint64(i) * 7919
	}
	before := ringMap(t, b, keys)
	e := endpoint(t, b, s[1].Addr)
	b.ConnFailed(e)
	b.ConnReady(e)
	if after := ringMap(t, b, keys); !equalStrings(before, after) {
		t.Error("keys did not return to their endpoint")
	}
}

// TestAvoid checks that every algorithm honours avoid when another
// candidate exists, and returns avoid when it is the only one.
func TestAvoid(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			s := specs(1000, 1, 5)
			b, _ := newBalancer(t, s, Options{Algorithm: alg})
			heavy := endpoint(t, b, s[0].Addr)
			got := countPicks(t, b, 5_000, heavy)
			if got[heavy.Addr()] != 0 {
				t.Errorf("avoided endpoint picked %d times", got[heavy.Addr()])
			}
			if got[s[1].Addr] == 0 || got[s[2].Addr] == 0 {
				t.Errorf("picks %v; want both other endpoints used", got)
			}
			for i := uint64(0); i < 1000; i++ {
				first, _ := b.Pick(i, nil)
				if second, _ := b.Pick(i, first); second == first {
					t.Fatalf("retry of key %d went back to %s", i, first.Addr())
				}
			}

			one, _ := newBalancer(t, specs(1), Options{Algorithm: alg})
			only := one.Endpoints()[0]
			if e, _ := one.Pick(1, only); e != only {
				t.Errorf("single endpoint: Pick = %v; want the avoided one", e)
			}
		})
	}
}

// TestRingSearch checks the bucketed search against a plain lower bound.
func TestRingSearch(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 3, 10, 100} {
		ws := make([]uint32, n)
		eps := make([]*Endpoint, n)
		for i := range eps {
			ws[i] = uint32(i%3 + 1)
			eps[i] = &Endpoint{addr: fmt.Sprintf("h%d:1", i)}
			eps[i].weight.Store(ws[i])
		}
		r := newHashRing(eps, RingOptions{VirtualNodes: 7, MaxSize: 1 << 18})
		keys := seeded(uint64(n))
		probes := []uint64{0, 1, math.MaxUint64, r.hash[0], r.hash[len(r.hash)-1], r.hash[len(r.hash)-1] + 1}
		for range 10_000 {
			probes = append(probes, keys())
		}
		for _, h := range probes {
			if got, want := r.search(h), lowerBound(r.hash, h); got != want {
				t.Fatalf("%d endpoints: search(%#x) = %d; want %d", n, h, got, want)
			}
		}
	}
}

// TestPickNear: under least_request, calls that arrive together follow
// the one before them while it answers about as fast as the power of two
// choices' winner and carries at most NearSlack calls in flight more;
// then the pick moves. A preferred endpoint that is slow, unmeasured or
// out of the pick is not kept. The other algorithms ignore the
// preference.
func TestPickNear(t *testing.T) {
	t.Parallel()
	s := specs(1, 1, 1)
	b, _ := newBalancer(t, s, Options{Algorithm: LeastRequest})
	measured := func(b *Balancer, lat ...time.Duration) {
		for i, e := range b.Endpoints() {
			if lat[i] > 0 { // 0: leave unmeasured
				e.ObserveLatency(lat[i])
			}
		}
	}
	measured(b, time.Millisecond, 1500*time.Microsecond, 2*time.Millisecond)
	// The estimate moves 1/16 of the way to a slower answer, half the
	// way to a faster one; the first answer sets it.
	e0 := b.Endpoints()[0]
	if e0.Latency() != time.Millisecond {
		t.Fatalf("latency after one observation of 1ms: %v", e0.Latency())
	}
	if e0.ObserveLatency(17 * time.Millisecond); e0.Latency() != 2*time.Millisecond {
		t.Fatalf("latency after 1ms and 17ms: %v; want 2ms", e0.Latency())
	}
	if e0.ObserveLatency(0); e0.Latency() != time.Millisecond+1 {
		t.Fatalf("latency after 1ms, 17ms and 0: %v; want 1.000001ms (halfway from 2ms to 1ns, rounded up)", e0.Latency())
	}

	first, err := b.PickNear(1, nil)
	if err != nil {
		t.Fatalf("PickNear: %v", err)
	}
	// A batch: each call starts before the next is picked, as the relay
	// starts them.
	prev := first
	for i := range NearSlack {
		prev.Start()
		e, _ := b.PickNear(1, prev)
		if e != first {
			t.Fatalf("call %d of a batch went to %s with %d in flight on %s; want %s", i+2, e.Addr(), first.InFlight(), first.Addr(), first.Addr())
		}
		prev = e
	}
	// first now carries NearSlack calls, the others none: one more keeps
	// it (NearSlack more than the winner), the next moves.
	first.Start()
	if e, _ := b.PickNear(1, first); e == first {
		t.Errorf("with %d in flight against idle endpoints, PickNear kept %s; want another", first.InFlight(), first.Addr())
	}

	// Loads are weighed as least_request weighs them, the preferred one
	// taken as NearSlack calls lighter: weight 2 with NearSlack+1 in
	// flight ((NearSlack+1+1−NearSlack)/2 = 1) ties an idle weight 1
	// (1/1) and is kept; one more call and the idle one wins.
	s = specs(2, 1)
	b, _ = newBalancer(t, s, Options{Algorithm: LeastRequest})
	measured(b, time.Millisecond, time.Millisecond)
	heavy, light := endpoint(t, b, s[0].Addr), endpoint(t, b, s[1].Addr)
	for range NearSlack + 1 {
		heavy.Start()
	}
	if e, _ := b.PickNear(1, heavy); e != heavy {
		t.Errorf("weight 2 with %d in flight against idle weight 1: PickNear = %s; want the preferred %s", heavy.InFlight(), e.Addr(), heavy.Addr())
	}
	heavy.Start()
	if e, _ := b.PickNear(1, heavy); e != light {
		t.Errorf("weight 2 with %d in flight against idle weight 1: PickNear = %s; want %s", heavy.InFlight(), e.Addr(), light.Addr())
	}

	// An endpoint more than three times as slow as the winner and more
	// than a millisecond slower is not kept, nor is one not yet measured,
	// however idle: a slow endpoint's calls in flight pile up only as
	// time passes. Within a millisecond, a factor does not count: 0.9 ms
	// against 0.1 ms is kept.
	for _, lat := range [][]time.Duration{{7 * time.Millisecond, 2 * time.Millisecond}, {0, 2 * time.Millisecond}, {1100 * time.Microsecond, 50 * time.Microsecond}} {
		s = specs(1, 1)
		b, _ = newBalancer(t, s, Options{Algorithm: LeastRequest})
		measured(b, lat...)
		slow := endpoint(t, b, s[0].Addr)
		slow.Start() // one call in flight: the idle other wins every pair
		for range 100 {
			if e, _ := b.PickNear(1, slow); e == slow {
				t.Fatalf("PickNear kept %s (latency %v) against one of latency %v", slow.Addr(), slow.Latency(), lat[1])
			}
		}
	}

	s = specs(1, 1)
	b, _ = newBalancer(t, s, Options{Algorithm: LeastRequest})
	measured(b, 900*time.Microsecond, 100*time.Microsecond)
	near := endpoint(t, b, s[0].Addr)
	near.Start()
	if e, _ := b.PickNear(1, near); e != near {
		t.Errorf("PickNear moved from %s (latency %v) to %s (latency %v); want it kept within a millisecond", near.Addr(), near.Latency(), e.Addr(), e.Latency())
	}

	// A preferred endpoint that failed is out of the pick.
	s = specs(1, 1, 1)
	b, _ = newBalancer(t, s, Options{Algorithm: LeastRequest})
	measured(b, time.Millisecond, time.Millisecond, time.Millisecond)
	gone := endpoint(t, b, s[0].Addr)
	b.ConnFailed(gone)
	for range 1000 {
		if e, _ := b.PickNear(1, gone); e == gone {
			t.Fatalf("PickNear returned %s, whose connection failed", gone.Addr())
		}
	}

	// round_robin keeps its exact order; random and ring_hash their draw.
	for _, alg := range []Algorithm{RoundRobin, Random, RingHash} {
		a, _ := newBalancer(t, specs(1, 1, 1), Options{Algorithm: alg, Rand: seeded(7)})
		c, _ := newBalancer(t, specs(1, 1, 1), Options{Algorithm: alg, Rand: seeded(7)})
		var pa, pc *Endpoint
		for i := range 300 {
			pa, _ = a.Pick(uint64(i), nil)
			e, _ := c.PickNear(uint64(i), pc)
			if pa.Addr() != e.Addr() {
				t.Fatalf("%s: pick %d: PickNear = %s, Pick = %s; want the same", alg, i, e.Addr(), pa.Addr())
			}
			pc = e
		}
	}
}
