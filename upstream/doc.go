// Package upstream owns the gateway's connections to its backends: one
// gRPC client connection per upstream, balanced round-robin per RPC over the
// upstream's targets, in plaintext (h2c) or TLS. Upstreams of kind http
// are plain HTTP backends instead: an [HTTPUpstream] keeps a keep-alive
// pool to its targets, picks one round-robin per request, and builds the
// reverse proxy of each URI route ([HTTPUpstream.Proxy]).
//
// It does not decode messages; callers pass their own codecs and messages.
package upstream
