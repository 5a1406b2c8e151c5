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
// No goroutine is started per call, except the request body pump of a
// round trip: a caller blocked in Invoke, RecvMsg or a body Read waits on
// a channel that the connection's reading goroutine signals from the
// stream's events, which never block. Received bytes are given back to
// the server's flow-control window only as the caller consumes them, so a
// stream holds at most one window of unread data (plus the message a
// waiting RecvMsg is assembling).
package h2call
