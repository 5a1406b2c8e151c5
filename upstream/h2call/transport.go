package h2call

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// RoundTrip sends req on a stream of an attempt from the Pick hook (with
// req.URL.Path as the method) and returns the response once its head
// arrives, as net/http's HTTP/2 transport does for the code that forwards
// gRPC calls:
//
//   - The request is full duplex: its body is sent as it is read, by a
//     goroutine, while the response streams down; a body read error
//     resets the stream (CANCEL) and is what RoundTrip or the response
//     body's Read returns. The body is closed when it is sent or the
//     round trip ends, possibly after RoundTrip returned.
//   - :authority is the attempt's Authority, else req.Host, else the URL
//     host; :scheme is the attempt's Scheme, else the URL's. Fields that
//     HTTP/2 forbids (Connection, Keep-Alive, Transfer-Encoding, Upgrade,
//     Host, TE other than "trailers") are not sent.
//   - Response header and trailer keys are canonical; resp.Trailer is
//     filled when the body's Read returns io.EOF. Nothing is
//     decompressed.
//   - req's context ending resets the stream (CANCEL); reads then fail
//     with the context's error. Closing the response body before its end
//     resets the stream too.
//
// The response body holds at most one flow-control window of unread
// bytes; reading gives their credit back.
func (cc *Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	rt := &roundTrip{req: req, notify: make(chan struct{}, 1), headCh: make(chan struct{})}
	if req.Body != nil && req.Body != http.NoBody {
		rt.body = req.Body
	}
	if req.URL == nil {
		rt.closeReqBody()
		return nil, errors.New("h2call: request has no URL")
	}
	if err := ctx.Err(); err != nil {
		rt.closeReqBody()
		return nil, err
	}
	for try := 1; ; try++ {
		att, err := cc.pick(ctx, req.URL.Path)
		if err != nil {
			rt.closeReqBody()
			return nil, err
		}
		if att.Conn == nil {
			rt.closeReqBody()
			return nil, errors.New("h2call: Pick returned an attempt without a connection")
		}
		fp := fieldSlices.Get().(*[]hpack.HeaderField)
		fields := requestHead((*fp)[:0], req, &att)
		rt.att = att // before any event can read it
		s, err := att.Conn.NewStream(fields, rt.body == nil, rt, nil)
		*fp = fields
		putFields(fp)
		if err != nil {
			err = fmt.Errorf("h2call: open a stream: %w", err)
			att.finish(Outcome{Kind: NotStarted, Code: codes.Unavailable, Err: err})
			if try < maxNotStarted && ctx.Err() == nil {
				continue
			}
			rt.closeReqBody()
			return nil, err
		}
		rt.s = s
		break
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { rt.abort(ctx.Err(), http2.ErrCodeCancel) })
		rt.mu.Lock()
		if rt.finished {
			rt.mu.Unlock()
			stop()
		} else {
			rt.stop = stop
			rt.mu.Unlock()
		}
	}
	if rt.body != nil {
		go rt.pump()
	}
	<-rt.headCh
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.head == nil {
		return nil, rt.err
	}
	resp := &http.Response{
		Status:        strconv.Itoa(rt.httpStatus) + " " + http.StatusText(rt.httpStatus),
		StatusCode:    rt.httpStatus,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        httpHeader(rt.head),
		ContentLength: -1,
		Request:       req,
	}
	if v := resp.Header["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	} else if rt.recvEnd && len(rt.buf) == 0 {
		resp.ContentLength = 0
	}
	rt.resp = resp
	resp.Body = (*responseBody)(rt)
	return resp, nil
}

// roundTrip is one request on one stream: the stream's h2.Events, the
// state its response body reads, and the request body pump.
type roundTrip struct {
	req      *http.Request
	body     io.ReadCloser // the request body, nil when there is none
	bodyOnce sync.Once
	att      Attempt
	s        *h2.Stream
	resp     *http.Response

	mu         sync.Mutex
	notify     chan struct{} // cap 1: wakes a Read that waits
	headCh     chan struct{} // closed once the head arrived or the round trip failed
	headDone   bool
	stop       func() bool
	head       []hpack.HeaderField
	trailer    []hpack.HeaderField
	httpStatus int
	buf        []byte // received body bytes from off on, not read yet
	off        int
	recvEnd    bool  // the response is complete (END_STREAM)
	err        error // the round trip failed: reset, lost connection, context, body read, Close
	kind       Kind
	// finished is set by the first end (the response's, or a failure):
	// events are ignored from then on. The end is published (recvEnd or
	// err set) once the attempt's Finish has run.
	finished bool
	received bool
	reading  bool // a Read waits
	closed   bool // the response body was closed
}

