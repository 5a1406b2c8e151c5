package h2call

import (
	"context"
	"math"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options configure [New].
type Options struct {
	// Pick chooses the connection of every attempt (required). See [Pick].
	Pick Pick
	// MaxRecvMsgSize is the largest response message accepted, in bytes,
	// before and after decompression (default 4 MiB, as grpc-go's). A
	// larger one fails the call with RESOURCE_EXHAUSTED. The call option
	// grpc.MaxCallRecvMsgSize overrides it per call.
	MaxRecvMsgSize int
	// MaxSendMsgSize is the largest request message sent, in bytes
	// (default math.MaxInt32, as grpc-go's); grpc.MaxCallSendMsgSize
	// overrides it per call.
	MaxSendMsgSize int
	// UserAgent is the user-agent of gRPC calls (default "rosetta").
	// Outgoing metadata cannot set it, as with grpc-go.
	UserAgent string
	// AcceptGzip advertises grpc-accept-encoding: gzip, which lets a
	// backend compress its responses. Compressed responses are inflated
	// whether or not it is set; it is off by default, as grpc-go sends no
	// grpc-accept-encoding unless a compressor is registered.
	AcceptGzip bool
}

// Conn carries gRPC calls, and HTTP round trips ([Conn.RoundTrip]), on
// the HTTP/2 connections its Pick hook hands out. It implements
// grpc.ClientConnInterface and http.RoundTripper, is safe for concurrent
// use and holds no resources of its own: closing the connections is the
// Pick side's business.
type Conn struct {
	pick       Pick
	maxRecv    int
	maxSend    int
	userAgent  string
	acceptGzip bool
}

// New returns a Conn. It panics when opts.Pick is nil (a programming
// error).
func New(opts Options) *Conn {
	if opts.Pick == nil {
		panic("h2call: Options.Pick is nil")
	}
	cc := &Conn{pick: opts.Pick, maxRecv: opts.MaxRecvMsgSize, maxSend: opts.MaxSendMsgSize,
		userAgent: opts.UserAgent, acceptGzip: opts.AcceptGzip}
	if cc.maxRecv <= 0 {
		cc.maxRecv = 4 << 20
	}
	if cc.maxSend <= 0 {
		cc.maxSend = math.MaxInt32
	}
	if cc.userAgent == "" {
		cc.userAgent = "rosetta"
	}
	return cc
}

// maxNotStarted bounds how many attempts of one call may find their
// connection taking no new stream before the call fails UNAVAILABLE;
// nothing was sent on them, so picking again is always safe.
const maxNotStarted = 3

// Invoke makes a unary call: it sends args, waits for the answer and
// decodes it into reply, blocking until the call ends or ctx does (and
// while Pick does). It
// honours the call options grpc.ForceCodecV2 and grpc.ForceCodec (the
// codec that marshals args and unmarshals reply; protobuf by default,
// which takes proto.Message values, dynamicpb included), grpc.Header and
// grpc.Trailer, grpc.MaxCallRecvMsgSize and grpc.MaxCallSendMsgSize,
// grpc.UseCompressor("gzip"), grpc.CallContentSubtype, grpc.OnFinish and
// grpc.CallAuthority; others are ignored.
//
// The outgoing metadata of ctx becomes request fields (keys as
// metadata.FromOutgoingContext gives them, lower case; -bin values in
// unpadded base64; gRPC's own fields are not taken from metadata), and
// ctx's deadline, as ctx.Deadline reports it, becomes grpc-timeout.
// When ctx ends first, the stream is reset with CANCEL and the call fails
// CANCELED or DEADLINE_EXCEEDED. Errors are gRPC status errors.
func (cc *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) (err error) {
	o, err := cc.parseCallOptions(opts)
	if err != nil {
		return err
	}
	if len(o.onFinish) > 0 {
		defer func() {
			for _, f := range o.onFinish {
				f(err)
			}
		}()
		o.onFinish = nil
	}
	buf, err := o.encode(args)
	if err != nil {
		return err
	}
	c, err := cc.open(ctx, method, &o, openParams{keepHead: o.header != nil || o.trailer != nil, reading: true})
	if err != nil {
		putBuf(buf)
		return err
	}
	// A failed write means the stream is gone; its event says why.
	_ = c.s.WriteData(*buf, true)
	putBuf(buf)
	return c.unaryResult(reply)
}

// NewStream opens a streaming call and returns once its request head is
// queued (it blocks only while Pick does). The stream's methods follow
// the grpc.ClientStream contract (see [Conn.Invoke] for the call options,
// metadata and deadline). ctx bounds the whole stream: when it ends, the
// stream is reset with CANCEL, whether or not a method is running. As
// with grpc-go, the caller must end the stream, by reading until RecvMsg
// returns an error or by canceling ctx.
func (cc *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	o, err := cc.parseCallOptions(opts)
	if err != nil {
		return nil, err
	}
	c, err := cc.open(ctx, method, &o, openParams{serverStreams: desc.ServerStreams, clientStreams: desc.ClientStreams, keepHead: true, stream: true})
	if err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, c.contextDone)
		c.mu.Lock()
		if c.over {
			c.mu.Unlock()
			stop()
		} else {
			c.stop = stop
			c.mu.Unlock()
		}
	}
	return c, nil
}

// openParams describe the call open starts.
type openParams struct {
	serverStreams bool // several response messages may come
	clientStreams bool // several request messages may go
	keepHead      bool // keep the header blocks (for Header, Trailer)
	reading       bool // the caller waits for the answer from the start (Invoke)
	stream        bool // a ClientStream: Header waits on headCh
}

// open picks a connection and opens the call's stream with the request
// head. It picks again when a connection takes no new stream.
func (cc *Conn) open(ctx context.Context, method string, o *callOptions, p openParams) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, contextError(err)
	}
	for try := 1; ; try++ {
		att, err := cc.pick(ctx, method)
		if err != nil {
			return nil, pickError(ctx, err)
		}
		if att.Conn == nil {
			return nil, status.Error(codes.Internal, "h2call: Pick returned an attempt without a connection")
		}
		fp := fieldSlices.Get().(*[]hpack.HeaderField)
		fields, err := cc.requestFields((*fp)[:0], ctx, method, &att, o)
		if err != nil {
			*fp = fields
			putFields(fp)
			att.finish(Outcome{Kind: NotStarted, Code: status.Code(err), Err: err})
			return nil, err
		}
		c := &call{
			ctx:           ctx,
			att:           att,
			o:             *o,
			serverStreams: p.serverStreams,
			clientStreams: p.clientStreams,
			keepHead:      p.keepHead,
			reading:       p.reading,
			notify:        make(chan struct{}, 1),
		}
		c.queue = c.q0[:0]
		if p.stream {
			c.headCh = make(chan struct{})
		}
		if dl, ok := ctx.Deadline(); ok {
			c.deadline = dl
		}
		s, err := att.Conn.NewStream(fields, false, c, nil)
		*fp = fields
		putFields(fp)
		if err != nil {
			serr := status.Errorf(codes.Unavailable, "h2call: %v", err)
			att.finish(Outcome{Kind: NotStarted, Code: codes.Unavailable, Err: serr})
			if try < maxNotStarted && ctx.Err() == nil {
				continue
			}
			return nil, serr
		}
		c.s = s
		return c, nil
	}
}

func (a *Attempt) finish(o Outcome) {
	if a.Finish != nil {
		a.Finish(o)
	}
}

var _ grpc.ClientConnInterface = (*Conn)(nil)
