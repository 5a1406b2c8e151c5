package transports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/transports/headlimit"
)

// HTTP/2 limits: small frames and tables keep the memory one connection
// can pin small. HTTP/2 (h2 by ALPN and prior-knowledge h2c) is served by
// package h2, not net/http: see its doc for why. SETTINGS_MAX_HEADER_LIST_SIZE
// is the listener's max_header_bytes.
//
// Rapid reset (CVE-2023-44487): h2 runs at most MaxConcurrentStreams
// handlers per connection, queues at most 4×MaxConcurrentStreams more, and
// answers a client that opens and resets streams faster than handlers
// finish with GOAWAY ENHANCE_YOUR_CALM, as net/http does. Relayed streams
// cost no goroutine. TestH2RapidReset checks it on a real socket.
const (
	defaultMaxStreams  = 250
	h2MaxReadFrameSize = 16 << 10         // the RFC default; larger frames are a FRAME_SIZE_ERROR
	h2HeaderTableSize  = 4 << 10          // HPACK dynamic table, both ways: the RFC default
	h2StreamWindow     = 1 << 20          // receive window per stream
	h2ConnectionWindow = 2 << 20          // receive window per connection, all streams together
	h2WriteByteTimeout = 30 * time.Second // a peer that reads nothing this long is dropped
)

// Request-head limits (the listener's max_uri_bytes, max_header_bytes and
// max_header_count) hold on every HTTP version before any handler, relay
// or policy sees a request; see package headlimit for how they count. The
// defaults, for a config.Listener whose fields are zero, are config's.
//
// HTTP/1.1 heads are read and checked by http1Conn, which refuses a head
// as soon as it passes a limit (414, 431, 400) and closes the connection.
// HTTP/2 and HTTP/3 header blocks must be decoded whole (HPACK state; the
// QPACK frame is read at once): they are decoded up to headReadSlack
// beyond the limits, so that a request that breaks them by less gets an
// answer naming the limit; a larger block gets what the protocol layer
// gives: HTTP/2 431 or a connection error (x/net/http2's Framer), HTTP/3
// 431 without a reason (quic-go, which does not read the block).
const (
	defaultMaxURIBytes    = 8192
	defaultMaxHeaderBytes = 61440
	defaultMaxHeaderCount = 100
	headReadSlack         = 1 << 20
)

// headLimits returns the listener's request-head limits, defaults filled.
func headLimits(cfg config.Listener) headlimit.Limits {
	or := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	return headlimit.Limits{
		MaxURIBytes:    or(cfg.MaxURIBytes, defaultMaxURIBytes),
		MaxHeaderBytes: or(cfg.MaxHeaderBytes, defaultMaxHeaderBytes),
		MaxHeaderCount: or(cfg.MaxHeaderCount, defaultMaxHeaderCount),
	}
}

// headReadBound is the largest HTTP/2 or HTTP/3 header block decoded.
func headReadBound(lim headlimit.Limits) int {
	return min(lim.MaxURIBytes+lim.MaxHeaderBytes+headReadSlack, 1<<31-1)
}

// Server is one listener: HTTP/1.1 and HTTP/2 on a TCP port (h2c when
// cleartext, h2 by ALPN under TLS), and optionally HTTP/3 over QUIC on the
// same port number over UDP. Every protocol ends in the same handler.
//
// Use it as NewServer, Listen, Serve, then Shutdown. Its methods are not
// safe for concurrent use with each other; the handler runs concurrently.
type Server struct {
	cfg     config.Listener
	handler http.Handler // body limit applied; no Alt-Svc
	srv     *http.Server
	h2      *h2.Server
	certs   *certStore   // nil when cleartext
	h1      *http1Config // HTTP/1.x head checks
	h3      *h3Server    // nil unless http3 is on
	lane    *lane        // HTTP/1.1 requests net/http need not see (http1_lane.go)
	handoff *handoffListener
	tcp     net.Listener
	ln      net.Listener // tcp, wrapped by TLS or by the cleartext sniffer
	logger  *slog.Logger
	served  bool
	closed  bool
	wg      sync.WaitGroup
	errs    chan error
}

