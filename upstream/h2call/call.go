package h2call

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// call is one gRPC call on one stream: the stream's h2.Events, fed on
// the connection's reading goroutine, and the state the caller's
// goroutine (Invoke, or the grpc.ClientStream methods in stream.go)
// reads. The events never block: they frame the received bytes into
// messages, record the end and wake the caller through notify.
type call struct {
	ctx           context.Context
	att           Attempt
	s             *h2.Stream // set once open returns; events use their own argument
	o             callOptions
	deadline      time.Time // the deadline announced in grpc-timeout (zero: none)
	serverStreams bool
	clientStreams bool
	keepHead      bool

	// Caller-side state of a ClientStream (its sending goroutine, or the
	// receiving one), never touched by events.
	sentLast  bool
	gotMsg    bool
	clientErr error // the error RecvMsg returns from now on

	mu       sync.Mutex
	notify   chan struct{} // cap 1: something the waiting caller wants happened
	headCh   chan struct{} // streams: closed once the head arrived or the call ended
	headDone bool
	stop     func() bool // stops the context.AfterFunc of a stream

	// The response.
	gotHead     bool
	head        metadata.MD // kept when keepHead; nil for trailers-only
	trailer     metadata.MD // the final block's, kept when keepHead
	encoding    string      // grpc-encoding
	httpStatus  int
	nonGRPC     *status.Status // set while the body of a non-gRPC answer is collected
	nonGRPCData []byte
	received    bool

	// Framing of the received DATA into messages.
	prefix    [grpcHeaderLen]byte
	prefixN   int
	inPayload bool
	cur       []byte  // the payload being assembled
	curPtr    *[]byte // cur's pooled buffer (nil: allocated)
	curLen    int
	curFlag   byte
	curOwed   int // bytes of the message in progress not yet credited
	nmsgs     int
	queue     []inMsg // complete messages from qHead on
	qHead     int
	q0        [1]inMsg
	// reading is set while a caller consumes the message in progress
	// (Invoke throughout; RecvMsg while it waits): its bytes are credited
	// as they arrive, so a message larger than the stream window can
	// complete. Otherwise bytes are credited when RecvMsg takes them.
	reading bool
	waitMsg bool // RecvMsg waits: wake it on a complete message

	// over is set by the first end (a final block, a reset, an abort):
	// events are ignored from then on. ended is set once the attempt's
	// Finish has run: the caller sees the end only then.
	over  bool
	ended bool
	err   error // the call's end: nil for OK, else a status error
	kind  Kind

	bs [1]mem.Buffer // scratch for decode
}

// signal wakes the caller waiting on notify, if any.
func (c *call) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// endLocked records the call's end (the caller checked over: the first
// end wins) and releases the message in progress; it returns the credit
// that message still owed. The end is published by end.
func (c *call) endLocked(err error, kind Kind) int {
	c.over, c.err, c.kind = true, err, kind
	credit := c.curOwed
	c.curOwed = 0
	if c.curPtr != nil {
		putBuf(c.curPtr)
		c.curPtr = nil
	}
	c.cur, c.inPayload = nil, false
	return credit
}

// dropQueueLocked releases the messages nobody will read and returns
// their credit.
func (c *call) dropQueueLocked() int {
	credit := 0
	for i := c.qHead; i < len(c.queue); i++ {
		credit += c.queue[i].owed
		c.queue[i].release()
		c.queue[i] = inMsg{}
	}
	c.queue, c.qHead = c.queue[:0], 0
	return credit
}

// end reports the attempt's outcome to its Finish hook and the
// grpc.OnFinish options, then lets the caller see the end (so the
// outcome is known before the call returns). It runs once, on the
// goroutine whose endLocked won, after it released the stream.
func (c *call) end() {
	c.mu.Lock()
	stop := c.stop
	c.stop = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	if c.att.Finish != nil {
		c.att.Finish(Outcome{
			Kind:       c.kind,
			Code:       status.Code(c.err),
			HTTPStatus: c.httpStatus,
			Sent:       c.kind != Refused && c.kind != NotStarted,
			Received:   c.received,
			Err:        c.err,
		})
	}
	for _, f := range c.o.onFinish {
		f(c.err)
	}
	c.mu.Lock()
	c.ended = true
	if c.headCh != nil && !c.headDone {
		c.headDone = true
		close(c.headCh)
	}
	c.mu.Unlock()
	c.signal()
}

// abort ends the call from the client's side: the stream is reset with
// code and the messages not read yet are dropped. It does nothing when
// the call already ended.
func (c *call) abort(err error, kind Kind, code http2.ErrCode) {
	c.mu.Lock()
	if c.over {
		c.mu.Unlock()
		return
	}
	credit := c.endLocked(err, kind)
	credit += c.dropQueueLocked()
	c.mu.Unlock()
	c.s.Reset(code)
	if credit > 0 {
		c.s.Credit(credit) // the connection's share; the stream is gone
	}
	c.end()
}

// contextDone ends a stream whose context ended (context.AfterFunc).
func (c *call) contextDone() {
	c.abort(contextError(c.ctx.Err()), Abandoned, http2.ErrCodeCancel)
}

