package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// TestEnvelopedMessageLimit: gRPC-Web and Connect requests are limited per
// message by the upstream's max_message_bytes.
func TestEnvelopedMessageLimit(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    max_message_bytes: 1024
`)
	for name, opts := range map[string][]connect.ClientOption{
		"grpc-web":     {connect.WithGRPCWeb()},
		"connect":      nil,
		"connect+json": {connect.WithProtoJSON()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			echo := connect.NewClient[testingv1.Everything, testingv1.Everything](http.DefaultClient, url+"/rosetta.testing.v1.EchoService/Echo", opts...)
			_, err := echo.CallUnary(t.Context(), connect.NewRequest(&testingv1.Everything{StringValue: strings.Repeat("x", 2048)}))
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
				t.Fatalf("2 KiB message: got %v; want resource_exhausted", err)
			}
			res, err := echo.CallUnary(t.Context(), connect.NewRequest(&testingv1.Everything{StringValue: "small"}))
			if err != nil || res.Msg.GetStringValue() != "small" {
				t.Fatalf("small message after: %v", err)
			}
		})
	}
}
