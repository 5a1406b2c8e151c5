// Package ratelimit is the rate-limiting plugin: at most limit calls per
// period for each key (consumer, client IP, route, a header or a JWT
// claim), smoothly, with the generic cell rate algorithm (GCRA).
//
// GCRA keeps one number per key, its theoretical arrival time (TAT). The
// emission interval is T = period/limit and the burst is limit: a fresh
// key may spend limit calls at once, then earns one call back every T.
// Within one period from a full bucket, at most limit calls pass and the
// next is refused, and there is no window edge to exploit: spending limit
// calls just before a fixed-window boundary leaves nothing to spend just
// after it. (Any stretch of one period sees at most 2·limit−1 calls, and
// only after the key was idle a whole period: limit at once, then limit−1
// earned back one per T. A key used steadily gets limit per period.)
//
// The client IP is the connection's peer; X-Forwarded-For is believed
// only when the peer is one of the config's trusted_proxies, and then
// only its rightmost address that is not a trusted proxy. A consumer,
// header or claim key whose value is missing counts by the client IP
// (never all such calls under one shared "" bucket).
//
// With policy: local (the default) the TATs live in memory in sharded
// maps, per instance; a decision is a map lookup under a shard lock and
// allocates nothing for a key already held, so the limiter decides in
// [policy.LocalChecker.TryCheck] on the connection's goroutine. Idle keys
// are swept and the number of keys is capped, so memory is bounded
// whatever the clients send.
//
// With policy: redis every gateway instance shares the TATs in Redis
// (go-redis): each decision is one Lua script run atomically on the
// server's clock, so it needs I/O and TryCheck answers pending. While
// Redis is unreachable, fail: open (the default) allows calls uncounted
// and logs the outage once; fail: closed refuses them with Unavailable.
// After a failure only one call per second tries Redis, so an outage
// costs little per call; recovery is automatic.
//
// A refusal is ResourceExhausted ("rate limit exceeded: 1000 calls per
// 1h0m0s; retry in 3s") with a retry-after field; every decision fills
// [policy.State].RateLimit for the RateLimit-* response headers. With
// per_message, each WebSocket message counts against the call's bucket
// too ([MessageLimiter]).
//
// It does not limit concurrency (policy/concurrency does) or connections
// (the transports do).
package ratelimit
