// Package breaker bounds the calls an upstream (or one of its targets)
// takes at once, as Envoy's circuit breakers do: at most MaxRequests
// calls in flight and at most MaxPending more waiting for one of their
// slots; a call beyond both is refused at once, so that a slow upstream
// sheds load instead of piling up calls in the gateway.
//
// There are two ways in. [Breaker.TryAcquire] never blocks: the frame
// relay calls it on a connection's reading goroutine and, when it answers
// "would wait", hands the call to the handler path, which may block in
// [Breaker.Acquire] (like a policy answering "pending"). Both pair with
// [Breaker.Release], which allocates nothing: the breaker itself is the
// releaser.
//
// A refusal is an [*OpenError], whose message names the breaker and its
// counts ("circuit breaker of upstream books is open: 100 calls in
// flight, 50 waiting"), and whose [OpenError.CallError] is the
// UNAVAILABLE error the transports render.
//
// It does no I/O and starts no goroutine; it does not pick endpoints (see
// upstream/balance) or retry (see upstream/retry).
package breaker
