package gateway

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// startBenchGateway starts a gateway with basicConfig in front of
// backendAddr for a benchmark and returns its base URL.
func startBenchGateway(b *testing.B, backendAddr string) string {
	b.Helper()
	return startBenchGatewayOn(b, backendAddr, basicConfig, false)
}

// startBenchGatewayOn is startBenchGateway with the config and, with
// handler, the frame relay off (every gRPC call takes the handler path).
func startBenchGatewayOn(b *testing.B, backendAddr, yamlText string, handler bool) string {
	b.Helper()
	_, url := newBenchGatewayWith(b, backendAddr, yamlText, func(g *Gateway) { g.noRelay = handler })
	return url
}

// benchClients returns EchoService clients straight to a backend and
// through a gateway in front of it.
func benchClients(b *testing.B) map[string]testingv1.EchoServiceClient {
	be := testkit.StartBackend(b)
	url := startBenchGateway(b, be.Addr)
	return map[string]testingv1.EchoServiceClient{
		"direct":  testingv1.NewEchoServiceClient(be.Dial(b)),
		"gateway": testingv1.NewEchoServiceClient(dialGateway(b, url)),
	}
}

// BenchmarkGRPCUnary measures a unary call with a ~100-byte message,
// straight to the backend and passed through the gateway.
func BenchmarkGRPCUnary(b *testing.B) {
	clients := benchClients(b)
	req := &testingv1.Everything{StringValue: strings.Repeat("x", 100), Int64Value: 42}
	for _, name := range []string{"direct", "gateway"} {
		client := clients[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Echo(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGRPCUnaryHandler measures the unary call of BenchmarkGRPCUnary
// on the gRPC handler path (the frame relay off): "plain" on an upstream
// without retries, "retry" on one with a retry block, where Echo (route
// idempotent: true) is read whole so that it can be sent again.
func BenchmarkGRPCUnaryHandler(b *testing.B) {
	be := testkit.StartBackend(b)
	req := &testingv1.Everything{StringValue: strings.Repeat("x", 100), Int64Value: 42}
	for _, mode := range []string{"plain", "retry"} {
		yaml := basicConfig
		if mode == "retry" {
			yaml += "    retry: {attempts: 2}\nroutes:\n  - selector: rosetta.testing.v1.EchoService.Echo\n    idempotent: true\n"
		}
		client := testingv1.NewEchoServiceClient(dialGateway(b, startBenchGatewayOn(b, be.Addr, yaml, true)))
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Echo(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGRPCServerStream measures a server stream of 10 ~100-byte
// messages, straight to the backend and passed through the gateway.
func BenchmarkGRPCServerStream(b *testing.B) {
	clients := benchClients(b)
	req := &testingv1.StreamRequest{Count: 10, Text: strings.Repeat("y", 100)}
	for _, name := range []string{"direct", "gateway"} {
		client := clients[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := drainStream(client, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func drainStream(client testingv1.EchoServiceClient, req *testingv1.StreamRequest) error {
	stream, err := client.ServerStream(context.Background(), req)
	if err != nil {
		return err
	}
	n := int32(0)
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) && n == req.GetCount() {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		n++
	}
}
