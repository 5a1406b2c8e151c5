package transports

import (
	"bufio"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/rosetta-gateway/rosetta/internal/headerkey"
)

// reqCtx is the context of a request the lane serves. It ends when the
// handler returns, when a write to the client fails, or when the client
// goes away while the handler runs; the last needs a background read of
// the connection, which starts only when someone waits on the context
// (Done; the context package calls it for every child context and
// AfterFunc) and the request is still running watchDelay later. Below it
// is a plain cancel context, which the context package recognises as the
// parent of a child (through Value), so that a child costs no goroutine;
// it is made on first need (Done, or a key the request context does not
// answer itself), which a cache hit may never have.
type reqCtx struct {
	made        atomic.Bool        // inner and stop are set
	inner       context.Context    // context.WithCancel's
	stop        context.CancelFunc // inner's
	lc          *laneConn
	mu          sync.Mutex
	asked       bool // Done was called: the connection's watch timer runs for this request
	ended       bool
	bodyOpen    bool // a body is being read: the background read waits for its end
	watchWanted bool // the timer fired while the body was open
	// One value a handler added (SetValue), answered by Value.
	key, val any
}

// watchDelay is how long a request whose context is waited on runs
// before the lane starts watching its client: a quicker one ends before a
// vanished client would cost the upstream anything, and spares the read
// (a goroutine, a system call and two deadline changes).
const watchDelay = 100 * time.Millisecond

func (x *reqCtx) init(lc *laneConn) {
	x.lc = lc
}

// cancelCtx returns the cancel context below, made on first need (ended
// already when the request has).
func (x *reqCtx) cancelCtx() context.Context {
	if x.made.Load() {
		return x.inner
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.made.Load() {
		x.inner, x.stop = context.WithCancel(context.Background())
		if x.ended {
			x.stop()
		}
		x.made.Store(true)
	}
	return x.inner
}

// Deadline reports no deadline: a request has none of its own.
func (x *reqCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Err returns context.Canceled once the request has ended, else nil.
func (x *reqCtx) Err() error {
	if x.made.Load() {
		return x.inner.Err()
	}
	x.mu.Lock()
	ended := x.ended
	x.mu.Unlock()
	if ended {
		return context.Canceled
	}
	return nil
}

// Done returns a channel closed when the request ends; the first call
// starts watching the client's connection.
func (x *reqCtx) Done() <-chan struct{} {
	x.mu.Lock()
	if !x.asked && !x.ended {
		x.asked = true
		x.lc.watchTimer.Reset(watchDelay)
	}
	x.mu.Unlock()
	return x.cancelCtx().Done()
}

// watch starts the background read, unless the request has ended.
func (x *reqCtx) watch() {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case !x.asked || x.ended:
		// A late firing of the connection's timer, armed for an earlier
		// request.
	case x.bodyOpen:
		x.watchWanted = true // the body's reader owns the connection
	default:
		x.lc.startWatch(x)
	}
}

// bodyRead notes that the body has been read whole, and starts the
// background read if it was asked for meanwhile.
func (x *reqCtx) bodyRead() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.bodyOpen = false
	if x.watchWanted && !x.ended {
		x.lc.startWatch(x)
	}
}

// SetValue makes the context carry val under key (call.ValueSlot): the
// gateway's edge puts its call report here instead of deriving a context
// and copying the request for it. It takes one value, before the
// context is shared (the handler's goroutine, first thing), and refuses
// any other.
func (x *reqCtx) SetValue(key, val any) bool {
	if x.key != nil || key == nil {
		return false
	}
	x.key, x.val = key, val
	return true
}

// Value answers the key SetValue was given, net/http's server and
// local-address keys, and the context package's own.
func (x *reqCtx) Value(key any) any {
	if x.key != nil && key == x.key {
		return x.val
	}
	switch key {
	case http.ServerContextKey:
		return x.lc.l.s.srv
	case http.LocalAddrContextKey:
		return x.lc.nc.LocalAddr()
	}
	return x.cancelCtx().Value(key)
}

// cancel ends the request's context.
func (x *reqCtx) cancel() {
	x.mu.Lock()
	x.ended = true
	if x.asked {
		x.lc.watchTimer.Stop()
	}
	made := x.made.Load()
	x.mu.Unlock()
	if made {
		x.stop()
	}
}

func (x *reqCtx) String() string { return "transports.laneRequestContext" }

