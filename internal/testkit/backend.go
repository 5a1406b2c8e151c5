package testkit

import (
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// Backend is a running gRPC backend started by [StartBackend].
type Backend struct {
	// Addr is the host:port the server listens on (127.0.0.1 and a free port).
	Addr string
	// Server is the running server, e.g. to stop it early and test how the
	// gateway handles a backend that goes away.
	Server *grpc.Server
	// Health is the server's health service. Every registered service and ""
	// start SERVING; tests flip statuses with SetServingStatus.
	Health *health.Server
}

// BackendOption configures [StartBackend].
type BackendOption func(*backendConfig)

type backendConfig struct {
	reflection bool
	serverOpts []grpc.ServerOption
	addr       string
}

// WithAddress listens on addr instead of 127.0.0.1:0: a backend started
// again where a stopped one was.
func WithAddress(addr string) BackendOption {
	return func(c *backendConfig) { c.addr = addr }
}

// WithoutReflection starts the backend without server reflection, to test
// descriptor sources other than reflection.
func WithoutReflection() BackendOption {
	return func(c *backendConfig) { c.reflection = false }
}

// WithServerOptions adds options to the backend's grpc.NewServer call, e.g.
// grpc.Creds for TLS or interceptors.
func WithServerOptions(opts ...grpc.ServerOption) BackendOption {
	return func(c *backendConfig) { c.serverOpts = append(c.serverOpts, opts...) }
}

// StartBackend starts a real gRPC server on 127.0.0.1:0 serving
// rosetta.testing.v1.EchoService, the library example service, gRPC health
// and server reflection (v1 and v1alpha). It stops the server with Stop (not
// GracefulStop, which would wait for open streams) when the test ends and
// waits for its handlers to return.
func StartBackend(t testing.TB, opts ...BackendOption) *Backend {
	t.Helper()
	cfg := backendConfig{reflection: true}
	for _, o := range opts {
		o(&cfg)
	}
	var lis net.Listener
	if cfg.addr != "" {
		var err error
		if lis, err = net.Listen("tcp", cfg.addr); err != nil {
			t.Fatalf("listen on %s: %v", cfg.addr, err)
		}
	} else {
		lis = ListenLocal(t)
	}
	// WaitForHandlers makes Stop wait for running handlers (they all honour
	// context cancellation), so the leak check sees none.
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.WaitForHandlers(true)}, cfg.serverOpts...)...)
	testingv1.RegisterEchoServiceServer(srv, NewEchoServer())
	registerLibrary(srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	for name := range srv.GetServiceInfo() {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	if cfg.reflection {
		reflection.Register(srv)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		hs.Shutdown()
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("backend %s: serve: %v", lis.Addr(), err)
		}
	})
	return &Backend{Addr: lis.Addr().String(), Server: srv, Health: hs}
}

// Dial returns a plaintext client connection to the backend, closed when the
// test ends.
func (b *Backend) Dial(t testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+b.Addr, opts...)
	if err != nil {
		t.Fatalf("dial backend %s: %v", b.Addr, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
