package transports

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/transports/headlimit"
)

// HTTP/1.1 request heads are checked on the connection, before net/http
// parses them: see http1Conn.
const (
	// answerTimeout bounds writing the answer to a refused head.
	answerTimeout = 5 * time.Second
	// lingerTimeout and lingerBytes bound how long and how much a
	// connection closed after a refusal reads what the client still sends,
	// so that the close does not reset the connection under the answer
	// (RFC 9112 §9.6).
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 1 << 20
	// headBufferSize is the first size of the buffer a head is read into;
	// buffers of this size are pooled.
	headBufferSize = 4 << 10
)

var headBuffers = sync.Pool{New: func() any { b := make([]byte, headBufferSize); return &b }}

// http1Config is what the HTTP/1.x connections of one listener share.
type http1Config struct {
	limits            headlimit.Limits // all set (positive)
	readHeaderTimeout time.Duration    // 0: none
	h2c               bool             // cleartext: an HTTP/2 preface is handed on
	logger            *slog.Logger
}

// maxHead is the most a head that passes the limits can take.
func (cfg *http1Config) maxHead() int {
	return maxLeadingCRLF + cfg.limits.MaxURIBytes + requestLineSlack + 2 + cfg.limits.MaxHeaderBytes + 2
}

// http1Conn is an HTTP/1.x connection as net/http reads it. It reads each
// request head itself, checks it (limits, control characters in the
// target, request smuggling: see headScan) and only then lets net/http
// read it; a head it refuses never reaches net/http, let alone a handler:
// it answers with a status and a plain-text reason and closes the
// connection, the rest of the head being unread. After a head it follows
// the body's framing (Content-Length, chunked), letting net/http read no
// further than the body's end, so that it sees every head of the
// connection. A connection that is upgraded (hijacked) or that carries
// HTTP/2 (h2c) is passed through untouched.
//
// net/http reads from one goroutine at a time; Read is not safe for
// concurrent use. net/http reports the connection's state through the
// server's ConnState hook ([http1Conn.setState]); the state tells a read
// for the next request (idle) from one made while a handler runs (active),
// when nothing must be written.
type http1Conn struct {
	net.Conn
	cfg   *http1Config
	state atomic.Int32 // the http.ConnState net/http last reported

	// Read's, one goroutine at a time.
	buf      []byte  // buf[r:w] was read from the client and is not yet handed on
	pooled   *[]byte // buf's pool entry, nil when buf is not pooled
	r, w     int
	mode     readMode
	head     headScan
	headLeft int      // modeRelease: head bytes left to hand on
	body     readMode // the mode after the head: modeBody, modeChunked or next
	next     readMode // the mode after the body
	remain   int64    // modeBody: body bytes left
	chunks   chunkScan
	refusal  *headlimit.Error
	err      error     // a read error, returned once the bytes before it are handed on
	started  time.Time // when the head being read began to arrive

	dlMu      sync.Mutex
	deadline  time.Time     // the read deadline net/http set
	ownDL     time.Time     // the earlier one Read set while a head arrives, or zero
	wake      chan struct{} // signaled when the read deadline changes or the connection closes
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	answered  atomic.Bool // a refusal was written: linger on close
}

// readMode is what the next bytes of an http1Conn are.
type readMode uint8

const (
	modeHead    readMode = iota // a request head: read, checked, then handed on
	modeRelease                 // a checked head being handed on
	modeBody                    // Content-Length body bytes
	modeChunked                 // a chunked body
	modeUpgrade                 // after an Upgrade or CONNECT request: upgraded or not yet known
	modeOpaque                  // not HTTP/1: hijacked, or HTTP/2 after its preface
	modeRefuse                  // a refused head, answered when net/http reads for it
	modeDead                    // nothing more: end of file
)

func newHTTP1Conn(c net.Conn, cfg *http1Config) *http1Conn {
	hc := &http1Conn{Conn: c, cfg: cfg, wake: make(chan struct{}, 1)}
	hc.head.reset()
	return hc
}