// holdBytes is how much of a body the lane holds back before it sends the
// head: a handler that returns within it gets a Content-Length, one that
// writes more (or flushes) a chunked body. net/http holds 2 KiB.
const holdBytes = 4 << 10

// laneBuffers are a response's writer and held-back body, pooled between
// requests.
type laneBuffers struct {
	bw   *bufio.Writer
	hold []byte
	head []byte // the status line and header fields, as WriteHeader saw them
	keys []string
	num  []byte
}

var laneBufferPool = sync.Pool{New: func() any {
	return &laneBuffers{bw: bufio.NewWriterSize(nil, 4<<10), hold: make([]byte, 0, holdBytes), head: make([]byte, 0, 1<<10), keys: make([]string, 0, 16), num: make([]byte, 0, 24)}
}}

// laneResponse is the http.ResponseWriter of a request the lane serves.
// It writes the head as net/http's HTTP/1.1 server does: Content-Length
// when the handler ends within holdBytes, chunked otherwise (with
// trailers: the Trailer header's names and http.TrailerPrefix keys), a
// sniffed Content-Type when none is set, Date, and Connection: close
// when the connection ends after it.
type laneResponse struct {
	lc      *laneConn
	req     *http.Request
	b       *laneBuffers
	hdr     http.Header
	reqBody *laneBody // nil: the request has none

	status      int
	wroteHeader bool // the status is decided
	sent        bool // the head is written
	isHEAD      bool
	bodyOK      bool  // the status allows a body
	chunked     bool  // the body is sent chunked
	clen        int64 // the Content-Length the handler set, or -1
	written     int64 // body bytes the handler wrote
	closeAfter  bool
	err         error // the write that failed

	// What the header said when WriteHeader took it (net/http sends the
	// header as it was then; later changes are trailers or nothing).
	te        string // Transfer-Encoding
	declared  bool   // a Trailer field declares trailers
	haveType  bool   // Content-Type set (even empty)
	haveDate  bool
	connClose bool // Connection: close
}

func (w *laneResponse) init(lc *laneConn, req *http.Request) {
	w.lc, w.req = lc, req
	w.b = laneBufferPool.Get().(*laneBuffers)
	w.b.bw.Reset(lc.hc.Conn)
	w.hdr = make(http.Header, 8)
	w.isHEAD = req.Method == http.MethodHead
	w.clen = -1
	w.closeAfter = req.Close
}

// release returns the buffers to the pool.
func (w *laneResponse) release() {
	b := w.b
	w.b = nil
	b.bw.Reset(nil)
	b.hold = b.hold[:0]
	b.head = b.head[:0]
	clear(b.keys[:cap(b.keys)])
	b.keys = b.keys[:0]
	laneBufferPool.Put(b)
}

// Header returns the response header.
func (w *laneResponse) Header() http.Header { return w.hdr }

// WriteHeader sends (informational codes) or decides (the others) the
// status.
func (w *laneResponse) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code)) // as net/http
	}
	if w.wroteHeader || w.b == nil {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.wroteHeader, w.status = true, code
	w.bodyOK = code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	h := w.hdr
	if cl := headerkey.Get(h, "Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.clen = v
		} else {
			h.Del("Content-Length")
		}
	}
	w.te = headerkey.Get(h, "Transfer-Encoding")
	if w.te == "chunked" {
		w.chunked = true
		h.Del("Transfer-Encoding")
	}
	_, w.declared = h["Trailer"]
	_, w.haveType = h["Content-Type"]
	_, w.haveDate = h["Date"]
	w.connClose = httpguts.HeaderValuesContainsToken(h["Connection"], "close")
	w.b.head = w.b.head[:0]
	w.statusLine(code)
	w.writeFields(true)
}

// informational writes a 1xx answer with the header set so far.
func (w *laneResponse) informational(code int) {
	if w.sent || w.err != nil {
		return
	}
	w.b.head = w.b.head[:0]
	w.statusLine(code)
	w.writeFields(false)
	w.b.head = append(w.b.head, "\r\n"...)
	_, err := w.b.bw.Write(w.b.head)
	w.b.head = w.b.head[:0]
	w.noteErr(err)
	if err == nil {
		w.noteErr(w.b.bw.Flush())
	}
}

