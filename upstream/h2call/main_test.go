package h2call_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// rawCodec passes *[]byte messages through, as the dialects' raw codec
// (transcoder.RawCall) does.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

var (
	_       encoding.CodecV2 = rawCodec{}
	rawCall                  = grpc.ForceCodecV2(rawCodec{})
)

// outcomes records the outcomes of a Pick's attempts.
type outcomes struct {
	mu   sync.Mutex
	list []h2call.Outcome
	ch   chan struct{}
}

func (o *outcomes) add(out h2call.Outcome) {
	o.mu.Lock()
	o.list = append(o.list, out)
	o.mu.Unlock()
	select {
	case o.ch <- struct{}{}:
	default:
	}
}

// last waits for the n-th outcome (1-based) and returns it.
func (o *outcomes) wait(t testing.TB, n int) h2call.Outcome {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		o.mu.Lock()
		if len(o.list) >= n {
			out := o.list[n-1]
			o.mu.Unlock()
			return out
		}
		o.mu.Unlock()
		select {
		case <-o.ch:
		case <-timeout:
			t.Fatalf("no outcome %d in 10s", n)
		}
	}
}

func (o *outcomes) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.list)
}

// newConn returns a Conn on a Target for addr whose attempts report to
// the returned outcomes. The target closes when the test ends.
func newConn(t testing.TB, addr string, opts h2call.Options, copts h2.ClientOptions) (*h2call.Conn, *outcomes) {
	t.Helper()
	tgt := h2call.NewTarget(addr, copts)
	t.Cleanup(func() { _ = tgt.Close() })
	rec := &outcomes{ch: make(chan struct{}, 1)}
	opts.Pick = func(ctx context.Context, method string) (h2call.Attempt, error) {
		a, err := tgt.Pick(ctx, method)
		a.Finish = rec.add
		return a, err
	}
	return h2call.New(opts), rec
}

// startBackend starts the EchoService backend and returns a Conn to it
// and a generated client on that Conn.
func startBackend(t testing.TB, opts ...testkit.BackendOption) (*testkit.Backend, *h2call.Conn, testingv1.EchoServiceClient, *outcomes) {
	t.Helper()
	be := testkit.StartBackend(t, opts...)
	cc, rec := newConn(t, be.Addr, h2call.Options{}, h2.ClientOptions{})
	return be, cc, testingv1.NewEchoServiceClient(cc), rec
}

// startHTTP serves h on 127.0.0.1:0 over h2c with net/http.
func startHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	lis := testkit.ListenLocal(t)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return lis.Addr().String()
}

// fakeConn is the server side of one connection of a fake HTTP/2 server
// that answers with raw frames.
type fakeConn struct {
	nc  net.Conn
	mu  sync.Mutex
	fr  *http2.Framer
	buf bytes.Buffer
	enc *hpack.Encoder
}

// headers writes a header block.
func (c *fakeConn) headers(id uint32, end bool, kv ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	_ = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.buf.Bytes(), EndStream: end, EndHeaders: true})
}

func (c *fakeConn) data(id uint32, end bool, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.fr.WriteData(id, end, p)
}

func (c *fakeConn) rst(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.fr.WriteRSTStream(id, code)
}

func (c *fakeConn) goAway(last uint32, code http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.fr.WriteGoAway(last, code, nil)
}

// fakeHandlers are a fake server's hooks, called on the connection's
// reading goroutine: headers for every request head, data (optional) for
// every DATA frame. The server never grants flow-control window.
type fakeHandlers struct {
	headers func(c *fakeConn, id uint32, fields []hpack.HeaderField)
	data    func(c *fakeConn, id uint32, n int, end bool)
}

// startFake starts a fake HTTP/2 server that answers request heads with
// handle: see startFakeServer.
func startFake(t testing.TB, handle func(c *fakeConn, id uint32, fields []hpack.HeaderField)) string {
	return startFakeServer(t, fakeHandlers{headers: handle})
}

// startFakeServer starts a fake HTTP/2 server: it does the preface and
// SETTINGS exchange, acknowledges pings, and calls h's hooks.
func startFakeServer(t testing.TB, h fakeHandlers) string {
	t.Helper()
	lis := testkit.ListenLocal(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveFake(nc, h)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		for _, nc := range conns {
			_ = nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

func serveFake(nc net.Conn, h fakeHandlers) {
	defer nc.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(nc, preface); err != nil {
		return
	}
	c := &fakeConn{nc: nc, fr: http2.NewFramer(nc, nc)}
	c.enc = hpack.NewEncoder(&c.buf)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.mu.Lock()
	_ = c.fr.WriteSettings()
	c.mu.Unlock()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.mu.Lock()
				_ = c.fr.WriteSettingsAck()
				c.mu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.mu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				c.mu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			h.headers(c, f.StreamID, f.Fields)
		case *http2.DataFrame:
			if h.data != nil {
				h.data(c, f.StreamID, int(f.Length), f.StreamEnded())
			}
		}
	}
}

// grpcFrame returns p behind a gRPC message prefix.
func grpcFrame(p []byte) []byte {
	out := make([]byte, 5+len(p))
	out[1], out[2], out[3], out[4] = byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	copy(out[5:], p)
	return out
}

// unannounced hides its deadline, as transcoder.CallDeadline does for a
// limit the backend must not see.
type unannounced struct{ context.Context }

func (unannounced) Deadline() (time.Time, bool) { return time.Time{}, false }

// h2callOptions are the Conn options of the benchmarks.
func h2callOptions() h2call.Options { return h2call.Options{} }
