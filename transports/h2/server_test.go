package h2_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// payload returns n deterministic bytes that do not repeat with the
// frame or window sizes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ byte(i>>8) ^ byte(i>>16)*7
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// testHandler serves:
//
//	GET  /bytes?n=N  N bytes of payload(N), written in 32 KiB pieces
//	POST /echo       the request body back, streamed, with trailer
//	                 X-Request-Sha256 (the body's checksum as received)
var testHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/bytes":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		p := payload(n)
		for len(p) > 0 {
			k := min(len(p), 32<<10)
			if _, err := w.Write(p[:k]); err != nil {
				return
			}
			p = p[k:]
		}
	case "/echo":
		w.Header().Set("Trailer", "X-Request-Sha256")
		h := sha256.New()
		if _, err := io.Copy(w, io.TeeReader(r.Body, h)); err != nil {
			return
		}
		w.Header().Set("X-Request-Sha256", hex.EncodeToString(h.Sum(nil)))
	default:
		_, _ = io.WriteString(w, "ok")
	}
})

// tlsClient returns a client speaking h2 (only) to ts.
func tlsClient(t testing.TB, ts *testServer) *http.Client {
	t.Helper()
	var p http.Protocols
	p.SetHTTP2(true)
	tr := &http.Transport{
		Protocols:       &p,
		TLSClientConfig: &tls.Config{RootCAs: ts.CA.Pool()},
		HTTP2:           &http.HTTP2Config{MaxReceiveBufferPerStream: 1 << 20, MaxReceiveBufferPerConnection: 1 << 20},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestRoundTrip sends GETs and POSTs of 0 B, 100 B and 5 MiB each way
// over h2c and h2 (TLS). 5 MiB is five times the 1 MiB stream window of
// both sides, so it only gets through when WINDOW_UPDATEs flow both ways.
// Small complete responses carry a Content-Length; streamed ones do not.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	plain := startServer(t, testHandler)
	secure := startTLSServer(t, testHandler)
	for _, srv := range []struct {
		name, url string
		client    *http.Client
	}{
		{"h2c", "http://" + plain.Addr, h2cClient(t)},
		{"tls", "https://" + secure.Addr, tlsClient(t, secure)},
	} {
		for _, size := range []int{0, 100, 5 << 20} {
			label := fmt.Sprintf("%dB", size)
			if size >= 1<<20 {
				label = fmt.Sprintf("%dMiB", size>>20)
			}
			t.Run(srv.name+"/GET/"+label, func(t *testing.T) {
				resp, err := srv.client.Get(fmt.Sprintf("%s/bytes?n=%d", srv.url, size))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("read body: %v", err)
				}
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
					t.Errorf("got %s %s; want HTTP/2.0 200", resp.Proto, resp.Status)
				}
				if len(body) != size || sum(body) != sum(payload(size)) {
					t.Errorf("body: got %d bytes (sha256 %s); want %d (sha256 %s)", len(body), sum(body), size, sum(payload(size)))
				}
				// A response that fits the handler's buffer is complete
				// when the handler returns, so its length is known.
				wantLen := int64(size)
				if size > 16<<10 {
					wantLen = -1
				}
				if resp.ContentLength != wantLen {
					t.Errorf("ContentLength: got %d; want %d", resp.ContentLength, wantLen)
				}
			})
			t.Run(srv.name+"/POST/"+label, func(t *testing.T) {
				sent := payload(size)
				resp, err := srv.client.Post(srv.url+"/echo", "application/octet-stream", bytes.NewReader(sent))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("read body: %v", err)
				}
				if resp.StatusCode != 200 {
					t.Errorf("status: got %d; want 200", resp.StatusCode)
				}
				if len(body) != size || sum(body) != sum(sent) {
					t.Errorf("echo: got %d bytes (sha256 %s); want %d (sha256 %s)", len(body), sum(body), size, sum(sent))
				}
				if got := resp.Trailer.Get("X-Request-Sha256"); got != sum(sent) {
					t.Errorf("server's checksum of the request: got %q; want %q", got, sum(sent))
				}
			})
		}
	}
}

// TestResponseTrailers checks that trailers set both ways net/http
// allows reach the client after the body.
func TestResponseTrailers(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/declared":
			w.Header().Set("Trailer", "X-Checksum, X-Count")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Checksum", "abc")
			w.Header().Add("X-Count", "1")
			w.Header().Add("X-Count", "2")
		case "/prefix":
			_, _ = io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Late", "late value")
		case "/nobody":
			w.Header().Set("Trailer", "Grpc-Status")
			w.WriteHeader(200) // fixes the header; the value set next is a trailer
			w.Header().Set("Grpc-Status", "0")
		}
	}))
	client := h2cClient(t)
	for _, tc := range []struct {
		path     string
		body     string
		trailers http.Header
	}{
		{"/declared", "body", http.Header{"X-Checksum": {"abc"}, "X-Count": {"1", "2"}}},
		{"/prefix", "body", http.Header{"X-Late": {"late value"}}},
		{"/nobody", "", http.Header{"Grpc-Status": {"0"}}},
	} {
		t.Run(tc.path[1:], func(t *testing.T) {
			resp, err := client.Get("http://" + ts.Addr + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != tc.body {
				t.Fatalf("body: got %q, %v; want %q", body, err, tc.body)
			}
			for k, want := range tc.trailers {
				if got := resp.Trailer.Values(k); !slices.Equal(got, want) {
					t.Errorf("trailer %s: got %q; want %q (all trailers: %v)", k, got, want, resp.Trailer)
				}
				if resp.Header.Get(k) != "" {
					t.Errorf("trailer %s also sent as a header", k)
				}
			}
			if len(resp.Trailer) != len(tc.trailers) {
				t.Errorf("trailers: got %v; want %v", resp.Trailer, tc.trailers)
			}
		})
	}
}

