package transports

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/transports/headlimit"
)

// altSvcMaxAge is how long, in seconds, clients may remember that HTTP/3
// is offered (the ma= parameter of Alt-Svc): one day.
const altSvcMaxAge = 86400

// HTTP/3 flow-control windows, the same budget as HTTP/2's.
const (
	h3StreamWindow     = 1 << 20
	h3ConnectionWindow = 2 << 20
)

// h3Server serves HTTP/3 over QUIC on a UDP socket bound to the TCP
// listener's port.
type h3Server struct {
	srv *http3.Server
	udp net.PacketConn
}

// newH3Server configures an HTTP/3 server for one listener. The TLS
// config's ALPN is replaced by "h3" per connection by quic-go.
func newH3Server(cfg config.Listener, lim headlimit.Limits, h http.Handler, tlsConf *tls.Config, logger *slog.Logger) *h3Server {
	streams := int64(cfg.MaxConcurrentStreams)
	if streams <= 0 {
		streams = defaultMaxStreams
	}
	qc := &quic.Config{
		MaxIncomingStreams:         streams,
		MaxStreamReceiveWindow:     h3StreamWindow,
		MaxConnectionReceiveWindow: h3ConnectionWindow,
		// 0-RTT requests can be replayed by an attacker; leave it off until
		// the policy layer can tell idempotent calls apart.
		Allow0RTT: false,
	}
	if d := time.Duration(cfg.IdleTimeout); d > 0 {
		qc.MaxIdleTimeout = d
	}
	if d := time.Duration(cfg.ReadHeaderTimeout); d > 0 {
		qc.HandshakeIdleTimeout = d
	}
	return &h3Server{srv: &http3.Server{
		Handler:    checkHeadH3(extendedConnectH3(h), lim, logger),
		TLSConfig:  tlsConf,
		QUICConfig: qc,
		// The QPACK block is read whole before it is decoded: see
		// headReadSlack.
		MaxHeaderBytes: headReadBound(lim),
		IdleTimeout:    time.Duration(cfg.IdleTimeout),
		Logger:         logger,
	}}
}

// checkHeadH3 refuses the HTTP/3 requests over the listener's head
// limits, before h (and any policy) sees them: 414, 431 or 400 with a
// plain-text reason; quic-go then stops the request stream
// (H3_NO_ERROR), and the connection serves on. quic-go has already
// refused raw control characters in :path (H3_MESSAGE_ERROR). It does not
// allocate for a request it lets through.
func checkHeadH3(h http.Handler, lim headlimit.Limits, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count, size := 0, 0
		for k, vs := range r.Header { // Cookie fields arrive joined
			for _, v := range vs {
				count++
				size += headlimit.FieldSize(k, v)
			}
		}
		e := lim.Fields(count, size)
		if e == nil {
			e = lim.Target(r.RequestURI)
		}
		if e == nil {
			h.ServeHTTP(w, r)
			return
		}
		logger.Debug("http/3 request refused at the edge", "remote", r.RemoteAddr, "status", e.Status, "reason", e.Msg)
		refuse(w, e)
	})
}

// refuse answers e through a ResponseWriter.
func refuse(w http.ResponseWriter, e *headlimit.Error) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_, _ = io.WriteString(w, e.Body())
}

// listen binds UDP on the address and port the TCP listener got. An
// unspecified address (":8443") listens on every interface, as TCP does.
func (h *h3Server) listen(tcp *net.TCPAddr) error {
	addr := &net.UDPAddr{IP: tcp.IP, Port: tcp.Port, Zone: tcp.Zone}
	udp, err := net.ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("listen for HTTP/3 on udp %s: %w (the UDP port must be free as well as the TCP one)", addr, err)
	}
	h.udp = udp
	return nil
}

// serve runs the QUIC accept loop until shutdown.
func (h *h3Server) serve() error {
	err := h.srv.Serve(h.udp)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// shutdown sends GOAWAY, waits for requests in flight until ctx ends,
// then closes the connections and the UDP socket.
func (h *h3Server) shutdown(ctx context.Context) error {
	err := h.srv.Shutdown(ctx)
	if cerr := h.udp.Close(); cerr != nil && err == nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

// closeSocket releases the UDP socket of a server that never served.
func (h *h3Server) closeSocket() {
	if h.udp != nil {
		_ = h.udp.Close()
	}
}

// altSvc advertises HTTP/3 on TCP responses: Alt-Svc: h3=":PORT"; ma=86400.
func altSvc(h http.Handler, port int) http.Handler {
	value := []string{fmt.Sprintf(`h3=":%d"; ma=%d`, port, altSvcMaxAge)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Alt-Svc"] = value
		h.ServeHTTP(w, r)
	})
}

// extendedConnectH3 presents HTTP/3 extended CONNECT requests (RFC 9220:
// WebSocket over an HTTP/3 stream) as the HTTP/2 server does, so the
// gateway serves both alike: the protocol in the ":protocol" header (quic-go
// puts it in r.Proto), 101 answered as 200, and Hijack taking the stream
// over as a net.Conn.
func extendedConnectH3(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect && r.Proto != "" && r.Proto != "HTTP/3.0" {
			if hs, ok := w.(http3.HTTPStreamer); ok {
				r.Header[":protocol"] = []string{r.Proto}
				w = &h3ConnectWriter{ResponseWriter: w, streamer: hs, r: r}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// h3ConnectWriter is the ResponseWriter of an HTTP/3 extended CONNECT.
type h3ConnectWriter struct {
	http.ResponseWriter
	streamer http3.HTTPStreamer
	r        *http.Request
}

// WriteHeader sends 101 Switching Protocols as 200: an extended CONNECT
// is accepted with a 2xx (RFC 9220, RFC 8441 §5).
func (w *h3ConnectWriter) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		code = http.StatusOK
	}
	// Connection-specific fields are not allowed in HTTP/3 (RFC 9114
	// §4.2); an upgrade handler sets them.
	h := w.Header()
	for _, k := range []string{"Connection", "Upgrade", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding"} {
		delete(h, k)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Hijack sends the response header and returns the stream as a net.Conn.
func (w *h3ConnectWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	str, err := w.streamer.HTTPStream()
	if err != nil {
		return nil, nil, err
	}
	c := &h3StreamConn{Stream: str, remote: w.r.RemoteAddr}
	if a, ok := w.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		c.local = a
	}
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// Unwrap returns the wrapped writer.
func (w *h3ConnectWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// h3StreamConn is a hijacked HTTP/3 stream as a net.Conn.
type h3StreamConn struct {
	*http3.Stream
	local  net.Addr
	remote string
}

// Close ends the stream both ways: FIN on the sending side, and the
// receiving side canceled with H3_NO_ERROR.
func (c *h3StreamConn) Close() error {
	c.CancelRead(0x100)
	return c.Stream.Close()
}

// LocalAddr is the listener's UDP address.
func (c *h3StreamConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the client's UDP address.
func (c *h3StreamConn) RemoteAddr() net.Addr {
	a, _ := net.ResolveUDPAddr("udp", c.remote)
	return a
}