// NewServer prepares a server for one listener config: it loads TLS
// certificates (an error names the file and what to fix) but does not
// listen yet; see [Server.Listen]. logger receives transport errors at
// Debug and certificate reloads at Info/Error; nil discards them.
func NewServer(cfg config.Listener, h http.Handler, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTP3 && cfg.TLS == nil {
		return nil, errors.New("http3 needs tls: add tls: {cert: ..., key: ...} or tls: {self_signed: true} to the listener")
	}
	s := &Server{cfg: cfg, handler: limitBody(h, cfg.MaxBodyBytes), logger: logger, errs: make(chan error, 3)}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if cfg.TLS != nil {
		protocols.SetHTTP2(true)
		certs, err := newCertStore(cfg.TLS, []string{"h2", "http/1.1"}, logger)
		if err != nil {
			return nil, err
		}
		s.certs = certs
	} else {
		protocols.SetUnencryptedHTTP2(true)
		s.handler = rejectPartialPreface(s.handler)
	}
	streams := int(cfg.MaxConcurrentStreams)
	if streams <= 0 {
		streams = defaultMaxStreams
	}
	lim := headLimits(cfg)
	headerTimeout := time.Duration(cfg.ReadHeaderTimeout)
	if headerTimeout <= 0 {
		headerTimeout = time.Duration(cfg.ReadTimeout) // as net/http does
	}
	s.h1 = &http1Config{limits: lim, readHeaderTimeout: headerTimeout, h2c: cfg.TLS == nil, logger: logger.With("protocol", "h1")}
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: time.Duration(cfg.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(cfg.ReadTimeout),
		WriteTimeout:      time.Duration(cfg.WriteTimeout),
		IdleTimeout:       time.Duration(cfg.IdleTimeout),
		// http1Conn hands net/http only heads within the limits.
		MaxHeaderBytes: s.h1.maxHead(),
		ConnState:      connState,
		Protocols:      &protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          streams,
			MaxDecoderHeaderTableSize:     h2HeaderTableSize,
			MaxEncoderHeaderTableSize:     h2HeaderTableSize,
			MaxReadFrameSize:              h2MaxReadFrameSize,
			MaxReceiveBufferPerStream:     h2StreamWindow,
			MaxReceiveBufferPerConnection: h2ConnectionWindow,
			WriteByteTimeout:              h2WriteByteTimeout,
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	s.h2 = &h2.Server{
		HeadLimits: lim,
		Limits: h2.Limits{
			MaxConcurrentStreams: uint32(streams),
			MaxReadFrameSize:     h2MaxReadFrameSize,
			MaxHeaderListSize:    uint32(headReadBound(lim)),
			HeaderTableSize:      h2HeaderTableSize,
			StreamWindow:         h2StreamWindow,
			ConnWindow:           h2ConnectionWindow,
			WriteTimeout:         h2WriteByteTimeout,
		},
		// WebSocket over HTTP/2 (RFC 8441); the gateway bridges it like
		// an HTTP/1.1 upgrade.
		ExtendedConnect: true,
		IdleTimeout:     time.Duration(cfg.IdleTimeout),
		PrefaceTimeout:  time.Duration(cfg.ReadHeaderTimeout),
		ReadTimeout:     time.Duration(cfg.ReadTimeout),
		WriteTimeout:    time.Duration(cfg.WriteTimeout),
		Logger:          logger.With("protocol", "h2"),
	}
	s.h2.ConfigureServer(s.srv)
	if cfg.HTTP3 {
		s.h3 = newH3Server(cfg, lim, s.handler, s.certs.serverConfig(), logger.With("protocol", "h3"))
	}
	return s, nil
}

// limitBody caps request bodies at max bytes (413 from the adapters when
// exceeded). Enveloped streams (gRPC, gRPC-Web, Connect streaming) are
// limited per message by their adapters instead, so they are left alone.
func limitBody(h http.Handler, max int64) http.Handler {
	if max <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && !isEnvelopedStream(r.Header.Get("Content-Type")) {
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		h.ServeHTTP(w, r)
	})
}