// errBodyClosed is what Read returns after Close, as net/http words it.
var errBodyClosed = errors.New("http2: response body closed")

func (rt *roundTrip) signal() {
	select {
	case rt.notify <- struct{}{}:
	default:
	}
}

func (rt *roundTrip) closeHeadLocked() {
	if !rt.headDone {
		rt.headDone = true
		close(rt.headCh)
	}
}

// closeReqBody closes the request body once.
func (rt *roundTrip) closeReqBody() {
	if rt.body != nil {
		rt.bodyOnce.Do(func() { _ = rt.body.Close() })
	}
}

// outcomeLocked describes the attempt's end: the round trip ended with
// err (nil: the server completed the response).
func (rt *roundTrip) outcomeLocked(err error) Outcome {
	out := Outcome{Kind: rt.kind, HTTPStatus: rt.httpStatus, Sent: rt.kind != Refused, Received: rt.received, Err: err}
	switch {
	case rt.kind == Answered:
		out.Code = grpcStatusOf(rt.trailer, rt.head)
	case errors.Is(err, context.DeadlineExceeded):
		out.Code = codes.DeadlineExceeded
	case rt.kind == Abandoned:
		out.Code = codes.Canceled // the context, Close or the request body ended it
	default:
		out.Code = codes.Unavailable
	}
	return out
}

// end reports the attempt's outcome, then lets RoundTrip and Read see
// the end: the complete response (err nil) or the failure. It runs once,
// on the goroutine that set finished.
func (rt *roundTrip) end(out Outcome, err error) {
	rt.closeReqBody()
	rt.mu.Lock()
	stop := rt.stop
	rt.stop = nil
	rt.mu.Unlock()
	if stop != nil {
		stop()
	}
	rt.att.finish(out)
	rt.mu.Lock()
	if err == nil {
		rt.recvEnd = true
	} else {
		rt.err = err
	}
	rt.closeHeadLocked()
	rt.mu.Unlock()
	rt.signal()
}

// grpcStatusOf returns the grpc-status of the final block (UNKNOWN when
// there is none or it is malformed).
func grpcStatusOf(blocks ...[]hpack.HeaderField) codes.Code {
	for _, b := range blocks {
		for _, f := range b {
			if f.Name == "grpc-status" {
				if n, err := strconv.ParseUint(f.Value, 10, 32); err == nil {
					return codes.Code(n)
				}
				return codes.Unknown
			}
		}
	}
	return codes.Unknown
}

// Headers takes the response head and trailers.
func (rt *roundTrip) Headers(s *h2.Stream, fields []hpack.HeaderField, end bool) {
	rt.mu.Lock()
	if rt.finished {
		rt.mu.Unlock()
		return
	}
	rt.received = true
	own := append(make([]hpack.HeaderField, 0, len(fields)), fields...)
	if rt.head == nil {
		rt.head = own
		for _, f := range own {
			if f.Name == ":status" {
				rt.httpStatus, _ = strconv.Atoi(f.Value)
			}
		}
		if !end {
			rt.closeHeadLocked()
		}
	} else {
		rt.trailer = own
	}
	if !end {
		rt.mu.Unlock()
		return
	}
	rt.finished, rt.kind = true, Answered
	out := rt.outcomeLocked(nil)
	rt.mu.Unlock()
	rt.ended(s, out)
}

// ended runs when the server ended the response: a request still being
// sent is cut short (RST_STREAM NO_ERROR, as an early answer allows).
func (rt *roundTrip) ended(s *h2.Stream, out Outcome) {
	s.Reset(http2.ErrCodeNo)
	rt.end(out, nil)
}

