package transports

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// tlsListener accepts TCP connections and completes their TLS handshakes
// itself, each in its own goroutine, before net/http sees them: HTTP/2
// connections (ALPN "h2") are returned as the *tls.Conn, which net/http
// hands to package h2 as before; HTTP/1.x ones are returned wrapped in an
// http1Conn, which checks request heads on the decrypted bytes. (With
// tls.NewListener, net/http would run the handshake and read HTTP/1.x
// from the *tls.Conn directly.)
type tlsListener struct {
	net.Listener // TCP
	conf         *tls.Config
	h1           *http1Config
	timeout      time.Duration // handshake timeout; 0: none
	logger       *slog.Logger

	conns     chan net.Conn
	done      chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	startOnce sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup // the accept loop and handshakes

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // handshaking
}

func newTLSListener(tcp net.Listener, conf *tls.Config, h1 *http1Config, timeout time.Duration, logger *slog.Logger) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &tlsListener{
		Listener: tcp, conf: conf, h1: h1, timeout: timeout, logger: logger,
		conns: make(chan net.Conn), done: make(chan struct{}), ctx: ctx, cancel: cancel,
		pending: map[net.Conn]struct{}{},
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *tlsListener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() {
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				_ = l.Close()
				return
			}
			// Out of file descriptors and the like: back off as net/http
			// does, up to a second.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.logger.Debug("accept failed; retrying", "error", err, "delay", delay)
			select {
			case <-time.After(delay):
				continue
			case <-l.done:
				return
			}
		}
		delay = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.pending[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handshake(c)
	}
}

// handshake completes the TLS handshake of c within the timeout and hands
// the connection to Accept.
func (l *tlsListener) handshake(c net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(c, l.conf)
	if l.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.timeout))
	}
	err := tc.HandshakeContext(l.ctx)
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	if err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		l.logger.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err)
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	var conn net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		conn = &http1TLSConn{http1Conn: newHTTP1Conn(tc, l.h1), tls: tc}
	}
	select {
	case l.conns <- conn:
	case <-l.done:
		_ = conn.Close()
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP/1 request, as net/http checks it.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// Close stops accepting and ends the handshakes in progress. Connections
// already returned are net/http's.
func (l *tlsListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
		l.cancel()
		close(l.done)
		err = l.Listener.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// wait waits for the accept loop and the handshakes to end, after Close.
func (l *tlsListener) wait() { l.wg.Wait() }
