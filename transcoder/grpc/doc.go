// Package grpc passes gRPC calls through to their upstream without
// decoding a message. [Proxy.Relay] takes calls that arrive over the
// gateway's own HTTP/2 engine frame by frame, with no goroutine per call;
// [Proxy.Serve] takes the rest through net/http (local services, CORS
// requests, methods not yet in the snapshot, upstreams still connecting).
// Both check message sizes from the 5-byte prefixes, apply the same
// deadline rules and answer errors as trailers-only gRPC responses.
package grpc
