package h2call

import (
	"context"
	"io"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The grpc.ClientStream side of a call opened by Conn.NewStream. As
// with grpc-go, one goroutine may send (SendMsg, CloseSend) while
// another receives (RecvMsg), and Header, Trailer and Context may be
// called from any goroutine; two goroutines must not send, or receive,
// at once.

// Header returns the response header metadata, blocking until the head
// arrives or the call ends. It returns nil, nil when the call ended
// without a head (a trailers-only answer or a failure): RecvMsg then
// reports the status, as with grpc-go.
func (c *call) Header() (metadata.MD, error) {
	select {
	case <-c.headCh:
	case <-c.ctx.Done():
		c.contextDone()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head == nil {
		return nil, nil
	}
	return c.head.Copy(), nil
}

// Trailer returns the trailer metadata (of a trailers-only answer too);
// it is complete once RecvMsg has returned an error, and nil before the
// call ends.
func (c *call) Trailer() metadata.MD {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		return nil
	}
	return c.trailer.Copy()
}

// CloseSend half-closes the request stream (END_STREAM). It never fails.
func (c *call) CloseSend() error {
	if c.sentLast {
		return nil
	}
	c.sentLast = true
	_ = c.s.WriteData(nil, true)
	return nil
}

// Context returns the stream's context, the one NewStream was given.
func (c *call) Context() context.Context { return c.ctx }

// SendMsg sends one request message. It blocks until the message has
// been handed to the connection within the stream's flow-control window
// (so a stream holds at most one message waiting for window). After the
// call ended it returns io.EOF, and RecvMsg reports the status; an error
// of its own (marshaling, the send limit) also ends the call.
func (c *call) SendMsg(m any) error {
	if c.sentLast {
		err := status.Error(codes.Internal, "SendMsg called after CloseSend")
		c.abort(err, Abandoned, http2.ErrCodeCancel)
		return err
	}
	if !c.clientStreams {
		c.sentLast = true
	}
	if c.ctx.Err() != nil {
		// The AfterFunc may not have run yet.
		c.contextDone()
		if c.clientStreams {
			return io.EOF
		}
		return nil
	}
	buf, err := c.o.encode(m)
	if err != nil {
		c.abort(err, Abandoned, http2.ErrCodeCancel)
		return err
	}
	werr := c.s.WriteData(*buf, !c.clientStreams)
	putBuf(buf)
	if werr == nil && c.clientStreams {
		// The stream goes away when the call ends (including by ctx), so
		// this does not outlive it.
		werr = c.s.WaitDrained(nil)
	}
	if werr != nil && c.clientStreams {
		return io.EOF
	}
	return nil
}

// RecvMsg receives the next response message into m, blocking until one
// arrives or the call ends. At the end it returns io.EOF after an OK
// status, else the status error. On a call with one answer (not server
// streaming) it also waits for the status after the message.
func (c *call) RecvMsg(m any) error {
	if c.clientErr != nil {
		return c.clientErr
	}
	msg, err := c.next()
	if err != nil {
		if err == io.EOF && !c.serverStreams && !c.gotMsg {
			err = status.Error(codes.Internal, "cardinality violation: received no response message from non-server-streaming RPC")
		}
		c.clientErr = err
		return err
	}
	c.gotMsg = true
	if err := c.o.decode(msg, c.encoding, m, &c.bs); err != nil {
		c.abort(err, Abandoned, http2.ErrCodeCancel)
		c.clientErr = err
		return err
	}
	if c.serverStreams {
		return nil
	}
	// The frames of a second message end the call in Data, so next can
	// only return the end here.
	if _, err := c.next(); err != io.EOF {
		c.clientErr = err
		return err
	}
	c.clientErr = io.EOF
	return nil
}

var _ grpc.ClientStream = (*call)(nil)