// Data queues response body bytes for Read.
func (rt *roundTrip) Data(s *h2.Stream, p []byte, end bool) {
	rt.mu.Lock()
	if rt.finished || rt.closed {
		rt.mu.Unlock()
		s.Credit(len(p))
		return
	}
	rt.received = true
	if rt.off > 0 && len(rt.buf)+len(p) > cap(rt.buf) {
		n := copy(rt.buf, rt.buf[rt.off:])
		rt.buf, rt.off = rt.buf[:n], 0
	}
	rt.buf = append(rt.buf, p...)
	if !end {
		wake := rt.reading
		rt.mu.Unlock()
		if wake {
			rt.signal()
		}
		return
	}
	rt.finished, rt.kind = true, Answered
	out := rt.outcomeLocked(nil)
	rt.mu.Unlock()
	rt.ended(s, out)
}

// Reset fails the round trip on a stream reset or a lost connection.
func (rt *roundTrip) Reset(s *h2.Stream, err error) {
	kind := Broken
	var se h2.StreamError
	if errors.As(err, &se) && se.Remote && se.Code == http2.ErrCodeRefusedStream {
		kind = Refused
	}
	rt.fail(fmt.Errorf("h2call: %w", err), kind, s, false, 0)
}

// abort fails the round trip from the client's side, resetting the
// stream with code.
func (rt *roundTrip) abort(err error, code http2.ErrCode) {
	rt.fail(err, Abandoned, rt.s, true, code)
}

// fail ends the round trip on stream s with err unless it already
// ended. With reset (the client gave up), s is reset with code and the
// body bytes not read yet are dropped; otherwise (the server reset the
// stream, or the connection failed) they are still read before err.
func (rt *roundTrip) fail(err error, kind Kind, s *h2.Stream, reset bool, code http2.ErrCode) {
	rt.mu.Lock()
	if rt.finished {
		rt.mu.Unlock()
		return
	}
	rt.finished, rt.kind = true, kind
	credit := 0
	if reset {
		credit = len(rt.buf) - rt.off
		rt.buf, rt.off = nil, 0
	}
	out := rt.outcomeLocked(err)
	rt.mu.Unlock()
	if reset {
		s.Reset(code)
	}
	if credit > 0 {
		s.Credit(credit)
	}
	rt.end(out, err)
}

// pump sends the request body as it is read, one chunk at a time: each
// waits until the stream's window took it.
func (rt *roundTrip) pump() {
	defer rt.closeReqBody()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	trailers := len(rt.req.Trailer) > 0
	for {
		n, err := rt.body.Read(buf)
		eof := err == io.EOF
		last := eof && !trailers
		if n > 0 || last {
			if rt.s.WriteData(buf[:n], last) != nil {
				return // the round trip is over
			}
			if !last && rt.s.WaitDrained(nil) != nil {
				return
			}
		}
		switch {
		case eof:
			if trailers {
				_ = rt.s.WriteHeaders(trailerFields(rt.req.Trailer), true)
			}
			return
		case err != nil:
			rt.abort(err, http2.ErrCodeCancel)
			return
		}
	}
}

var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// responseBody is the http.Response body of a round trip.
type responseBody roundTrip

// Read reads the response body, blocking until bytes arrive or the
// response ends. At the end it fills resp.Trailer and returns io.EOF; a
// failed round trip returns its error once the bytes received before it
// are read.
func (b *responseBody) Read(p []byte) (int, error) {
	rt := (*roundTrip)(b)
	rt.mu.Lock()
	for {
		switch {
		case rt.closed:
			rt.mu.Unlock()
			return 0, errBodyClosed
		case rt.off < len(rt.buf):
			n := copy(p, rt.buf[rt.off:])
			if rt.off += n; rt.off == len(rt.buf) {
				rt.buf, rt.off = rt.buf[:0], 0
			}
			rt.mu.Unlock()
			rt.s.Credit(n)
			return n, nil
		case rt.recvEnd:
			if rt.trailer != nil && rt.resp.Trailer == nil {
				rt.resp.Trailer = httpHeader(rt.trailer)
			}
			rt.mu.Unlock()
			return 0, io.EOF
		case rt.err != nil:
			err := rt.err
			rt.mu.Unlock()
			return 0, err
		}
		rt.reading = true
		rt.mu.Unlock()
		<-rt.notify
		rt.mu.Lock()
		rt.reading = false
	}
}

