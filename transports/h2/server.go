package h2

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/transports/headlimit"
)

// Server serves HTTP/2 connections: every request stream goes to Handler
// in its own goroutine, unless Intercept takes it over first.
//
// Install it in a net/http server with [Server.ConfigureServer], which
// hands it the h2 (ALPN) and prior-knowledge h2c connections; HTTP/1.1
// stays with net/http.
type Server struct {
	// Handler serves the requests Intercept leaves.
	Handler http.Handler
	// Intercept, when set, sees each request's head as soon as its
	// HEADERS arrive, on the connection's reading goroutine (it must not
	// block). Returning non-nil Events takes the stream over: its frames
	// go to the Events and the Handler never sees it. Returning nil leaves
	// the request to the Handler.
	Intercept func(s *Stream, head *RequestHead) Events
	// Limits are what the server enforces on clients.
	Limits Limits
	// HeadLimits bound each request's head: the length of :path and
	// control characters in it (raw or percent-encoded in the path), and
	// the number and size of its regular header fields, counted as
	// [headlimit] does (split cookie fields count as one field). A request
	// over them is answered 414, 431 or 400 with a plain-text reason
	// before Intercept or the Handler sees it, and the rest of its body is
	// refused with RST_STREAM NO_ERROR; the connection serves on. Header
	// blocks over Limits.MaxHeaderListSize are not decoded past it: they
	// get 431 too, or, when the block goes on after that point, a
	// connection error, as x/net/http2 decides.
	HeadLimits headlimit.Limits
	// IdleTimeout closes a connection without streams for this long
	// (0: never).
	IdleTimeout time.Duration
	// PrefaceTimeout bounds the wait for the client's preface and first
	// SETTINGS (0: none).
	PrefaceTimeout time.Duration
	// ReadTimeout bounds receiving a whole request, from its HEADERS:
	// past it a handler's body reads fail with os.ErrDeadlineExceeded and
	// an intercepted stream is reset (CANCEL). WriteTimeout bounds the
	// whole response: past it the stream is reset (INTERNAL_ERROR), as
	// net/http's HTTP/2 server does. 0: none.
	ReadTimeout, WriteTimeout time.Duration
	// ExtendedConnect advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and
	// accepts extended CONNECT requests (RFC 8441: WebSocket over an
	// HTTP/2 stream). Their requests have Method CONNECT and the protocol
	// in the ":protocol" header, as net/http presents them; the handler's
	// ResponseWriter can Hijack the stream as a net.Conn.
	ExtendedConnect bool
	// Logger receives connection errors at Debug and handler panics at
	// Error (nil: discard).
	Logger *slog.Logger

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	draining bool
}

// RequestHead is a request's header block, validated: the pseudo-header
// fields by name and the regular fields as received (lower-case names).
type RequestHead struct {
	Method, Scheme, Authority, Path string
	// Protocol is the ":protocol" of an extended CONNECT (RFC 8441).
	Protocol string
	// Fields are the regular header fields in order.
	Fields []hpack.HeaderField
	// EndStream is true when the request has no body.
	EndStream bool
	// ContentLength is the declared body length, -1 when not declared.
	ContentLength int64
	// Context is the connection's context; RemoteAddr and TLS describe it.
	Context    context.Context
	RemoteAddr string
	// Peer is RemoteAddr parsed (an IPv4-mapped address unmapped), once
	// per connection; zero when RemoteAddr is not an IP address and port.
	Peer netip.AddrPort
	TLS  *tls.ConnectionState
}

