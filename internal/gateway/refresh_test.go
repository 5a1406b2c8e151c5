package gateway

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/rosetta-gateway/rosetta/examples/library"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// serveOn starts a gRPC server with reflection on addr; withEcho adds the
// echo service to the library service.
func serveOn(t *testing.T, addr string, withEcho bool) *grpc.Server {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	library.NewServer().Register(srv)
	if withEcho {
		testingv1.RegisterEchoServiceServer(srv, testkit.NewEchoServer())
	}
	reflection.Register(srv)
	done := make(chan struct{})
	go func() { _ = srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return srv
}

// TestRefreshOnMissingMethod: the gateway starts while the backend lacks
// a service; after the backend is replaced by one that has it, the first
// request naming one of its methods refreshes the descriptors and succeeds,
// with no periodic refresh configured.
func TestRefreshOnMissingMethod(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	old := serveOn(t, addr, false)
	url, g := startGateway(t, addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    descriptors: { reflection: true, refresh_interval: 0s }
`)
	version := g.Snapshot().Version
	old.Stop()
	serveOn(t, addr, true)

	expect(t, do(t, "POST", url+"/rosetta.testing.v1.EchoService/Unannotated", `{"stringValue": "new"}`), 200, `{"stringValue": "new"}`)
	if got := g.Snapshot().Version; got <= version {
		t.Errorf("snapshot version: got %d; want > %d", got, version)
	}
	// Annotated routes of the new service are live too.
	expect(t, do(t, "GET", url+"/v1/echo/abc", ""), 200, `{"id": "abc"}`)
}

// TestRoundRobin: unary calls alternate between an upstream's targets.
func TestRoundRobin(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var counts [2]int
	var backends [2]*testkit.Backend
	for i := range backends {
		i := i
		backends[i] = testkit.StartBackend(t, testkit.WithServerOptions(grpc.UnaryInterceptor(
			func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				mu.Lock()
				counts[i]++
				mu.Unlock()
				return h(ctx, req)
			})))
	}
	url, _ := startGateway(t, backends[0].Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND", "`+backends[1].Addr+`"]
`)
	for i := 0; i < 20; i++ {
		expect(t, do(t, "GET", url+"/v1/echo/rr", ""), 200, `{"id": "rr"}`)
	}
	mu.Lock()
	defer mu.Unlock()
	if counts[0] == 0 || counts[1] == 0 || counts[0]+counts[1] != 20 {
		t.Errorf("calls per target: %v; want both used, 20 in all", counts)
	}
}
