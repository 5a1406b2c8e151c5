package breaker_test

import (
	"fmt"

	"github.com/rosetta-gateway/rosetta/upstream/breaker"
)

// Example shows the relay's non-blocking path: take a slot, or learn
// whether the call may wait elsewhere, or refuse it.
func Example() {
	b, _ := breaker.New("upstream books", breaker.Options{MaxRequests: 1, MaxPending: -1})

	ok, _ := b.TryAcquire()
	fmt.Println("first:", ok)

	ok, wouldWait := b.TryAcquire()
	if !ok && !wouldWait {
		fmt.Println(b.OpenError().CallError().Msg)
	}
	b.Release()
	// Output:
	// first: true
	// circuit breaker of upstream books is open: 1 calls in flight, 0 waiting
}
