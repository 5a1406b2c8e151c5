package transports

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The HTTP/1.1 lane serves the plain requests of the listener's HTTP/1.x
// connections itself, without net/http: a request in HTTP/1.1 with an
// origin-form target, one Host, no Expect, Upgrade or CONNECT, and no
// body or a Content-Length one (REST reads and writes, cache hits, SSE
// and streams, gRPC-Web and Connect unary calls). Such a request costs
// net/http a goroutine and three or four deadline changes for its
// background read (which ends the request's context when the client goes
// away); the lane watches the connection only when something asks for
// that: when the request's context is waited on (Done, or a child
// context) and the request still runs watchDelay later, once its body
// has been read. A cache hit or a quick upstream call pays for neither.
// A body its handler leaves unread is read and dropped up to 256 KiB (as
// net/http does); with more left, the answer closes the connection.
//
// Empty lines before a request line are ignored, as RFC 9112 §2.2 says a
// server should (net/http ignores them only after a POST).
//
// Any other request, and everything after it on the connection, is handed
// to net/http with the head still buffered in the http1Conn, which hands
// it on as it does for connections net/http reads from the start: a
// connection is served by the lane until its first request the lane does
// not take. Refused heads, h2c prefaces, HTTP/1.0, chunked bodies,
// Expect: 100-continue and upgrades all go that way, so net/http stays
// the reference for every answer but the plain ones.

// lane serves HTTP/1.1 connections of one listener.
type lane struct {
	s       *Server
	handler http.Handler
	handoff *handoffListener

	mu      sync.Mutex
	conns   map[*laneConn]struct{}
	closing atomic.Bool
	wg      sync.WaitGroup
}

func newLane(s *Server, h http.Handler, handoff *handoffListener) *lane {
	return &lane{s: s, handler: h, handoff: handoff, conns: map[*laneConn]struct{}{}}
}

// laneConn is one connection the lane serves.
type laneConn struct {
	l    *lane
	nc   net.Conn // what net/http gets on hand-off: the http1Conn or http1TLSConn
	hc   *http1Conn
	tls  *tls.ConnectionState
	idle atomic.Bool // waiting for a request with nothing buffered
	peer string      // the client's address, as Request.RemoteAddr

	// The background read that ends a request's context when the client
	// goes away (started by reqCtx.watch).
	watching bool
	watchWG  sync.WaitGroup
	reqStart time.Time
	// watchTimer starts the background read of the request in cur
	// watchDelay after its context is first waited on: one timer per
	// connection, reset per request.
	watchTimer *time.Timer
	cur        atomic.Pointer[reqCtx]

	// Per request, reused: the Request WithContext copies into the
	// request's exchange.
	tmpl http.Request
}

// serve serves conn until it ends or is handed to net/http.
func (l *lane) serve(nc net.Conn) {
	lc := &laneConn{l: l, nc: nc, hc: nc.(http1Gated).gate(), peer: nc.RemoteAddr().String()}
	if tc, ok := nc.(*http1TLSConn); ok {
		st := tc.tls.ConnectionState()
		lc.tls = &st
	}
	if !l.add(lc) {
		_ = nc.Close()
		return
	}
	lc.watchTimer = time.AfterFunc(time.Hour, lc.fireWatch)
	lc.watchTimer.Stop()
	defer lc.watchTimer.Stop()
	first := true
	for {
		next, handoff := lc.serveOne(first)
		first = false
		if next {
			continue
		}
		l.remove(lc)
		if handoff {
			lc.hc.state.Store(int32(http.StateNew))
			l.handoff.give(nc)
		} else {
			_ = lc.closeConn()
		}
		return
	}
}

func (l *lane) add(lc *laneConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return false
	}
	l.conns[lc] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *lane) remove(lc *laneConn) {
	l.mu.Lock()
	delete(l.conns, lc)
	l.mu.Unlock()
	l.wg.Done()
}