// Write writes body bytes.
func (w *laneResponse) Write(p []byte) (int, error) {
	if err := w.admit(len(p)); err != nil || len(p) == 0 {
		return 0, err
	}
	if !w.sent {
		if len(w.b.hold)+len(p) <= holdBytes {
			w.b.hold = append(w.b.hold, p...)
			return len(p), nil
		}
		w.sendHead(false, p)
	}
	w.body(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// WriteString writes body bytes; a string that fits in what the lane
// holds back is copied there without a conversion to []byte.
func (w *laneResponse) WriteString(s string) (int, error) {
	if w.b == nil || w.sent || len(w.b.hold)+len(s) > holdBytes {
		return w.Write([]byte(s))
	}
	if err := w.admit(len(s)); err != nil || len(s) == 0 {
		return 0, err
	}
	w.b.hold = append(w.b.hold, s...)
	return len(s), nil
}

// admit decides the status if the handler has not, counts n more body
// bytes and checks that they may be written, as net/http does: the
// bytes of a write past the declared Content-Length count too, so every
// later write fails as well and the short answer ends the connection.
func (w *laneResponse) admit(n int) error {
	if w.b == nil {
		return http.ErrHandlerTimeout
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n == 0 {
		return nil
	}
	if !w.bodyOK {
		return http.ErrBodyNotAllowed
	}
	w.written += int64(n)
	if w.clen >= 0 && w.written > w.clen {
		return http.ErrContentLength
	}
	return w.err
}

// Flush sends the head and what the body has so far.
func (w *laneResponse) Flush() { _ = w.FlushError() }

// FlushError sends the head and what the body has so far (what
// http.ResponseController.Flush calls).
func (w *laneResponse) FlushError() error {
	if w.b == nil {
		return http.ErrHandlerTimeout
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.sendHead(false, nil)
	}
	if w.err == nil {
		w.noteErr(w.b.bw.Flush())
	}
	return w.err
}

// EnableFullDuplex reports success: on the lane a handler may read the
// request body after its answer has begun (nothing closes the body when
// the head goes out, as net/http's HTTP/1 server does).
func (w *laneResponse) EnableFullDuplex() error { return nil }

// SetWriteDeadline sets the connection's write deadline.
func (w *laneResponse) SetWriteDeadline(t time.Time) error {
	return w.lc.hc.Conn.SetWriteDeadline(t)
}

// noteErr records a failed write: the request's context ends and so
// does the connection.
func (w *laneResponse) noteErr(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.closeAfter = true
		if x, ok := w.req.Context().(*reqCtx); ok {
			x.cancel()
		}
	}
}

// sendHead writes the head WriteHeader prepared, with the fields that
// frame the body; final: the handler has returned, so the body is whole
// in hold. next is body about to be written beyond hold (for sniffing).
func (w *laneResponse) sendHead(final bool, next []byte) {
	w.sent = true
	bw := w.b.bw
	hasTE := w.te != ""
	var setLength bool
	switch {
	case w.chunked, w.clen >= 0, !w.bodyOK:
	case final && !w.declared && !hasTE && (!w.isHEAD || w.written > 0):
		w.clen, setLength = w.written, true
	case !w.isHEAD && !hasTE:
		w.chunked = true
	}
	if w.bodyOK && !w.isHEAD && !w.chunked && w.clen < 0 {
		w.closeAfter = true // the body ends with the connection
	}
	if w.lc.l.closing.Load() || w.connClose {
		w.closeAfter = true
	}
	if b := w.reqBody; b != nil && (b.remain.Load() > maxDiscard || b.failed.Load()) {
		w.closeAfter = true // the unread rest of the body is not worth reading
	}
	head := w.b.head
	if setLength {
		head = append(head, "Content-Length: "...)
		head = strconv.AppendInt(head, w.clen, 10)
		head = append(head, "\r\n"...)
	}
	if w.chunked {
		head = append(head, "Transfer-Encoding: chunked\r\n"...)
	}
	sniff := w.b.hold
	if len(sniff) == 0 {
		sniff = next
	}
	if !w.haveType && !hasTE && w.bodyOK && len(sniff) > 0 {
		head = append(head, "Content-Type: "...)
		head = append(head, http.DetectContentType(sniff)...)
		head = append(head, "\r\n"...)
	}
	if !w.haveDate {
		head = append(head, "Date: "...)
		head = append(head, httpDate(w.lc.reqStart)...)
		head = append(head, "\r\n"...)
	}
	if w.closeAfter && !w.connClose {
		head = append(head, "Connection: close\r\n"...)
	}
	head = append(head, "\r\n"...)
	w.b.head = head[:0]
	_, err := bw.Write(head)
	w.noteErr(err)
	if len(w.b.hold) > 0 {
		w.body(w.b.hold)
		w.b.hold = w.b.hold[:0]
	}
}

// statusLine appends "HTTP/1.1 code reason" to the head.
func (w *laneResponse) statusLine(code int) {
	b := append(w.b.head, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	w.b.head = append(b, "\r\n"...)
}

// writeFields appends the header's fields to the head in key order, as
// net/http writes them: invalid names are left out, line breaks in
// values become spaces; final leaves out the trailer keys
// (http.TrailerPrefix).
func (w *laneResponse) writeFields(final bool) {
	keys := w.b.keys[:0]
	for k := range w.hdr {
		if final && strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.b.keys = keys
	b := w.b.head
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range w.hdr[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendFieldValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	w.b.head = b
}

// body writes body bytes as the head framed them.
func (w *laneResponse) body(p []byte) {
	if w.isHEAD || !w.bodyOK || w.err != nil {
		return
	}
	bw := w.b.bw
	if w.chunked {
		w.b.num = strconv.AppendInt(w.b.num[:0], int64(len(p)), 16)
		_, _ = bw.Write(w.b.num)
		_, _ = bw.WriteString("\r\n")
		_, _ = bw.Write(p)
		_, err := bw.WriteString("\r\n")
		w.noteErr(err)
		return
	}
	_, err := bw.Write(p)
	w.noteErr(err)
}

// finish completes the response once the handler has returned: the head
// if not yet sent, the chunked body's end with its trailers, and a flush.
func (w *laneResponse) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.sendHead(true, nil)
	}
	if w.err != nil {
		return
	}
	bw := w.b.bw
	if w.chunked && !w.isHEAD && w.bodyOK {
		_, _ = bw.WriteString("0\r\n")
		w.trailers()
		_, _ = bw.WriteString("\r\n")
	}
	if w.clen >= 0 && w.written != w.clen && w.bodyOK && !w.isHEAD {
		w.closeAfter = true // the client waits for bytes that will not come
	}
	w.noteErr(bw.Flush())
}

// trailers writes the trailer fields: the names the Trailer header
// declared, and the http.TrailerPrefix keys.
func (w *laneResponse) trailers() {
	bw := w.b.bw
	write := func(k string, vv []string) {
		if !httpguts.ValidHeaderFieldName(k) {
			return
		}
		for _, v := range vv {
			w.b.head = append(w.b.head[:0], k...)
			w.b.head = append(w.b.head, ": "...)
			w.b.head = appendFieldValue(w.b.head, v)
			w.b.head = append(w.b.head, "\r\n"...)
			_, _ = bw.Write(w.b.head)
		}
		w.b.head = w.b.head[:0]
	}
	for _, decl := range w.hdr["Trailer"] {
		for _, k := range strings.Split(decl, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			switch k {
			case "", "Transfer-Encoding", "Content-Length", "Trailer":
				continue
			}
			write(k, w.hdr[k])
		}
	}
	for k, vv := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			write(name, vv)
		}
	}
}

// appendFieldValue appends v as a field value may be sent, as net/http
// sends it: each CR or LF replaced by a space, surrounding blanks
// trimmed.
func appendFieldValue(b []byte, v string) []byte {
	v = strings.TrimSpace(v)
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

// httpDate returns now (the request's start: a Date has whole seconds)
// in the Date format, formatted at most once a second.
func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := cachedDate.Load(); d != nil && d.sec >= sec && d.sec-sec < 2 {
		return d.text // this second's, or the next one's for a request that began just before it
	}
	d := &dateText{sec: sec, text: now.UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	sec  int64
	text string
}

var cachedDate atomic.Pointer[dateText]

// canonicalKey returns the canonical form of a header name (a token, as
// the head scan checked): the name itself when it is canonical already,
// a shared string for common names.
func canonicalKey(name string) string {
	if len(name) > 64 {
		return http.CanonicalHeaderKey(name)
	}
	var buf [64]byte
	b := headerkey.Append(buf[:0], name)
	if string(b) == name {
		return name
	}
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return string(b)
}

// commonKeys are the header names a lowercase client sends most.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie",
		"Forwarded", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "Last-Event-Id",
		"Origin", "Pragma", "Referer", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Traceparent", "Tracestate", "User-Agent", "X-Api-Key", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
		"Connect-Protocol-Version", "Connect-Timeout-Ms", "Grpc-Timeout", "X-Grpc-Web", "X-User-Agent",
	} {
		m[k] = k
	}
	return m
}()