// TestRequestTrailers checks that the handler sees the client's trailers
// in r.Trailer once it has read the body to EOF.
func TestRequestTrailers(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := fmt.Sprint(r.Trailer)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "body=%s before=%s after=%s", body, before, r.Trailer)
	}))
	var req *http.Request
	body := &trailerBody{r: strings.NewReader("payload"), set: func() {
		req.Trailer.Set("X-Digest", "d1")
		req.Trailer.Set("X-Parts", "7")
	}}
	req, err := http.NewRequest(http.MethodPost, "http://"+ts.Addr+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Trailer = http.Header{"X-Digest": nil, "X-Parts": nil}
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	want := "body=payload before=map[X-Digest:[] X-Parts:[]] after=map[X-Digest:[d1] X-Parts:[7]]"
	if string(got) != want {
		t.Errorf("handler saw:\n  %s\nwant:\n  %s", got, want)
	}
}

// trailerBody reads r, then sets the request's trailers (as a client
// computing a digest would) just before EOF.
type trailerBody struct {
	r   io.Reader
	set func()
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.set != nil {
		b.set()
		b.set = nil
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// TestFlush checks that Flush sends what was written so far while the
// handler is still running: the client reads the first chunk before it
// lets the handler write the second and return.
func TestFlush(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	returned := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		_, _ = io.WriteString(w, "first;")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second")
	}))
	resp, err := h2cClient(t).Get("http://" + ts.Addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("first chunk: got %q, %v; want %q", first, err, "first;")
	}
	select {
	case <-returned:
		t.Fatal("handler returned before it was released")
	default:
	}
	unblock()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest: got %q, %v; want %q", rest, err, "second")
	}
	<-returned
	if resp.ContentLength != -1 {
		t.Errorf("ContentLength of a flushed response: got %d; want -1", resp.ContentLength)
	}
}

// TestClientResetCancelsContext checks that a client canceling its
// request (RST_STREAM CANCEL) cancels the handler's r.Context().
func TestClientResetCancelsContext(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	handlerErr := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		handlerErr <- r.Context().Err()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ts.Addr+"/", nil)
	client := h2cClient(t)
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("request ended before the handler ran: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("client: got %v; want context.Canceled", err)
	}
	if err := <-handlerErr; !errors.Is(err, context.Canceled) {
		t.Errorf("handler context: got %v; want context.Canceled", err)
	}
}

// TestSlowClientHoldsWrite checks that a handler's Write waits for the
// client's flow-control window instead of buffering: a client that
// grants no window gets the response head and no data, and the Write
// returns only once the client has granted (read) every byte of it.
func TestSlowClientHoldsWrite(t *testing.T) {
	t.Parallel()
	const size = 40 << 10 // over the handler's 16 KiB buffer: Write sends it
	writing := make(chan struct{})
	wrote := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(writing)
		_, err := w.Write(payload(size))
		wrote <- err
	}))
	// A stream window of 0: the server may send no DATA until told.
	c := dialRaw(t, ts.Addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	c.request(1, "GET", "/", true)
	if f := nextAs[*http2.MetaHeadersFrame](c); f.PseudoValue("status") != "200" || f.StreamEnded() {
		t.Fatalf("first frame: %v; want the response HEADERS", f)
	}
	<-writing
	var got []byte
	// grant opens the stream window by n and reads the n bytes it lets
	// the server send.
	grant := func(n int) {
		t.Helper()
		if err := c.fr.WriteWindowUpdate(1, uint32(n)); err != nil {
			t.Fatal(err)
		}
		for want := len(got) + n; len(got) < want; {
			f := nextAs[*http2.DataFrame](c)
			if f.StreamID != 1 || f.StreamEnded() {
				t.Fatalf("got %v; want DATA on stream 1", f)
			}
			got = append(got, f.Data()...)
		}
		if len(got) > size {
			t.Fatalf("server sent %d bytes; the window allowed %d", len(got), size)
		}
	}
	grant(10000)
	select {
	case err := <-wrote:
		t.Fatalf("Write returned (%v) with %d of %d bytes granted", err, len(got), size)
	default:
	}
	grant(size - 10000)
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if f := nextAs[*http2.DataFrame](c); !f.StreamEnded() || len(f.Data()) != 0 {
		t.Fatalf("got %v; want an empty DATA with END_STREAM", f)
	}
	if !bytes.Equal(got, payload(size)) {
		t.Errorf("body: got %d bytes that differ from what the handler wrote", len(got))
	}
}

