package transports

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// listenerConfig is a listener on 127.0.0.1:0 with the config defaults.
func listenerConfig() config.Listener {
	return config.Listener{
		Address:              "127.0.0.1:0",
		ReadHeaderTimeout:    config.Duration(5 * time.Second),
		IdleTimeout:          config.Duration(30 * time.Second),
		MaxHeaderBytes:       61440,
		MaxHeaderCount:       100,
		MaxURIBytes:          8192,
		MaxBodyBytes:         4 << 20,
		MaxConcurrentStreams: 250,
	}
}

// whoHandler answers 200 with the protocol, the TLS server name and the
// number of client certificates: "HTTP/2.0 api.test 0".
var whoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	sni, peers := "-", 0
	if r.TLS != nil {
		sni, peers = r.TLS.ServerName, len(r.TLS.PeerCertificates)
	}
	_, _ = io.Copy(io.Discard, r.Body)
	fmt.Fprintf(w, "%s %s %d", r.Proto, sni, peers)
})

// startServer starts a Server for cfg and shuts it down when the test ends.
func startServer(t *testing.T, cfg config.Listener, h http.Handler, logger *slog.Logger) *Server {
	t.Helper()
	s := newServer(t, cfg, h, logger)
	serve(t, s)
	return s
}

// serve starts s and shuts it down when the test ends.
func serve(t *testing.T, s *Server) {
	t.Helper()
	s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
}

// newServer creates and binds a Server without serving.
func newServer(t *testing.T, cfg config.Listener, h http.Handler, logger *slog.Logger) *Server {
	t.Helper()
	s, err := NewServer(cfg, h, logger)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return s
}

// logBuffer collects log lines for assertions.
type logBuffer = testkit.LogBuffer

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// httpsClient returns a client trusting roots that speaks h2 when h2 is
// true, HTTP/1.1 otherwise. Its idle connections close with the test.
func httpsClient(t *testing.T, roots *x509.CertPool, serverName string, h2 bool, certs ...tls.Certificate) *http.Client {
	t.Helper()
	var p http.Protocols
	if h2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tc := &tls.Config{RootCAs: roots, ServerName: serverName}
	if len(certs) > 0 {
		// Send the certificate even when the server's CA list does not
		// name its issuer (crypto/tls would otherwise send none).
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	tr := &http.Transport{TLSClientConfig: tc, Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get fetches url and returns the status and body.
func get(c *http.Client, url string) (*http.Response, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// dialRaw opens a TCP connection to addr for a hand-written exchange
// (see testkit.DialRaw).
func dialRaw(t *testing.T, addr string) net.Conn { t.Helper(); return testkit.DialRaw(t, addr) }

// within returns the next value from ch, and fails the test when none
// comes within 10 s (what names what did not happen).
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (waited 10 s)", what)
	}
	var zero T
	return zero
}
