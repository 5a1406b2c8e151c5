// Package websocket bridges WebSocket connections (HTTP/1.1 upgrades,
// RFC 8441 over HTTP/2 and RFC 9220 over HTTP/3) to gRPC methods of every
// kind: each frame is one message, proto3 JSON text or binary protobuf,
// and the call ends with a status frame and a close code. The wire
// protocol is described in README.md ("WebSocket bridge").
package websocket
