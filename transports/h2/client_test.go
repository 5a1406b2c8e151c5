package h2_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// recorder is an h2.Events that collects one response. It gives DATA's
// flow-control credit back as it arrives unless hold is set.
type recorder struct {
	mu       sync.Mutex
	head     []hpack.HeaderField
	trailers []hpack.HeaderField
	body     bytes.Buffer
	err      error // the Reset event's
	hold     bool  // keep the credit of received DATA
	held     int   // bytes received while holding
	grew     chan struct{}
	once     sync.Once
	done     chan struct{} // closed at END_STREAM or Reset
}

func newRecorder() *recorder {
	return &recorder{done: make(chan struct{}), grew: make(chan struct{}, 1)}
}

func (r *recorder) finish() { r.once.Do(func() { close(r.done) }) }

func (r *recorder) Headers(_ *h2.Stream, fields []hpack.HeaderField, end bool) {
	r.mu.Lock()
	if r.head == nil {
		r.head = append([]hpack.HeaderField{}, fields...)
	} else {
		r.trailers = append([]hpack.HeaderField{}, fields...)
	}
	r.mu.Unlock()
	if end {
		r.finish()
	}
}

func (r *recorder) Data(s *h2.Stream, p []byte, end bool) {
	r.mu.Lock()
	r.body.Write(p)
	hold := r.hold
	if hold {
		r.held += len(p)
	}
	r.mu.Unlock()
	if !hold {
		s.Credit(len(p))
	}
	select {
	case r.grew <- struct{}{}:
	default:
	}
	if end {
		r.finish()
	}
}

func (r *recorder) Reset(_ *h2.Stream, err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
	r.finish()
}

// wait waits for the end of the response and returns the Reset error.
func (r *recorder) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no end of stream in 10s")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// waitBody waits until n body bytes have arrived.
func (r *recorder) waitBody(t testing.TB, n int) {
	t.Helper()
	for {
		r.mu.Lock()
		got := r.body.Len()
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-r.grew:
		case <-r.done:
			t.Fatalf("stream ended with %d of %d bytes", got, n)
		case <-time.After(10 * time.Second):
			t.Fatalf("stuck at %d of %d bytes", got, n)
		}
	}
}

