// Package router owns HTTP routing for REST/JSON transcoding: it compiles
// the google.api.http bindings of every method in a [registry.Snapshot]
// (annotations, config rules that replace them, and optional default
// bindings) into an immutable [Table], and matches a request's method and
// escaped path against it, returning the [Route] and the decoded path
// variable values, or what to answer instead (404, or 405 with the allowed
// methods).
//
// Path templates follow the syntax and percent-decoding rules of
// google/api/http.proto to the letter; see [Template] and [Table.Match].
// A Table is built once per snapshot or config change (see [Build]) and
// then only read, so one Table serves any number of concurrent requests;
// callers swap tables atomically.
//
// Config routes with a uri (plain HTTP routes to upstreams of kind http)
// have their own small table, [URITable] (see [BuildURI]): exact paths and
// "/prefix/*" prefixes, longest first, with an optional method filter.
//
// The package does not decode request bodies or query parameters, map
// values into messages, or choose a protocol adapter: the transcoder does
// that with the [Route] and values it gets from here. Nor does it apply
// policies; [Route.Config] only carries the config route that tunes them.
package router
