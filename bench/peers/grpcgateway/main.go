// Command grpcgateway is the grpc-gateway peer of the load benchmark: the
// handlers protoc-gen-grpc-gateway generated for rosetta.bench.v1
// (bench/proto/gen), in front of bench/backend, served on HTTP/1.1 and h2c.
// It prints its address on stdout once it listens.
//
//	go run ./peers/grpcgateway -listen 127.0.0.1:0 -backend 127.0.0.1:9000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve HTTP/1.1 and h2c on")
	backend := flag.String("backend", "", "the gRPC backend's host:port")
	flag.Parse()
	if err := run(*listen, *backend); err != nil {
		fmt.Fprintln(os.Stderr, "bench/peers/grpcgateway:", err)
		os.Exit(1)
	}
}

func run(addr, backend string) error {
	if backend == "" {
		return errors.New("-backend is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Defaults everywhere, as a generated gateway is usually deployed.
	mux := runtime.NewServeMux()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if err := benchv1.RegisterBenchServiceHandlerFromEndpoint(ctx, mux, backend, opts); err != nil {
		return fmt.Errorf("register handlers: %w", err)
	}
	return serve(ctx, addr, mux)
}

// serve serves h on addr with HTTP/1.1 and h2c until ctx is done.
func serve(ctx context.Context, addr string, h http.Handler) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols}
	fmt.Println(lis.Addr().String())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