// field returns the value of name in fields.
func field(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func requestFields(method, scheme, authority, path string, extra ...hpack.HeaderField) []hpack.HeaderField {
	return append([]hpack.HeaderField{
		{Name: ":method", Value: method},
		{Name: ":scheme", Value: scheme},
		{Name: ":authority", Value: authority},
		{Name: ":path", Value: path},
	}, extra...)
}

// dial opens a ClientConn to addr, closed when the test ends.
func dial(t testing.TB, addr string, opts h2.ClientOptions) *h2.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, err := h2.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatalf("Dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestClientRequest sends a request with a body and reads the response
// and its trailers, from h2.Server.
func TestClientRequest(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testHandler)
	cc := dial(t, ts.Addr, h2.ClientOptions{})
	sent := payload(3000)
	rec := newRecorder()
	s, err := cc.NewStream(requestFields("POST", "http", "test", "/echo"), false, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() != 1 {
		t.Errorf("first stream ID: got %d; want 1", s.ID())
	}
	if err := s.WriteData(sent, true); err != nil {
		t.Fatal(err)
	}
	if err := rec.wait(t); err != nil {
		t.Fatalf("stream reset: %v", err)
	}
	if got := field(rec.head, ":status"); got != "200" {
		t.Errorf(":status: got %q; want 200", got)
	}
	if !bytes.Equal(rec.body.Bytes(), sent) {
		t.Errorf("body: got %d bytes (sha256 %s); want the %d sent", rec.body.Len(), sum(rec.body.Bytes()), len(sent))
	}
	if got := field(rec.trailers, "x-request-sha256"); got != sum(sent) {
		t.Errorf("trailer x-request-sha256: got %q; want %q (trailers %v)", got, sum(sent), rec.trailers)
	}
	if cc.Streams() != 0 || !cc.Available() {
		t.Errorf("after the response: %d streams, available %v; want 0, true", cc.Streams(), cc.Available())
	}
}

// TestClientGRPC makes a unary call to a grpc-go server.
func TestClientGRPC(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	cc := dial(t, backend.Addr, h2.ClientOptions{})
	req := &testingv1.Everything{StringValue: "hello over h2", Int64Value: 42, Strings: []string{"a", "b"}}
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	frame = append(frame, msg...)
	rec := newRecorder()
	s, err := cc.NewStream(requestFields("POST", "http", backend.Addr, "/rosetta.testing.v1.EchoService/Echo",
		hpack.HeaderField{Name: "content-type", Value: "application/grpc"},
		hpack.HeaderField{Name: "te", Value: "trailers"},
	), false, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteData(frame, true); err != nil {
		t.Fatal(err)
	}
	if err := rec.wait(t); err != nil {
		t.Fatalf("stream reset: %v", err)
	}
	if got := field(rec.head, ":status"); got != "200" {
		t.Errorf(":status: got %q; want 200", got)
	}
	if got := field(rec.trailers, "grpc-status"); got != "0" {
		t.Fatalf("grpc-status: got %q; want 0 (trailers %v)", got, rec.trailers)
	}
	body := rec.body.Bytes()
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
		t.Fatalf("response is not one uncompressed gRPC message: % x", body)
	}
	var resp testingv1.Everything
	if err := proto.Unmarshal(body[5:], &resp); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&resp, req) {
		t.Errorf("echo: got %v; want %v", &resp, req)
	}
}

// TestClientFlowControl reads a 5 MiB response, five times the client's
// 1 MiB stream window: the server sends one window, stops until the
// Events give the credit back, then sends the rest as credit returns.
func TestClientFlowControl(t *testing.T) {
	t.Parallel()
	const size = 5 << 20
	ts := startServer(t, testHandler)
	cc := dial(t, ts.Addr, h2.ClientOptions{Limits: h2.Limits{StreamWindow: 1 << 20, ConnWindow: 2 << 20}})
	rec := newRecorder()
	rec.hold = true
	s, err := cc.NewStream(requestFields("GET", "http", "test", fmt.Sprintf("/bytes?n=%d", size)), true, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Holding the credit, exactly one stream window arrives; a byte more
	// would be a flow-control error that resets the stream.
	rec.waitBody(t, 1<<20)
	rec.mu.Lock()
	got, held := rec.body.Len(), rec.held
	rec.hold = false
	rec.mu.Unlock()
	if got != 1<<20 {
		t.Fatalf("received %d bytes without giving credit; want the 1 MiB window", got)
	}
	s.Credit(held)
	if err := rec.wait(t); err != nil {
		t.Fatalf("stream reset: %v", err)
	}
	if rec.body.Len() != size || sum(rec.body.Bytes()) != sum(payload(size)) {
		t.Errorf("body: got %d bytes (sha256 %s); want %d (sha256 %s)", rec.body.Len(), sum(rec.body.Bytes()), size, sum(payload(size)))
	}
}

// rawServer is the server side of one connection accepted from a
// ClientConn, driven frame by frame.
type rawServer struct {
	t    testing.TB
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

// startRawServer listens on 127.0.0.1; the returned channel yields the
// first connection once it has sent the client preface (the server's
// empty SETTINGS are written already).
func startRawServer(t testing.TB) (string, <-chan *rawServer) {
	t.Helper()
	ln := testkit.ListenLocal(t)
	ch := make(chan *rawServer, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		rs := &rawServer{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
		rs.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		rs.enc = hpack.NewEncoder(&rs.hbuf)
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
			_ = nc.Close()
			return
		}
		_ = rs.fr.WriteSettings()
		ch <- rs
	}()
	return ln.Addr().String(), ch
}

// next returns the next frame other than SETTINGS and WINDOW_UPDATE.
func (rs *rawServer) next() http2.Frame {
	rs.t.Helper()
	for {
		f, err := rs.fr.ReadFrame()
		if err != nil {
			rs.t.Fatalf("server read: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = rs.fr.WriteSettingsAck()
			}
		case *http2.WindowUpdateFrame:
		default:
			return f
		}
	}
}

// sync sends a PING and waits for its ACK: the client has processed
// every frame sent before it.
func (rs *rawServer) sync() {
	rs.t.Helper()
	data := [8]byte{'s', 'y', 'n', 'c'}
	if err := rs.fr.WritePing(false, data); err != nil {
		rs.t.Fatal(err)
	}
	for {
		if f, ok := rs.next().(*http2.PingFrame); ok && f.IsAck() && f.Data == data {
			return
		}
	}
}

// TestClientGoAwayAndRefused checks that streams the server refuses, by
// RST_STREAM REFUSED_STREAM or by a GOAWAY below their ID, end with a
// Reset carrying REFUSED_STREAM (safe to retry), that GOAWAY makes the
// connection unavailable, and that the streams it kept still complete.
func TestClientGoAwayAndRefused(t *testing.T) {
	t.Parallel()
	addr, accepted := startRawServer(t)
	cc := dial(t, addr, h2.ClientOptions{})
	rs := <-accepted
	t.Cleanup(func() { _ = rs.nc.Close() })
	recs := map[uint32]*recorder{}
	for range 3 {
		rec := newRecorder()
		s, err := cc.NewStream(requestFields("GET", "http", "test", "/"), true, rec, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs[s.ID()] = rec
	}
	for seen := 0; seen < 3; {
		if _, ok := rs.next().(*http2.MetaHeadersFrame); ok {
			seen++
		}
	}
	if err := rs.fr.WriteRSTStream(5, http2.ErrCodeRefusedStream); err != nil {
		t.Fatal(err)
	}
	if err := rs.fr.WriteGoAway(1, http2.ErrCodeNo, nil); err != nil {
		t.Fatal(err)
	}
	rs.sync()

	for _, id := range []uint32{3, 5} {
		var se h2.StreamError
		if err := recs[id].wait(t); !errors.As(err, &se) || se.Code != http2.ErrCodeRefusedStream || !se.Remote {
			t.Errorf("stream %d: got %v; want a remote REFUSED_STREAM StreamError", id, err)
		}
	}
	if cc.Available() {
		t.Error("Available after GOAWAY: got true; want false")
	}
	if _, err := cc.NewStream(requestFields("GET", "http", "test", "/"), true, newRecorder(), nil); !errors.Is(err, h2.ErrUnavailable) {
		t.Errorf("NewStream after GOAWAY: got %v; want ErrUnavailable", err)
	}
	select {
	case <-recs[1].done:
		t.Fatalf("stream 1, below the GOAWAY, ended: %v", recs[1].err)
	default:
	}
	_ = rs.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "204"})
	if err := rs.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rs.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := recs[1].wait(t); err != nil || field(recs[1].head, ":status") != "204" {
		t.Errorf("stream 1: got %v, %v; want :status 204", recs[1].head, err)
	}
}

// TestClientClose checks that Close ends the open streams with
// ErrConnClosed and that the server's handler sees its context end.
func TestClientClose(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	canceled := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		close(canceled)
	}))
	cc := dial(t, ts.Addr, h2.ClientOptions{})
	rec := newRecorder()
	if _, err := cc.NewStream(requestFields("GET", "http", "test", "/"), true, rec, nil); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := cc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := rec.wait(t); !errors.Is(err, h2.ErrConnClosed) {
		t.Errorf("open stream: got %v; want ErrConnClosed", err)
	}
	select {
	case <-cc.Done():
	default:
		t.Error("Done not closed after Close returned")
	}
	if cc.Available() {
		t.Error("Available after Close: got true; want false")
	}
	<-canceled
}