// Headers takes the response head, the trailers, or a trailers-only
// answer.
func (c *call) Headers(s *h2.Stream, fields []hpack.HeaderField, end bool) {
	c.mu.Lock()
	if c.over {
		c.mu.Unlock()
		return
	}
	c.received = true
	credit, reset := 0, http2.ErrCodeNo
	if c.nonGRPC != nil {
		// Trailers after the head of an answer that is not gRPC: the
		// status is the head's, with the body collected so far.
		credit = c.endLocked(c.nonGRPCError(), Answered)
		reset = http2.ErrCodeProtocol
	} else {
		var md metadata.MD
		if c.keepHead {
			md = make(metadata.MD, len(fields))
		}
		h := readBlock(fields, md)
		switch {
		case c.gotHead:
			// Trailers (the engine delivers none without END_STREAM).
			c.trailer = md
			if c.truncatedLocked() {
				credit = c.endLocked(errTruncated, Broken)
			} else {
				credit = c.endLocked(h.status(), Answered)
			}
		case !h.isGRPC:
			c.gotHead = true
			c.httpStatus = h.httpStatus
			st := h.nonGRPCStatus()
			if end {
				credit = c.endLocked(st.Err(), Answered)
				reset = http2.ErrCodeProtocol
			} else {
				c.nonGRPC = st
			}
		case h.headerError != "":
			c.gotHead = true
			c.httpStatus = h.httpStatus
			credit = c.endLocked(status.Error(codes.Internal, h.headerError), Broken)
			reset = http2.ErrCodeProtocol
		case !end:
			c.gotHead = true
			c.httpStatus = h.httpStatus
			c.encoding = h.encoding
			c.head = md
			if c.headCh != nil {
				c.headDone = true
				close(c.headCh)
			}
		default:
			// Trailers-only: the status comes with the head.
			c.gotHead = true
			c.httpStatus = h.httpStatus
			c.trailer = md
			credit = c.endLocked(h.status(), Answered)
		}
	}
	over := c.over
	c.mu.Unlock()
	if !over {
		return
	}
	// The server ended its side; if ours is still open, close the stream
	// (grpc-go sends RST_STREAM NO_ERROR too). No-op when both ended.
	s.Reset(reset)
	if credit > 0 {
		s.Credit(credit)
	}
	c.end()
}

// errTruncated ends a call whose stream ended inside a message, as
// grpc-go reports it (after the whole messages before it).
var errTruncated = status.Error(codes.Internal, "unexpected EOF")

// truncatedLocked reports whether the stream stopped inside a message.
func (c *call) truncatedLocked() bool { return c.inPayload || c.prefixN > 0 }

// nonGRPCDataMax is how much of a non-gRPC answer's body goes into its
// status message (grpc-go's nonGRPCDataMaxLen).
const nonGRPCDataMax = 1024

func (c *call) nonGRPCError() error {
	return status.New(c.nonGRPC.Code(), fmt.Sprintf("%s\ndata: %q", c.nonGRPC.Message(), c.nonGRPCData)).Err()
}

// Data frames the received bytes into messages.
func (c *call) Data(s *h2.Stream, p []byte, end bool) {
	c.mu.Lock()
	if c.over {
		// The call is over (the client gave up, or a limit ended it):
		// the bytes only need their credit back.
		c.mu.Unlock()
		s.Credit(len(p))
		return
	}
	c.received = true
	credit, reset := 0, http2.ErrCodeNo
	switch {
	case c.nonGRPC != nil:
		n := min(len(p), nonGRPCDataMax-len(c.nonGRPCData))
		c.nonGRPCData = append(c.nonGRPCData, p[:n]...)
		credit = len(p)
		if len(c.nonGRPCData) >= nonGRPCDataMax || end {
			credit += c.endLocked(c.nonGRPCError(), Answered)
			reset = http2.ErrCodeProtocol
		}
	default:
		var err error
		credit, err = c.frameLocked(p)
		switch {
		case err != nil:
			credit += c.endLocked(err, Abandoned)
			reset = http2.ErrCodeCancel
		case end && c.truncatedLocked():
			credit += c.endLocked(errTruncated, Broken)
		case end:
			credit += c.endLocked(status.Error(codes.Internal, "server closed the stream without sending trailers"), Broken)
		}
	}
	over := c.over
	wake := c.waitMsg && c.qHead < len(c.queue)
	c.mu.Unlock()
	if over {
		s.Reset(reset)
	}
	if credit > 0 {
		s.Credit(credit)
	}
	switch {
	case over:
		c.end()
	case wake:
		c.signal()
	}
}

