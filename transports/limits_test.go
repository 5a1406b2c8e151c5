package transports

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// edgeServer is a listener with the default head limits whose handler and
// HTTP/2 relay (a stub Intercept taking application/grpc requests) count
// what reaches them.
type edgeServer struct {
	*Server
	handled, relayed atomic.Int32
}

func startEdgeServer(t *testing.T, cfg config.Listener) *edgeServer {
	t.Helper()
	es := &edgeServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		es.handled.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	es.Server = newServer(t, cfg, h, nil)
	es.InterceptHTTP2(func(st *h2.Stream, head *h2.RequestHead) h2.Events {
		if head.Get("content-type") != "application/grpc" {
			return nil
		}
		es.relayed.Add(1)
		_ = st.WriteHeaders([]hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "grpc-status", Value: "0"}}, head.EndStream)
		return drainEvents{}
	})
	serve(t, es.Server)
	return es
}

// drainEvents is the stub relay's stream: request bytes are credited and
// dropped, and the response ends with the request.
type drainEvents struct{}

func (drainEvents) Headers(s *h2.Stream, _ []hpack.HeaderField, end bool) {
	if end {
		_ = s.WriteData(nil, true)
	}
}

func (drainEvents) Data(s *h2.Stream, p []byte, end bool) {
	s.Credit(len(p))
	if end {
		_ = s.WriteData(nil, true)
	}
}

func (drainEvents) Reset(*h2.Stream, error) {}

// hostileHead is a request over one of the default head limits.
type hostileHead struct {
	name   string
	path   string
	header http.Header
	status int
	body   string
}

func hostileHeads() []hostileHead {
	many := http.Header{}
	for i := range 10000 {
		many[fmt.Sprintf("X-Field-%d", i)] = []string{"1"}
	}
	const (
		tooLarge = "request header fields exceed 61440 bytes (max_header_bytes)\n"
		tooMany  = "request header fields exceed 100 (max_header_count)\n"
		tooLong  = "request target exceeds 8192 bytes (max_uri_bytes)\n"
		control  = "request path contains an encoded control character (%00-%1F or %7F)\n"
	)
	return []hostileHead{
		{"one 1 MiB header", "/", http.Header{"X-Big": {strings.Repeat("a", 1<<20)}}, 431, tooLarge},
		{"10000 header fields", "/", many, 431, tooMany},
		{"100 KB URL", "/" + strings.Repeat("a", 100_000), nil, 414, tooLong},
		{"encoded NUL in path", "/v1/books/%00", nil, 400, control},
		{"encoded US in path", "/v1/books/a%1fb", nil, 400, control},
		{"encoded DEL in path", "/v1/books/%7F", nil, 400, control},
	}
}

// rawHTTP1 sends one request on a new connection (TLS when conf is set)
// and returns the response and, when checkClose is set, whether the
// server closed the connection after it. The request is written while the
// answer is read, as the server may answer before reading all of it.
func rawHTTP1(t *testing.T, addr string, conf *tls.Config, req string, checkClose bool) (*http.Response, string, bool) {
	t.Helper()
	var conn net.Conn
	var err error
	if conf != nil {
		conn, err = tls.Dial("tcp", addr, conf)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = io.WriteString(conn, req) }()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	if !checkClose {
		return resp, string(body), false
	}
	_, err = br.ReadByte()
	closed := errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "reset")
	if err != nil && !closed {
		t.Fatalf("after the answer: %v; want the connection closed", err)
	}
	return resp, string(body), closed
}

func http1Request(method, path string, header http.Header) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: localhost\r\n", method, path)
	_ = header.Write(&b)
	b.WriteString("\r\n")
	return b.String()
}