// Get returns the first value of the regular field name (lower case).
func (h *RequestHead) Get(name string) string {
	for _, f := range h.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// ConfigureServer makes hs hand its HTTP/2 connections to s: those that
// negotiate "h2" by ALPN and, when hs allows unencrypted HTTP/2, those
// that open with the prior-knowledge preface. Shutting hs down sends
// GOAWAY on them and waits for their streams.
func (s *Server) ConfigureServer(hs *http.Server) {
	if hs.TLSNextProto == nil {
		hs.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	hs.TLSNextProto["h2"] = func(_ *http.Server, tc *tls.Conn, h http.Handler) {
		st := tc.ConnectionState()
		s.ServeConn(tc, ConnOptions{Context: baseContext(h), TLS: &st})
	}
	hs.TLSNextProto["unencrypted_http2"] = func(_ *http.Server, tc *tls.Conn, h http.Handler) {
		u, ok := tc.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			_ = tc.Close()
			return
		}
		// net/http has read the preface to recognise the connection.
		s.ServeConn(u.UnencryptedNetConn(), ConnOptions{Context: baseContext(h), SawPreface: true})
	}
	hs.RegisterOnShutdown(s.Shutdown)
}

func baseContext(h http.Handler) context.Context {
	if b, ok := h.(interface{ BaseContext() context.Context }); ok {
		return b.BaseContext()
	}
	return context.Background()
}

// ConnOptions describe one connection given to [Server.ServeConn].
type ConnOptions struct {
	// Context is the parent of the connection's request contexts.
	Context context.Context
	// TLS is the connection's TLS state (nil: cleartext).
	TLS *tls.ConnectionState
	// SawPreface is true when the client preface was already read.
	SawPreface bool
}

// ServeConn serves one connection until it closes.
func (s *Server) ServeConn(nc net.Conn, opts ConnOptions) {
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newConn(nc, false, s.Limits, logger)
	c.extendedConnect = s.ExtendedConnect
	sc := &serverConn{s: s, c: c, ctx: ctx, tls: opts.TLS, remote: nc.RemoteAddr().String()}
	if ap, err := netip.ParseAddrPort(sc.remote); err == nil {
		sc.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	c.srv = sc

	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*serverConn]struct{}{}
	}
	s.conns[sc] = struct{}{}
	draining := s.draining
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()
	if draining {
		_ = nc.Close()
		return
	}

	if s.PrefaceTimeout > 0 {
		_ = nc.SetReadDeadline(time.Now().Add(s.PrefaceTimeout))
	}
	if !opts.SawPreface {
		buf := make([]byte, len(clientPreface))
		if _, err := io.ReadFull(c.br, buf); err != nil || string(buf) != clientPreface {
			logger.Debug("http2: bad client preface", "remote", sc.remote)
			_ = nc.Close()
			return
		}
	}
	c.writeInitialSettings()
	if s.IdleTimeout > 0 {
		sc.idleSince = time.Now()
		sc.idleTimer = time.AfterFunc(s.IdleTimeout, sc.checkIdle)
	}
	go c.writeLoop()
	c.wake()
	c.readLoop()
	<-c.writerDone
	sc.wg.Wait() // handlers still running see their context canceled
}

// Shutdown sends GOAWAY on every connection; each closes when its streams
// are done. It does not wait; net/http's Server.Shutdown does.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.draining = true
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	for _, sc := range conns {
		sc.goAway()
	}
}

// serverConn is the server side of one connection.
type serverConn struct {
	s      *Server
	c      *conn
	ctx    context.Context
	tls    *tls.ConnectionState
	remote string
	peer   netip.AddrPort // remote, parsed
	wg     sync.WaitGroup // handler goroutines

	// Guarded by c.mu.
	maxStream uint32    // highest stream ID the client opened
	okPath    string    // the last :path HeadLimits.Target passed
	handlers  int       // handler goroutines running, reset streams included
	queue     []queued  // handler streams waiting for a goroutine slot
	idleSince time.Time // zero while streams are open
	idleTimer *time.Timer
}

type queued struct {
	st   *Stream
	head *RequestHead
}

// goAway tells the client no new streams will be served and closes the
// connection once the open ones end.
func (sc *serverConn) goAway() {
	c := sc.c
	c.mu.Lock()
	if !c.goAwaySent && !c.closed {
		c.goAwaySent = true
		c.out = appendGoAway(c.out, sc.maxStream, http2.ErrCodeNo, "")
		if len(c.streams) == 0 {
			c.closing = true
		}
	}
	c.mu.Unlock()
	c.wake()
}

