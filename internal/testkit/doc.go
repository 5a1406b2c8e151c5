// Package testkit holds Rosetta's test helpers: real backends and listeners
// on 127.0.0.1:0, and the goroutine leak check.
//
// [StartBackend] runs a real [google.golang.org/grpc.Server] with the
// rosetta.testing.v1.EchoService (which echoes what it received, so gateway
// tests can assert the exact request mapping), the library example service,
// gRPC health and server reflection. Every helper registers its shutdown with
// t.Cleanup.
//
// testkit owns no production code and is imported only from tests. It does
// not build gateways or descriptor sets: tests do that themselves.
package testkit
