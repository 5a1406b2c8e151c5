package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/quic-go/quic-go/http3"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// TestHTTP3EveryProtocol runs each protocol that uses HTTP semantics over
// HTTP/3 against one gateway: REST, NDJSON and SSE streams, a REST client
// stream, gRPC-Web and Connect (unary and server streaming).
func TestHTTP3EveryProtocol(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	ca := testkit.NewCA(t, "h3-ca")
	leaf := ca.Issue(t, "localhost", "localhost", "127.0.0.1")
	_, g := startGateway(t, be.Addr, fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
    tls: { cert: %q, key: %q }
    http3: true
upstreams:
  test:
    targets: ["$BACKEND"]
`, leaf.CertFile, leaf.KeyFile))
	base := "https://" + g.Addrs()[0].String()
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
	t.Cleanup(func() { tr.Close() })
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	send := func(t *testing.T, method, path, body string, headers ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Proto != "HTTP/3.0" {
			t.Errorf("proto: got %s; want HTTP/3.0", resp.Proto)
		}
		return resp, string(b)
	}

	t.Run("rest", func(t *testing.T) {
		resp, body := send(t, "POST", "/v1/echo", `{"stringValue": "h3"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		assertJSON(t, body, `{"stringValue": "h3"}`)
	})
	t.Run("ndjson stream", func(t *testing.T) {
		_, body := send(t, "GET", "/v1/stream?count=2&text=q", "")
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if len(lines) != 2 {
			t.Fatalf("got %q", body)
		}
		assertJSON(t, lines[1], `{"index": 2, "text": "q"}`)
	})
	t.Run("sse", func(t *testing.T) {
		resp, body := send(t, "GET", "/v1/stream?count=2", "", "Accept: text/event-stream")
		evs := parseSSE(t, body)
		if resp.Header.Get("Content-Type") != "text/event-stream" || len(evs) != 3 || evs[2].event != "end" {
			t.Fatalf("got %q", body)
		}
	})
	t.Run("rest client stream", func(t *testing.T) {
		_, body := send(t, "POST", "/v1/stream:client", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n")
		assertJSON(t, body, `{"count": 2, "texts": ["a", "b"]}`)
	})
	for name, opts := range map[string][]connect.ClientOption{
		"grpc-web":     {connect.WithGRPCWeb()},
		"connect":      nil,
		"connect+json": {connect.WithProtoJSON()},
	} {
		t.Run(name, func(t *testing.T) {
			echo := connect.NewClient[testingv1.Everything, testingv1.Everything](hc, base+"/rosetta.testing.v1.EchoService/Echo", opts...)
			res, err := echo.CallUnary(t.Context(), connect.NewRequest(&testingv1.Everything{StringValue: "over h3"}))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Msg.GetStringValue(); got != "over h3" {
				t.Errorf("got %q", got)
			}
			st := connect.NewClient[testingv1.StreamRequest, testingv1.StreamItem](hc, base+"/rosetta.testing.v1.EchoService/ServerStream", opts...)
			stream, err := st.CallServerStream(t.Context(), connect.NewRequest(&testingv1.StreamRequest{Count: 3, Text: "s"}))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for stream.Receive() {
				n++
			}
			if err := stream.Err(); err != nil || n != 3 {
				t.Errorf("stream: %d messages, err %v; want 3, nil", n, err)
			}
			stream.Close()
		})
	}
}