// streamClosedLocked runs when a stream leaves the connection.
func (sc *serverConn) streamClosedLocked(*Stream) {
	c := sc.c
	if len(c.streams) > 0 {
		return
	}
	if c.goAwaySent {
		c.closing = true
		c.wake()
	}
	sc.idleSince = time.Now()
}

func (sc *serverConn) checkIdle() {
	c := sc.c
	idle := sc.s.IdleTimeout
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return
	}
	wait := idle
	if len(c.streams) == 0 && !sc.idleSince.IsZero() {
		if since := time.Since(sc.idleSince); since >= idle {
			c.mu.Unlock()
			sc.goAway()
			return
		} else {
			wait = idle - since
		}
	}
	sc.idleTimer.Reset(wait)
	c.mu.Unlock()
}

func (sc *serverConn) teardown() {
	sc.c.mu.Lock()
	if sc.idleTimer != nil {
		sc.idleTimer.Stop()
	}
	sc.queue = nil
	sc.c.mu.Unlock()
}

// isConnectionHeader reports whether name (lower case) is one of the
// fields RFC 9113 §8.2.2 forbids in HTTP/2.
func isConnectionHeader(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// onHeaders handles a header block from the client: a new request, or
// the trailers of one.
func (sc *serverConn) onHeaders(f *http2.MetaHeadersFrame) (http2.ErrCode, string) {
	c := sc.c
	id := f.StreamID
	if id%2 == 0 {
		return http2.ErrCodeProtocol, "client stream IDs are odd"
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.resetStream(id, http2.ErrCodeProtocol)
		return http2.ErrCodeNo, ""
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		// Trailers: they must end the stream and carry no pseudo-fields.
		if st.recvEnd {
			c.mu.Unlock()
			c.resetStream(id, http2.ErrCodeStreamClosed)
			return http2.ErrCodeNo, ""
		}
		if f.Truncated || !f.StreamEnded() || len(f.PseudoFields()) > 0 || (st.declLen >= 0 && st.recvLen != st.declLen) {
			c.mu.Unlock()
			c.resetStream(id, http2.ErrCodeProtocol)
			return http2.ErrCodeNo, ""
		}
		st.recvEnd = true
		c.maybeCloseLocked(st)
		ev := st.events
		c.mu.Unlock()
		if ev != nil {
			ev.Headers(st, f.RegularFields(), true)
		}
		return http2.ErrCodeNo, ""
	}
	if id <= sc.maxStream {
		c.mu.Unlock()
		return http2.ErrCodeStreamClosed, "HEADERS on a closed stream"
	}
	sc.maxStream = id
	if c.goAwaySent {
		// After GOAWAY new streams are ignored (RFC 9113 §6.8).
		c.mu.Unlock()
		return http2.ErrCodeNo, ""
	}
	if uint32(len(c.streams)) >= c.lim.MaxConcurrentStreams {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return http2.ErrCodeNo, ""
	}
	st := c.newStreamLocked(id)
	sc.idleSince = time.Time{}
	if f.StreamEnded() {
		st.recvEnd = true
	}
	if f.Truncated {
		// The header list is over MAX_HEADER_LIST_SIZE: the Framer
		// stopped keeping fields there.
		c.mu.Unlock()
		sc.refuse(st, sc.truncated(f))
		return http2.ErrCodeNo, ""
	}
	head, ok := sc.requestHead(f)
	if !ok || (head.EndStream && head.ContentLength > 0) {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeProtocol)
		return http2.ErrCodeNo, ""
	}
	if e := sc.checkHead(head); e != nil {
		c.mu.Unlock()
		sc.refuse(st, e)
		return http2.ErrCodeNo, ""
	}
	st.declLen = head.ContentLength
	if d := sc.s.ReadTimeout; d > 0 && !st.recvEnd {
		st.readTimer = time.AfterFunc(d, func() { sc.readTimedOut(st) })
	}
	if d := sc.s.WriteTimeout; d > 0 {
		st.writeTimer = time.AfterFunc(d, func() { sc.writeTimedOut(st) })
	}
	c.mu.Unlock()

	if sc.s.Intercept != nil {
		if ev := sc.s.Intercept(st, head); ev != nil {
			st.setEvents(ev)
			return http2.ErrCodeNo, ""
		}
	}
	sc.startHandler(st, head)
	return http2.ErrCodeNo, ""
}