// shutdown closes the idle connections and waits for the others to end
// their request, until ctx ends; then it closes them too.
func (l *lane) shutdown(ctx context.Context) error {
	// closing is set under mu, as add reads it: an add either finished
	// its wg.Add before this or sees closing and adds nothing, so no
	// wg.Add races the Wait below.
	l.mu.Lock()
	l.closing.Store(true)
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		l.mu.Lock()
		for lc := range l.conns {
			if lc.idle.Load() {
				_ = lc.nc.Close()
			}
		}
		l.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			l.mu.Lock()
			for lc := range l.conns {
				_ = lc.nc.Close()
			}
			l.mu.Unlock()
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeConn closes the connection after a response that ends it: the
// write side first, so that the client reads the response before the
// close.
func (lc *laneConn) closeConn() error {
	_ = lc.hc.CloseWrite()
	return lc.nc.Close()
}

// headState is what waiting for a head ended with.
type headState uint8

const (
	headReady   headState = iota // a checked head is buffered
	headHandoff                  // net/http must read what is buffered (a refusal, a partial head)
	headClosed                   // the connection ended or timed out between requests
)

// readHead waits until the next head is buffered whole and checked, as
// http1Conn.readHead does, without handing it on.
func (lc *laneConn) readHead() headState {
	hc := lc.hc
	cfg := lc.l.s.cfg
	for {
		if hc.r < hc.w {
			done, e := hc.head.scan(hc.buf[hc.r:hc.w], hc.cfg.limits)
			switch {
			case e != nil:
				hc.refusal, hc.mode = e, modeRefuse
				return headHandoff
			case done:
				return headReady
			}
		}
		if hc.err != nil {
			if hc.r < hc.w {
				return headHandoff // net/http answers an incomplete head if it can
			}
			return headClosed
		}
		if hc.r == hc.w {
			if lc.l.closing.Load() {
				return headClosed
			}
			// Between requests: the idle timeout (else the read timeout)
			// bounds the wait, as in net/http.
			idle := time.Duration(cfg.IdleTimeout)
			if idle <= 0 {
				idle = time.Duration(cfg.ReadTimeout)
			}
			var dl time.Time
			if idle > 0 {
				dl = time.Now().Add(idle)
			}
			_ = hc.Conn.SetReadDeadline(dl)
			lc.idle.Store(true)
			if lc.l.closing.Load() {
				lc.idle.Store(false)
				return headClosed
			}
			// The next request is rarely there yet when the answer has
			// just been written, and a read finding nothing costs a
			// syscall (EAGAIN) before the poller waits. Letting the
			// goroutines ready to run go first gives the client that
			// time: under load, two reads in three find the request
			// (1.96 reads per request become 1.23, and a cache hit
			// costs 10% less CPU); alone, it returns at once.
			runtime.Gosched()
		} else if hc.started.IsZero() {
			// A head has begun: read_header_timeout counts from its first
			// byte.
			hc.started = time.Now()
			var dl time.Time
			if hc.cfg.readHeaderTimeout > 0 {
				dl = hc.started.Add(hc.cfg.readHeaderTimeout)
			}
			_ = hc.Conn.SetReadDeadline(dl)
		}
		err := hc.fill()
		lc.idle.Store(false)
		if err != nil {
			return headClosed // the idle or the head timeout
		}
	}
}

// serveOne reads the next request and serves it. next: serve another;
// else handoff says whether net/http takes the connection (the head
// still buffered) or it ends.
func (lc *laneConn) serveOne(first bool) (next, handoff bool) {
	hc := lc.hc
	hc.state.Store(int32(http.StateIdle))
	switch lc.readHead() {
	case headHandoff:
		return false, true
	case headClosed:
		return false, false
	}
	h := &hc.head
	if h.pri && !first {
		// An HTTP/2 preface after HTTP/1 requests: refused as net/http
		// would refuse it on a connection it read from the start.
		hc.refusal, hc.mode = errPreface, modeRefuse
		return false, true
	}
	if !h.laneTakes() {
		return false, true
	}
	start := time.Now()
	req, ok := lc.parse(hc.buf[hc.r+h.lead : hc.r+h.off])
	if !ok {
		return false, true
	}
	// The head is the lane's: consume it.
	cl := max(h.cl, 0)
	hc.r += h.off
	h.reset()
	hc.started = time.Time{}
	if hc.r == hc.w && hc.err == nil {
		hc.releaseBuffer()
	}
	hc.state.Store(int32(http.StateActive))
	if wt := time.Duration(lc.l.s.cfg.WriteTimeout); wt > 0 {
		_ = hc.Conn.SetWriteDeadline(start.Add(wt))
	}
	lc.reqStart = start
	ex := &exchange{}
	ex.ctx.init(lc)
	lc.cur.Store(&ex.ctx)
	if cl > 0 {
		// The body is read as the handler asks for it, within
		// read_timeout; the idle deadline the head was waited with no
		// longer applies.
		var dl time.Time
		if rt := time.Duration(lc.l.s.cfg.ReadTimeout); rt > 0 {
			dl = start.Add(rt)
		}
		_ = hc.Conn.SetReadDeadline(dl)
		ex.body.x = &ex.ctx
		ex.body.remain.Store(cl)
		ex.ctx.bodyOpen = true
		req.Body, req.ContentLength = &ex.body, cl
	}
	// WithContext's copy, inlined, stays on the stack: the request lives
	// in the exchange, one allocation with its context and writer.
	ex.req = *req.WithContext(&ex.ctx)
	req = &ex.req
	ex.w.init(lc, req)
	if cl > 0 {
		ex.w.reqBody = &ex.body
	}
	if !lc.run(&ex.w, req) {
		ex.ctx.cancel()
		lc.stopWatch()
		ex.w.release()
		return false, false
	}
	ex.w.finish()
	ex.ctx.cancel()
	lc.stopWatch()
	lc.cur.Store(nil)
	ex.w.release()
	if ex.w.closeAfter || lc.l.closing.Load() {
		return false, false
	}
	if cl > 0 && !ex.body.discard() {
		return false, false
	}
	if hc.err != nil && hc.r == hc.w {
		return false, false
	}
	return true, false
}

// laneTakes reports whether the lane may serve the request of a scanned
// head: no body or a Content-Length one (not chunked), no upgrade,
// HTTP/1.1 (parse checks the rest).
func (h *headScan) laneTakes() bool {
	return !h.pri && !h.connect && !h.upgrade && !h.http10 && h.te == 0
}

// exchange is one request's context, body and response writer, allocated
// together.
type exchange struct {
	ctx  reqCtx
	w    laneResponse
	body laneBody
	req  http.Request
}

// maxDiscard is how much of a body its handler left unread the lane reads
// and drops to keep the connection (net/http's 256 KiB); with more left,
// the answer closes the connection.
const maxDiscard = 256 << 10

// laneBody is a request body of Content-Length bytes, read from the
// connection as the handler asks (bytes that came with the head first).
// Read is not safe for concurrent use, as any io.Reader.
type laneBody struct {
	x      *reqCtx
	remain atomic.Int64
	err    error       // the reader's
	failed atomic.Bool // err is set: what is left will not come
	closed atomic.Bool
}

// Read reads body bytes; a connection that ends before the body does is
// io.ErrUnexpectedEOF.
func (b *laneBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	left := b.remain.Load()
	if left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	hc := b.x.lc.hc
	var n int
	var err error
	switch {
	case hc.r < hc.w:
		n = copy(p, hc.buf[hc.r:hc.w])
		hc.r += n
	case hc.err != nil:
		err = hc.err
	default:
		n, err = hc.Conn.Read(p)
	}
	if b.remain.Add(-int64(n)) == 0 {
		b.x.bodyRead()
		return n, nil
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
		b.failed.Store(true)
		hc.err = err
	}
	return n, err
}

// Close marks the body closed; what is left is dropped after the handler
// returns (or closes the connection).
func (b *laneBody) Close() error {
	b.closed.Store(true)
	return nil
}

// discard reads what the handler left of the body, up to maxDiscard,
// within a short deadline; false: the connection must close.
func (b *laneBody) discard() bool {
	left := b.remain.Load()
	if left == 0 {
		return true
	}
	if left > maxDiscard || b.failed.Load() {
		return false
	}
	hc := b.x.lc.hc
	_ = hc.Conn.SetReadDeadline(time.Now().Add(discardTimeout))
	b.closed.Store(false)
	_, err := io.CopyN(io.Discard, b, left)
	return err == nil
}

// discardTimeout bounds reading the rest of an unread body.
const discardTimeout = 5 * time.Second

// run calls the handler; false when it panicked (the connection is then
// closed without an answer, as net/http does).
func (lc *laneConn) run(w *laneResponse, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				lc.l.s.logger.Error("http: panic serving "+lc.peer,
					"panic", fmt.Sprint(v), "stack", string(buf))
			}
		}
	}()
	lc.l.handler.ServeHTTP(w, req)
	return true
}

