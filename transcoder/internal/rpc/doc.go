// Package rpc holds what the RPC-path dialects (gRPC-Web and Connect)
// share: resolving a "/pkg.Service/Method" path to a [Target], turning
// request headers into metadata, reading enveloped messages
// ([EnvelopeReader]) and pumping a client stream to the backend.
package rpc