// checkHead checks a request head against the server's HeadLimits. It
// does not allocate unless it refuses the request.
func (sc *serverConn) checkHead(h *RequestHead) *headlimit.Error {
	lim := sc.s.HeadLimits
	if lim == (headlimit.Limits{}) {
		return nil
	}
	count, size, cookies := 0, 0, false
	for _, f := range h.Fields {
		size += headlimit.FieldSize(f.Name, f.Value)
		if f.Name == "cookie" {
			// Split cookie fields (RFC 9113 §8.2.3) are one field in
			// HTTP/1.1 terms, and to handlers.
			if cookies {
				continue
			}
			cookies = true
		}
		count++
	}
	if e := lim.Fields(count, size); e != nil {
		return e
	}
	if h.Path == sc.okPath {
		return nil // the path of the previous request, which passed
	}
	if e := lim.Target(h.Path); e != nil {
		return e
	}
	sc.okPath = h.Path
	return nil
}

// truncated is the answer to a header block over MaxHeaderListSize: 414
// when what was decoded of it shows an over-long :path, 431 otherwise.
func (sc *serverConn) truncated(f *http2.MetaHeadersFrame) *headlimit.Error {
	lim := sc.s.HeadLimits
	if p := f.PseudoValue("path"); lim.MaxURIBytes > 0 && len(p) > lim.MaxURIBytes {
		return lim.Target(p)
	}
	if lim.MaxHeaderBytes > 0 {
		return lim.FieldsTooLarge()
	}
	return &headlimit.Error{Status: http.StatusRequestHeaderFieldsTooLarge,
		Msg: "request header list exceeds " + strconv.FormatUint(uint64(sc.c.lim.MaxHeaderListSize), 10) + " bytes"}
}

// refuse answers a request that broke a head limit: e's status and a
// plain-text body. The rest of the request, if any, is refused with
// RST_STREAM NO_ERROR once the answer is sent (RFC 9113 §8.1).
func (sc *serverConn) refuse(st *Stream, e *headlimit.Error) {
	body := e.Body()
	sc.c.logger.Debug("http2 request refused at the edge", "remote", sc.remote, "status", e.Status, "reason", e.Msg)
	_ = st.WriteHeaders([]hpack.HeaderField{
		{Name: ":status", Value: strconv.Itoa(e.Status)},
		{Name: "content-type", Value: "text/plain; charset=utf-8"},
		{Name: "x-content-type-options", Value: "nosniff"},
		{Name: "content-length", Value: strconv.Itoa(len(body))},
	}, false)
	_ = st.WriteData([]byte(body), true)
	st.StopReceiving()
}