// parse builds the Request of a checked head (without its leading CR and
// LF bytes), or reports that the lane does not take it. Every string of
// the request (target, header keys that come canonical, values) is a
// slice of one copy of the head.
func (lc *laneConn) parse(head []byte) (*http.Request, bool) {
	s := string(head)
	eol := strings.IndexByte(s, '\n')
	line := strings.TrimSuffix(s[:eol], "\r")
	sp1 := strings.IndexByte(line, ' ')
	method, rest := line[:sp1], line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	target, version := rest[:sp2], rest[sp2+1:]
	if version != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return nil, false
	}
	fields := lc.hc.head.fields
	hdr := make(http.Header, fields)
	vals := make([]string, fields)
	var host string
	hosts, k := 0, 0
	for s = s[eol+1:]; ; {
		eol = strings.IndexByte(s, '\n')
		line, s = strings.TrimSuffix(s[:eol], "\r"), s[eol+1:]
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		key, value := canonicalKey(line[:colon]), textproto.TrimString(line[colon+1:])
		switch key {
		case "Host":
			host, hosts = value, hosts+1
			continue
		case "Expect":
			return nil, false // 100-continue and friends: net/http's
		case "Content-Length":
			// Repeated, it must be the same text each time (the scan only
			// checked the numbers): kept once, as net/http keeps it;
			// otherwise net/http answers 400.
			if vv, ok := hdr[key]; ok {
				if vv[0] != value {
					return nil, false
				}
				continue
			}
		}
		if vv, ok := hdr[key]; ok {
			hdr[key] = append(vv, value)
			continue
		}
		vals[k] = value
		hdr[key] = vals[k : k+1 : k+1]
		k++
	}
	if hosts != 1 || !httpguts.ValidHostHeader(host) {
		return nil, false // net/http answers 400
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	// As net/http: "Pragma: no-cache" alone means "Cache-Control: no-cache".
	if pv, ok := hdr["Pragma"]; ok && len(pv) > 0 && pv[0] == "no-cache" {
		if _, ok := hdr["Cache-Control"]; !ok {
			hdr["Cache-Control"] = []string{"no-cache"}
		}
	}
	r := &lc.tmpl
	*r = http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Body:       http.NoBody,
		Host:       host,
		RemoteAddr: lc.peer,
		RequestURI: target,
		TLS:        lc.tls,
		Close:      httpguts.HeaderValuesContainsToken(hdr["Connection"], "close"),
	}
	return r, true
}