// TestHeadLimitsEveryVersion sends requests over the default head limits
// (one 1 MiB header, 10,000 header fields, a 100 KB URL, encoded control
// characters in the path) on HTTP/1.1 (cleartext and TLS), HTTP/2 (h2c
// and TLS, to the handler and to the relay) and HTTP/3. Each gets its
// status and a plain-text reason naming the limit; neither handler nor
// relay sees it. HTTP/1.1 closes the connection (the rest of the head is
// not read); HTTP/2 and HTTP/3 refuse the stream and go on serving on the
// same connection. The listener serves on in every case.
func TestHeadLimitsEveryVersion(t *testing.T) {
	t.Parallel()
	plain := startEdgeServer(t, listenerConfig())
	cfg, ca := h3Listener(t)
	secure := startEdgeServer(t, cfg)
	tlsConf := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}}

	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h2cTransport := &http.Transport{Protocols: &h2c}
	t.Cleanup(h2cTransport.CloseIdleConnections)
	clients := []struct {
		name  string
		es    *edgeServer
		url   string
		c     *http.Client
		relay bool
	}{
		{"h2c", plain, "http://" + plain.Addr().String(), &http.Client{Transport: h2cTransport, Timeout: 10 * time.Second}, false},
		{"h2c relay", plain, "http://" + plain.Addr().String(), &http.Client{Transport: h2cTransport, Timeout: 10 * time.Second}, true},
		{"h2", secure, "https://" + secure.Addr().String(), httpsClient(t, ca.Pool(), "localhost", true), false},
		{"h2 relay", secure, "https://" + secure.Addr().String(), httpsClient(t, ca.Pool(), "localhost", true), true},
		{"h3", secure, "https://" + secure.Addr().String(), h3Client(t, ca.Pool()), false},
	}
	for _, hh := range hostileHeads() {
		t.Run("h1/"+hh.name, func(t *testing.T) {
			for _, conf := range []*tls.Config{nil, tlsConf} {
				es := plain
				if conf != nil {
					es = secure
				}
				resp, body, closed := rawHTTP1(t, es.Addr().String(), conf, http1Request("GET", hh.path, hh.header), true)
				if resp.StatusCode != hh.status || body != hh.body || !closed {
					t.Errorf("tls %v: got %s %q (closed %v); want %d %q, then the connection closed",
						conf != nil, resp.Status, body, closed, hh.status, hh.body)
				}
				if got := resp.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
					t.Errorf("Content-Type: got %q; want text/plain", got)
				}
				resp, body, _ = rawHTTP1(t, es.Addr().String(), conf, http1Request("GET", "/", nil), false)
				if resp.StatusCode != 200 || body != "ok" {
					t.Errorf("next request: got %s %q; want 200 ok", resp.Status, body)
				}
			}
		})
		for _, cl := range clients {
			t.Run(cl.name+"/"+hh.name, func(t *testing.T) {
				hostile := newEdgeRequest(t, cl.url+hh.path, cl.relay, hh.header)
				resp, err := cl.c.Do(hostile)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != hh.status || string(body) != hh.body {
					t.Errorf("got %s %q; want %d %q", resp.Status, body, hh.status, hh.body)
				}
				// The next request goes on the same connection.
				reused := true
				next := newEdgeRequest(t, cl.url+"/", cl.relay, nil)
				next = next.WithContext(httptrace.WithClientTrace(next.Context(), &httptrace.ClientTrace{
					GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused },
				}))
				resp, err = cl.c.Do(next)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !reused {
					t.Errorf("next request: got %s (connection reused: %v); want 200 on the same connection", resp.Status, reused)
				}
			})
		}
	}
	// Only the requests within the limits got through: 2 per case on
	// HTTP/1.1, one per client and case on the others.
	cases := int32(len(hostileHeads()))
	if got, want := plain.handled.Load()+secure.handled.Load(), 2*cases+3*cases; got != want {
		t.Errorf("handler served %d requests; want %d", got, want)
	}
	if got, want := plain.relayed.Load()+secure.relayed.Load(), 2*cases; got != want {
		t.Errorf("relay took %d requests; want %d", got, want)
	}
}

// newEdgeRequest is a GET, or for the relay a gRPC-like POST.
func newEdgeRequest(t *testing.T, url string, relay bool, header http.Header) *http.Request {
	t.Helper()
	method, body := http.MethodGet, io.Reader(nil)
	if relay {
		method, body = http.MethodPost, bytes.NewReader([]byte{0, 0, 0, 0, 0})
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if relay {
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
	}
	return req
}

// nopWriter is a ResponseWriter that drops everything.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w nopWriter) WriteHeader(int)             {}

// BenchmarkHeadCheckH3 is the per-request cost of the HTTP/3 head checks
// on a request with ten header fields that passes them.
func BenchmarkHeadCheckH3(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "https://api.example.com/v1/shelves/42/books?page_size=20&page_token=CgRib29r", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RequestURI = req.URL.RequestURI()
	for _, kv := range [][2]string{
		{"User-Agent", "curl/8.5.0"}, {"Accept", "application/json"},
		{"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"},
		{"Content-Type", "application/json"}, {"X-Request-Id", "7f8d6c1e-4b1a-4a3e-9d59-2f0b5d7e1c11"},
		{"Accept-Encoding", "gzip"}, {"Te", "trailers"}, {"Grpc-Timeout", "5S"}, {"X-Tenant", "acme"}, {"Cookie", "a=b; c=d"},
	} {
		req.Header.Set(kv[0], kv[1])
	}
	served := 0
	h := checkHeadH3(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }), headLimits(listenerConfig()), slog.New(slog.DiscardHandler))
	w := nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
	if served == 0 {
		b.Fatal("refused")
	}
}
