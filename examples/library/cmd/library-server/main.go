// Command library-server serves the library example
// (rosetta.examples.library.v1.LibraryService) over plaintext gRPC, with gRPC
// health and server reflection, for the README demo and `make run`. With
// -web it also serves the browser demo (examples/web) over HTTP.
//
//	library-server -listen 127.0.0.1:9000 -web 127.0.0.1:8081
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rosetta-gateway/rosetta/examples/library"
	"github.com/rosetta-gateway/rosetta/examples/web"
)

// shutdownGrace is how long a shutdown waits for open calls to finish.
const shutdownGrace = 5 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on (host:port)")
	webAddr := flag.String("web", "", "also serve the browser demo (examples/web) over HTTP on this address, e.g. 127.0.0.1:8081")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, *webAddr, logger); err != nil {
		logger.Error("library-server stopped", "error", err)
		os.Exit(1)
	}
}

func run(addr, webAddr string, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := grpc.NewServer()
	library.NewServer().Register(srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	for name := range srv.GetServiceInfo() {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	// Reflection serves the library's descriptors with their comments
	// (library.binpb), which the gateway's portal and OpenAPI show.
	files, err := library.Descriptors()
	if err != nil {
		return err
	}
	opts := reflection.ServerOptions{Services: srv, DescriptorResolver: files, ExtensionResolver: protoregistry.GlobalTypes}
	reflectionpb.RegisterServerReflectionServer(srv, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(srv, reflection.NewServer(opts))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	logger.Info("serving", "address", lis.Addr().String(), "services", len(srv.GetServiceInfo()))
	if webAddr != "" {
		webLis, err := net.Listen("tcp", webAddr)
		if err != nil {
			srv.Stop()
			return fmt.Errorf("listen on %s (-web): %w", webAddr, err)
		}
		webSrv := &http.Server{Handler: web.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = webSrv.Serve(webLis) }()
		defer webSrv.Close()
		logger.Info("serving the browser demo", "url", "http://"+webLis.Addr().String()+"/")
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", shutdownGrace)
	hs.Shutdown()
	// GracefulStop waits for open streams (WatchBooks, Chat) to end; stop
	// them after shutdownGrace so one Ctrl-C is enough.
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		logger.Warn("grace period over, closing open streams")
		srv.Stop()
		<-done
	}
	return nil
}
