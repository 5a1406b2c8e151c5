package websocket

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// The WebSocket bridge's subprotocols (Sec-WebSocket-Protocol values).
const (
	// SubprotocolJSON carries one proto3-JSON message per text frame. It is
	// the default when the client asks for no subprotocol.
	SubprotocolJSON = "rosetta.json.v1"
	// SubprotocolProto carries one binary protobuf message per binary
	// frame; text frames are only control frames.
	SubprotocolProto = "rosetta.proto.v1"
	// SubprotocolBearerPrefix starts a subprotocol that carries a bearer
	// token ("rosetta.bearer.<token>"), for browsers, which cannot set an
	// Authorization header on a WebSocket. It is never selected.
	SubprotocolBearerPrefix = "rosetta.bearer."
	// AccessTokenParam is the query parameter that carries a bearer token
	// the same way. It never fills a request field.
	AccessTokenParam = "access_token"
)

// Close codes of the bridge besides 1000 (OK) and 4000+code (an RPC
// error): the RFC 6455 codes for frames the gateway cannot take.
const (
	closeGoingAway   = websocket.StatusGoingAway               // 1001: idle timeout, gateway shutdown
	closeUnsupported = websocket.StatusUnsupportedData         // 1003: binary frame in JSON mode
	closeBadData     = websocket.StatusInvalidFramePayloadData // 1007: frame is not a request message
	closeTooBig      = websocket.StatusMessageTooBig           // 1009: frame over websocket.max_message_bytes
	closeCodeBase    = 4000                                    // 4000 + gRPC code
	maxCloseReason   = 123                                     // RFC 6455: 125-byte payload minus the code
)

// wsMode is how messages travel in frames: proto3 JSON text or binary
// protobuf.
type wsMode uint8

const (
	modeJSON wsMode = iota
	modeProto
)

// negotiation is what the handshake's Sec-WebSocket-Protocol asked for.
type negotiation struct {
	mode     wsMode
	selected string // the subprotocol to answer with; "" for none
	bearer   string // token from a rosetta.bearer.<token> subprotocol
}

// negotiate picks the message mode from the client's subprotocols: the
// first of rosetta.json.v1 and rosetta.proto.v1 it lists. A client that
// lists neither (only a bearer token, or nothing) gets JSON without a
// selected subprotocol; any other subprotocol is an error, so a client
// built for another protocol fails at the handshake, not on its first
// frame.
func negotiate(h http.Header) (negotiation, *call.Error) {
	var n negotiation
	var unknown []string
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			switch {
			case p == "":
			case strings.HasPrefix(p, SubprotocolBearerPrefix):
				n.bearer = p[len(SubprotocolBearerPrefix):]
			case n.selected != "":
			case strings.EqualFold(p, SubprotocolJSON):
				n.mode, n.selected = modeJSON, p
			case strings.EqualFold(p, SubprotocolProto):
				n.mode, n.selected = modeProto, p
			default:
				unknown = append(unknown, p)
			}
		}
	}
	if n.selected == "" && len(unknown) > 0 {
		return n, call.Errorf(codes.InvalidArgument, "unsupported WebSocket subprotocol %q: offer %s (JSON text frames) or %s (binary protobuf frames)",
			strings.Join(unknown, ", "), SubprotocolJSON, SubprotocolProto)
	}
	return n, nil
}

// addBearer sets authorization metadata from a bearer token sent in a
// subprotocol or the access_token query parameter, unless the request
// carried an Authorization header (which wins).
func addBearer(md metadata.MD, token string) {
	if token == "" || len(md["authorization"]) > 0 {
		return
	}
	md["authorization"] = []string{"Bearer " + token}
}

// originPolicy decides which browser origins may open a WebSocket.
type originPolicy struct {
	any      bool
	patterns []string // lower-case "scheme://host[:port]", path.Match patterns
}

func newOriginPolicy(allowed []string) originPolicy {
	var o originPolicy
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimRight(strings.TrimSpace(a), "/"))
		if a == "*" {
			o.any = true
			continue
		}
		o.patterns = append(o.patterns, a)
	}
	return o
}