// Close ends the response: one not complete yet is reset (CANCEL).
func (b *responseBody) Close() error {
	rt := (*roundTrip)(b)
	rt.fail(errBodyClosed, Abandoned, rt.s, true, http2.ErrCodeCancel)
	rt.mu.Lock()
	rt.closed = true
	credit := len(rt.buf) - rt.off
	rt.buf, rt.off = nil, 0
	rt.mu.Unlock()
	if credit > 0 {
		rt.s.Credit(credit)
	}
	rt.signal()
	return nil
}

// requestHead appends the header block of req to dst.
func requestHead(dst []hpack.HeaderField, req *http.Request, att *Attempt) []hpack.HeaderField {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	scheme := att.Scheme
	if scheme == "" {
		scheme = req.URL.Scheme
	}
	if scheme == "" {
		scheme = "http"
	}
	authority := att.Authority
	if authority == "" {
		authority = req.Host
	}
	if authority == "" {
		authority = req.URL.Host
	}
	dst = append(dst,
		hpack.HeaderField{Name: ":method", Value: method},
		hpack.HeaderField{Name: ":scheme", Value: scheme})
	if authority != "" {
		dst = append(dst, hpack.HeaderField{Name: ":authority", Value: authority})
	}
	dst = append(dst, hpack.HeaderField{Name: ":path", Value: req.URL.RequestURI()})
	for k, vv := range req.Header {
		name := lowerKey(k)
		switch name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "content-length":
			continue
		case "te":
			if len(vv) == 0 || !strings.EqualFold(vv[0], "trailers") {
				continue
			}
			vv = []string{"trailers"}
		}
		for _, v := range vv {
			dst = append(dst, hpack.HeaderField{Name: name, Value: v})
		}
	}
	if req.ContentLength > 0 {
		dst = append(dst, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
	return dst
}

// trailerFields converts request trailers to a header block.
func trailerFields(h http.Header) []hpack.HeaderField {
	var f []hpack.HeaderField
	for k, vv := range h {
		name := lowerKey(k)
		for _, v := range vv {
			f = append(f, hpack.HeaderField{Name: name, Value: v})
		}
	}
	return f
}

// lowerKeys are the lower-case forms of the fields a gRPC request
// usually has, so converting them allocates nothing.
var lowerKeys = map[string]string{}

// canonicalKeys are the canonical forms of the fields a gRPC response
// usually has.
var canonicalKeys = map[string]string{}

func init() {
	for _, k := range []string{
		"Content-Type", "Content-Length", "Te", "User-Agent", "Authorization", "Accept", "Accept-Encoding",
		"Grpc-Timeout", "Grpc-Encoding", "Grpc-Accept-Encoding", "Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id", "Traceparent", "Tracestate",
		"Date", "Server", "Trailer", "Vary", "Cache-Control", "Rosetta-Error-Id",
	} {
		lower := strings.ToLower(k)
		lowerKeys[k] = lower
		canonicalKeys[lower] = k
	}
}

func lowerKey(k string) string {
	if l, ok := lowerKeys[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

// httpHeader converts a header block to an http.Header with canonical
// keys, leaving out pseudo-fields. Single values share one backing array.
func httpHeader(fields []hpack.HeaderField) http.Header {
	n := 0
	for _, f := range fields {
		if !strings.HasPrefix(f.Name, ":") {
			n++
		}
	}
	h := make(http.Header, n)
	vals := make([]string, n)
	i := 0
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		k, ok := canonicalKeys[f.Name]
		if !ok {
			k = textproto.CanonicalMIMEHeaderKey(f.Name)
		}
		if vv, ok := h[k]; ok {
			h[k] = append(vv, f.Value)
			continue
		}
		vals[i] = f.Value
		h[k] = vals[i : i+1 : i+1]
		i++
	}
	return h
}

var _ http.RoundTripper = (*Conn)(nil)
