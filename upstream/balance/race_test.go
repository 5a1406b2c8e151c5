package balance

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentPickDoneUpdate runs pickers, health reports, connection
// changes, updates and ejection timers at once (run it with -race), then
// checks that every call was accounted for.
func TestConcurrentPickDoneUpdate(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			all := specs(5, 1, 3, 1, 2, 8)
			b, err := New(all, Options{Algorithm: alg, Clock: clk, Outlier: OutlierOptions{ConsecutiveFailures: 3, MaxEjectionPercent: 100}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			known := map[*Endpoint]bool{}
			var knownMu sync.Mutex
			remember := func() {
				knownMu.Lock()
				defer knownMu.Unlock()
				for _, e := range b.Endpoints() {
					known[e] = true
				}
			}
			remember()

			var stop atomic.Bool
			var wg sync.WaitGroup
			var picks atomic.Int64
			for g := range 8 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 7))
					var prev *Endpoint
					for !stop.Load() || picks.Load() < 20_000 {
						e, err := b.Pick(r.Uint64(), prev)
						if err != nil {
							t.Error(err)
							return
						}
						e.Start()
						e.Done(Outcome(r.IntN(4)))
						prev = e
						picks.Add(1)
					}
				})
			}
			wg.Go(func() {
				r := rand.New(rand.NewPCG(99, 7))
				for i := 0; i < 300; i++ {
					eps := b.Endpoints()
					e := eps[r.IntN(len(eps))]
					switch r.IntN(5) {
					case 0:
						b.ReportHealth(e, r.IntN(2) == 0)
					case 1:
						b.ConnFailed(e)
					case 2:
						b.ConnReady(e)
					case 3:
						clk.Advance(time.Duration(r.IntN(40)) * time.Second)
					case 4:
						lo := r.IntN(3)
						next := append([]Spec(nil), all[lo:lo+3+r.IntN(4-lo)]...)
						next[0].Weight = uint32(1 + r.IntN(10))
						if err := b.Update(next); err != nil {
							t.Error(err)
						}
						remember()
					}
					_ = b.Snapshot()
					_ = b.Stats()
				}
				stop.Store(true)
			})
			wg.Wait()
			for e := range known {
				if n := e.InFlight(); n != 0 {
					t.Errorf("%s: %d in flight after every call ended", e.Addr(), n)
				}
			}
		})
	}
}
