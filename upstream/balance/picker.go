package balance

import (
	"cmp"
	"hash/fnv"
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// picker is an immutable view of one upstream's candidates, built by
// Balancer.rebuildLocked and published through an atomic.Pointer. Only
// the round-robin position and the endpoints' own live counters change
// under it.
type picker struct {
	alg     Algorithm
	eps     []*Endpoint // candidates: the available endpoints, or all of them in panic mode
	weights []uint32    // eps' weights when built
	panic   bool

	// round_robin
	schedule []uint32 // indexes into eps, one period of the smooth weighted order
	next     atomic.Uint64

	// random, least_request
	cum     []uint64 // cum[i] = weights[0] + … + weights[i]
	uniform bool     // all weights equal
	thresh  []uint32 // alias table (Vose): slot i keeps i when the
	alias   []uint32 // 32-bit fraction is below thresh[i], else alias[i]

	// ring_hash
	ring    *hashRing // over all endpoints, shared by the pickers of one endpoint set
	allowed []bool    // allowed[i]: ring.eps[i] is a candidate
}

// maxSchedule bounds the round-robin period (4 bytes a slot); weights
// whose reduced sum is larger are scaled down to fit.
const maxSchedule = 1 << 16

func buildPicker(o Options, eps []*Endpoint, panicMode bool, ring *hashRing, seed uint64) *picker {
	p := &picker{alg: o.Algorithm, eps: eps, panic: panicMode, weights: make([]uint32, len(eps))}
	for i, e := range eps {
		p.weights[i] = e.weight.Load()
	}
	if len(eps) == 0 {
		return p
	}
	switch o.Algorithm {
	case RoundRobin:
		p.schedule = smoothSchedule(p.weights)
		p.next.Store(seed % uint64(len(p.schedule)))
	case RingHash:
		p.ring = ring
		// eps is a subsequence of ring.eps, in the same order.
		p.allowed = make([]bool, len(ring.eps))
		j := 0
		for i, e := range ring.eps {
			if j < len(eps) && eps[j] == e {
				p.allowed[i] = true
				j++
			}
		}
	default:
		p.cum = make([]uint64, len(eps))
		var sum uint64
		p.uniform = true
		for i, w := range p.weights {
			sum += uint64(w)
			p.cum[i] = sum
			p.uniform = p.uniform && w == p.weights[0]
		}
		if !p.uniform {
			p.thresh, p.alias = aliasTable(p.weights, sum)
		}
	}
	return p
}

// aliasTable builds Vose's alias table for drawing index i with
// probability weights[i]/sum in O(1): slot j (chosen uniformly) keeps j
// with probability thresh[j]/2^32 and gives alias[j] otherwise.
func aliasTable(weights []uint32, sum uint64) (thresh, alias []uint32) {
	n := len(weights)
	thresh, alias = make([]uint32, n), make([]uint32, n)
	scaled := make([]float64, n) // weight × n / sum: 1 is a full slot
	var small, large []int
	for i, w := range weights {
		scaled[i] = float64(w) * float64(n) / float64(sum)
		if scaled[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		thresh[s] = uint32(scaled[s] * (1 << 32))
		alias[s] = uint32(l)
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left is a full slot (up to rounding).
	for _, i := range append(small, large...) {
		thresh[i], alias[i] = math.MaxUint32, uint32(i)
	}
	return thresh, alias
}

// randBits hands out 32 random bits at a time from a 64-bit source.
type randBits struct {
	rnd  func() uint64
	r    uint64
	have bool
}

func (b *randBits) next() uint32 {
	if b.have {
		b.have = false
		return uint32(b.r >> 32)
	}
	b.r, b.have = b.rnd(), true
	return uint32(b.r)
}

// same reports whether p was built from exactly these candidates, with
// the same weights and ring.
func (p *picker) same(eps []*Endpoint, panicMode bool, ring *hashRing) bool {
	if p.panic != panicMode || len(p.eps) != len(eps) || p.ring != ring {
		return false
	}
	for i, e := range eps {
		if p.eps[i] != e || p.weights[i] != e.weight.Load() {
			return false
		}
	}
	return true
}

// pick chooses a candidate. len(p.eps) > 0.
func (p *picker) pick(key uint64, avoid *Endpoint, rnd func() uint64) *Endpoint {
	if p.alg == RingHash {
		return p.pickRing(key, avoid)
	}
	if len(p.eps) == 1 {
		return p.eps[0]
	}
	av := -1
	if avoid != nil {
		av = slices.Index(p.eps, avoid)
	}
	switch p.alg {
	case RoundRobin:
		return p.eps[p.pickRoundRobin(av)]
	case LeastRequest:
		return p.eps[p.pickLeastRequest(av, rnd)]
	default:
		rb := randBits{rnd: rnd}
		return p.eps[p.drawWeighted(&rb, av, -1)]
	}
}

func (p *picker) pickRoundRobin(av int) int {
	s := p.schedule
	n := uint64(len(s))
	i := p.next.Add(1)
	k := s[i%n]
	if int(k) != av {
		return int(k)
	}
	// The schedule is smooth, so another endpoint is a few slots away.
	for j := uint64(1); j < n; j++ {
		if k2 := s[(i+j)%n]; int(k2) != av {
			return int(k2)
		}
	}
	return int(k)
}

// pickLeastRequest is the power of two choices: two distinct candidates
// drawn by weight, and the one with the higher effective weight wins:
// weight / (calls in flight + 1), as Envoy weighs load with
// active_request_bias 1 (with equal weights, the one with fewer calls in
// flight). So a heavy target with a call or two in flight still beats an
// idle light one, which in-flight / weight would not let it (an idle
// weight-1 target would beat a weight-9 one with one call). An idle first
// draw is kept (taking it queues nothing) and a tie goes to the first
// drawn: with little or no load, picks follow the weights.
func (p *picker) pickLeastRequest(av int, rnd func() uint64) int {
	cands := len(p.eps)
	if av >= 0 {
		cands--
	}
	rb := randBits{rnd: rnd}
	a := p.drawWeighted(&rb, av, -1)
	if cands < 2 {
		return a
	}
	c := p.drawWeighted(&rb, av, a)
	la, lc := p.eps[a].inflight.Load(), p.eps[c].inflight.Load()
	// c wins when w_c/(lc+1) > w_a/(la+1), compared without dividing
	// (with equal weights: when lc < la).
	if la > 0 && int64(p.weights[c])*(la+1) > int64(p.weights[a])*(lc+1) {
		return c
	}
	return a
}

// NearSlack is how many calls in flight more than the power of two
// choices' winner [Balancer.PickNear] lets its preferred endpoint carry.
const NearSlack = 16

// [Balancer.PickNear] keeps its preferred endpoint only while its
// latency estimate is at most nearLatencyFactor times the winner's or
// within nearLatencyMargin of it (below a millisecond the estimates of
// equal targets differ by more than a factor on a busy machine).
const (
	nearLatencyFactor = 3
	nearLatencyMargin = int64(time.Millisecond)
)

// pickNear is least_request for PickNear: the power of two choices'
// winner w, unless prefer is a candidate known to answer about as fast
// as w (both latencies measured, prefer's at most nearLatencyFactor
// times w's or within nearLatencyMargin of it) whose load, less
// NearSlack, is no heavier than w's (weighed as pickLeastRequest weighs
// them). The latency check keeps a slow endpoint, whose calls in flight
// pile up only as time passes, from taking whole batches when it happens
// to be idle.
func (p *picker) pickNear(prefer *Endpoint, rnd func() uint64) *Endpoint {
	wi := p.pickLeastRequest(-1, rnd)
	w := p.eps[wi]
	if w == prefer {
		return w
	}
	lat, wlat := prefer.latency.Load(), w.latency.Load()
	if lat == 0 || wlat == 0 || (lat > nearLatencyFactor*wlat && lat-wlat > nearLatencyMargin) {
		return w
	}
	i := slices.Index(p.eps, prefer)
	if i < 0 {
		return w // no longer a candidate (ejected, failed, unhealthy, gone)
	}
	lp, lw := prefer.inflight.Load(), w.inflight.Load()
	// (lp+1-NearSlack)/weight_p <= (lw+1)/weight_w, without dividing.
	if int64(p.weights[wi])*(lp+1-NearSlack) <= int64(p.weights[i])*(lw+1) {
		return prefer
	}
	return w
}

// drawWeighted returns a candidate index with probability proportional to
// its weight, leaving out ex1 and ex2 (-1 for none); at least one
// candidate must remain. Unequal weights use the alias table and draw
// again when they hit a left-out index; after a few misses (the left-out
// weight dominates) the exact draw over the rest takes over. Either way
// the result follows the weights of the candidates that remain.
func (p *picker) drawWeighted(rb *randBits, ex1, ex2 int) int {
	if p.uniform {
		return p.draw(uint64(rb.next())<<32, ex1, ex2)
	}
	n := uint64(len(p.eps))
	for range 6 {
		x := uint64(rb.next()) * n
		i := int(x >> 32)
		if uint32(x) >= p.thresh[i] {
			i = int(p.alias[i])
		}
		if i != ex1 && i != ex2 {
			return i
		}
	}
	return p.draw(rb.rnd(), ex1, ex2)
}

// draw maps r to a candidate index with probability proportional to its
// weight, leaving out ex1 and ex2 (-1 for none). At least one candidate
// must remain.
func (p *picker) draw(r uint64, ex1, ex2 int) int {
	lo, hi := min(ex1, ex2), max(ex1, ex2)
	if lo == hi {
		lo = -1
	}
	if p.uniform {
		m := uint64(len(p.eps))
		if lo >= 0 {
			m--
		}
		if hi >= 0 {
			m--
		}
		i, _ := bits.Mul64(r, m)
		if lo >= 0 && int(i) >= lo {
			i++
		}
		if hi >= 0 && int(i) >= hi {
			i++
		}
		return int(i)
	}
	total := p.cum[len(p.cum)-1]
	if lo >= 0 {
		total -= uint64(p.weights[lo])
	}
	if hi >= 0 {
		total -= uint64(p.weights[hi])
	}
	x, _ := bits.Mul64(r, total)
	// Skip the left-out weight ranges, lowest first.
	if lo >= 0 && x >= p.cum[lo]-uint64(p.weights[lo]) {
		x += uint64(p.weights[lo])
	}
	if hi >= 0 && x >= p.cum[hi]-uint64(p.weights[hi]) {
		x += uint64(p.weights[hi])
	}
	return lowerBound(p.cum, x+1) // first i with cum[i] > x
}

// pickRing walks clockwise from the key's place to the first allowed
// endpoint other than avoid (or avoid, when it is the only one allowed).
func (p *picker) pickRing(key uint64, avoid *Endpoint) *Endpoint {
	r := p.ring
	n := len(r.hash)
	i := r.search(mix64(key))
	fallback := -1
	for j := 0; j < n; j++ {
		if i == n {
			i = 0
		}
		if o := r.owner[i]; p.allowed[o] {
			if r.eps[o] != avoid {
				return r.eps[o]
			}
			fallback = int(o)
		}
		i++
	}
	if fallback >= 0 {
		return r.eps[fallback]
	}
	return p.eps[0] // unreachable: every candidate has a point
}

// smoothSchedule returns one period of a smooth weighted round robin: each
// index appears in proportion to its weight, spread over the period rather
// than bunched. Weights are divided by their greatest common divisor; if
// the period would still exceed maxSchedule they are scaled to fit (each
// keeps at least one slot).
//
// The order is nginx's smooth weighted round robin (every step adds each
// weight to its index's credit and takes the index with the most credit,
// which pays the total back), at O(period × endpoints). When that product
// passes maxSmoothWork (hundreds of endpoints of unequal weights) it is
// the earliest-deadline-first order instead, in which the k-th slot of
// index i is due at (2k+1)/(2·w_i), at O(period × log endpoints). In both,
// after any number t of picks an index of weight w has had t·w/total picks
// give or take fewer than the number of endpoints.
func smoothSchedule(weights []uint32) []uint32 {
	w := reduce(weights, maxSchedule)
	var total int
	for _, x := range w {
		total += int(x)
	}
	if total*len(w) <= maxSmoothWork {
		return nginxSchedule(w, total)
	}
	return edfSchedule(w, total)
}

// maxSmoothWork bounds the steps nginxSchedule may take (a few ms).
const maxSmoothWork = 1 << 23

func nginxSchedule(w []uint32, total int) []uint32 {
	out := make([]uint32, 0, total)
	credit := make([]int64, len(w))
	for len(out) < total {
		best := 0
		for i, x := range w {
			credit[i] += int64(x)
			if credit[i] > credit[best] {
				best = i
			}
		}
		credit[best] -= int64(total)
		out = append(out, uint32(best))
	}
	return out
}

func edfSchedule(w []uint32, total int) []uint32 {
	out := make([]uint32, 0, total)
	k := make([]uint64, len(w)) // slots given so far
	// due(i) < due(j) ⇔ (2k_i+1)·w_j < (2k_j+1)·w_i; ties by index.
	less := func(i, j uint32) bool {
		a, b := (2*k[i]+1)*uint64(w[j]), (2*k[j]+1)*uint64(w[i])
		return a < b || a == b && i < j
	}
	h := make([]uint32, len(w))
	for i := range h {
		h[i] = uint32(i)
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i, less)
	}
	for len(out) < total {
		top := h[0]
		out = append(out, top)
		k[top]++
		siftDown(h, 0, less)
	}
	return out
}

func siftDown(h []uint32, i int, less func(a, b uint32) bool) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && less(h[r], h[l]) {
			m = r
		}
		if !less(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// reduceScaled divides weights by their greatest common divisor,
// multiplies them by unit and, when their sum then exceeds limit, scales
// them down to fit, each keeping at least 1.
func reduceScaled(weights []uint32, unit, limit int) []uint32 {
	var g uint32
	for _, w := range weights {
		g = gcd(g, w)
	}
	out := make([]uint32, len(weights))
	var sum float64
	for i, w := range weights {
		out[i] = w / g
		sum += float64(out[i]) * float64(unit)
	}
	scale := float64(unit)
	if sum > float64(limit) {
		scale *= float64(limit) / sum
	}
	for i, w := range out {
		out[i] = uint32(max(1, math.Round(float64(w)*scale)))
	}
	return out
}

func reduce(weights []uint32, limit int) []uint32 { return reduceScaled(weights, 1, limit) }

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// lowerBound returns the first index i with a[i] >= x, or len(a).
func lowerBound(a []uint64, x uint64) int {
	i, j := 0, len(a)
	for i < j {
		h := int(uint(i+j) >> 1)
		if a[h] < x {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

// hashRing is a consistent hash ring over every endpoint of a balancer.
type hashRing struct {
	eps   []*Endpoint
	ws    []uint32
	hash  []uint64 // sorted point hashes
	owner []uint32 // owner[i] indexes eps
	// bucket[b] is the index of the first point whose top bits are ≥ b
	// (shift = 64 − bits); about one point falls in each bucket, so a
	// search reads one or two cache lines instead of log2(points).
	bucket []uint32
	shift  uint
}

// search returns the index of the first point ≥ h, or len(r.hash).
func (r *hashRing) search(h uint64) int {
	b := h >> r.shift
	i, end := int(r.bucket[b]), int(r.bucket[b+1])
	for i < end && r.hash[i] < h {
		i++
	}
	return i
}

// newHashRing places round(w/gcd · virtualNodes) points per endpoint
// (scaled down to maxSize in total). An endpoint's points are
// mix64(fnv64a(addr) + (v+1)·φ) for v = 0, 1, …, so they depend only on
// its address and count, and hash collisions are broken by address.
func newHashRing(eps []*Endpoint, o RingOptions) *hashRing {
	r := &hashRing{eps: eps, ws: make([]uint32, len(eps))}
	for i, e := range eps {
		r.ws[i] = e.weight.Load()
	}
	if len(eps) == 0 {
		return r
	}
	counts := reduceScaled(r.ws, o.VirtualNodes, o.MaxSize)
	type point struct {
		h uint64
		o uint32
	}
	var total int
	for _, c := range counts {
		total += int(c)
	}
	pts := make([]point, 0, total)
	for i, e := range eps {
		f := fnv.New64a()
		f.Write([]byte(e.addr))
		base := f.Sum64()
		for v := range uint64(counts[i]) {
			pts = append(pts, point{mix64(base + (v+1)*0x9e3779b97f4a7c15), uint32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		return cmp.Compare(eps[a.o].addr, eps[b.o].addr)
	})
	r.hash = make([]uint64, len(pts))
	r.owner = make([]uint32, len(pts))
	for i, pt := range pts {
		r.hash[i], r.owner[i] = pt.h, pt.o
	}
	nb := uint(max(1, bits.Len(uint(len(pts)))-1)) // 2^nb ≈ points
	r.shift = 64 - nb
	r.bucket = make([]uint32, 1<<nb+1)
	for b := range 1 << nb {
		r.bucket[b] = uint32(lowerBound(r.hash, uint64(b)<<r.shift))
	}
	r.bucket[1<<nb] = uint32(len(pts))
	return r
}

// matches reports whether r was built from exactly these endpoints and
// weights.
func (r *hashRing) matches(eps []*Endpoint) bool {
	if len(r.eps) != len(eps) {
		return false
	}
	for i, e := range eps {
		if r.eps[i] != e || r.ws[i] != e.weight.Load() {
			return false
		}
	}
	return true
}

// mix64 is the SplitMix64 finalizer: a bijection that spreads every input
// bit over the output.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
