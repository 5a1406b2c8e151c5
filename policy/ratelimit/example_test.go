package ratelimit_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/ratelimit"
)

// Two calls per minute per client IP: the third call of a client is
// refused until one emission interval (30s) has passed.
func ExampleNew() {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p, err := ratelimit.New(policy.Env{Route: "/users/*", Shared: &policy.Shared{}},
		config.RateLimiting{Limit: 2, Period: config.Period(time.Minute)},
		ratelimit.WithClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	c := &call.Call{Route: "/users/*", Peer: netip.MustParseAddrPort("192.0.2.1:4711")}
	for range 3 {
		var st policy.State
		err := p.Check(context.Background(), c, &st)
		fmt.Printf("%v remaining=%d reset=%ds %v\n", err, st.RateLimit.Remaining, st.RateLimit.ResetSeconds, st.Response)
	}
	// Output:
	// <nil> remaining=1 reset=30s []
	// <nil> remaining=0 reset=60s []
	// ResourceExhausted: rate limit exceeded: 2 calls per 1m0s; retry in 30s remaining=0 reset=60s [{retry-after 30}]
}
