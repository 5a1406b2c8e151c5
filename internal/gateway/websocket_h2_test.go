package gateway

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// h2WebSocket makes coder/websocket's client speak RFC 8441: the upgrade
// request it builds is sent as an extended CONNECT (":protocol:
// websocket") on an HTTP/2 connection by net/http's client, and the 200
// that accepts it is handed back as the 101 coder/websocket expects, with
// the stream as the body. Frames are coder/websocket's, unchanged.
type h2WebSocket struct {
	rt http.RoundTripper
	// h3 sends the protocol as quic-go's HTTP/3 client takes it, in
	// Request.Proto (RFC 9220), instead of the ":protocol" header.
	h3 bool
	// status is the HTTP/2 status of the last CONNECT.
	status int
}

func (t *h2WebSocket) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	// The stream outlives the dial's context, as a hijacked HTTP/1.1
	// connection does; closing the socket ends it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(req.Context()))
	out, err := http.NewRequestWithContext(ctx, http.MethodConnect, req.URL.String(), pr)
	if err != nil {
		cancel()
		return nil, err
	}
	if t.h3 {
		out.Proto = "websocket"
	} else {
		out.Header.Set(":protocol", "websocket")
	}
	for _, k := range []string{"Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin", "Authorization"} {
		if v := req.Header.Values(k); len(v) > 0 {
			out.Header[k] = v
		}
	}
	resp, err := t.rt.RoundTrip(out)
	if err != nil {
		_ = pw.Close()
		cancel()
		return nil, err
	}
	t.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		resp.Body = streamBody{ReadCloser: resp.Body, w: pw, cancel: cancel}
		return resp, nil
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != "" {
		_ = pw.Close()
		_ = resp.Body.Close()
		cancel()
		return nil, errors.New("the gateway sent Sec-WebSocket-Accept, which RFC 8441 does not use")
	}
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp.StatusCode, resp.Status = http.StatusSwitchingProtocols, "101 Switching Protocols"
	resp.Header.Set("Upgrade", "websocket")
	resp.Header.Set("Connection", "Upgrade")
	resp.Header.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
	resp.Body = streamBody{ReadCloser: resp.Body, w: pw, cancel: cancel}
	return resp, nil
}

// streamBody is an HTTP/2 stream as coder/websocket's connection:
// reads from the response, writes to the request body.
type streamBody struct {
	io.ReadCloser
	w      *io.PipeWriter
	cancel context.CancelFunc
}

func (b streamBody) Write(p []byte) (int, error) { return b.w.Write(p) }

