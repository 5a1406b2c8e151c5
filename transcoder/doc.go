// Package transcoder holds the protocol adapters that turn what a client
// sent into backend messages and back. This file set covers REST/JSON
// transcoding by google.api.http rules: path, query and body mapping into
// request messages, the proto3 JSON mapping (protojson with the snapshot's
// types), response_body, google.api.HttpBody, server streams as
// newline-delimited JSON, metadata and deadline propagation, and the
// google.rpc.Status JSON error shape.
//
// It does not own routing (package router), descriptors (package registry)
// or backend connections (package upstream).
package transcoder
