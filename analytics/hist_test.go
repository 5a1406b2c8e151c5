package analytics

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	t.Parallel()
	if bounds[0] != 50_000 {
		t.Errorf("first bound: got %d; want 50µs", bounds[0])
	}
	if last := time.Duration(bounds[numBounds-1]); last < 5*time.Minute || bounds[numBounds-2] >= int64(5*time.Minute) {
		t.Errorf("last bound: got %s (previous %s); want the first bound ≥ 5m", last, time.Duration(bounds[numBounds-2]))
	}
	for i := 1; i < numBounds; i++ {
		if r := float64(bounds[i]) / float64(bounds[i-1]); math.Abs(r-math.Cbrt(2)) > 1e-4 {
			t.Fatalf("bounds[%d]/bounds[%d] = %f; want 2^(1/3)", i, i-1, r)
		}
	}
	cases := []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0},
		{0, 0},
		{50 * time.Microsecond, 0},
		{50*time.Microsecond + 1, 1},
		{time.Duration(bounds[10]), 10},
		{time.Duration(bounds[10]) + 1, 11},
		{time.Duration(bounds[numBounds-1]), numBounds - 1},
		{time.Duration(bounds[numBounds-1]) + 1, numBounds},
		{time.Hour, numBounds},
	}
	for _, c := range cases {
		if got := bucketIndex(c.d); got != c.want {
			t.Errorf("bucketIndex(%s): got %d; want %d", c.d, got, c.want)
		}
	}
}

// exactQuantile is the nearest-rank quantile of sorted ds.
func exactQuantile(ds []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(i, 0)]
}

// Reported quantiles are within one bucket width of the exact ones, for
// many random distributions, and merging histograms changes nothing.
func TestQuantileAccuracy(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	lo, hi := 1/math.Cbrt(2), math.Cbrt(2)
	for trial := range 200 {
		n := 1 + rng.IntN(2000)
		ds := make([]time.Duration, n)
		var whole acc
		var parts [3]openCell
		for i := range ds {
			// Log-uniform from 100µs to 100s.
			ds[i] = time.Duration(1e5 * math.Pow(10, 6*rng.Float64()))
			parts[i%3].add(&Record{Duration: ds[i]})
		}
		// Merge three "minutes" through the sparse form, as the store does.
		var merged agg
		for i := range parts {
			merged.addOpen(&parts[i])
		}
		whole.addAgg(&merged)
		slices.Sort(ds)
		for _, q := range []float64{0.5, 0.95, 0.99} {
			got := whole.quantile(q)
			want := float64(exactQuantile(ds, q)) / 1e6
			if r := got / want; r < lo-1e-3 || r > hi+1e-3 {
				t.Fatalf("trial %d (n=%d): p%v: got %.3fms; want %.3fms ±26%%", trial, n, q*100, got, want)
			}
		}
		if whole.calls != int64(n) {
			t.Fatalf("calls: got %d; want %d", whole.calls, n)
		}
	}
}

func TestQuantileKnown(t *testing.T) {
	t.Parallel()
	var c openCell
	// 100 calls of 1ms…100ms.
	for i := 1; i <= 100; i++ {
		c.add(&Record{Duration: time.Duration(i) * time.Millisecond})
	}
	var g agg
	g.addOpen(&c)
	var x acc
	x.addAgg(&g)
	for _, tc := range []struct {
		q    float64
		want float64 // ms
	}{{0.5, 50}, {0.95, 95}, {0.99, 99}} {
		got := x.quantile(tc.q)
		if r := got / tc.want; r < 0.79 || r > 1.26 {
			t.Errorf("p%v: got %.3fms; want %vms ±26%%", tc.q*100, got, tc.want)
		}
	}
	// One call: the median is its bucket's midpoint.
	var one acc
	one.hist[bucketIndex(time.Millisecond)] = 1
	lower, upper := float64(bounds[12]), float64(bounds[13])
	if got, want := one.quantile(0.5), roundMs((lower+upper)/2); got != want {
		t.Errorf("single call p50: got %v; want %v", got, want)
	}
	// Overflow reports the last bound.
	var slow acc
	slow.hist[numBounds] = 1
	if got, want := slow.quantile(0.99), roundMs(float64(bounds[numBounds-1])); got != want {
		t.Errorf("overflow p99: got %v; want %v", got, want)
	}
	var empty acc
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty p50: got %v; want 0", got)
	}
}

func TestAggAddBucket(t *testing.T) {
	t.Parallel()
	var g agg
	for _, b := range []struct {
		i int
		n int64
	}{{5, 1}, {2, 3}, {9, 1}, {5, 4}, {0, 1}} {
		g.addBucket(b.i, b.n)
	}
	want := []bin{makeBin(0, 1), makeBin(2, 3), makeBin(5, 5), makeBin(9, 1)}
	if !slices.Equal(g.hist, want) {
		t.Errorf("got %v; want %v", g.hist, want)
	}
}

func FuzzParseDims(f *testing.F) {
	f.Add("alice", "/a.B/C", "x:y")
	f.Add("", "", "")
	f.Add("1:2:", "9999999999:", "\x00~")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		d := dims{api: a, route: b, method: c, protocol: b + a, consumer: c + a, status: a}
		enc := string(appendDims(nil, &d)) + "c"
		got, n, ok := parseDims(enc)
		if !ok || got != d || enc[n:] != "c" {
			t.Fatalf("parseDims(%q) = %+v, %d, %v; want %+v", enc, got, n, ok, d)
		}
		// Arbitrary input never panics.
		parseDims(a + b + c)
	})
}
