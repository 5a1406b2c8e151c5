// Command echobackend is a test backend that runs in its own process, so
// that a test can kill it with SIGKILL (testkit.StartBackendProcess):
// the gateway then sees what it sees when a backend machine dies, not a
// graceful close.
//
// With -kind grpc (the default) it serves rosetta.testing.v1.EchoService
// (testkit.EchoServer), grpc.health.v1 (every service SERVING) and server
// reflection; every unary call waits -delay and answers with the header
// metadata "x-backend: <name>". With -kind http it serves plain HTTP:
// GET /healthz answers 200, every other request waits -delay and answers
// 200 with "X-Backend: <name>" and the name as its body.
//
// It prints "listening on <host:port>" on stdout once it accepts
// connections, and exits when its stdin closes (so a test that dies
// leaves no backend behind).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

func main() {
	name := flag.String("name", "backend", "the name answered in x-backend")
	addr := flag.String("addr", "127.0.0.1:0", "the address to listen on")
	kind := flag.String("kind", "grpc", "grpc or http")
	delay := flag.Duration("delay", 0, "how long each call waits before it is answered")
	flag.Parse()

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		// The test holds our stdin; when it goes away, so do we.
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("listening on %s\n", lis.Addr())

	switch *kind {
	case "grpc":
		err = serveGRPC(lis, *name, *delay)
	case "http":
		err = serveHTTP(lis, *name, *delay)
	default:
		err = fmt.Errorf("unknown -kind %q", *kind)
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func serveGRPC(lis net.Listener, name string, delay time.Duration) error {
	tag := metadata.Pairs("x-backend", name)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, tag)
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		return handler(ctx, req)
	}))
	testingv1.RegisterEchoServiceServer(srv, testkit.NewEchoServer())
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	for svc := range srv.GetServiceInfo() {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	reflection.Register(srv)
	return srv.Serve(lis)
}

func serveHTTP(lis net.Listener, name string, delay time.Duration) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
		}
		w.Header().Set("X-Backend", name)
		_, _ = io.WriteString(w, name)
	})
	return (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(lis)
}
