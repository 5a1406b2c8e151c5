package h2

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// handlerStream serves one request stream with an http.Handler: it is
// the stream's Events (feeding the request body) and, through
// responseWriter, writes the response.
type handlerStream struct {
	sc   *serverConn
	st   *Stream
	head *RequestHead
	ctx  context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte // received body bytes not yet read
	eof     bool   // END_STREAM seen
	err     error  // stream reset or connection gone
	bodyErr error  // the body did not arrive within ReadTimeout
	// expect100 is set while a client that sent "expect: 100-continue"
	// has not been told to go on (the first body read tells it).
	expect100 bool
	closed    bool // handler closed the body
	trailers  http.Header
	// reqTrailer is the request's Trailer map (nil when the client
	// declared none); trailers are copied into it at the body's EOF.
	reqTrailer http.Header
}

func newHandlerStream(sc *serverConn, st *Stream, head *RequestHead) *handlerStream {
	hs := &handlerStream{sc: sc, st: st, head: head, eof: head.EndStream}
	hs.expect100 = !head.EndStream && strings.EqualFold(head.Get("expect"), "100-continue")
	hs.cond.L = &hs.mu
	hs.ctx, hs.stop = context.WithCancel(head.Context)
	return hs
}

// Headers receives the request trailers.
func (hs *handlerStream) Headers(_ *Stream, fields []hpack.HeaderField, end bool) {
	hs.mu.Lock()
	for _, f := range fields {
		if hs.trailers == nil {
			hs.trailers = http.Header{}
		}
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		hs.trailers[k] = append(hs.trailers[k], f.Value)
	}
	hs.eof = hs.eof || end
	hs.cond.Broadcast()
	hs.mu.Unlock()
}

// Data queues request body bytes for Read.
func (hs *handlerStream) Data(s *Stream, p []byte, end bool) {
	hs.mu.Lock()
	if hs.closed {
		hs.mu.Unlock()
		s.Credit(len(p))
		return
	}
	hs.buf = append(hs.buf, p...)
	hs.eof = hs.eof || end
	hs.cond.Broadcast()
	hs.mu.Unlock()
}

// Reset ends the request: reads fail and the context is canceled.
func (hs *handlerStream) Reset(_ *Stream, err error) {
	hs.mu.Lock()
	if hs.err == nil {
		hs.err = err
	}
	hs.cond.Broadcast()
	hs.mu.Unlock()
	hs.stop()
}

// readTimedOut fails reads of a body not received within the server's
// ReadTimeout; the handler can still answer.
func (hs *handlerStream) readTimedOut() {
	hs.mu.Lock()
	hs.bodyErr = os.ErrDeadlineExceeded
	hs.cond.Broadcast()
	hs.mu.Unlock()
}

// errBodyReset is what reading a request body of a reset stream returns.
var errBodyReset = errors.New("http2: request body closed: stream reset by the client or connection closed")

// requestBody is the Body of a handler's request.
type requestBody struct{ hs *handlerStream }

