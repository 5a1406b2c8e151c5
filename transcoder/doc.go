// Package transcoder holds the protocol adapters that turn what a client
// sent into backend messages and back, and [Detect], which picks the
// adapter for a request. [REST] serves REST/JSON by google.api.http
// rules: path, query and body mapping into
// request messages, the proto3 JSON mapping (precompiled per route with
// package wirejson, straight between JSON and the wire format, with
// protojson and dynamicpb kept for the routes wirejson does not cover),
// response_body, google.api.HttpBody, streams framed as NDJSON, a JSON
// array or Server-Sent Events (and client streams read from NDJSON
// bodies), metadata and deadline propagation, and the
// google.rpc.Status JSON error shape. [GRPCProxy] passes gRPC calls
// through to their upstream as raw HTTP/2 streams, without decoding a
// message. [GRPCWeb] and [Connect] serve browser protocols: they route by
// the "/pkg.Service/Method" path through the snapshot and forward protobuf
// messages as raw bytes with a pass-through codec; Connect JSON is
// converted with the snapshot's descriptors. [WebSocket] bridges
// WebSocket connections to methods of every streaming kind, one message
// per frame (proto3 JSON text or binary protobuf), with a final status
// frame and a close code.
//
// It does not own routing (package router), descriptors (package registry)
// or backend connections (package upstream).
package transcoder
