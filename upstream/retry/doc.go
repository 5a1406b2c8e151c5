// Package retry decides whether a failed attempt of an upstream call may
// be tried again, and after how long: a per-route [Policy] (how many
// tries, on which outcomes, with what backoff) and a per-upstream
// [Budget] that caps retries to a share of the calls, so that retries
// cannot multiply the load of an upstream that is already failing.
//
// It is pure decision code: it sends nothing, sleeps nowhere and starts
// no goroutine. The integration runs the attempts, classifies each one's
// end as an [Outcome], tells whether the request had been sent and
// whether the method is idempotent, and asks [Policy.Decide]; when the
// answer is to retry it waits the returned backoff (or gives up when the
// call's context ends first) and picks another target (see
// upstream/balance's avoid argument).
//
// # Which outcomes are safe to retry
//
// Some outcomes prove the backend never processed the call, others do
// not:
//
//   - Not processed: [ConnectFailure] (no connection, so nothing was
//     sent), [RefusedStream] (HTTP/2 REFUSED_STREAM: the server refused the
//     stream before processing it, RFC 9113 §8.7) and [GoAway] (the stream
//     was opened above the last stream id of a GOAWAY, so the server will
//     not process it). They are retried for any method while
//     Attempt.Sent is false, that is while no request message has left
//     the gateway on this attempt. Once one has, they are retried only
//     for idempotent methods, like the outcomes below. (RFC 9113 allows
//     replaying a refused stream's request whatever it was; the rule is
//     stricter because a relay may no longer hold what it sent. An
//     integration that still holds the whole request may report
//     Sent = false for RefusedStream and GoAway.)
//   - Possibly processed: [Reset] (the stream or connection broke after
//     the call started), [Unavailable] (gRPC UNAVAILABLE, HTTP 503),
//     [PerTryTimeout] (this attempt's own deadline passed) and
//     [ServerError] (HTTP 500, 502, 504). The backend may have acted on
//     the call, so they are retried only when Attempt.Idempotent is true
//     (gRPC idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS; HTTP GET,
//     HEAD, OPTIONS, PUT, DELETE), whatever Sent says.
//   - Never retried: [Success] and [Other] (every other error: client
//     errors, canceled calls, the call's own deadline).
//
// Each outcome is retried only if it is also in Policy.RetryOn.
//
// Mapped onto upstream/balance's outcomes for outlier detection,
// ConnectFailure is balance.ConnectFailure; RefusedStream and GoAway say
// nothing about the target's health (balance.Other); Reset, Unavailable,
// PerTryTimeout and ServerError are balance.ServerFailure.
package retry
