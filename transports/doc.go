// Package transports owns the gateway's listeners: it accepts connections
// and hands every request, whatever its HTTP version, to one http.Handler.
// This file set covers HTTP/1.1 and cleartext HTTP/2 (h2c) on one port,
// with the listener's timeouts and size limits.
//
// Transports know nothing about protobuf or routing.
package transports