// isEnvelopedStream reports whether a Content-Type carries length-prefixed
// messages that the protocol adapters limit one by one.
func isEnvelopedStream(ct string) bool {
	return strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+")
}

// rejectPartialPreface answers 400 to "PRI * HTTP/2.0" parsed as an
// HTTP/1 request: a client that sent only part of the HTTP/2 preface.
// net/http hands such requests to the handler (for the retired h2c
// upgrade handlers); no route should see them.
func rejectPartialPreface(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PRI" && r.ProtoMajor == 2 {
			http.Error(w, "incomplete HTTP/2 connection preface", http.StatusBadRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Listen binds the listener's TCP address and, with http3, the same port
// over UDP. With port 0 both get the same free port number.
func (s *Server) Listen() error {
	const attempts = 5 // port 0: the TCP port's UDP twin may be taken
	for i := 0; ; i++ {
		tcp, err := net.Listen("tcp", s.cfg.Address)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", s.cfg.Address, err)
		}
		if s.h3 != nil {
			if err := s.h3.listen(tcp.Addr().(*net.TCPAddr)); err != nil {
				_ = tcp.Close()
				if strings.HasSuffix(s.cfg.Address, ":0") && i+1 < attempts {
					continue
				}
				return err
			}
			s.srv.Handler = altSvc(s.handler, tcp.Addr().(*net.TCPAddr).Port)
		}
		s.tcp = tcp
		break
	}
	if s.certs != nil {
		s.ln = newTLSListener(s.tcp, s.certs.serverConfig(), s.h1, s.handshakeTimeout(), s.logger)
	} else {
		s.ln = &cleartextListener{Listener: s.tcp, h1: s.h1, logger: s.logger}
	}
	return nil
}

// handshakeTimeout bounds a TLS handshake as net/http would: by the
// shortest of read_header_timeout, read_timeout and write_timeout set.
func (s *Server) handshakeTimeout() time.Duration {
	var d time.Duration
	for _, t := range []config.Duration{s.cfg.ReadHeaderTimeout, s.cfg.ReadTimeout, s.cfg.WriteTimeout} {
		if t > 0 && (d == 0 || time.Duration(t) < d) {
			d = time.Duration(t)
		}
	}
	return d
}

// Addr returns the bound TCP address (useful with port 0). HTTP/3, when
// on, listens on the same port number over UDP.
func (s *Server) Addr() net.Addr { return s.tcp.Addr() }

// Protocols names what the listener serves, for logs: "h1,h2c",
// "h1,h2" or "h1,h2,h3".
func (s *Server) Protocols() string {
	switch {
	case s.h3 != nil:
		return "h1,h2,h3"
	case s.certs != nil:
		return "h1,h2"
	default:
		return "h1,h2c"
	}
}

// InterceptHTTP2 lets fn take over HTTP/2 request streams frame by frame
// (see h2.Server.Intercept); call it before Serve.
func (s *Server) InterceptHTTP2(fn func(*h2.Stream, *h2.RequestHead) h2.Events) {
	s.h2.Intercept = fn
}

// Serve accepts connections until Shutdown. It returns at once; the serve
// loops (TCP, and UDP for HTTP/3) run in their own goroutines.
func (s *Server) Serve() {
	s.served = true
	s.h2.Handler = s.srv.Handler
	s.handoff = newHandoffListener(s.ln.Addr())
	s.lane = newLane(s, s.srv.Handler, s.handoff)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		err := s.srv.Serve(s.handoff)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.errs <- err
	}()
	go func() {
		defer s.wg.Done()
		s.errs <- s.acceptLoop()
	}()
	if s.h3 != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.errs <- s.h3.serve()
		}()
	}
}

