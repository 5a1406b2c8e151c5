// Package balance owns the gateway's one view of each upstream's targets:
// which of them may take a call now, and which one takes the next call.
// Every path that sends to an upstream (the frame-level gRPC relay, the
// gRPC handler path, REST, gRPC-Web, Connect, WebSocket and plain HTTP
// upstreams) asks the same [Balancer], so they all see the same health,
// ejections, connection states and in-flight counts.
//
// It follows grpc-go's split: a stateful [Balancer] takes the slow inputs
// (the endpoint set from [Balancer.Update], active health results from
// [Balancer.ReportHealth], connection states from [Balancer.ConnFailed] and
// [Balancer.ConnReady], outlier verdicts from [Endpoint.Done], ejection
// timers) under a mutex, and whenever the set of available endpoints
// changes it builds a new immutable picker and stores it in an
// atomic.Pointer. [Balancer.Pick] only loads that pointer: it never blocks,
// does no I/O and allocates nothing.
//
// The life of one attempt is:
//
//	e, err := b.Pick(key, previous) // previous is nil on the first try
//	e.Start()
//	... send to e.Addr() ...
//	e.Done(balance.ServerFailure)   // or Success, ConnectFailure, Other
//
// An endpoint is available when its active health check says healthy, it
// is not ejected by outlier detection and its connection is not in
// failure. When no endpoint is available the picker spreads calls over all
// of them (panic mode, as Envoy does) rather than refusing them.
//
// The package does no network I/O and starts no goroutines of its own:
// health checks, dialing and redialing with backoff are the integration's
// work, which reports their results here. The only callbacks are the
// ejection timers of the [Clock].
//
// It does not retry (see upstream/retry) and does not limit concurrency
// (see upstream/breaker).
package balance
