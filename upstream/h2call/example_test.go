package h2call_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
)

// A Conn carries a generated client's calls on the HTTP/2 connections
// its Pick hook hands out (here a Target for one backend), and Finish
// learns how each attempt ended.
func ExampleConn() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	testingv1.RegisterEchoServiceServer(srv, testkit.NewEchoServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	tgt := h2call.NewTarget(lis.Addr().String(), h2.ClientOptions{})
	defer tgt.Close()
	conn := h2call.New(h2call.Options{Pick: func(ctx context.Context, method string) (h2call.Attempt, error) {
		a, err := tgt.Pick(ctx, method)
		a.Finish = func(o h2call.Outcome) { fmt.Println("attempt:", o.Kind, o.Code) }
		return a, err
	}})
	client := testingv1.NewEchoServiceClient(conn)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "42")
	var trailer metadata.MD
	resp, err := client.Echo(ctx, &testingv1.Everything{StringValue: "hello"}, grpc.Trailer(&trailer))
	fmt.Println(resp.GetStringValue(), err)

	_, err = client.Fail(context.Background(), &testingv1.FailRequest{Code: int32(codes.NotFound), Message: "no such thing"})
	fmt.Println(status.Code(err), status.Convert(err).Message())
	// Output:
	// attempt: answered OK
	// hello <nil>
	// attempt: answered NotFound
	// NotFound no such thing
}