// Read returns received body bytes, giving their flow-control credit
// back; io.EOF once the client ended the stream.
func (b requestBody) Read(p []byte) (int, error) {
	hs := b.hs
	hs.mu.Lock()
	if hs.expect100 {
		// The client waits for a go-ahead before it sends the body.
		hs.expect100 = false
		if len(hs.buf) == 0 && !hs.eof {
			hs.mu.Unlock()
			_ = hs.st.WriteHeaders([]hpack.HeaderField{{Name: ":status", Value: "100"}}, false)
			hs.mu.Lock()
		}
	}
	for len(hs.buf) == 0 && !hs.eof && hs.err == nil && hs.bodyErr == nil && !hs.closed {
		hs.cond.Wait()
	}
	if hs.closed {
		hs.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if len(hs.buf) == 0 {
		err := io.EOF
		if !hs.eof {
			err = cmp.Or(hs.bodyErr, errBodyReset)
		} else if hs.reqTrailer != nil {
			// As net/http: r.Trailer gets its values when Read
			// returns io.EOF.
			for k, vv := range hs.trailers {
				hs.reqTrailer[k] = vv
			}
			hs.trailers = nil
		}
		hs.mu.Unlock()
		return 0, err
	}
	n := copy(p, hs.buf)
	rest := copy(hs.buf, hs.buf[n:])
	hs.buf = hs.buf[:rest]
	hs.mu.Unlock()
	hs.st.Credit(n)
	return n, nil
}

// Close discards what is buffered and what still arrives (its credit is
// given back at once); later reads fail.
func (b requestBody) Close() error {
	hs := b.hs
	hs.mu.Lock()
	n := len(hs.buf)
	hs.buf = nil
	hs.closed = true
	hs.cond.Broadcast()
	hs.mu.Unlock()
	hs.st.Credit(n)
	return nil
}

// request builds the *http.Request of the stream.
func (hs *handlerStream) request() (*http.Request, error) {
	h := hs.head
	u := &url.URL{Path: "*"}
	if h.Method == http.MethodConnect && h.Protocol == "" {
		u = &url.URL{Host: h.Authority}
	} else if h.Path != "*" {
		var err error
		if u, err = url.ParseRequestURI(h.Path); err != nil {
			return nil, err
		}
	}
	header := make(http.Header, len(h.Fields))
	var cookies []string
	for _, f := range h.Fields {
		if f.Name == "cookie" {
			cookies = append(cookies, f.Value)
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		header[k] = append(header[k], f.Value)
	}
	if h.Protocol != "" {
		header[":protocol"] = []string{h.Protocol}
	}
	if len(cookies) > 0 {
		// RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1
		// semantics.
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	host := h.Authority
	if host == "" {
		host = header.Get("Host")
	}
	var body io.ReadCloser = http.NoBody
	if !h.EndStream {
		body = requestBody{hs: hs}
	}
	r := &http.Request{
		Method:        h.Method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		Body:          body,
		ContentLength: h.ContentLength,
		Host:          host,
		RemoteAddr:    h.RemoteAddr,
		RequestURI:    h.Path,
		TLS:           h.TLS,
	}
	if !h.EndStream && h.ContentLength < 0 {
		r.ContentLength = -1
	}
	if tr := header.Values("Trailer"); len(tr) > 0 {
		r.Trailer = http.Header{}
		for _, v := range tr {
			for _, k := range strings.Split(v, ",") {
				if k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)); k != "" {
					r.Trailer[k] = nil
				}
			}
		}
		hs.reqTrailer = r.Trailer
	}
	return r.WithContext(hs.ctx), nil
}

// serve runs handler for the stream and finishes the response.
func (hs *handlerStream) serve(handler http.Handler) {
	defer hs.stop()
	// Once the handler has returned, the body is closed: a goroutine it
	// left reading gets http.ErrBodyReadAfterClose, as with net/http.
	defer requestBody{hs: hs}.Close()
	r, err := hs.request()
	if err != nil {
		hs.st.Reset(http2.ErrCodeProtocol)
		return
	}
	w := &responseWriter{hs: hs, header: http.Header{}}
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				hs.sc.c.logger.Error("http2 handler panicked", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			hs.st.Reset(http2.ErrCodeInternal)
			return
		}
		w.finish()
	}()
	handler.ServeHTTP(w, r)
}

// responseBufferSize is how much response body a handler's writes gather
// before they go out as DATA without an explicit Flush.
const responseBufferSize = 16 << 10

// responseWriter is the http.ResponseWriter of a handler stream.
type responseWriter struct {
	hs          *handlerStream
	header      http.Header
	snap        http.Header // header as it was at WriteHeader: what is sent
	status      int
	wroteHeader bool // WriteHeader called (status fixed)
	sentHeader  bool // HEADERS written
	buf         []byte
	written     int64 // body bytes written by the handler
	declared    []string
	noBody      bool
	failed      error
	hijacked    *streamConn // the stream taken over by Hijack
}