// fireWatch is the watch timer's: it starts watching for the current
// request (which checks that it asked).
func (lc *laneConn) fireWatch() {
	if x := lc.cur.Load(); x != nil {
		x.watch()
	}
}

// startWatch starts the background read for x: a client that closes the
// connection (or resets it) while the handler runs ends x. Called with
// x.mu held, at most once per request.
func (lc *laneConn) startWatch(x *reqCtx) {
	hc := lc.hc
	if hc.err != nil || hc.r < hc.w {
		// Gone already, or pipelined bytes wait: nothing to watch, as in
		// net/http once the next request has begun.
		if hc.err != nil && !isTimeout(hc.err) {
			go x.cancel()
		}
		return
	}
	var dl time.Time
	if rt := time.Duration(lc.l.s.cfg.ReadTimeout); rt > 0 {
		dl = lc.reqStart.Add(rt)
	}
	_ = hc.Conn.SetReadDeadline(dl)
	lc.watching = true
	lc.watchWG.Add(1)
	go lc.watch(x)
}

// watch is the background read: bytes (the next request, pipelined) are
// kept for the next head; an end of file or error ends x.
func (lc *laneConn) watch(x *reqCtx) {
	defer lc.watchWG.Done()
	hc := lc.hc
	before := hc.w
	_ = hc.fill() // a timeout is stopWatch's
	if hc.err != nil && hc.w == before {
		x.cancel() // the client closed or reset the connection
	}
}

// stopWatch ends the background read, if one runs, and waits for it.
func (lc *laneConn) stopWatch() {
	if !lc.watching {
		return
	}
	lc.watching = false
	_ = lc.hc.Conn.SetReadDeadline(aLongTimeAgo)
	lc.watchWG.Wait()
}

// aLongTimeAgo is a deadline that has passed: it ends a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// handoffListener is the listener net/http serves: the connections (or
// the rest of them) the lane does not serve.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next connection handed to net/http.
func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// give hands c to net/http; after Close, it closes c.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// Close ends Accept (net/http's Shutdown calls it).
func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the listener's TCP address.
func (l *handoffListener) Addr() net.Addr { return l.addr }

// acceptLoop accepts the listener's connections: HTTP/1.x ones go to the
// lane, the others (HTTP/2 by ALPN) straight to net/http.
func (s *Server) acceptLoop() error {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off as net/http
			// does, up to a second.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logger.Debug("accept failed; retrying", "error", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if _, ok := c.(http1Gated); ok {
			go s.lane.serve(c)
			continue
		}
		s.handoff.give(c)
	}
}
