// Package rest serves REST/JSON calls by google.api.http rules: it matches
// a request to a route of the table, builds the request message from the
// path variables, the query string and the body (the proto3 JSON mapping,
// precompiled per route), calls the method, and writes the answer as JSON,
// honouring response_body and google.api.HttpBody. Streams are written as
// NDJSON, a JSON array or Server-Sent Events, and client streams are read
// from NDJSON bodies. Errors are google.rpc.Status JSON with the mapped
// HTTP status.
//
// It does not route beyond the table it is given, and it shares the
// binding compiler with the WebSocket bridge through
// transcoder/internal/binding, not by importing it.
package rest