// requestHead validates a request header block (RFC 9113 §8.3.1, §8.2.2).
func (sc *serverConn) requestHead(f *http2.MetaHeadersFrame) (*RequestHead, bool) {
	h := &RequestHead{
		EndStream:     f.StreamEnded(),
		ContentLength: -1,
		Context:       sc.ctx,
		RemoteAddr:    sc.remote,
		Peer:          sc.peer,
		TLS:           sc.tls,
	}
	// The pseudo-fields lead the block, each at most once (the header
	// reader checked).
	n, status := 0, false
	for _, hf := range f.Fields {
		if !hf.IsPseudo() {
			break
		}
		n++
		switch hf.Name {
		case ":method":
			h.Method = hf.Value
		case ":scheme":
			h.Scheme = hf.Value
		case ":authority":
			h.Authority = hf.Value
		case ":path":
			h.Path = hf.Value
		case ":protocol":
			h.Protocol = hf.Value
		case ":status":
			status = hf.Value != ""
		}
	}
	if n < len(f.Fields) {
		h.Fields = slices.Clone(f.Fields[n:]) // f's are the connection's
	}
	if h.Method == "" || status {
		return nil, false
	}
	if h.Protocol != "" {
		// Extended CONNECT (RFC 8441 §4): all four pseudo-fields.
		if !sc.s.ExtendedConnect || h.Method != http.MethodConnect || h.Scheme == "" || h.Path == "" || h.Authority == "" || h.Path[0] != '/' {
			return nil, false
		}
	} else if h.Method == http.MethodConnect {
		if h.Authority == "" || h.Scheme != "" || h.Path != "" {
			return nil, false
		}
	} else if h.Scheme == "" || h.Path == "" || (h.Path[0] != '/' && !(h.Path == "*" && h.Method == http.MethodOptions)) {
		return nil, false
	}
	for _, hf := range h.Fields {
		switch {
		case isConnectionHeader(hf.Name):
			return nil, false
		case hf.Name == "te":
			if hf.Value != "trailers" {
				return nil, false
			}
		case hf.Name == "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || (h.ContentLength >= 0 && int64(n) != h.ContentLength) {
				return nil, false
			}
			h.ContentLength = int64(n)
		}
	}
	if h.EndStream && h.ContentLength < 0 {
		h.ContentLength = 0
	}
	return h, true
}

// readTimedOut ends the request side of a stream whose request did not
// arrive within ReadTimeout.
func (sc *serverConn) readTimedOut(st *Stream) {
	c := sc.c
	c.mu.Lock()
	done := st.gone || st.recvEnd
	hs, handler := st.events.(*handlerStream)
	c.mu.Unlock()
	switch {
	case done:
	case handler:
		hs.readTimedOut()
	default:
		st.resetIfOpen(http2.ErrCodeCancel, nil)
	}
}

// writeTimedOut resets a stream whose response was not sent within
// WriteTimeout.
func (sc *serverConn) writeTimedOut(st *Stream) {
	c := sc.c
	c.mu.Lock()
	done := st.gone || (st.sentEnd && len(st.pending) == 0)
	c.mu.Unlock()
	if !done {
		st.resetIfOpen(http2.ErrCodeInternal, nil)
	}
}

// startHandler runs the Handler for st, or queues it while
// MaxConcurrentStreams handlers are still running. Handlers outlive their
// streams when a client resets them; a client that keeps more than four
// times the limit waiting this way (rapid reset, CVE-2023-44487) gets
// GOAWAY ENHANCE_YOUR_CALM.
func (sc *serverConn) startHandler(st *Stream, head *RequestHead) {
	c := sc.c
	hs := newHandlerStream(sc, st, head)
	st.setEvents(hs)
	c.mu.Lock()
	st.handler = true
	limit := int(c.lim.MaxConcurrentStreams)
	if sc.handlers >= limit {
		sc.queue = append(sc.queue, queued{st: st, head: head})
		calm := sc.handlers+len(sc.queue) > 4*limit
		c.mu.Unlock()
		if calm {
			c.connError(http2.ErrCodeEnhanceYourCalm, "too many early resets")
		}
		return
	}
	sc.handlers++
	sc.wg.Add(1)
	c.mu.Unlock()
	go sc.runHandler(hs)
}

// handlerDone frees a handler slot and starts the next queued stream
// that is still open.
func (sc *serverConn) handlerDone() {
	c := sc.c
	c.mu.Lock()
	sc.handlers--
	for len(sc.queue) > 0 {
		q := sc.queue[0]
		sc.queue = sc.queue[1:]
		if q.st.gone {
			continue
		}
		sc.handlers++
		sc.wg.Add(1)
		hs := q.st.events.(*handlerStream)
		c.mu.Unlock()
		go sc.runHandler(hs)
		return
	}
	c.mu.Unlock()
}

func (sc *serverConn) runHandler(hs *handlerStream) {
	defer sc.wg.Done()
	defer sc.handlerDone()
	hs.serve(sc.s.Handler)
}
