package testkit

import (
	"google.golang.org/grpc"

	"github.com/rosetta-gateway/rosetta/examples/library"
)

// registerLibrary adds the library example service, freshly seeded, so
// gateway tests can use the README's routes.
func registerLibrary(s *grpc.Server) {
	library.NewServer().Register(s)
}
