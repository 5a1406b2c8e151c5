// Command backend serves rosetta.bench.v1.BenchService over gRPC (h2c) with
// server reflection, for the load benchmark (bench/harness). It prints its
// address on stdout once it listens and stops on SIGINT or SIGTERM.
//
// With -name, a unary call that carries the metadata key x-bench-backend
// is answered with the header x-bench-backend: <name>, so that a check
// can see which of several backends behind a balancer answered; calls
// without the key (the load) get no extra header.
//
//	go run ./backend -listen 127.0.0.1:0 [-name b1]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve gRPC on")
	name := flag.String("name", "", "answer unary calls that carry x-bench-backend with the header x-bench-backend: <name>")
	flag.Parse()
	if err := run(*listen, *name); err != nil {
		fmt.Fprintln(os.Stderr, "bench/backend:", err)
		os.Exit(1)
	}
}

func run(addr, name string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	opts := []grpc.ServerOption{grpc.MaxConcurrentStreams(1000)}
	if name != "" {
		opts = append(opts, grpc.UnaryInterceptor(nameHeader(name)))
	}
	srv := grpc.NewServer(opts...)
	benchv1.RegisterBenchServiceServer(srv, newServer())
	reflection.Register(srv)
	fmt.Println(lis.Addr().String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// backendHeader is the metadata key that asks a named backend to name
// itself, and the header it answers with.
const backendHeader = "x-bench-backend"

// nameHeader answers the calls that carry backendHeader with the header
// backendHeader: name.
func nameHeader(name string) grpc.UnaryServerInterceptor {
	hdr := metadata.Pairs(backendHeader, name)
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(backendHeader)) > 0 {
			if err := grpc.SetHeader(ctx, hdr); err != nil {
				return nil, err
			}
		}
		return h(ctx, req)
	}
}

// server answers from precomputed items so that the backend's own cost per
// call stays small and equal for every peer.
type server struct {
	benchv1.UnimplementedBenchServiceServer
	items []*benchv1.Item
}

func newServer() *server {
	s := &server{}
	for i := range 100 {
		s.items = append(s.items, &benchv1.Item{
			Id:         "item-" + strconv.Itoa(i),
			Name:       "Stainless steel water bottle, 750 ml, model " + strconv.Itoa(i),
			PriceCents: int64(1999 + i),
			InStock:    i%3 != 0,
		})
	}
	return s
}

func (s *server) Echo(_ context.Context, o *benchv1.Order) (*benchv1.Order, error) {
	return o, nil
}

func (s *server) GetItem(_ context.Context, r *benchv1.GetItemRequest) (*benchv1.Item, error) {
	n, _ := strconv.Atoi(r.GetId())
	it := s.items[(n%len(s.items)+len(s.items))%len(s.items)]
	return &benchv1.Item{Id: r.GetId(), Name: it.Name, PriceCents: it.PriceCents, InStock: it.InStock}, nil
}

func (s *server) Stream(r *benchv1.StreamRequest, stream grpc.ServerStreamingServer[benchv1.Item]) error {
	n := int(r.GetCount())
	if n <= 0 {
		n = 10
	}
	for i := range n {
		if err := stream.Send(s.items[i%len(s.items)]); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) Chat(stream grpc.BidiStreamingServer[benchv1.Item, benchv1.Item]) error {
	for {
		it, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(it); err != nil {
			return err
		}
	}
}
