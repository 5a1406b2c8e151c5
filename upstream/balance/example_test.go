package balance_test

import (
	"fmt"

	"github.com/rosetta-gateway/rosetta/upstream/balance"
)

// Example shows one call and its retry: the retry avoids the target that
// failed, and a failing target's connection state takes it out at once.
func Example() {
	b, err := balance.New([]balance.Spec{
		{Addr: "10.0.0.1:8080", Weight: 1},
		{Addr: "10.0.0.2:8080", Weight: 1},
	}, balance.Options{Algorithm: balance.LeastRequest})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	first, _ := b.Pick(0, nil)
	first.Start()
	// ... dialing first.Addr() fails ...
	first.Done(balance.ConnectFailure)
	b.ConnFailed(first)

	retry, _ := b.Pick(0, first)
	retry.Start()
	retry.Done(balance.Success)
	fmt.Println(retry != first)

	for _, st := range b.Snapshot() {
		if st.Addr == first.Addr() {
			fmt.Println(st.Conn, st.Available)
		}
	}
	// Output:
	// true
	// transient_failure false
}
