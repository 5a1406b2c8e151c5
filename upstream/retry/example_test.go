package retry_test

import (
	"fmt"

	"github.com/rosetta-gateway/rosetta/upstream/retry"
)

// Example walks one non-idempotent call whose first target refused the
// connection and whose second reset the stream after the request was sent.
func Example() {
	budget, _ := retry.NewBudget(retry.BudgetOptions{})
	p := retry.Policy{Attempts: 3}

	budget.Call() // once per call
	d := p.Decide(retry.Attempt{Number: 1, Outcome: retry.ConnectFailure}, budget)
	fmt.Println(d.Retry, d.Reason)

	d = p.Decide(retry.Attempt{Number: 2, Outcome: retry.Reset, Sent: true}, budget)
	fmt.Println(d.Retry, d.Reason)
	// Output:
	// true retrying
	// false not_idempotent
}
