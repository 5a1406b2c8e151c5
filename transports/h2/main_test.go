package h2_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/transports/h2"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// testServer is a net/http server on 127.0.0.1:0 whose HTTP/2
// connections (h2 by ALPN under TLS, prior-knowledge h2c otherwise) are
// served by an h2.Server, as transports.Server wires it.
type testServer struct {
	Addr string
	H2   *h2.Server
	HTTP *http.Server
	CA   *testkit.CA // nil when cleartext
}

// serverOption adjusts the h2.Server before it is installed.
type serverOption func(*h2.Server)

func withLimits(l h2.Limits) serverOption { return func(s *h2.Server) { s.Limits = l } }

func withIdleTimeout(d time.Duration) serverOption {
	return func(s *h2.Server) { s.IdleTimeout = d }
}

// startServer serves h over cleartext (HTTP/1.1 and h2c) and shuts the
// server down when the test ends.
func startServer(t testing.TB, h http.Handler, opts ...serverOption) *testServer {
	t.Helper()
	return start(t, h, false, opts)
}

// startTLSServer serves h over TLS (h2 and http/1.1 by ALPN) with a
// certificate for 127.0.0.1 issued by the returned server's CA.
func startTLSServer(t testing.TB, h http.Handler, opts ...serverOption) *testServer {
	t.Helper()
	return start(t, h, true, opts)
}

func start(t testing.TB, h http.Handler, useTLS bool, opts []serverOption) *testServer {
	t.Helper()
	ln := testkit.ListenLocal(t)
	ts := &testServer{Addr: ln.Addr().String()}
	var p http.Protocols
	p.SetHTTP1(true)
	if useTLS {
		p.SetHTTP2(true)
		ts.CA = testkit.NewCA(t, "h2 test CA")
		leaf := ts.CA.Issue(t, "h2-server", "127.0.0.1")
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{leaf.TLS},
			NextProtos:   []string{"h2", "http/1.1"},
		})
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	ts.HTTP = &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 5 * time.Second}
	ts.H2 = &h2.Server{Handler: h}
	for _, o := range opts {
		o(ts.H2)
	}
	ts.H2.ConfigureServer(ts.HTTP)
	served := make(chan error, 1)
	go func() { served <- ts.HTTP.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ts.HTTP.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
			_ = ts.HTTP.Close()
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ts
}

// h2cClient returns a net/http client speaking prior-knowledge HTTP/2
// with a 1 MiB receive window per stream. Its connections close with the
// test.
func h2cClient(t testing.TB) *http.Client {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &p,
		HTTP2:     &http.HTTP2Config{MaxReceiveBufferPerStream: 1 << 20, MaxReceiveBufferPerConnection: 1 << 20},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// rawConn is a hand-driven HTTP/2 client connection for tests that need
// exact frames.
type rawConn struct {
	t        testing.TB
	nc       net.Conn
	fr       *http2.Framer
	hbuf     bytes.Buffer
	enc      *hpack.Encoder
	settings map[http2.SettingID]uint32 // the server's first SETTINGS
}

// dialRaw opens an h2c connection, sends the preface and settings, and
// reads the server's SETTINGS. Every read and write is bounded by a 10s
// deadline, so a missing frame fails the test instead of hanging it.
func dialRaw(t testing.TB, addr string, settings ...http2.Setting) *rawConn {
	t.Helper()
	nc := testkit.DialRaw(t, addr)
	c := &rawConn{t: t, nc: nc, fr: http2.NewFramer(nc, nc), settings: map[http2.SettingID]uint32{}}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	f := c.read()
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first server frame: %v; want SETTINGS", f)
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error {
		c.settings[s.ID] = s.Val
		return nil
	})
	if err := c.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return c
}

// request sends a request header block for path on stream id; extra
// fields follow the pseudo-fields.
func (c *rawConn) request(id uint32, method, path string, end bool, extra ...hpack.HeaderField) {
	c.t.Helper()
	c.hbuf.Reset()
	fields := append([]hpack.HeaderField{
		{Name: ":method", Value: method},
		{Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "test"},
		{Name: ":path", Value: path},
	}, extra...)
	for _, f := range fields {
		_ = c.enc.WriteField(f)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: end, EndHeaders: true,
	}); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame; a read error fails the test.
func (c *rawConn) read() http2.Frame {
	c.t.Helper()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// next returns the next frame that is not SETTINGS (ACK), PING or a
// WINDOW_UPDATE: the frames that carry what a test asserts.
func (c *rawConn) next() http2.Frame {
	c.t.Helper()
	for {
		switch f := c.read().(type) {
		case *http2.SettingsFrame, *http2.WindowUpdateFrame:
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.fr.WritePing(true, f.Data)
			}
		default:
			return f
		}
	}
}

// response reads the response on stream id (other streams' frames are
// skipped): its :status and body, up to END_STREAM. The body's bytes are
// given back as they arrive.
func (c *rawConn) response(id uint32) (status string, body []byte) {
	c.t.Helper()
	for {
		switch f := c.next().(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if s := f.PseudoValue("status"); s != "" {
				status = s
			}
			if f.StreamEnded() {
				return status, body
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			body = append(body, f.Data()...)
			if n := uint32(len(f.Data())); n > 0 {
				_ = c.fr.WriteWindowUpdate(0, n)
				_ = c.fr.WriteWindowUpdate(id, n)
			}
			if f.StreamEnded() {
				return status, body
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				c.t.Fatalf("stream %d: RST_STREAM %v; want a response", id, f.ErrCode)
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("GOAWAY %v while waiting for stream %d", f.ErrCode, id)
		}
	}
}

// nextAs returns the next frame as next does, failing the test unless
// it is a T.
func nextAs[T http2.Frame](c *rawConn) T {
	c.t.Helper()
	f := c.next()
	v, ok := f.(T)
	if !ok {
		c.t.Fatalf("got %v; want a %T", f, v)
	}
	return v
}