// TestHandlerPanic checks that a panicking handler resets its stream
// with INTERNAL_ERROR and the connection goes on serving.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("test panic")
		}
		_, _ = io.WriteString(w, "still serving")
	}))
	c := dialRaw(t, ts.Addr)
	c.request(1, "GET", "/panic", true)
	f := nextAs[*http2.RSTStreamFrame](c)
	if f.StreamID != 1 || f.ErrCode != http2.ErrCodeInternal {
		t.Fatalf("got %v; want RST_STREAM INTERNAL_ERROR on stream 1", f)
	}
	c.request(3, "GET", "/", true)
	if status, body := c.response(3); status != "200" || string(body) != "still serving" {
		t.Errorf("next request: got %s %q; want 200 %q", status, body, "still serving")
	}
}

// TestMaxConcurrentStreams checks that a stream over the advertised
// limit is refused with REFUSED_STREAM while the open one completes.
func TestMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "done")
	}), withLimits(h2.Limits{MaxConcurrentStreams: 1}))
	c := dialRaw(t, ts.Addr)
	if got := c.settings[http2.SettingMaxConcurrentStreams]; got != 1 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS: got %d; want 1", got)
	}
	c.request(1, "GET", "/", true)
	<-entered
	c.request(3, "GET", "/", true)
	f := nextAs[*http2.RSTStreamFrame](c)
	if f.StreamID != 3 || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("got %v; want RST_STREAM REFUSED_STREAM on stream 3", f)
	}
	close(release)
	if status, body := c.response(1); status != "200" || string(body) != "done" {
		t.Errorf("stream 1: got %s %q; want 200 %q", status, body, "done")
	}
}

// TestHeaderListTooLarge checks that a request whose header list is over
// SETTINGS_MAX_HEADER_LIST_SIZE gets 431 with a plain-text reason and the
// connection (and its HPACK state) stays usable.
func TestHeaderListTooLarge(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testHandler, withLimits(h2.Limits{MaxHeaderListSize: 1024}))
	c := dialRaw(t, ts.Addr)
	if got := c.settings[http2.SettingMaxHeaderListSize]; got != 1024 {
		t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE: got %d; want 1024", got)
	}
	// Five 300-byte fields: 1,700 bytes of header list. (The Framer
	// answers a block more than twice the limit, or one field longer than
	// it, with a connection error instead, as net/http's HTTP/2 does.)
	var big []hpack.HeaderField
	for i := range 5 {
		big = append(big, hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i), Value: strings.Repeat("abcdefghij", 30)})
	}
	c.request(1, "GET", "/", true, big...)
	if status, body := c.response(1); status != "431" || string(body) != "request header list exceeds 1024 bytes\n" {
		t.Fatalf("got %s %q; want 431 with a reason", status, body)
	}
	c.request(3, "GET", "/", true, hpack.HeaderField{Name: "x-small", Value: "1"})
	if status, body := c.response(3); status != "200" || string(body) != "ok" {
		t.Errorf("next request: got %s %q; want 200 %q", status, body, "ok")
	}
}

// TestShutdownGoAway checks that http.Server.Shutdown sends GOAWAY
// (NO_ERROR, last stream 1) at once, lets the request in flight finish,
// then closes the connection and returns.
func TestShutdownGoAway(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	c := dialRaw(t, ts.Addr)
	c.request(1, "GET", "/", true)
	<-entered
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- ts.HTTP.Shutdown(ctx)
	}()
	f := nextAs[*http2.GoAwayFrame](c)
	if f.ErrCode != http2.ErrCodeNo || f.LastStreamID != 1 {
		t.Fatalf("got %v; want GOAWAY NO_ERROR with last stream 1", f)
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if status, body := c.response(1); status != "200" || string(body) != "finished" {
		t.Errorf("in-flight request: got %s %q; want 200 %q", status, body, "finished")
	}
	if f, err := c.fr.ReadFrame(); err != io.EOF {
		t.Errorf("after the last response: got %v, %v; want EOF", f, err)
	}
	_ = c.nc.Close()
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestIdleTimeout checks that a connection without streams is sent
// GOAWAY and closed after IdleTimeout.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testHandler, withIdleTimeout(50*time.Millisecond))
	c := dialRaw(t, ts.Addr)
	f := nextAs[*http2.GoAwayFrame](c)
	if f.ErrCode != http2.ErrCodeNo || f.LastStreamID != 0 {
		t.Fatalf("got %v; want GOAWAY NO_ERROR with last stream 0", f)
	}
	if f, err := c.fr.ReadFrame(); err != io.EOF {
		t.Errorf("after GOAWAY: got %v, %v; want EOF", f, err)
	}
}

// BenchmarkServerUnary measures the handler path: a real h2c client, one
// request at a time, a handler writing 100 bytes.
func BenchmarkServerUnary(b *testing.B) {
	body := payload(100)
	ts := startServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	client := h2cClient(b)
	url := "http://" + ts.Addr + "/"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != 100 {
			b.Fatalf("read %d bytes; want 100", n)
		}
	}
}
