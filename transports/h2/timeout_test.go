package h2_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// TestReadTimeout: a request body that does not arrive within
// ReadTimeout fails the handler's read with os.ErrDeadlineExceeded, and
// the handler's answer reaches the client.
func TestReadTimeout(t *testing.T) {
	t.Parallel()
	readErr := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		http.Error(w, "request body too slow", http.StatusRequestTimeout)
	}), func(s *h2.Server) { s.ReadTimeout = 50 * time.Millisecond })
	c := dialRaw(t, ts.Addr)
	c.request(1, "POST", "/", false) // and no body: the client stalls
	if err := <-readErr; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("body read: %v; want os.ErrDeadlineExceeded", err)
	}
	f, ok := c.next().(*http2.MetaHeadersFrame)
	if !ok || f.PseudoValue("status") != "408" {
		t.Fatalf("answer: %v; want HEADERS :status 408", f)
	}
}

// TestWriteTimeout: a response not finished within WriteTimeout is reset
// with INTERNAL_ERROR and the handler's context ends; the connection
// serves the next stream.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	canceled := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			return
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(canceled)
	}), func(s *h2.Server) { s.WriteTimeout = 50 * time.Millisecond })
	c := dialRaw(t, ts.Addr)
	c.request(1, "GET", "/slow", true)
	if f, ok := c.next().(*http2.MetaHeadersFrame); !ok || f.PseudoValue("status") != "200" {
		t.Fatalf("first frame: %v; want HEADERS 200", f)
	}
	rst, ok := c.next().(*http2.RSTStreamFrame)
	if !ok || rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeInternal {
		t.Fatalf("then: %v; want RST_STREAM INTERNAL_ERROR on stream 1", rst)
	}
	<-canceled
	c.request(3, "GET", "/ok", true)
	if f, ok := c.next().(*http2.MetaHeadersFrame); !ok || f.StreamID != 3 || f.PseudoValue("status") != "200" {
		t.Fatalf("next stream: %v; want HEADERS 200 on stream 3", f)
	}
}

// TestExpectContinue: a client that sends "expect: 100-continue" gets a
// 100 when the handler first reads the body, then the final answer.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	c := dialRaw(t, ts.Addr)
	c.request(1, "POST", "/", false, hpack.HeaderField{Name: "expect", Value: "100-continue"})
	if f, ok := c.next().(*http2.MetaHeadersFrame); !ok || f.PseudoValue("status") != "100" || f.StreamEnded() {
		t.Fatalf("first answer: %v; want HEADERS :status 100", f)
	}
	if err := c.fr.WriteData(1, true, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.next().(*http2.MetaHeadersFrame); !ok || f.PseudoValue("status") != "200" {
		t.Fatalf("final answer: %v; want HEADERS :status 200", f)
	}
	if d, ok := c.next().(*http2.DataFrame); !ok || string(d.Data()) != "body" {
		t.Fatalf("body: %v; want DATA \"body\"", d)
	}
}

// resetRecorder is Events that only records the Reset.
type resetRecorder struct{ reset chan error }

func (r resetRecorder) Headers(*h2.Stream, []hpack.HeaderField, bool) {}
func (r resetRecorder) Data(s *h2.Stream, p []byte, _ bool)           { s.Credit(len(p)) }
func (r resetRecorder) Reset(_ *h2.Stream, err error)                 { r.reset <- err }

// TestReadTimeoutIntercepted: an intercepted stream (the gRPC relay's)
// whose request does not arrive within ReadTimeout is reset with CANCEL,
// and its Events hear of it.
func TestReadTimeoutIntercepted(t *testing.T) {
	t.Parallel()
	rec := resetRecorder{reset: make(chan error, 1)}
	ts := startServer(t, http.NotFoundHandler(), func(s *h2.Server) {
		s.ReadTimeout = 50 * time.Millisecond
		s.Intercept = func(*h2.Stream, *h2.RequestHead) h2.Events { return rec }
	})
	c := dialRaw(t, ts.Addr)
	c.request(1, "POST", "/relayed", false) // and no body
	rst, ok := c.next().(*http2.RSTStreamFrame)
	if !ok || rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("got %v; want RST_STREAM CANCEL on stream 1", rst)
	}
	var se h2.StreamError
	if err := <-rec.reset; !errors.As(err, &se) || se.Code != http2.ErrCodeCancel || se.Remote {
		t.Fatalf("Reset event: %v; want a local CANCEL", err)
	}
}
