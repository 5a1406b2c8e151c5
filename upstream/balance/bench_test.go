package balance

import (
	"testing"
	"time"
)

func newBenchBalancer(b *testing.B, alg Algorithm) *Balancer {
	b.Helper()
	bal, err := New(specs(5, 1, 3, 1, 2, 8, 1, 1, 4, 2), Options{Algorithm: alg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bal.Close)
	return bal
}

// BenchmarkPick measures one pick per algorithm over ten endpoints of
// mixed weights, on one goroutine and on all of them.
func BenchmarkPick(b *testing.B) {
	for _, alg := range allAlgorithms {
		b.Run(alg.String(), func(b *testing.B) {
			bal := newBenchBalancer(b, alg)
			b.ReportAllocs()
			var key uint64
			for b.Loop() {
				key += 0x9e3779b97f4a7c15
				if _, err := bal.Pick(key, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg.String()+"/parallel", func(b *testing.B) {
			bal := newBenchBalancer(b, alg)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var key uint64
				for pb.Next() {
					key += 0x9e3779b97f4a7c15
					if _, err := bal.Pick(key, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPickAvoid measures the pick of a retry, which must miss the
// endpoint of the failed try.
func BenchmarkPickAvoid(b *testing.B) {
	for _, alg := range allAlgorithms {
		b.Run(alg.String(), func(b *testing.B) {
			bal := newBenchBalancer(b, alg)
			avoid := bal.Endpoints()[0]
			b.ReportAllocs()
			var key uint64
			for b.Loop() {
				key += 0x9e3779b97f4a7c15
				if _, err := bal.Pick(key, avoid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPickNear measures least_request's pick of a call that arrived
// with others (the relay's), each following the one before it, over
// endpoints of equal measured latency (so the preference is weighed, not
// dropped for want of a measure).
func BenchmarkPickNear(b *testing.B) {
	bal := newBenchBalancer(b, LeastRequest)
	for _, e := range bal.Endpoints() {
		e.ObserveLatency(time.Millisecond)
	}
	b.ReportAllocs()
	var prev *Endpoint
	for b.Loop() {
		e, err := bal.PickNear(0, prev)
		if err != nil {
			b.Fatal(err)
		}
		prev = e
	}
}

// BenchmarkStartDone measures the in-flight and outlier bookkeeping of one
// call, for a success and for a failure that does not eject.
func BenchmarkStartDone(b *testing.B) {
	for _, o := range []Outcome{Success, ServerFailure} {
		b.Run(o.String(), func(b *testing.B) {
			bal := newBenchBalancer(b, LeastRequest)
			e := bal.Endpoints()[0]
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e.Start()
					e.Done(o)
					if o != Success {
						e.consecFail.Store(0) // stay below the ejection threshold
					}
				}
			})
		})
	}
}
