// Package concurrency is the concurrency-limit plugin: at most max calls
// in flight on a route, counted from the chain's decision until the call
// ends (a stream counts until it closes). Over the limit a call is
// refused at once with Unavailable (503); it never queues.
//
// The count is one atomic integer per route, kept in [policy.Shared] so
// that calls in flight across a config reload are still counted; taking
// and giving back a slot takes no lock and allocates nothing.
//
// It does not limit rates (policy/ratelimit does) or connections (the
// transports do).
package concurrency
