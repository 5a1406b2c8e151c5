package h2_test

import (
	"errors"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestBoundedOutputToStalledReader: a client that grants a huge flow
// control window and then reads nothing does not make the server buffer
// the response: the handler's writes wait once the connection's output
// is full, and everything arrives when the client reads.
func TestBoundedOutputToStalledReader(t *testing.T) {
	t.Parallel()
	const total = 64 << 20
	var written atomic.Int64
	done := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		chunk := make([]byte, 64<<10)
		for written.Load() < total {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	c := dialRaw(t, ts.Addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if err := c.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	c.request(1, "GET", "/big", true)
	_ = c.nc.SetDeadline(time.Now().Add(time.Minute))
	for i := 0; written.Load() < 1<<20; i++ {
		if i == 2000 {
			t.Fatal("the handler did not start writing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// 64 MiB cannot fit in the socket buffers and the server's bounded
	// output, so the handler must still be writing. (A server that
	// buffered without bound would finish here.)
	select {
	case <-done:
		t.Fatalf("the handler wrote all %d bytes while the client read nothing", total)
	case <-time.After(300 * time.Millisecond):
	}
	// The socket buffers (a few MiB on loopback) and the bounded output
	// hold far less than this; an unbounded server is past it by now.
	if n := written.Load(); n > 24<<20 {
		t.Fatalf("the handler wrote %d bytes while the client read nothing", n)
	}
	var got int64
	for {
		switch f := c.read().(type) {
		case *http2.DataFrame:
			got += int64(len(f.Data()))
			if f.StreamEnded() {
				<-done
				if got != total {
					t.Fatalf("received %d bytes; want %d", got, total)
				}
				return
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("stream ended with %v after %d bytes", f, got)
		}
	}
}

// TestPingFlood: a client that sends PINGs without reading the answers
// is disconnected once the unread answers pass the server's bound, and
// the server keeps serving others.
func TestPingFlood(t *testing.T) {
	t.Parallel()
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := dialRaw(t, ts.Addr)
	_ = c.nc.SetDeadline(time.Now().Add(time.Minute))
	sent := 0
	var werr error
	for sent < 2_000_000 && werr == nil {
		werr = c.fr.WritePing(false, [8]byte{1})
		sent++
	}
	acks := 0
	var rerr error
	for rerr == nil {
		var f http2.Frame
		f, rerr = c.fr.ReadFrame()
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			acks++
		}
	}
	if werr == nil && acks == sent {
		t.Fatalf("all %d pings were answered; want the connection dropped", sent)
	}
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection was not closed: %v", rerr)
	}
	// Others are served.
	other := dialRaw(t, ts.Addr)
	other.request(1, "GET", "/", true)
	if f, ok := other.next().(*http2.MetaHeadersFrame); !ok || f.PseudoValue("status") != "200" {
		t.Fatalf("another client: %v; want 200", f)
	}
}