// allows reports whether a request may upgrade: no Origin (not a browser),
// the same host as the request, "*", or an origin matching an allowed
// pattern ("https://app.example.com", "https://*.example.com").
func (o originPolicy) allows(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.any {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	full := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, p := range o.patterns {
		if ok, err := path.Match(p, full); err == nil && ok {
			return true
		}
	}
	return false
}

// isCloseSend reports whether a text frame is the half-close control frame
// {"@close_send": true}. It reports ok false when the frame is not a
// control frame at all (it starts no "@" key), and an error for a control
// frame it does not understand.
func isCloseSend(frame []byte) (bool, *call.Error) {
	if !bytes.Contains(frame, []byte(`"@`)) {
		return false, nil
	}
	var ctl map[string]json.RawMessage
	if err := json.Unmarshal(frame, &ctl); err != nil {
		return false, nil // not an object: the message decoder reports it
	}
	v, ok := ctl["@close_send"]
	if !ok {
		return false, nil
	}
	if len(ctl) != 1 || string(bytes.TrimSpace(v)) != "true" {
		return false, call.BadField("@close_send", `invalid control frame: send exactly {"@close_send": true}`)
	}
	return true, nil
}

// statusFrame renders the final frame of a call:
// {"@status": <google.rpc.Status>, "@headers": {...}, "@trailers": {...}}.
func (h *Bridge) statusFrame(ce *call.Error, hdr, trl metadata.MD) []byte {
	var status []byte
	if ce == nil {
		status = []byte(`{"code":0,"message":"","details":[]}`)
	} else {
		status = transcoder.StatusJSON(ce, h.resolver)
	}
	b, _ := json.Marshal(struct {
		Status   json.RawMessage     `json:"@status"`
		Headers  map[string][]string `json:"@headers"`
		Trailers map[string][]string `json:"@trailers"`
	}{status, metadataJSON(hdr), metadataJSON(trl)})
	return b
}

// metadataJSON copies response metadata for the status frame, leaving out
// the transport's own keys (content-type, grpc-*); binary (-bin) values
// are base64.
func metadataJSON(md metadata.MD) map[string][]string {
	out := make(map[string][]string, len(md))
	for k, vs := range md {
		if k == "content-type" || strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":") {
			continue
		}
		if strings.HasSuffix(k, "-bin") {
			enc := make([]string, len(vs))
			for i, v := range vs {
				enc[i] = base64.StdEncoding.EncodeToString([]byte(v))
			}
			vs = enc
		}
		out[k] = vs
	}
	return out
}

// closeCode is the close code of a finished call: 1000 for OK, 4000 plus
// the gRPC code for an error.
func closeCode(ce *call.Error) websocket.StatusCode {
	if ce == nil {
		return websocket.StatusNormalClosure
	}
	return websocket.StatusCode(closeCodeBase + int(ce.Code))
}

// closeReason cuts msg to the 123 bytes a close frame has room for,
// without splitting a UTF-8 sequence.
func closeReason(msg string) string {
	msg = strings.ToValidUTF8(msg, "?")
	if len(msg) <= maxCloseReason {
		return msg
	}
	msg = msg[:maxCloseReason]
	for len(msg) > 0 && !utf8.ValidString(msg) {
		msg = msg[:len(msg)-1]
	}
	return msg
}

// finalWriteTimeout bounds writing the status frame and the close
// handshake of a socket whose call has ended.
const finalWriteTimeout = 5 * time.Second

const msgShutdown = "the gateway is shutting down; reconnect"

// wsSession is one bridged socket. Three parties touch it: run (the
// handler goroutine: opens the call, moves backend messages to frames,
// finishes), readLoop (one goroutine: moves frames to the backend) and the
// keepalive timers. Backpressure is end to end: run writes one frame
// before it receives the next message, and readLoop sends one message
// before it reads the next frame, so nothing is buffered beyond one
// message each way.
type wsSession struct {
	h    *Bridge
	conn *websocket.Conn
	r    *http.Request
	p    *binding.Plan
	be   transcoder.Backend
	req  *wsRequest
	// adm is the socket's policy decision (nil without plugins): its
	// per-message limits count each client message.
	adm *transcoder.Admission
	// rep is the call's report (nil outside the gateway's edge): it
	// counts the messages' bytes.
	rep *call.Report

	int64Numbers bool

	// callCtx is the backend call's context (with the outgoing metadata);
	// connCtx bounds socket I/O. A failure cancels the call; a quiet one
	// (client gone) cancels the socket I/O too.
	callCtx    context.Context
	cancelCall context.CancelFunc
	connCtx    context.Context
	cancelConn context.CancelFunc

	first   chan any // unary and server streams: the one request message
	readers sync.WaitGroup
	bg      sync.WaitGroup // running keepalive callbacks

	last    atomic.Int64 // UnixNano of the last message either way
	writing atomic.Bool  // run is writing a frame
	sending atomic.Bool  // readLoop is blocked in SendMsg

	mu        sync.Mutex
	failure   *wsFailure
	finished  bool // run is finishing: failures no longer count
	stopped   bool // keepalive timers must not re-arm
	pingTimer *time.Timer
	idleTimer *time.Timer
}

