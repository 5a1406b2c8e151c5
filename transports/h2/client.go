package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ClientOptions configure [Dial].
type ClientOptions struct {
	// TLS, when set, runs the connection over TLS with ALPN "h2";
	// otherwise it is prior-knowledge h2c.
	TLS *tls.Config
	// Limits are what this side enforces on the server.
	Limits Limits
	// PingInterval sends a PING after this long without a frame from the
	// server, and PingTimeout closes the connection when the answer does
	// not come within it (defaults 30s and 15s).
	PingInterval, PingTimeout time.Duration
	// Logger receives connection errors at Debug (nil: discard).
	Logger *slog.Logger
}

// ClientConn is the client side of one HTTP/2 connection, carrying
// streams opened with [ClientConn.NewStream]. It is safe for concurrent
// use.
type ClientConn struct {
	c        *conn
	nextID   uint32 // guarded by c.mu
	pingSent bool   // guarded by c.mu
	opts     ClientOptions
	timer    *time.Timer
	seen     uint64 // frames count at the last keepalive check (timer goroutine only)
}

// Dial connects to addr, sends the preface and waits for the server's
// SETTINGS, bounded by ctx.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*ClientConn, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = 15 * time.Second
	}
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		cfg.NextProtos = []string{"h2"}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			_ = tc.Close()
			return nil, fmt.Errorf("%s did not negotiate HTTP/2 over TLS (ALPN %q)", addr, p)
		}
		nc = tc
	}
	c := newConn(nc, true, opts.Limits, logger)
	cc := &ClientConn{c: c, nextID: 1, opts: opts}
	c.cli = cc
	c.out = append(c.out, clientPreface...)
	c.writeInitialSettings()
	go c.writeLoop()
	c.wake()
	go c.readLoop()
	select {
	case <-c.settingsCh:
	case <-c.done:
		return nil, fmt.Errorf("%s closed the connection before its HTTP/2 SETTINGS", addr)
	case <-ctx.Done():
		_ = nc.Close()
		<-c.done
		return nil, ctx.Err()
	}
	// The timer is set under c.mu, which keepalive and teardown take
	// before they read it (the reading goroutine runs already).
	c.mu.Lock()
	cc.timer = time.AfterFunc(opts.PingInterval, cc.keepalive)
	c.mu.Unlock()
	return cc, nil
}

// keepalive pings a connection that has been silent for PingInterval
// and closes it when the ping is not answered in PingTimeout.
func (cc *ClientConn) keepalive() {
	c := cc.c
	n := c.frames.Load()
	c.mu.Lock()
	timer := cc.timer
	if c.closed {
		c.mu.Unlock()
		return
	}
	if n != cc.seen {
		cc.seen = n
		cc.pingSent = false
		c.mu.Unlock()
		timer.Reset(cc.opts.PingInterval)
		return
	}
	if cc.pingSent {
		c.mu.Unlock()
		c.logger.Debug("http2 ping unanswered; closing", "remote", c.nc.RemoteAddr().String())
		_ = c.nc.Close()
		return
	}
	cc.pingSent = true
	c.out = appendPing(c.out, false, [8]byte{'k', 'e', 'e', 'p', 'a', 'l', 'v', 'e'})
	c.mu.Unlock()
	c.wake()
	timer.Reset(cc.opts.PingTimeout)
}

func (cc *ClientConn) teardown() {
	cc.c.mu.Lock()
	timer := cc.timer
	cc.c.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
}

// ErrUnavailable is returned by NewStream on a connection that takes no
// new streams (closed, going away or at the server's stream limit).
var ErrUnavailable = errors.New("http2 connection takes no new streams")

// Available reports whether NewStream would likely succeed.
func (cc *ClientConn) Available() bool {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return cc.availableLocked()
}

func (cc *ClientConn) availableLocked() bool {
	c := cc.c
	return !c.closed && !c.closing && !c.goAwayRecv && uint32(len(c.streams)) < c.peerStreams && cc.nextID < maxWindow
}

// Streams returns the number of open streams.
func (cc *ClientConn) Streams() int {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
}

// Done is closed when the connection has closed.
func (cc *ClientConn) Done() <-chan struct{} { return cc.c.done }

// Close closes the connection; its streams end with [ErrConnClosed].
func (cc *ClientConn) Close() error {
	err := cc.c.nc.Close()
	<-cc.c.done
	return err
}

// NewStream opens a stream with the request header block fields
// (pseudo-fields first); end means the request has no body. Events
// receive the response. creditTo, when not nil, is set as with
// [Stream.SetCreditTo] before any frame is written, so the HEADERS join
// the batch of creditTo's connection.
func (cc *ClientConn) NewStream(fields []hpack.HeaderField, end bool, ev Events, creditTo *Stream) (*Stream, error) {
	c := cc.c
	c.mu.Lock()
	if !cc.availableLocked() {
		c.mu.Unlock()
		return nil, ErrUnavailable
	}
	id := cc.nextID
	cc.nextID += 2
	s := c.newStreamLocked(id)
	s.events = ev
	s.creditTo = creditTo
	c.encodeHeadersLocked(id, fields, end)
	s.sentHeaders = true
	s.sentEnd = end
	c.mu.Unlock()
	c.kick(s.src())
	return s, nil
}

// onHeaders handles a response header block.
func (cc *ClientConn) onHeaders(f *http2.MetaHeadersFrame) (http2.ErrCode, string) {
	c := cc.c
	id := f.StreamID
	if id%2 == 0 {
		return http2.ErrCodeProtocol, "server stream IDs are not used"
	}
	c.mu.Lock()
	s := c.streams[id]
	if s == nil {
		idle := c.isIdle(id)
		c.mu.Unlock()
		if idle {
			return http2.ErrCodeProtocol, "HEADERS on an idle stream"
		}
		return http2.ErrCodeNo, "" // a stream we reset
	}
	if s.recvEnd {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return http2.ErrCodeNo, ""
	}
	if f.Truncated {
		// Over MAX_HEADER_LIST_SIZE: the block cannot be delivered whole.
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeProtocol)
		return http2.ErrCodeNo, ""
	}
	status := f.PseudoValue("status")
	if s.recvLen == 0 && !s.gotResponse {
		if status == "" || f.PseudoValue("method") != "" {
			c.mu.Unlock()
			c.resetStream(id, http2.ErrCodeProtocol)
			return http2.ErrCodeNo, ""
		}
		if len(status) == 3 && status[0] == '1' && status != "101" {
			// Informational; the final response follows.
			c.mu.Unlock()
			return http2.ErrCodeNo, ""
		}
		s.gotResponse = true
	} else if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeProtocol)
		return http2.ErrCodeNo, ""
	}
	end := f.StreamEnded()
	if end {
		s.recvEnd = true
		c.maybeCloseLocked(s)
	}
	ev := s.events
	c.mu.Unlock()
	if ev != nil {
		ev.Headers(s, f.Fields, end)
	}
	return http2.ErrCodeNo, ""
}
