// Package transports owns the gateway's listeners: it accepts connections
// and hands every request, whatever its HTTP version, to one http.Handler.
//
// A [Server] is one configured listener: HTTP/1.1 and cleartext HTTP/2
// (h2c) on a TCP port, or, with TLS, HTTP/1.1 and HTTP/2 chosen by ALPN,
// plus HTTP/3 over QUIC on the same port number over UDP when http3 is on
// (advertised to TCP clients with Alt-Svc). It applies the listener's
// timeouts, size and stream limits. Plain HTTP/1.1 requests (origin-form
// target, one Host, no Expect or Upgrade, no body or a Content-Length
// one: REST calls, cache hits, SSE, gRPC-Web and Connect unary) are
// served by the lane (http1_lane.go), which costs a request no goroutine
// and watches the client only once the request's context is waited on;
// any other request is handed, with the rest of its connection, to
// net/http. HTTP/2 is served by package h2
// (installed through net/http's TLSNextProto hooks), which also lets a
// caller take streams over frame by frame ([Server.InterceptHTTP2]);
// HTTP/3 is quic-go's.
//
// Every request head is checked against the listener's edge limits
// (max_uri_bytes, max_header_bytes, max_header_count, control characters
// in the path; package headlimit) before any handler, relay or policy sees
// it, on every HTTP version: HTTP/1.1 heads by http1Conn, which reads each
// head off the connection before net/http does, and also refuses request
// smuggling (Content-Length with Transfer-Encoding, RFC 9112 §6.3);
// HTTP/2 heads by package h2, before its Intercept hook; HTTP/3 heads by a
// wrapper around the handler.
//
// TLS termination (tls.go) serves a default certificate and more chosen by
// SNI, verifies client certificates when asked, and reloads certificate
// files when they change, without a restart and without touching open
// connections. Handshakes run in tlsListener, so that HTTP/1.1 over TLS
// can be checked on its decrypted bytes.
//
// Transports know nothing about protobuf or routing.
package transports
