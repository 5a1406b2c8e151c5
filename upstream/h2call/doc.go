// Package h2call carries gRPC calls and plain HTTP/2 round trips on the
// gateway's own HTTP/2 client connections (package transports/h2), so
// that every path to a gRPC upstream (the frame relay, the gRPC handler
// path and the dialects that call methods: REST, gRPC-Web, Connect,
// WebSocket) shares one set of connections per target.
//
// [Conn] is a grpc.ClientConnInterface: generated clients and the
// dialects' Invoke/NewStream calls run on it as on a grpc.ClientConn,
// with the gRPC over HTTP/2 framing (5-byte message prefixes, metadata,
// grpc-timeout, status trailers, trailers-only answers) done here, and
// statuses worded and coded as grpc-go words and codes them. It is also
// an http.RoundTripper for handlers that forward whole requests (the gRPC
// pass-through handler), with full-duplex bodies and trailers as net/http's
// HTTP/2 transport gives them.
//
// It owns the per-call work only. Which connection a call goes on is a
// hook, [Options.Pick], which hands out an [Attempt] and learns how it
// ended from [Attempt.Finish]: balancing, health, circuit breaking and
// retries live behind that hook, in the upstream package. [Target] is a
// simple Pick for one address.
//
// # Differences from grpc-go's client
//
// Statuses, their codes and messages match grpc-go's for everything the
// server can send (the tests compare them on crafted answers). What
// differs, by design or for lack of grpc-go's machinery:
//
//   - No retries of any kind inside a call (grpc-go retries refused
//     streams transparently, and per service config): an attempt's
//     [Outcome] tells the Pick side what happened, and it retries. Only
//     a connection that takes no new stream at all is picked again, as
//     nothing was sent.
//   - No interceptors, per-RPC credentials, stats handlers, channelz,
//     binary logs or wait-for-ready; grpc.Peer is not filled.
//   - Messages are marshaled (and checked against the send limit) before
//     a connection is picked, so such errors cost no stream.
//   - Request messages are compressed only with gzip; responses are
//     inflated for every codec when they come gzip (always available) or
//     in an encoding registered with grpc-go's encoding package.
//     grpc-accept-encoding is sent only when [Options.AcceptGzip] is set
//     or the call compresses.
//   - The user-agent is [Options.UserAgent], not grpc-go's.
//   - Metadata keys that HTTP/2 forbids (connection, keep-alive,
//     proxy-connection, transfer-encoding, upgrade) are dropped instead
//     of failing the call when the server resets it.
//   - A stream refused by GOAWAY reads like one refused by RST_STREAM
//     (UNAVAILABLE "stream terminated by RST_STREAM with error code:
//     REFUSED_STREAM"); a lost connection is UNAVAILABLE with its own
//     wording.
//
// No goroutine is started per call, except the request body pump of a
// round trip (and context.AfterFunc's, when a stream's context ends
// first): a caller blocked in Invoke, RecvMsg or a body Read waits on
// a channel that the connection's reading goroutine signals from the
// stream's events, which never block. Received bytes are given back to
// the server's flow-control window only as the caller consumes them, so a
// stream holds at most one window of unread data (plus the message a
// waiting RecvMsg is assembling).
package h2call
