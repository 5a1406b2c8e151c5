// Package grpcweb serves gRPC-Web calls (binary and base64 text, protobuf
// and JSON codecs, every stream type; client and bidi streams over
// HTTP/2 and HTTP/3): it routes by the "/pkg.Service/Method" path through
// the snapshot and forwards messages to the backend as raw bytes, with the
// status in a trailer frame.
package grpcweb
