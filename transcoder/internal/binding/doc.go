// Package binding compiles and applies the mapping of an HttpRule binding
// between HTTP and messages: a [Plan] per route (request and response
// types, JSON options, which fields the path and body bind, and the
// precompiled wire-level JSON plans), building request messages from path
// values, query parameters and bodies ([BuildRequest], [BuildWire]), and
// encoding responses ([Plan.Encode], [Plan.EncodeWire]). REST and the
// WebSocket bridge share it.
package binding
