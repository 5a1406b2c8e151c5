// Package library is the in-memory backend of the library example
// (rosetta.examples.library.v1.LibraryService), used by the README demo,
// `make run` and gateway tests.
//
// It keeps shelves and books in memory, seeded with a few of each, and is
// safe for concurrent use. It answers with the status codes and error details
// a real service would (NotFound with google.rpc.ResourceInfo,
// InvalidArgument with google.rpc.BadRequest, AlreadyExists), so gateway
// error mapping can be shown on it. It does not log: the command in
// cmd/library-server does.
package library
