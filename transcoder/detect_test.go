package transcoder

import (
	"net/http/httptest"
	"testing"

	"github.com/rosetta-gateway/rosetta/call"
)

func TestDetect(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, target, ct string
		headers                  map[string]string
		want                     call.Protocol
	}{
		{"grpc", "POST", "/pkg.S/M", "application/grpc", nil, call.GRPC},
		{"grpc+proto", "POST", "/pkg.S/M", "application/grpc+proto", nil, call.GRPC},
		{"grpc-web", "POST", "/pkg.S/M", "application/grpc-web+proto", nil, call.GRPCWeb},
		{"grpc-web-text", "POST", "/pkg.S/M", "application/grpc-web-text", nil, call.GRPCWeb},
		{"connect stream", "POST", "/pkg.S/M", "application/connect+json", nil, call.Connect},
		{"connect unary json", "POST", "/pkg.S/M", "application/json", map[string]string{"Connect-Protocol-Version": "1"}, call.Connect},
		{"connect unary proto", "POST", "/pkg.S/M", "application/proto", nil, call.Connect},
		{"connect get", "GET", "/pkg.S/M?connect=v1&encoding=json&message=%7B%7D", "", nil, call.Connect},
		{"websocket", "GET", "/v1/chat", "", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"}, call.WebSocket},
		{"rest json", "POST", "/v1/echo", "application/json", nil, call.REST},
		{"rest default binding", "POST", "/pkg.S/M", "application/json", nil, call.REST},
		{"rest get", "GET", "/v1/echo/x", "", nil, call.REST},
		{"sse", "GET", "/v1/stream", "", map[string]string{"Accept": "text/event-stream"}, call.REST},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(c.method, c.target, nil)
			if c.ct != "" {
				r.Header.Set("Content-Type", c.ct)
			}
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			if got := Detect(r); got != c.want {
				t.Errorf("got %s; want %s", got, c.want)
			}
		})
	}
}