func (b streamBody) Close() error {
	_ = b.w.Close()
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// h2cTransport is x/net's HTTP/2 client over cleartext TCP: unlike
// net/http's bundled one it sends extended CONNECT (":protocol").
func h2cTransport() *http2.Transport {
	return &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// dialWSH2 opens a WebSocket through the gateway over h2c (RFC 8441).
func dialWSH2(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, *h2WebSocket) {
	t.Helper()
	tr := h2cTransport()
	t.Cleanup(tr.CloseIdleConnections)
	h2ws := &h2WebSocket{rt: tr}
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	opts.HTTPClient = &http.Client{Transport: h2ws}
	return dialWS(t, url, opts), h2ws
}

// TestWebSocketOverHTTP2: the gRPC bridge over an HTTP/2 stream (RFC 8441
// extended CONNECT): unary, bidi and proto frames, the status frame and
// the close code, as over HTTP/1.1.
func TestWebSocketOverHTTP2(t *testing.T) {
	t.Parallel()
	base := startDefault(t)

	c, h2ws := dialWSH2(t, wsURL(base, "/v1/echo"), nil)
	if h2ws.status != http.StatusOK {
		t.Fatalf("CONNECT status: %d; want 200", h2ws.status)
	}
	wsSend(t, c, `{"stringValue": "over h2"}`)
	assertJSON(t, string(wsRead(t, c, websocket.MessageText)), `{"stringValue": "over h2"}`)
	wsExpectOK(t, c)

	c, _ = dialWSH2(t, wsURL(base, "/v1/stream:bidi"), &websocket.DialOptions{Subprotocols: []string{"rosetta.json.v1"}})
	if c.Subprotocol() != "rosetta.json.v1" {
		t.Errorf("subprotocol: got %q; want rosetta.json.v1", c.Subprotocol())
	}
	for i := 1; i <= 3; i++ {
		item := `{"index": ` + string(rune('0'+i)) + `, "text": "t"}`
		wsSend(t, c, item)
		assertJSON(t, string(wsRead(t, c, websocket.MessageText)), item)
	}
	wsSend(t, c, `{"@close_send": true}`)
	wsExpectOK(t, c)

	// A bad frame closes with 1007 as over HTTP/1.1.
	c, _ = dialWSH2(t, wsURL(base, "/v1/stream:bidi"), nil)
	wsSend(t, c, `{"index": "not a number"}`)
	st := wsReadStatus(t, c)
	if st.Status.Code != 3 {
		t.Errorf("status of a bad frame: %+v; want INVALID_ARGUMENT", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusInvalidFramePayloadData, "")
}

// TestWebSocketOverHTTP2Errors: problems found before the stream is
// accepted get the same REST errors as an HTTP/1.1 upgrade.
func TestWebSocketOverHTTP2Errors(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	h2ws := &h2WebSocket{rt: tr}
	_, resp, err := websocket.Dial(wsContext(t), wsURL(base, "/no/such/path"), &websocket.DialOptions{HTTPClient: &http.Client{Transport: h2ws}})
	if err == nil || h2ws.status != http.StatusNotFound {
		t.Fatalf("unknown path: err %v, status %d; want 404", err, h2ws.status)
	}
	if resp != nil {
		body, _ := io.ReadAll(resp.Body)
		assertJSON(t, string(body), `{"code": 5, "message": "no WebSocket route matches /no/such/path: use a method's HTTP binding path or /<package.Service>/<Method>", "details": []}`)
	}
}

// TestHTTPUpstreamWebSocketOverHTTP2: a WebSocket opened over an HTTP/2
// stream on a URI route reaches the plain HTTP backend as an HTTP/1.1
// upgrade, and messages flow both ways; the close handshake completes.
func TestHTTPUpstreamWebSocketOverHTTP2(t *testing.T) {
	t.Parallel()
	m := startMixed(t)
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	h2ws := &h2WebSocket{rt: tr}
	ctx := wsContext(t)
	c, _, err := websocket.Dial(ctx, wsURL(m.url, "/ws"), &websocket.DialOptions{HTTPClient: &http.Client{Transport: h2ws}})
	if err != nil {
		t.Fatalf("dial through the gateway over h2c: %v (CONNECT status %d)", err, h2ws.status)
	}
	defer c.CloseNow()
	for i, msg := range []string{"hello", "again"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !strings.HasSuffix(string(got), ": "+msg) {
			t.Errorf("echo %d: got %q; want \"webN: %s\"", i, got, msg)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestWebSocketOverHTTP3: the gRPC bridge over an HTTP/3 stream (RFC 9220
// extended CONNECT), with quic-go's client.
func TestWebSocketOverHTTP3(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	ca := testkit.NewCA(t, "h3-ca")
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
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
	t.Cleanup(func() { tr.Close() })
	h3ws := &h2WebSocket{rt: tr, h3: true}
	base := "https://" + g.Addrs()[0].String()
	c := dialWS(t, wsURL(base, "/v1/stream:bidi"), &websocket.DialOptions{HTTPClient: &http.Client{Transport: h3ws}})
	if h3ws.status != http.StatusOK {
		t.Fatalf("CONNECT status: %d; want 200", h3ws.status)
	}
	for i := 1; i <= 3; i++ {
		item := `{"index": ` + string(rune('0'+i)) + `, "text": "t"}`
		wsSend(t, c, item)
		assertJSON(t, string(wsRead(t, c, websocket.MessageText)), item)
	}
	wsSend(t, c, `{"@close_send": true}`)
	wsExpectOK(t, c)
}

// TestWebSocketOverHTTP2Shutdown: a WebSocket on an HTTP/2 stream is a
// stream the listener's drain waits for; Shutdown tells it to go away
// (UNAVAILABLE, 1001) and returns without running into its deadline.
func TestWebSocketOverHTTP2Shutdown(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	g := newTestGateway(t, be.Addr, basicConfig, nil)
	base := startTestGateway(t, g, "")
	c, _ := dialWSH2(t, wsURL(base, "/v1/stream:bidi"), nil)
	wsSend(t, c, `{"text": "a"}`)
	wsRead(t, c, websocket.MessageText)
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(wsContext(t)) }()
	st := wsReadStatus(t, c)
	if st.Status.Code != 14 {
		t.Errorf("status: got %+v; want UNAVAILABLE", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusGoingAway, "")
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