// Shutdown stops accepting connections, tells HTTP/2 and HTTP/3 clients
// to go away, and waits for in-flight requests until ctx ends; then it
// closes what is left. It returns ctx's error when it had to cut requests
// short.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.served {
		if s.tcp != nil {
			_ = s.tcp.Close()
		}
		if s.h3 != nil {
			s.h3.closeSocket()
		}
		return nil
	}
	h3done := make(chan error, 1)
	if s.h3 != nil {
		go func() { h3done <- s.h3.shutdown(ctx) }()
	} else {
		h3done <- nil
	}
	// Stop accepting; then the lane's connections and net/http's end
	// together.
	_ = s.ln.Close()
	laneDone := make(chan error, 1)
	go func() { laneDone <- s.lane.shutdown(ctx) }()
	var errs []error
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		errs = append(errs, err)
	}
	if err := <-laneDone; err != nil && (len(errs) == 0 || !errors.Is(err, ctx.Err())) {
		errs = append(errs, err)
	}
	if err := <-h3done; err != nil && (len(errs) == 0 || !errors.Is(err, ctx.Err())) {
		errs = append(errs, fmt.Errorf("http3: %w", err))
	}
	if tl, ok := s.ln.(*tlsListener); ok {
		_ = tl.Close()
		tl.wait()
	}
	s.wg.Wait()
	close(s.errs)
	for err := range s.errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleartextListener answers a TLS handshake sent to a cleartext port with
// a plain-text 400 and a close, instead of letting the HTTP/1 parser wait
// for a line end until the header timeout, and checks HTTP/1.x request
// heads (http1Conn).
type cleartextListener struct {
	net.Listener
	h1     *http1Config
	logger *slog.Logger
}

// Accept returns the next connection, wrapped to sniff its first bytes
// and to check its request heads.
func (l *cleartextListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newHTTP1Conn(&sniffConn{Conn: c, logger: l.logger}, l.h1), nil
}

// errTLSOnCleartext ends a connection that began with a TLS handshake.
var errTLSOnCleartext = errors.New("client sent a TLS handshake to a cleartext HTTP listener")

const tlsOnCleartextAnswer = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" +
	"client sent a TLS handshake to a cleartext HTTP listener; use http:// or enable tls on this listener\n"

// sniffConn checks the first bytes read for a TLS record header.
type sniffConn struct {
	net.Conn
	logger *slog.Logger
	state  atomic.Int32 // sniffUnchecked, sniffHTTP or sniffTLS
}

const (
	sniffUnchecked = iota
	sniffHTTP
	sniffTLS
)

// Read reads from the connection. When the client opened with a TLS
// handshake record, it answers with a plain-text 400 and this and every
// later read fail with errTLSOnCleartext (net/http peeks for the h2c
// preface first and would otherwise go on reading).
func (c *sniffConn) Read(p []byte) (int, error) {
	switch c.state.Load() {
	case sniffTLS:
		return 0, errTLSOnCleartext
	case sniffHTTP:
		return c.Conn.Read(p)
	}
	n, err := c.Conn.Read(p)
	if n == 0 {
		return n, err
	}
	// A TLS handshake record: content type 22, protocol major version 3.
	if p[0] != 0x16 || (n > 1 && p[1] != 0x03) {
		c.state.Store(sniffHTTP)
		return n, err
	}
	c.state.Store(sniffTLS)
	c.logger.Debug("TLS handshake on a cleartext listener", "remote", c.RemoteAddr().String())
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Conn.Write([]byte(tlsOnCleartextAnswer))
	return 0, errTLSOnCleartext
}

// CloseWrite half-closes the TCP connection, so net/http can linger on
// close as it does with a bare *net.TCPConn.
func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