// newWSSession starts the session of one accepted socket. adm is the
// socket's policy decision (nil without plugins): its call (consumer,
// claims) feeds ring_hash's hash_on, and its per-message limits count
// each client message.
func newWSSession(h *Bridge, conn *websocket.Conn, r *http.Request, p *binding.Plan, be transcoder.Backend, req *wsRequest, md metadata.MD, adm *transcoder.Admission) *wsSession {
	s := &wsSession{h: h, conn: conn, r: r, p: p, be: be, req: req, adm: adm, first: make(chan any, 1), rep: call.ReportFrom(r.Context())}
	s.int64Numbers = p.Int64Numbers || binding.WantsInt64Numbers(r)
	// The request's context ends when the handler returns; the socket
	// lives inside the handler, so it is the right parent.
	s.connCtx, s.cancelConn = context.WithCancel(r.Context())
	ctx := transcoder.WithUpstreamInfo(metadata.NewOutgoingContext(s.connCtx, md), r, p.Route.Method, p.Route.Config, adm, false)
	s.callCtx, s.cancelCall = context.WithCancel(ctx)
	s.touch()
	return s
}

// run bridges the socket until the call ends, then writes the status frame
// and closes.
func (s *wsSession) run() {
	// The bridge enforces the limit itself, so that an oversized message
	// gets a status frame before close 1009.
	s.conn.SetReadLimit(-1)
	s.startKeepalive()
	defer s.stopKeepalive()
	stopShutdown := context.AfterFunc(s.h.base, func() {
		s.fail(&wsFailure{err: call.Errorf(codes.Unavailable, msgShutdown), code: closeGoingAway})
	})
	defer stopShutdown()

	method := s.p.Route.Method
	var cs grpc.ClientStream
	var err error
	if method.IsStreamingClient() {
		if cs, err = s.req.newStream(s.callCtx, s.be); err != nil {
			s.finish(nil, err)
			return
		}
		s.startReader(cs)
	} else {
		s.startReader(nil)
		var msg any
		select {
		case msg = <-s.first:
		case <-s.callCtx.Done():
			s.finish(nil, s.callCtx.Err())
			return
		}
		ctx := s.callCtx
		if d := callTimeout(s.p, s.be, method); d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = transcoder.CallDeadline(ctx, d, 0)
			defer cancel()
		}
		if cs, err = s.req.newStream(ctx, s.be); err != nil {
			s.finish(nil, err)
			return
		}
		// A send error means the call ended; RecvMsg reports its status.
		if cs.SendMsg(msg) == nil {
			_ = cs.CloseSend()
		}
	}
	for {
		msg := s.req.newResponse()
		if err = cs.RecvMsg(msg); err != nil {
			break
		}
		typ, frame, encErr := s.req.encode(msg, s.int64Numbers)
		if encErr != nil {
			err = encErr
			break
		}
		s.writing.Store(true)
		werr := s.conn.Write(s.connCtx, typ, frame)
		s.writing.Store(false)
		if werr == nil {
			s.rep.AddMessageBytes(0, len(frame))
		}
		if werr != nil {
			s.fail(&wsFailure{err: call.Errorf(codes.Canceled, "the client went away"), quiet: true})
			break
		}
		s.touch()
	}
	s.finish(cs, err)
}