// Header returns the response header map.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader records the status. Informational statuses (1xx) are not
// sent; everything else fixes the status for good.
func (w *responseWriter) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols && w.hs.head.Protocol != "" {
		// An extended CONNECT is accepted with a 2xx (RFC 8441 §5);
		// HTTP/2 has no 101.
		code = http.StatusOK
	}
	if w.wroteHeader || code < 200 || code > 999 {
		if code < 100 || code > 999 {
			panic(fmt.Sprintf("invalid WriteHeader code %v", code))
		}
		return
	}
	w.wroteHeader = true
	w.status = code
	// As net/http: changes to the header map after WriteHeader are not
	// sent (except trailers, read from the map at the end).
	w.snap = w.header.Clone()
	w.noBody = code == http.StatusNoContent || code == http.StatusNotModified || w.hs.head.Method == http.MethodHead
	for _, v := range w.header.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				w.declared = append(w.declared, textproto.CanonicalMIMEHeaderKey(k))
			}
		}
	}
}

// Write buffers body bytes, sending them when the buffer fills.
func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.failed != nil {
		return 0, w.failed
	}
	if cl := w.snap.Get("Content-Length"); cl != "" && !w.sentHeader {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && w.written+int64(len(p)) > n {
			return 0, http.ErrContentLength
		}
	}
	w.written += int64(len(p))
	if len(w.buf)+len(p) <= responseBufferSize {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.flush(false); err != nil {
		return 0, err
	}
	if len(p) <= responseBufferSize {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.send(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteString is Write for strings.
func (w *responseWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Flush sends the headers and buffered body now.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush reporting a failure (http.ResponseController).
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.flush(false)
}

// SetReadDeadline and SetWriteDeadline are not supported per stream:
// the connection's timeouts apply.
func (w *responseWriter) SetReadDeadline(time.Time) error  { return http.ErrNotSupported }
func (w *responseWriter) SetWriteDeadline(time.Time) error { return http.ErrNotSupported }

// EnableFullDuplex is a no-op: HTTP/2 streams are always full duplex.
func (w *responseWriter) EnableFullDuplex() error { return nil }

// flush writes the headers if not yet sent and the buffered body.
func (w *responseWriter) flush(final bool) error {
	if w.failed != nil {
		return w.failed
	}
	if !w.sentHeader {
		if err := w.writeHead(final); err != nil {
			return err
		}
		if w.hs.st.sentEndNow() {
			return nil
		}
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf, false)
	w.buf = w.buf[:0]
	return err
}

// send writes body bytes and waits until the flow-control windows let
// them out, so a slow client holds back the handler, not memory.
func (w *responseWriter) send(p []byte, end bool) error {
	st := w.hs.st
	if err := st.WriteData(p, end); err != nil {
		w.failed = err
		return err
	}
	if err := st.WaitDrained(w.hs.ctx.Done()); err != nil {
		w.failed = err
		return err
	}
	return nil
}

func (st *Stream) sentEndNow() bool {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.sentEnd
}

// writeHead sends the response HEADERS. When final, the handler is done:
// a body that fits the buffer gets a Content-Length, and a response
// without body or trailers ends the stream with the headers.
func (w *responseWriter) writeHead(final bool) error {
	w.sentHeader = true
	h := w.snap
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !w.noBody && len(w.buf) > 0 && h.Get("Content-Type") == "" && h.Get("Content-Encoding") == "" {
		if _, set := h["Content-Type"]; !set {
			h.Set("Content-Type", http.DetectContentType(w.buf))
		}
	}
	trailers := w.trailerKeys()
	if final && !w.noBody && h.Get("Content-Length") == "" && len(trailers) == 0 {
		h.Set("Content-Length", strconv.Itoa(len(w.buf)))
	}
	fields := make([]hpack.HeaderField, 0, len(h)+2)
	fields = append(fields, hpack.HeaderField{Name: ":status", Value: strconv.Itoa(w.status)})
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := strings.ToLower(k)
		if isConnectionHeader(name) || name == "te" || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v, Sensitive: name == "set-cookie"})
		}
	}
	if _, ok := h["Date"]; !ok {
		fields = append(fields, hpack.HeaderField{Name: "date", Value: time.Now().UTC().Format(http.TimeFormat)})
	}
	end := final && (w.noBody || len(w.buf) == 0) && len(trailers) == 0
	if err := w.hs.st.WriteHeaders(fields, end); err != nil {
		w.failed = err
		return err
	}
	return nil
}

