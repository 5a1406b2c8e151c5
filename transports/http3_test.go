package transports

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// h3Client returns an HTTP/3 client trusting roots; its transport closes
// with the test.
func h3Client(t *testing.T, roots *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
	t.Cleanup(func() { _ = tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h3Listener is a TLS listener with http3 on, for localhost.
func h3Listener(t *testing.T) (config.Listener, *testkit.CA) {
	t.Helper()
	ca := testkit.NewCA(t, "ca")
	leaf := ca.Issue(t, "localhost", "localhost", "127.0.0.1")
	cfg := listenerConfig()
	cfg.TLS = &config.ServerTLS{Cert: leaf.CertFile, Key: leaf.KeyFile}
	cfg.HTTP3 = true
	return cfg, ca
}

func TestHTTP3(t *testing.T) {
	t.Parallel()
	cfg, ca := h3Listener(t)
	s := startServer(t, cfg, whoHandler, nil)
	if got := s.Protocols(); got != "h1,h2,h3" {
		t.Errorf("Protocols: got %s; want h1,h2,h3", got)
	}
	addr := s.Addr().String()
	url := "https://" + addr + "/"
	port := s.Addr().(*net.TCPAddr).Port

	// TCP answers advertise HTTP/3 on the same port.
	for _, h2 := range []bool{false, true} {
		resp, _, err := get(httpsClient(t, ca.Pool(), "localhost", h2), url)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.Header.Get("Alt-Svc"), fmt.Sprintf(`h3=":%d"; ma=86400`, port); got != want {
			t.Errorf("%s Alt-Svc: got %q; want %q", resp.Proto, got, want)
		}
	}

	client := h3Client(t, ca.Pool())
	resp, body, err := get(client, url)
	if err != nil || body != "HTTP/3.0 localhost 0" {
		t.Fatalf("h3 GET: got %q, %v; want %q", body, err, "HTTP/3.0 localhost 0")
	}
	if resp.Header.Get("Alt-Svc") != "" {
		t.Errorf("h3 answer carries Alt-Svc %q; want none", resp.Header.Get("Alt-Svc"))
	}

	// Garbage datagrams of every shape are dropped.
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for i, size := range []int{1, 7, 40, 1200, 1350, 1500} {
		for _, first := range []byte{0x00, 0x40, 0xc0, 0xff} {
			b := make([]byte, size)
			_, _ = rand.Read(b)
			b[0] = first
			if i%2 == 0 && size > 5 {
				copy(b[1:5], []byte{0, 0, 0, 1}) // QUIC v1, long header
			}
			_, _ = udp.Write(b)
		}
	}
	for _, c := range []*http.Client{client, h3Client(t, ca.Pool())} {
		if _, body, err := get(c, url); err != nil || body != "HTTP/3.0 localhost 0" {
			t.Errorf("h3 GET after garbage datagrams: got %q, %v", body, err)
		}
	}
}

// TestGracefulShutdown checks that Shutdown lets requests in flight on
// HTTP/1.1, HTTP/2 and HTTP/3 finish.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	cfg, ca := h3Listener(t)
	release := make(chan struct{})
	entered := make(chan string, 3)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- r.Proto
		<-release
		fmt.Fprint(w, "done "+r.Proto)
	})
	s := newServer(t, cfg, h, nil)
	s.Serve()
	url := "https://" + s.Addr().String() + "/"
	clients := []*http.Client{
		httpsClient(t, ca.Pool(), "localhost", false),
		httpsClient(t, ca.Pool(), "localhost", true),
		h3Client(t, ca.Pool()),
	}
	results := make(chan string, len(clients))
	for _, c := range clients {
		go func() {
			_, body, err := get(c, url)
			if err != nil {
				body = err.Error()
			}
			results <- body
		}()
	}
	for range clients {
		<-entered
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // let Shutdown start draining
	close(release)
	want := map[string]bool{"done HTTP/1.1": true, "done HTTP/2.0": true, "done HTTP/3.0": true}
	for range clients {
		if got := <-results; !want[got] {
			t.Errorf("request in flight during shutdown: got %q", got)
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