// finish ends the call and the socket: a status frame and a close code,
// unless the client is gone. err is the call's result (io.EOF for OK).
func (s *wsSession) finish(cs grpc.ClientStream, err error) {
	s.mu.Lock()
	s.finished = true
	f := s.failure
	s.mu.Unlock()
	s.cancelCall()

	var ce *call.Error
	code := websocket.StatusNormalClosure
	quiet := false
	switch {
	case f != nil:
		ce, code, quiet = f.err, f.code, f.quiet
	case err == nil || errors.Is(err, io.EOF):
	default:
		ce = call.FromError(err)
		code = closeCode(ce)
	}
	s.h.logFinish(s.r.Context(), s.p.FullMethod, ce)
	if ce != nil {
		call.ReportFrom(s.r.Context()).SetCode(ce.Code)
	}
	if quiet {
		_ = s.conn.CloseNow()
	} else {
		var hdr, trl metadata.MD
		if cs != nil {
			hdr, _ = cs.Header()
			trl = cs.Trailer()
		}
		reason := ""
		if ce != nil {
			reason = closeReason(ce.Msg)
		}
		ctx, cancel := context.WithTimeout(s.connCtx, finalWriteTimeout)
		if frame := s.h.statusFrame(ce, hdr, trl); s.conn.Write(ctx, websocket.MessageText, frame) == nil {
			s.rep.AddMessageBytes(0, len(frame))
			_ = s.conn.Close(code, reason)
		}
		cancel()
		_ = s.conn.CloseNow()
	}
	s.cancelConn()
	s.readers.Wait()
}

// fail records why the socket must end (the first reason wins) and cancels
// the call; run then finishes.
func (s *wsSession) fail(f *wsFailure) {
	s.mu.Lock()
	if s.failure != nil || s.finished {
		s.mu.Unlock()
		return
	}
	s.failure = f
	s.mu.Unlock()
	s.cancelCall()
	if f.quiet {
		s.cancelConn()
	}
}

func (s *wsSession) touch() { s.last.Store(time.Now().UnixNano()) }

func (s *wsSession) startReader(cs grpc.ClientStream) {
	s.readers.Add(1)
	go func() {
		defer s.readers.Done()
		s.readLoop(cs)
	}()
}

// readLoop reads frames until the socket ends: each data frame becomes one
// request message, sent to cs (client streams) or handed to run (unary
// and server streams, where the first message also half-closes).
func (s *wsSession) readLoop(cs grpc.ClientStream) {
	halfClosed, sendDone := false, false
	for {
		typ, frame, err := s.readFrame()
		if err != nil {
			s.fail(readFailure(err, s.h.maxBytes))
			return
		}
		s.touch()
		if typ == websocket.MessageText {
			closeSend, cerr := isCloseSend(frame)
			if cerr != nil {
				s.fail(&wsFailure{err: cerr, code: closeBadData})
				return
			}
			if closeSend {
				if !halfClosed {
					halfClosed = true
					if cs == nil {
						s.first <- s.req.fieldsOnly()
					} else if !sendDone {
						_ = cs.CloseSend()
					}
				}
				continue
			}
			if s.req.mode == modeProto {
				s.fail(&wsFailure{err: call.BadField("message", "text frame on a "+SubprotocolProto+` socket: send messages as binary frames; text frames carry only {"@close_send": true}`), code: closeUnsupported})
				return
			}
		} else if s.req.mode == modeJSON {
			s.fail(&wsFailure{err: call.BadField("message", "binary frame on a "+SubprotocolJSON+" socket: send JSON text frames, or offer the "+SubprotocolProto+" subprotocol for binary protobuf"), code: closeUnsupported})
			return
		}
		if halfClosed {
			s.fail(&wsFailure{err: call.Errorf(codes.InvalidArgument,
				"message after the request stream was closed (by @close_send, or by the one request message of method %s)", s.p.Route.Method.FullName()),
				code: closeCode(&call.Error{Code: codes.InvalidArgument})})
			return
		}
		if cerr := s.adm.CheckMessage(s.connCtx); cerr != nil {
			// Over a per-message limit: the socket closes with 4000 + the
			// code (4008 for RESOURCE_EXHAUSTED).
			s.fail(&wsFailure{err: cerr, code: closeCode(cerr)})
			return
		}
		msg, cerr := s.req.decode(frame)
		if cerr != nil {
			s.fail(&wsFailure{err: cerr, code: closeBadData})
			return
		}
		if cs == nil {
			halfClosed = true
			s.first <- msg
			continue
		}
		if sendDone {
			continue
		}
		s.sending.Store(true)
		err = cs.SendMsg(msg) // blocks on HTTP/2 flow control
		s.sending.Store(false)
		if err != nil {
			sendDone = true // the call ended; run reports its status
		}
	}
}

