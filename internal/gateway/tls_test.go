package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// tlsGet does a GET with rt and returns the response and its body.
func tlsGet(t *testing.T, rt http.RoundTripper, url string) (*http.Response, string) {
	t.Helper()
	resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestTLSListenerAllProtocols(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	ca := testkit.NewCA(t, "gateway-ca")
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
	addr := g.Addrs()[0].String()
	url := "https://" + addr + "/v1/echo/tls"
	altSvc := fmt.Sprintf(`h3=":%d"; ma=86400`, g.Addrs()[0].(*net.TCPAddr).Port)
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}

	for _, tc := range []struct {
		proto string
		set   func(*http.Protocols)
	}{
		{"HTTP/1.1", func(p *http.Protocols) { p.SetHTTP1(true) }},
		{"HTTP/2.0", func(p *http.Protocols) { p.SetHTTP2(true) }},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			var p http.Protocols
			tc.set(&p)
			tr := &http.Transport{TLSClientConfig: clientTLS.Clone(), Protocols: &p}
			defer tr.CloseIdleConnections()
			resp, body := tlsGet(t, tr, url)
			if resp.StatusCode != 200 || resp.Proto != tc.proto {
				t.Fatalf("got %s %d; want %s 200 (%s)", resp.Proto, resp.StatusCode, tc.proto, body)
			}
			assertJSON(t, body, `{"id": "tls"}`)
			if got := resp.Header.Get("Alt-Svc"); got != altSvc {
				t.Errorf("Alt-Svc: got %q; want %q", got, altSvc)
			}
		})
	}
	t.Run("HTTP/3.0", func(t *testing.T) {
		tr := &http3.Transport{TLSClientConfig: clientTLS.Clone()}
		defer tr.Close()
		resp, body := tlsGet(t, tr, url)
		if resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" {
			t.Fatalf("got %s %d; want HTTP/3.0 200 (%s)", resp.Proto, resp.StatusCode, body)
		}
		assertJSON(t, body, `{"id": "tls"}`)
	})
}

// startTLSBackend starts the testkit backend serving TLS with a
// certificate for 127.0.0.1 and localhost issued by a new CA.
func startTLSBackend(t *testing.T) (*testkit.Backend, *testkit.CA) {
	t.Helper()
	ca := testkit.NewCA(t, "backend-ca")
	leaf := ca.Issue(t, "backend", "localhost", "127.0.0.1")
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12})
	return testkit.StartBackend(t, testkit.WithServerOptions(grpc.Creds(creds))), ca
}

func TestUpstreamTLS(t *testing.T) {
	t.Parallel()
	be, ca := startTLSBackend(t)
	url, _ := startGateway(t, be.Addr, fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    tls: { ca: %q }
`, ca.CertFile))
	expect(t, do(t, "GET", url+"/v1/echo/secure", ""), 200, `{"id": "secure"}`)
}

func TestUpstreamTLSWrongCA(t *testing.T) {
	t.Parallel()
	be, _ := startTLSBackend(t)
	other := testkit.NewCA(t, "other-ca")
	// Reflection cannot work through a bad TLS setup, so the descriptors
	// come from a file and the gateway starts; calls then fail.
	url, _ := startGateway(t, be.Addr, fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    tls: { ca: %q }
    descriptors: { files: [%q] }
`, other.CertFile, descriptorSetFile(t)))
	r := do(t, "GET", url+"/v1/echo/secure", "")
	if r.status != 503 {
		t.Fatalf("status: got %d; want 503 (%s)", r.status, r.body)
	}
	if !strings.Contains(r.body, "certificate") {
		t.Errorf("503 body does not say the backend certificate was refused: %s", r.body)
	}
}

// TestGRPCOverTLSListener: grpc-go over TLS (h2 by ALPN) to the gateway,
// on both gRPC paths: unary and server streaming calls pass through.
func TestGRPCOverTLSListener(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		ca := testkit.NewCA(t, "gateway-ca")
		leaf := ca.Issue(t, "localhost", "localhost", "127.0.0.1")
		_, g := startGatewayOn(t, path, be.Addr, fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
    tls: { cert: %q, key: %q }
upstreams:
  test:
    targets: ["$BACKEND"]
`, leaf.CertFile, leaf.KeyFile))
		creds := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		cc, err := grpc.NewClient("passthrough:///"+g.Addrs()[0].String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		client := testingv1.NewEchoServiceClient(cc)
		out, err := client.Echo(testContext(t), &testingv1.Everything{Id: "over tls"})
		if err != nil || out.GetId() != "over tls" {
			t.Fatalf("Echo over TLS: %v, %v", out, err)
		}
		if err := drainStream(client, &testingv1.StreamRequest{Count: 3, Text: "s"}); err != nil {
			t.Fatalf("server stream over TLS: %v", err)
		}
		resp, err := client.Metadata(testContext(t), &testingv1.MetadataRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetIncoming()["x-forwarded-proto"].GetValues(); len(got) != 1 || got[0] != "https" {
			t.Errorf("x-forwarded-proto: %q; want [https]", got)
		}
	})
}
