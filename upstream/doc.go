// Package upstream owns the gateway's connections to its backends: one
// gRPC client connection per upstream, balanced round-robin per RPC over the
// upstream's targets, in plaintext (h2c) or TLS.
//
// It does not decode messages; callers pass their own codecs and messages.
package upstream