// http1TLSConn is an http1Conn over TLS. net/http takes Request.TLS from
// its ConnectionState.
type http1TLSConn struct {
	*http1Conn
	tls *tls.Conn
}

// ConnectionState returns the TLS connection's state.
func (c *http1TLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// http1Gated is what the ConnState hook looks for.
type http1Gated interface{ gate() *http1Conn }

func (c *http1Conn) gate() *http1Conn { return c }

// connState is the http.Server's ConnState hook.
func connState(c net.Conn, st http.ConnState) {
	if g, ok := c.(http1Gated); ok {
		g.gate().state.Store(int32(st))
	}
}

// Read hands on the connection's bytes as net/http may read them.
func (c *http1Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf != nil && c.r == c.w && c.mode != modeHead {
		c.releaseBuffer()
	}
	for {
		switch st := http.ConnState(c.state.Load()); {
		case c.mode < modeOpaque && st == http.StateHijacked:
			c.mode = modeOpaque
		case st == http.StateIdle && (c.mode == modeChunked || c.mode == modeBody && c.remain > 0):
			// net/http is done with a request whose body has not ended
			// here: the two disagree on where the next head starts (or
			// net/http gave up on a malformed body and keeps the
			// connection). Nothing more can be checked.
			c.cfg.logger.Debug("http/1.1 body framing disagreement; closing", "remote", c.RemoteAddr().String())
			c.mode = modeDead
		}
		switch c.mode {
		case modeHead:
			return c.readHead(p)
		case modeRelease:
			n := copy(p[:min(len(p), c.headLeft)], c.buf[c.r:c.w])
			c.r += n
			if c.headLeft -= n; c.headLeft == 0 {
				c.mode = c.body
				c.head.reset()
			}
			return n, nil
		case modeBody:
			if c.remain == 0 {
				c.mode = c.next
				continue
			}
			n, err := c.readUpTo(p[:min(int64(len(p)), c.remain)])
			if c.remain -= int64(n); c.remain == 0 {
				c.mode = c.next
			}
			return n, err
		case modeChunked:
			return c.readChunked(p)
		case modeUpgrade:
			switch http.ConnState(c.state.Load()) {
			case http.StateActive:
				// The handler has not said yet whether it upgrades: what
				// comes may be the upgraded stream or the next request.
				// Read nothing until net/http, hijacking or going idle,
				// ends this (background) read with a deadline.
				return 0, c.waitDeadline()
			case http.StateIdle:
				c.mode = modeHead // not upgraded: HTTP/1.1 goes on
				continue
			}
			return c.readUpTo(p)
		case modeOpaque:
			return c.readUpTo(p)
		case modeRefuse:
			return c.readRefused()
		default:
			return 0, io.EOF
		}
	}
}

// readUpTo reads buffered bytes first, then from the connection.
func (c *http1Conn) readUpTo(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

// readHead reads a request head whole, checks it, and starts handing it
// on.
func (c *http1Conn) readHead(p []byte) (int, error) {
	for {
		if c.r < c.w {
			done, e := c.head.scan(c.buf[c.r:c.w], c.cfg.limits)
			if e == nil && done && c.head.pri {
				done, e = c.preface()
			}
			switch {
			case e != nil:
				c.refusal, c.mode = e, modeRefuse
				return c.readRefused()
			case done:
				c.startBody()
				return c.Read(p)
			}
		}
		if c.err != nil {
			// The connection ended inside a head: net/http gets the
			// incomplete head (it answers 400 if it can) and the error.
			c.mode = modeOpaque
			return c.readUpTo(p)
		}
		active := http.ConnState(c.state.Load()) == http.StateActive
		if !active && c.r < c.w && c.started.IsZero() {
			c.started = time.Now()
		}
		if !active && !c.started.IsZero() {
			c.headDeadline()
		}
		if err := c.fill(); err != nil {
			return 0, err // the head goes on being read at the next call
		}
	}
}

// fill reads what the connection has into the buffer. A read error is
// kept in c.err, to be returned once the bytes before it are handed on;
// a timeout with nothing read is returned.
func (c *http1Conn) fill() error {
	c.grow()
	n, err := c.Conn.Read(c.buf[c.w:])
	c.w += n
	switch {
	case err == nil:
	case !isTimeout(err):
		c.err = err
	case n == 0:
		return err
	}
	return nil
}

// preface checks what follows a "PRI * HTTP/2.0" head: the rest of the
// HTTP/2 connection preface on a cleartext listener, and then hands the
// connection on untouched (net/http gives it to package h2). Anything else
// is refused.
func (c *http1Conn) preface() (done bool, e *headlimit.Error) {
	const rest = "SM\r\n\r\n"
	if !c.cfg.h2c {
		return false, errPreface
	}
	b := c.buf[c.r+c.head.off : c.w]
	n := min(len(b), len(rest))
	switch {
	case string(b[:n]) != rest[:n]:
		return false, errPreface
	case n < len(rest) && c.err != nil:
		return false, errPreface
	}
	return n == len(rest), nil
}

// startBody starts handing on a checked head, and sets what follows it.
func (c *http1Conn) startBody() {
	h := &c.head
	c.mode, c.headLeft = modeRelease, h.off
	c.restoreDeadline()
	switch {
	case h.chunked:
		c.body, c.chunks = modeChunked, chunkScan{}
	case h.cl > 0:
		c.body, c.remain = modeBody, h.cl
	default:
		c.body = modeBody // empty: straight to next
		c.remain = 0
	}
	switch {
	case h.pri:
		c.next = modeOpaque
	case h.connect || h.upgrade:
		c.next = modeUpgrade
	default:
		c.next = modeHead
	}
}

// readChunked hands on a chunked body, up to its end.
func (c *http1Conn) readChunked(p []byte) (int, error) {
	buffered := c.r < c.w
	n, err := c.readUpTo(p)
	end, bad := c.chunks.scan(p[:n])
	switch {
	case bad >= 0:
		// net/http's reader fails at the same byte, or earlier; nothing
		// after it can be trusted to be a head.
		c.mode = modeDead
		return bad, nil
	case end >= 0:
		c.unread(p[end:n], buffered)
		c.mode = c.next
		return end, nil
	}
	return n, err
}

// unread puts back b, bytes read past a body's end: the start of the next
// head. buffered says whether they came from c.buf.
func (c *http1Conn) unread(b []byte, buffered bool) {
	if len(b) == 0 {
		return
	}
	if buffered {
		c.r -= len(b)
		return
	}
	// The buffer was empty: the read went to the connection, with net/http's
	// buffer, which may be larger than a head buffer.
	if c.buf == nil {
		c.grow()
	}
	if len(c.buf) < len(b) {
		c.buf = make([]byte, len(b))
		c.putPooled()
	}
	c.r, c.w = 0, copy(c.buf, b)
}

// grow makes room in the buffer for a read: it takes a pooled buffer,
// moves unread bytes to its start, or doubles it, within what the limits
// let a head take.
func (c *http1Conn) grow() {
	if c.buf == nil {
		c.pooled = headBuffers.Get().(*[]byte)
		c.buf = *c.pooled
		return
	}
	if c.w < len(c.buf) {
		return
	}
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
		return
	}
	// The head scan refuses a head before it outgrows maxHead; the extra
	// room is for the bytes that come with it.
	nb := make([]byte, min(2*len(c.buf), c.cfg.maxHead()+headBufferSize))
	c.w = copy(nb, c.buf[c.r:c.w])
	c.r, c.buf = 0, nb
	c.putPooled()
}

// putPooled gives the pooled buffer back, once buf no longer uses it.
func (c *http1Conn) putPooled() {
	if c.pooled != nil {
		headBuffers.Put(c.pooled)
		c.pooled = nil
	}
}

// releaseBuffer returns the emptied buffer to the pool (a grown one to the
// collector).
func (c *http1Conn) releaseBuffer() {
	c.r, c.w = 0, 0
	c.buf = nil
	c.putPooled()
}

// readRefused answers a refused head and ends the connection; while a
// handler runs (net/http reading ahead), it waits instead, reading and
// discarding, until net/http stops it with a deadline: the answer must not
// cut into the response being written.
func (c *http1Conn) readRefused() (int, error) {
	if http.ConnState(c.state.Load()) == http.StateActive {
		c.r, c.w = 0, 0
		for {
			c.grow()
			if _, err := c.Conn.Read(c.buf[c.w:]); err != nil {
				return 0, err
			}
		}
	}
	e := c.refusal
	c.mode = modeDead
	c.cfg.logger.Debug("http/1.1 request refused at the edge", "remote", c.RemoteAddr().String(), "status", e.Status, "reason", e.Msg)
	body := e.Body()
	answer := "HTTP/1.1 " + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	_ = c.Conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	if _, err := io.WriteString(c.Conn, answer); err == nil {
		c.answered.Store(true)
	}
	return 0, io.EOF
}

// waitDeadline blocks until the read deadline passes, as a read that
// gets nothing would, or the connection closes.
func (c *http1Conn) waitDeadline() error {
	for {
		if c.closed.Load() {
			return net.ErrClosed
		}
		c.dlMu.Lock()
		dl := c.deadline
		c.dlMu.Unlock()
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			select {
			case <-c.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		<-c.wake
	}
}

// signal wakes a waitDeadline.
func (c *http1Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// headDeadline bounds the arrival of a head that has begun by the
// listener's read_header_timeout, counted from its first byte, as net/http
// bounds it: net/http's own deadline covers only the wait for that byte
// when the connection was idle, and Read takes the whole head in that
// wait.
func (c *http1Conn) headDeadline() {
	if c.cfg.readHeaderTimeout <= 0 {
		return
	}
	dl := c.started.Add(c.cfg.readHeaderTimeout)
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if !c.deadline.IsZero() && !dl.Before(c.deadline) || dl.Equal(c.ownDL) {
		return
	}
	c.ownDL = dl
	_ = c.Conn.SetReadDeadline(dl)
}

// restoreDeadline puts back net/http's read deadline once a head is in.
func (c *http1Conn) restoreDeadline() {
	c.started = time.Time{}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if !c.ownDL.IsZero() {
		c.ownDL = time.Time{}
		_ = c.Conn.SetReadDeadline(c.deadline)
	}
}

// SetReadDeadline sets the read deadline.
func (c *http1Conn) SetReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.deadline, c.ownDL = t, time.Time{}
	c.dlMu.Unlock()
	c.signal()
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets the read and write deadlines.
func (c *http1Conn) SetDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.deadline, c.ownDL = t, time.Time{}
	c.dlMu.Unlock()
	c.signal()
	return c.Conn.SetDeadline(t)
}

// CloseWrite half-closes the connection when the one below can, as
// net/http does before closing after an error.
func (c *http1Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection; after a refusal it first half-closes it
// and reads what the client still sends, for a short while, so that the
// client gets the answer before the connection goes.
func (c *http1Conn) Close() error {
	c.closed.Store(true)
	c.signal()
	c.closeOnce.Do(func() {
		if c.answered.Load() {
			_ = c.CloseWrite()
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			buf := make([]byte, 4096)
			for n := 0; n < lingerBytes; {
				k, err := c.Conn.Read(buf)
				if err != nil {
					break
				}
				n += k
			}
		}
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// isTimeout reports whether err is a deadline's (without allocating: a
// background read of every request ends that way).
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
