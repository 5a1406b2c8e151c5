// Package h2 is the gateway's own HTTP/2 (RFC 9113) engine: a server that
// serves net/http handlers and, for the calls the gateway can relay frame
// by frame, hands whole streams to an event-driven relay; and a client
// connection that relay streams are sent on.
//
// Why not net/http's HTTP/2: a proxied gRPC call through net/http costs a
// handler goroutine, a client writer goroutine, a body pipe each way and a
// channel hand-off per frame, and it writes each frame with its own
// syscall. Here each connection has one reading goroutine and one writing
// goroutine; frames of every stream are appended to a per-connection
// buffer and written together, and a relayed stream is only state, moved
// by the frames that arrive. The framing and HPACK come from
// golang.org/x/net/http2 (Framer, hpack), which also validates frames and
// header blocks.
//
// Header blocks are read without the Framer's ReadMetaHeaders, with its
// checks (hpackread.go), so that what repeats on every call costs little:
// a block resent byte for byte while the HPACK table is unchanged is
// decoded once; literals a client never lets into the table (nghttp2's
// :path, content-length and never-indexed authorization) are decoded once
// per connection; fields are validated once per table entry; HEADERS
// payloads are read in place and buffers are kept. On the way out (hpackwrite.go), a never-indexed token is encoded
// once per connection, and a block that leaves the encoder's table as it
// was is reused while the table stays so. x/net's Decoder and Encoder
// keep the dynamic tables; the bytes sent are the ones its Encoder wrote.
//
// Flow control is credit based: a stream's receive window is given back
// to the peer only when its bytes have been consumed, which for a relayed
// stream means written to the other connection. A relay therefore holds
// at most one window of data per stream, however slow either side is.
package h2
