// Package policy is the one chain of plugins that every protocol runs
// before a call reaches its upstream: authentication (jwt-auth,
// key-auth), authorization (scopes) and limits (rate-limiting,
// concurrency-limit). A [Plugin] decides on a protocol-neutral
// [call.Call] and answers with a protocol-neutral [call.Error] plus
// header fields in a [State]; each protocol adapter renders that in its
// own dialect. Plugins live in their own packages under policy/; this
// package holds the contract and the [Chain] that orders them.
//
// It does not parse protocols, route requests or talk to upstreams.
package policy
