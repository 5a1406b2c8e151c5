// Package cache is the response cache of the proxy-cache plugin: stores
// (an in-memory LRU bounded in bytes, and Redis, shared by every gateway
// instance), cache keys, the backend's Cache-Control, coalescing of
// concurrent misses and stale-while-revalidate.
//
// It caches two kinds of answers. RPC answers (a unary call's response
// message as wire bytes, with its header and trailer metadata) are keyed
// by the method and the request message's wire bytes, not by the
// protocol, so a REST GET, a Connect GET, a gRPC-Web call and a gRPC call
// of the same request share one entry and each dialect renders it in its
// own protocol (transcoder.CacheConn). HTTP answers of plain HTTP uri
// routes (status, header, body) are keyed by the request path and query
// ([Cache.ServeHTTP]).
//
// It does not decide which calls reach it beyond [Cache.Admits]: the
// policy chain (authentication, limits) runs first, and the dialects
// call the cache around the upstream call.
package cache