// readFrame reads one whole message, at most maxBytes.
func (s *wsSession) readFrame() (websocket.MessageType, []byte, error) {
	typ, rd, err := s.conn.Reader(s.connCtx)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(rd, s.h.maxBytes+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(b)) > s.h.maxBytes {
		return 0, nil, errTooBig
	}
	s.rep.AddMessageBytes(len(b), 0)
	return typ, b, nil
}

// readFailure classifies a read error: an oversized message, or the client
// closing or vanishing.
func readFailure(err error, limit int64) *wsFailure {
	if errors.Is(err, errTooBig) {
		return &wsFailure{err: call.Errorf(codes.ResourceExhausted,
			"message larger than %d bytes (websocket.max_message_bytes)", limit), code: closeTooBig}
	}
	if st := websocket.CloseStatus(err); st != -1 {
		return &wsFailure{err: call.Errorf(codes.Canceled, "the client closed the WebSocket (%d)", st), quiet: true}
	}
	return &wsFailure{err: call.Errorf(codes.Canceled, "the WebSocket connection was lost"), quiet: true}
}

// startKeepalive arms the ping and idle timers. They run as timer
// callbacks, not goroutines, so an idle socket costs no extra goroutine.
func (s *wsSession) startKeepalive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h.ping > 0 {
		s.pingTimer = time.AfterFunc(s.h.ping, s.ping)
	}
	if s.h.idle > 0 {
		s.idleTimer = time.AfterFunc(s.h.idle, s.checkIdle)
	}
}

// stopKeepalive stops the timers and waits for a running callback.
func (s *wsSession) stopKeepalive() {
	s.mu.Lock()
	s.stopped = true
	if s.pingTimer != nil {
		s.pingTimer.Stop()
	}
	if s.idleTimer != nil {
		s.idleTimer.Stop()
	}
	s.mu.Unlock()
	s.bg.Wait()
}

// enter registers a running keepalive callback; false means the session
// is stopping.
func (s *wsSession) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.bg.Add(1)
	return true
}

func (s *wsSession) rearm(t *time.Timer, d time.Duration) {
	s.mu.Lock()
	if !s.stopped {
		t.Reset(d)
	}
	s.mu.Unlock()
}

// ping pings the client; a client that does not answer within one
// interval is gone. Pings are skipped while a frame write or a backend
// send is blocked: the socket is busy, and pongs are read only between
// sends.
func (s *wsSession) ping() {
	if !s.enter() {
		return
	}
	defer s.bg.Done()
	if !s.writing.Load() && !s.sending.Load() {
		ctx, cancel := context.WithTimeout(s.connCtx, s.h.ping)
		err := s.conn.Ping(ctx)
		cancel()
		if err != nil && s.connCtx.Err() == nil && !s.sending.Load() {
			s.fail(&wsFailure{err: call.Errorf(codes.Unavailable, "the client did not answer a ping within %s", s.h.ping), quiet: true})
			return
		}
	}
	s.rearm(s.pingTimer, s.h.ping)
}

// checkIdle ends a socket with no message either way for the idle
// timeout: status DEADLINE_EXCEEDED and close 1001, or a quiet close when
// a frame write has been stuck that long (the client reads nothing).
func (s *wsSession) checkIdle() {
	if !s.enter() {
		return
	}
	defer s.bg.Done()
	since := time.Since(time.Unix(0, s.last.Load()))
	if since < s.h.idle {
		s.rearm(s.idleTimer, s.h.idle-since)
		return
	}
	if s.writing.Load() {
		s.fail(&wsFailure{err: call.Errorf(codes.DeadlineExceeded, "the client read nothing for %s", s.h.idle), quiet: true})
		return
	}
	s.fail(&wsFailure{err: call.Errorf(codes.DeadlineExceeded, "no message either way for %s (websocket.idle_timeout)", s.h.idle), code: closeGoingAway})
}