// trailerKeys lists the trailers set: declared ones with a value and
// those set with http.TrailerPrefix.
func (w *responseWriter) trailerKeys() []string {
	var keys []string
	for _, k := range w.declared {
		if len(w.header[k]) > 0 {
			keys = append(keys, k)
		}
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			keys = append(keys, k)
		}
	}
	return keys
}

// finish completes the response after the handler returned.
func (w *responseWriter) finish() {
	hs := w.hs
	st := hs.st
	if w.hijacked != nil {
		_ = w.hijacked.Close()
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil {
		st.Reset(http2.ErrCodeCancel)
		return
	}
	if !w.sentHeader {
		if err := w.writeHead(true); err != nil {
			return
		}
	}
	trailers := w.trailerKeys()
	if st.sentEndNow() {
		// Headers ended the stream.
	} else if len(trailers) == 0 {
		if st.WriteData(w.buf, true) != nil {
			return
		}
	} else {
		if len(w.buf) > 0 && st.WriteData(w.buf, false) != nil {
			return
		}
		slices.Sort(trailers)
		fields := make([]hpack.HeaderField, 0, len(trailers))
		for _, k := range trailers {
			name := strings.ToLower(strings.TrimPrefix(k, http.TrailerPrefix))
			for _, v := range w.header[k] {
				if httpguts.ValidHeaderFieldValue(v) {
					fields = append(fields, hpack.HeaderField{Name: name, Value: v})
				}
			}
		}
		if st.WriteHeaders(fields, true) != nil {
			return
		}
	}
	w.buf = nil
	if st.WaitDrained(hs.ctx.Done()) != nil {
		return
	}
	// The response is complete; a request body still coming is not
	// needed (RFC 9113 §8.1).
	hs.mu.Lock()
	done := hs.eof
	hs.mu.Unlock()
	if !done {
		st.Reset(http2.ErrCodeNo)
	}
}

// Hijack takes over the stream of an extended CONNECT (RFC 8441) as a
// net.Conn: reads return the client's DATA, writes send DATA, Close ends
// the stream. The response headers are sent first. Other requests cannot
// be hijacked over HTTP/2.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hs.head.Protocol == "" {
		return nil, nil, http.ErrNotSupported
	}
	if w.hijacked != nil {
		return nil, nil, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.flush(false); err != nil {
		return nil, nil, err
	}
	c := &streamConn{hs: w.hs}
	w.hijacked = c
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// streamConn is a hijacked stream as a net.Conn.
type streamConn struct {
	hs        *handlerStream
	closeOnce sync.Once
}

// Read reads the client's DATA; io.EOF when it ended the stream.
func (c *streamConn) Read(p []byte) (int, error) { return requestBody{hs: c.hs}.Read(p) }

// Write sends p as DATA and returns once flow control let it out.
func (c *streamConn) Write(p []byte) (int, error) {
	st := c.hs.st
	if err := st.WriteData(p, false); err != nil {
		return 0, err
	}
	if err := st.WaitDrained(c.hs.ctx.Done()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the stream: END_STREAM, and RST_STREAM NO_ERROR if the
// client has not ended its side once everything is sent.
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		st := c.hs.st
		_ = st.WriteData(nil, true)
		st.StopReceiving()
		_ = requestBody{hs: c.hs}.Close()
	})
	return nil
}

// LocalAddr and RemoteAddr are the connection's.
func (c *streamConn) LocalAddr() net.Addr  { return c.hs.sc.c.nc.LocalAddr() }
func (c *streamConn) RemoteAddr() net.Addr { return c.hs.sc.c.nc.RemoteAddr() }

// SetDeadline, SetReadDeadline and SetWriteDeadline accept only the zero
// time: a stream has no deadlines of its own (the server's ReadTimeout
// and WriteTimeout apply).
func (c *streamConn) SetDeadline(t time.Time) error      { return zeroDeadline(t) }
func (c *streamConn) SetReadDeadline(t time.Time) error  { return zeroDeadline(t) }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return zeroDeadline(t) }

func zeroDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	return errors.ErrUnsupported
}
