// Package openapi generates OpenAPI 3.1 documents, at run time, from a
// descriptor snapshot ([registry.Snapshot]) and the HTTP bindings of its
// route table ([router.Table]): one path per binding, with path and query
// parameters, request bodies honouring the binding's body, responses
// honouring response_body, streaming media types (NDJSON, a JSON array,
// Server-Sent Events), schemas for every reachable message under the
// proto3 JSON mapping, comments from source info, security schemes from
// the auth plugins, and google.rpc.Status as the error schema. [Handler]
// serves the document and regenerates it when the snapshot or table
// changes.
//
// HttpRule templates become paths whose parameters are whole segments, so
// that a generic OpenAPI client can call them:
// "/v1/{name=shelves/*/books/*}" is "/v1/shelves/{shelf}/books/{book}"
// (the gateway's router reassembles name from the segments), and each
// operation's x-rosetta-template extension records the original rule and
// which parameters make up which variable. Only a "**" wildcard, which
// spans any number of segments, becomes one parameter that carries
// slashes; its description says so.
//
// The package reads snapshots, tables and config; it does not serve
// calls, apply policies (the auth schemes come in through
// [Options.Security], see [SecurityFromConfig]) or mount itself on a
// listener.
package openapi