// frameLocked takes DATA bytes into messages, queueing the complete ones.
// It returns the credit to give back now (the bytes a reader consumes as
// they come), or the error that ends the call: a message over the limit,
// or a second message on a call that has one answer.
func (c *call) frameLocked(p []byte) (int, error) {
	for len(p) > 0 {
		if !c.inPayload {
			k := copy(c.prefix[c.prefixN:], p)
			c.prefixN += k
			c.curOwed += k
			p = p[k:]
			if c.prefixN < grpcHeaderLen {
				break
			}
			c.prefixN = 0
			if c.nmsgs > 0 && !c.serverStreams {
				return 0, status.Error(codes.Internal, "cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message")
			}
			c.nmsgs++
			n := binary.BigEndian.Uint32(c.prefix[1:])
			if int64(n) > int64(c.o.maxRecv) {
				return 0, status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, c.o.maxRecv)
			}
			c.curFlag, c.curLen = c.prefix[0], int(n)
			if n == 0 {
				c.pushLocked(inMsg{flag: c.curFlag})
				continue
			}
			c.inPayload = true
			switch {
			case c.o.codec != nil && n <= 1<<10:
				// A codec may keep small messages' bytes (see decode):
				// fresh memory, never reused.
				c.curPtr = nil
				c.cur = make([]byte, 0, n)
			case n <= 1<<maxPoolShift:
				c.curPtr = getBuf(int(n))
				c.cur = (*c.curPtr)[:0]
			default:
				// Grown as the bytes come, so a large announced length
				// costs memory only once it is sent.
				c.curPtr = nil
				c.cur = make([]byte, 0, 1<<maxPoolShift)
			}
			continue
		}
		k := min(c.curLen-len(c.cur), len(p))
		if len(c.cur)+k > cap(c.cur) {
			grown := make([]byte, len(c.cur), min(max(2*cap(c.cur), len(c.cur)+k), c.curLen))
			copy(grown, c.cur)
			c.cur = grown
		}
		c.cur = append(c.cur, p[:k]...)
		c.curOwed += k
		p = p[k:]
		if len(c.cur) == c.curLen {
			c.pushLocked(inMsg{data: c.cur, pool: c.curPtr, flag: c.curFlag})
			c.cur, c.curPtr, c.inPayload = nil, nil, false
		}
	}
	credit := 0
	if c.reading && c.qHead == len(c.queue) {
		credit, c.curOwed = c.curOwed, 0
	}
	return credit, nil
}

func (c *call) pushLocked(m inMsg) {
	m.owed, c.curOwed = c.curOwed, 0
	c.queue = append(c.queue, m)
}

// Reset ends the call on a stream reset or a lost connection. Messages
// already received are still delivered, then the error.
func (c *call) Reset(s *h2.Stream, err error) {
	c.mu.Lock()
	if c.over {
		c.mu.Unlock()
		return
	}
	kind, e := streamEndError(err, c.deadline)
	credit := c.endLocked(e, kind)
	c.mu.Unlock()
	if credit > 0 {
		s.Credit(credit)
	}
	c.end()
}

// next returns the next received message, or the call's end (io.EOF
// for OK), waiting for either; ctx's end aborts the call.
func (c *call) next() (inMsg, error) {
	done := c.ctx.Done()
	c.mu.Lock()
	for {
		if c.qHead < len(c.queue) {
			m := c.queue[c.qHead]
			c.queue[c.qHead] = inMsg{}
			if c.qHead++; c.qHead == len(c.queue) {
				c.queue, c.qHead = c.queue[:0], 0
			}
			c.reading, c.waitMsg = false, false
			c.mu.Unlock()
			if m.owed > 0 {
				c.s.Credit(m.owed)
			}
			return m, nil
		}
		if c.ended {
			err := c.err
			c.mu.Unlock()
			if err == nil {
				return inMsg{}, io.EOF
			}
			return inMsg{}, err
		}
		c.reading, c.waitMsg = true, true
		credit := c.curOwed
		c.curOwed = 0
		c.mu.Unlock()
		if credit > 0 {
			c.s.Credit(credit)
		}
		select {
		case <-c.notify:
		case <-done:
			c.abort(contextError(c.ctx.Err()), Abandoned, http2.ErrCodeCancel)
		}
		c.mu.Lock()
	}
}

// unaryResult waits for the end of a call with one answer and decodes
// it into reply.
func (c *call) unaryResult(reply any) error {
	done := c.ctx.Done()
	c.mu.Lock()
	for !c.ended {
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-done:
			c.abort(contextError(c.ctx.Err()), Abandoned, http2.ErrCodeCancel)
		}
		c.mu.Lock()
	}
	err := c.err
	var m inMsg
	have := c.qHead < len(c.queue)
	if have {
		m = c.queue[c.qHead]
		c.queue[c.qHead] = inMsg{}
		c.queue, c.qHead = c.queue[:0], 0
	}
	c.mu.Unlock()
	if m.owed > 0 {
		c.s.Credit(m.owed)
	}
	if c.o.header != nil {
		*c.o.header = c.head
	}
	if c.o.trailer != nil {
		*c.o.trailer = c.trailer
		if c.trailer == nil {
			*c.o.trailer = metadata.MD{} // as grpc-go: empty, not nil
		}
	}
	if err != nil {
		m.release()
		return err
	}
	if !have {
		return status.Error(codes.Internal, "cardinality violation: received no response message from non-server-streaming RPC")
	}
	return c.o.decode(m, c.encoding, reply, &c.bs)
}
