package analytics

import (
	"math"
	"time"
)

// The latency histogram has fixed, log-spaced buckets so that histograms
// from different minutes and different instances merge exactly by adding
// counts. Bucket upper bounds are 50µs × 2^(i/3) for i = 0..68, that is
// 26% wide buckets from 50µs to 333s, plus one overflow bucket:
//
//	bucket 0:          [0, 50µs]
//	bucket i (1..68):  (bounds[i-1], bounds[i]]
//	bucket 69:         (333s, ∞)
//
// Quantiles interpolate linearly within the bucket that holds the rank
// (the Prometheus histogram_quantile method), so a reported quantile lies
// in the same bucket as the true one: within a factor 2^(1/3) (−21%/+26%)
// of it. The overflow bucket reports its lower bound, 333s.
const (
	numBounds  = 69
	numBuckets = numBounds + 1
)

// bounds are the bucket upper bounds in nanoseconds.
var bounds = func() (b [numBounds]int64) {
	for i := range b {
		b[i] = int64(math.Round(50_000 * math.Exp2(float64(i)/3)))
	}
	return b
}()

// bucketIndex returns the histogram bucket of d. It does not allocate.
func bucketIndex(d time.Duration) int {
	ns := int64(d)
	lo, hi := 0, numBounds
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if bounds[mid] < ns {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// bin is one non-empty bucket of a sparse histogram: the bucket index in
// the top 8 bits and the count in the low 56.
type bin uint64

const binCountMask = 1<<56 - 1

func makeBin(i int, n int64) bin { return bin(uint64(i)<<56 | uint64(n)&binCountMask) }
func (b bin) index() int         { return int(b >> 56) }
func (b bin) count() int64       { return int64(b & binCountMask) }

// openCell accumulates the calls of one (minute, dimensions) cell while
// the cell is open. Its histogram is dense so that Record only increments.
type openCell struct {
	calls, errors, bytesIn, bytesOut int64
	hist                             [numBuckets]uint32
}

func (c *openCell) add(r *Record) {
	c.calls++
	if s := r.StatusClass; len(s) > 0 && (s[0] == '4' || s[0] == '5') {
		c.errors++
	}
	c.bytesIn += r.BytesIn
	c.bytesOut += r.BytesOut
	c.hist[bucketIndex(r.Duration)]++
}

// agg is a closed cell: the same counters with a sparse histogram, which
// keeps the 25 hours of minutes held in memory small (a typical cell has
// a handful of non-empty buckets).
type agg struct {
	calls, errors, bytesIn, bytesOut int64
	hist                             []bin // sorted by index, no zero counts
}

// addOpen adds a dense open cell into a.
func (a *agg) addOpen(c *openCell) {
	a.calls += c.calls
	a.errors += c.errors
	a.bytesIn += c.bytesIn
	a.bytesOut += c.bytesOut
	var dense [numBuckets]int64
	for _, b := range a.hist {
		dense[b.index()] += b.count()
	}
	for i, n := range c.hist {
		dense[i] += int64(n)
	}
	a.setDense(&dense)
}

// addAgg adds b into a.
func (a *agg) addAgg(b *agg) {
	a.calls += b.calls
	a.errors += b.errors
	a.bytesIn += b.bytesIn
	a.bytesOut += b.bytesOut
	if len(b.hist) == 0 {
		return
	}
	var dense [numBuckets]int64
	for _, x := range a.hist {
		dense[x.index()] += x.count()
	}
	for _, x := range b.hist {
		dense[x.index()] += x.count()
	}
	a.setDense(&dense)
}

// addBucket adds n calls to bucket i of the histogram only.
func (a *agg) addBucket(i int, n int64) {
	for j, b := range a.hist {
		switch {
		case b.index() == i:
			a.hist[j] = makeBin(i, b.count()+n)
			return
		case b.index() > i:
			a.hist = append(a.hist, 0)
			copy(a.hist[j+1:], a.hist[j:])
			a.hist[j] = makeBin(i, n)
			return
		}
	}
	a.hist = append(a.hist, makeBin(i, n))
}

func (a *agg) setDense(dense *[numBuckets]int64) {
	n := 0
	for _, c := range dense {
		if c != 0 {
			n++
		}
	}
	h := a.hist[:0]
	if cap(h) < n {
		h = make([]bin, 0, n)
	}
	for i, c := range dense {
		if c != 0 {
			h = append(h, makeBin(i, c))
		}
	}
	a.hist = h
}

// acc is a query-time accumulator with a dense histogram.
type acc struct {
	calls, errors, bytesIn, bytesOut int64
	hist                             [numBuckets]int64
}

func (x *acc) addAgg(a *agg) {
	x.calls += a.calls
	x.errors += a.errors
	x.bytesIn += a.bytesIn
	x.bytesOut += a.bytesOut
	for _, b := range a.hist {
		x.hist[b.index()] += b.count()
	}
}

func (x *acc) add(y *acc) {
	x.calls += y.calls
	x.errors += y.errors
	x.bytesIn += y.bytesIn
	x.bytesOut += y.bytesOut
	for i, n := range y.hist {
		x.hist[i] += n
	}
}

// quantile returns the q-quantile (0 < q ≤ 1) of the histogram in
// milliseconds, interpolated linearly within its bucket; 0 when empty.
func (x *acc) quantile(q float64) float64 {
	var n int64
	for _, c := range x.hist {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var cum int64
	for i, c := range x.hist {
		if c == 0 {
			continue
		}
		if float64(cum+c) >= rank {
			lower := 0.0
			if i > 0 {
				lower = float64(bounds[i-1])
			}
			if i == numBounds {
				return roundMs(lower)
			}
			upper := float64(bounds[i])
			frac := (rank - float64(cum)) / float64(c)
			return roundMs(lower + frac*(upper-lower))
		}
		cum += c
	}
	return roundMs(float64(bounds[numBounds-1])) // unreachable: rank ≤ n
}

// roundMs converts nanoseconds to milliseconds rounded to the microsecond.
func roundMs(ns float64) float64 { return math.Round(ns/1e3) / 1e3 }

func (x *acc) metrics() Metrics {
	return Metrics{
		Calls:    x.calls,
		Errors:   x.errors,
		BytesIn:  x.bytesIn,
		BytesOut: x.bytesOut,
		P50:      x.quantile(0.50),
		P95:      x.quantile(0.95),
		P99:      x.quantile(0.99),
	}
}
