// Package transcoder is the shared part of the protocol adapters ("dialects")
// that turn what a client sent into backend calls and back. Each dialect has
// its own package:
//
//   - [github.com/rosetta-gateway/rosetta/transcoder/rest]: REST/JSON by
//     google.api.http rules, NDJSON / JSON-array / Server-Sent Events
//     framing of streams, client streams over HTTP;
//   - [github.com/rosetta-gateway/rosetta/transcoder/grpc]: gRPC passed
//     through without decoding, by the handler-path proxy and the
//     frame-level relay;
//   - [github.com/rosetta-gateway/rosetta/transcoder/grpcweb]: gRPC-Web,
//     binary and text;
//   - [github.com/rosetta-gateway/rosetta/transcoder/connect]: the Connect
//     protocol;
//   - [github.com/rosetta-gateway/rosetta/transcoder/websocket]: the
//     WebSocket bridge.
//
// This package holds what they all use and nothing dialect-specific:
// protocol detection ([Detect]), the inputs every dialect is built from
// ([Params], [Backend]), error and status rendering ([HTTPStatus],
// [WriteJSONError], [GRPCStatusFields], [NewErrorID]), metadata and
// deadline rules ([OutgoingMetadata], [SetForwarded], [CallDeadline]), the
// snapshot's type resolver and the pass-through codec ([RawCall]). What
// only some dialects share lives under transcoder/internal: binding (the
// compiled HttpRule mapping of REST and WebSocket) and rpc (method
// resolution, envelopes and pumps of gRPC-Web and Connect). No dialect
// imports another, and this package imports none of them.
//
// It does not own routing (package router), descriptors (package
// registry), policies (package policy) or backend connections (package
// upstream).
package transcoder