// TestDialClosedPort checks that Dial reports a refused connection.
func TestDialClosedPort(t *testing.T) {
	t.Parallel()
	addr := testkit.RefusingAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, err := h2.Dial(ctx, addr, h2.ClientOptions{})
	if err == nil {
		_ = cc.Close()
		t.Fatal("Dial to a closed port succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial: got %v; want connection refused", err)
	}
}

// TestDialTLS checks h2 by ALPN against the TLS server, and the error
// for a TLS server that does not offer h2.
func TestDialTLS(t *testing.T) {
	t.Parallel()
	ts := startTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil && r.TLS.NegotiatedProtocol == "h2")
	}))
	cc := dial(t, ts.Addr, h2.ClientOptions{TLS: &tls.Config{RootCAs: ts.CA.Pool()}})
	rec := newRecorder()
	if _, err := cc.NewStream(requestFields("GET", "https", ts.Addr, "/"), true, rec, nil); err != nil {
		t.Fatal(err)
	}
	if err := rec.wait(t); err != nil {
		t.Fatalf("stream reset: %v", err)
	}
	if got := rec.body.String(); field(rec.head, ":status") != "200" || got != "HTTP/2.0 tls=true" {
		t.Errorf("got %s %q; want 200 %q", field(rec.head, ":status"), got, "HTTP/2.0 tls=true")
	}

	// A TLS server without ALPN (an HTTP/1.1-only backend): the handshake
	// succeeds and negotiates no protocol. (One that offers only http/1.1
	// fails the handshake with no_application_protocol instead.)
	t.Run("no ALPN", func(t *testing.T) {
		leaf := ts.CA.Issue(t, "h1-only", "127.0.0.1")
		ln := tls.NewListener(testkit.ListenLocal(t), &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
		served := make(chan struct{})
		go func() {
			defer close(served)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, c) // handshake, then wait for the client to hang up
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cc, err := h2.Dial(ctx, ln.Addr().String(), h2.ClientOptions{TLS: &tls.Config{RootCAs: ts.CA.Pool()}})
		if err == nil {
			_ = cc.Close()
			t.Fatal("Dial succeeded against a server without h2")
		}
		if !strings.Contains(err.Error(), "did not negotiate HTTP/2") {
			t.Errorf("Dial: got %v; want an error saying h2 was not negotiated", err)
		}
		<-served
	})
}

// TestClientKeepalive: a connection that goes silent gets a PING after
// PingInterval; a server that never answers it is dropped after
// PingTimeout, so a dead backend is noticed without a request failing
// against it first.
func TestClientKeepalive(t *testing.T) {
	t.Parallel()
	addr, accepted := startRawServer(t)
	// PingTimeout runs from when the PING is queued: a short one let a
	// loaded machine close the connection before its writer sent the
	// PING (the server read EOF, once in make test).
	cc := dial(t, addr, h2.ClientOptions{PingInterval: 20 * time.Millisecond, PingTimeout: 500 * time.Millisecond})
	rs := <-accepted
	// The server reads (and acknowledges SETTINGS) but answers no PING.
	for {
		if f, ok := rs.next().(*http2.PingFrame); ok && !f.IsAck() {
			break
		}
	}
	select {
	case <-cc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open with its PING unanswered")
	}
	if cc.Available() {
		t.Error("a closed connection reports itself available")
	}
}
