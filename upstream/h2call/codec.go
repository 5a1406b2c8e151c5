package h2call

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// callOptions are the grpc.CallOptions a call honours (see
// [Conn.Invoke]), with the Conn's defaults applied.
type callOptions struct {
	codec     encoding.CodecV2 // nil: protobuf, done here without the codec registry
	subtype   string           // content-subtype ("" with the default codec)
	header    *metadata.MD
	trailer   *metadata.MD
	onFinish  []func(error)
	maxRecv   int
	maxSend   int
	gzip      bool   // compress request messages
	authority string // :authority override
}

func (o *callOptions) contentType() string {
	switch o.subtype {
	case "":
		return "application/grpc"
	case "proto":
		return "application/grpc+proto"
	}
	return "application/grpc+" + o.subtype
}

// parseCallOptions reads the options the dialects and generated clients
// pass. Options that need grpc-go's machinery (credentials, peer, retry
// buffers) are ignored, as grpc-go ignores options it does not know.
func (cc *Conn) parseCallOptions(opts []grpc.CallOption) (callOptions, error) {
	o := callOptions{maxRecv: cc.maxRecv, maxSend: cc.maxSend}
	for _, opt := range opts {
		switch opt := opt.(type) {
		case grpc.HeaderCallOption:
			o.header = opt.HeaderAddr
		case grpc.TrailerCallOption:
			o.trailer = opt.TrailerAddr
		case grpc.ForceCodecV2CallOption:
			o.codec = opt.CodecV2
		case grpc.ForceCodecCallOption:
			o.codec = codecV1{opt.Codec}
		case grpc.ContentSubtypeCallOption:
			o.subtype = strings.ToLower(opt.ContentSubtype)
		case grpc.MaxRecvMsgSizeCallOption:
			o.maxRecv = opt.MaxRecvMsgSize
		case grpc.MaxSendMsgSizeCallOption:
			o.maxSend = opt.MaxSendMsgSize
		case grpc.CompressorCallOption:
			switch opt.CompressorType {
			case "", "identity":
				o.gzip = false
			case "gzip":
				o.gzip = true
			default:
				return o, status.Errorf(codes.Internal, "grpc: Compressor is not installed for requested grpc-encoding %q", opt.CompressorType)
			}
		case grpc.OnFinishCallOption:
			o.onFinish = append(o.onFinish, opt.OnFinish)
		case grpc.AuthorityOverrideCallOption:
			o.authority = opt.Authority
		}
	}
	switch {
	case o.codec != nil:
		if o.subtype == "" {
			o.subtype = strings.ToLower(o.codec.Name())
		}
	case o.subtype != "" && o.subtype != "proto":
		c := encoding.GetCodecV2(o.subtype)
		if c == nil {
			return o, status.Errorf(codes.Internal, "no codec registered for content-subtype %s", o.subtype)
		}
		o.codec = c
	}
	return o, nil
}

// codecV1 adapts a grpc.ForceCodec codec.
type codecV1 struct{ c encoding.Codec }

func (c codecV1) Marshal(v any) (mem.BufferSlice, error) {
	b, err := c.c.Marshal(v)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (c codecV1) Unmarshal(data mem.BufferSlice, v any) error {
	return c.c.Unmarshal(data.Materialize(), v)
}

func (c codecV1) Name() string { return c.c.Name() }

// grpcHeaderLen is the length prefix of a gRPC message: a flags byte and a
// big-endian uint32 length.
const grpcHeaderLen = 5

// encode marshals v into a buffer from the pool, behind its 5-byte
// prefix (compressed when o.gzip), and checks the send limit. The caller
// puts the buffer back once h2 has taken the bytes.
func (o *callOptions) encode(v any) (*[]byte, error) {
	var buf *[]byte
	if o.codec == nil {
		m, err := protoMessage(v, "marshal")
		if err != nil {
			return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
		size := proto.Size(m)
		buf = getBuf(grpcHeaderLen + size)
		out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:grpcHeaderLen], m)
		if err != nil {
			putBuf(buf)
			return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
		*buf = out
	} else {
		data, err := o.codec.Marshal(v)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
		buf = getBuf(grpcHeaderLen + data.Len())
		data.CopyTo((*buf)[grpcHeaderLen:])
		data.Free()
	}
	flag := byte(0)
	if o.gzip && len(*buf) > grpcHeaderLen {
		z, err := gzipMessage(buf)
		putBuf(buf)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "grpc: error while compressing: %v", err)
		}
		buf, flag = z, 1
	}
	n := len(*buf) - grpcHeaderLen
	if n > o.maxSend {
		putBuf(buf)
		return nil, status.Errorf(codes.ResourceExhausted, "trying to send message larger than max (%d vs. %d)", n, o.maxSend)
	}
	(*buf)[0] = flag
	binary.BigEndian.PutUint32((*buf)[1:grpcHeaderLen], uint32(n))
	return buf, nil
}

// decode unmarshals one received message into v and releases its
// buffer. encoding is the response's grpc-encoding; bs is scratch space
// for the codec's argument.
func (o *callOptions) decode(m inMsg, encoding string, v any, bs *[1]mem.Buffer) error {
	switch m.flag {
	case 0:
	case 1:
		if encoding == "" || encoding == "identity" {
			m.release()
			return status.Error(codes.Internal, "grpc: compressed flag set with identity or empty encoding")
		}
		out, err := decompress(encoding, m.data, o.maxRecv)
		m.release()
		if err != nil {
			return err
		}
		m = inMsg{data: *out, pool: out}
	default:
		m.release()
		return status.Errorf(codes.Internal, "grpc: received unexpected payload format %d", m.flag)
	}
	if o.codec == nil {
		pm, err := protoMessage(v, "unmarshal")
		if err == nil {
			err = proto.Unmarshal(m.data, pm) // keeps no reference to the bytes
		}
		m.release()
		if err != nil {
			return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		return nil
	}
	// A codec may keep references to the bytes (mem's contract: it Refs
	// them). A large pooled buffer goes as a counted buffer, back to the
	// pool on its last Free; anything else as a plain slice that is
	// never reused.
	var b mem.Buffer
	if m.pool != nil && cap(*m.pool) > 1<<10 {
		*m.pool = m.data
		b = mem.NewBuffer(m.pool, bufPoolAdapter{})
	} else {
		b = mem.SliceBuffer(m.data)
	}
	bs[0] = b
	err := o.codec.Unmarshal(bs[:], v)
	bs[0] = nil
	b.Free()
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

// protoMessage returns v as a protobuf message, as grpc-go's proto codec
// accepts it.
func protoMessage(v any, verb string) (proto.Message, error) {
	switch m := v.(type) {
	case proto.Message:
		return m, nil
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m), nil
	}
	return nil, fmt.Errorf("failed to %s, message is %T, want proto.Message", verb, v)
}

// inMsg is one received message: its payload (without the prefix) and
// the flow-control credit still owed for its bytes.
type inMsg struct {
	data []byte
	pool *[]byte // data's buffer from getBuf; nil when allocated for it
	flag byte
	owed int // received bytes of this message not yet credited
}

// release gives a pooled buffer back.
func (m *inMsg) release() {
	if m.pool != nil {
		putBuf(m.pool)
	}
	m.pool, m.data = nil, nil
}

// Message buffers come from power-of-two pools from 256 bytes to 64 KiB;
// larger ones are allocated and left to the garbage collector.
const (
	minPoolShift = 8
	maxPoolShift = 16
)

var bufPools [maxPoolShift - minPoolShift + 1]sync.Pool

func poolIndex(n int) int {
	if n <= 1<<minPoolShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minPoolShift
}

// getBuf returns a buffer of length n. Its contents are not zeroed.
func getBuf(n int) *[]byte {
	if n > 1<<maxPoolShift {
		b := make([]byte, n)
		return &b
	}
	i := poolIndex(n)
	if p, ok := bufPools[i].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(i+minPoolShift))
	return &b
}

// putBuf gives a buffer from getBuf back.
func putBuf(p *[]byte) {
	c := cap(*p)
	if c < 1<<minPoolShift || c > 1<<maxPoolShift || c&(c-1) != 0 {
		return
	}
	bufPools[poolIndex(c)].Put(p)
}

// bufPoolAdapter lets mem.NewBuffer give buffers back to getBuf's pools.
type bufPoolAdapter struct{}

func (bufPoolAdapter) Get(n int) *[]byte { return getBuf(n) }
func (bufPoolAdapter) Put(p *[]byte)     { putBuf(p) }

var _ mem.BufferPool = bufPoolAdapter{}

var (
	gzipWriters sync.Pool
	gzipReaders sync.Pool
)

// gzipMessage compresses the payload of a prefixed message buffer into a
// new prefixed buffer.
func gzipMessage(src *[]byte) (*[]byte, error) {
	out := bytes.NewBuffer(make([]byte, grpcHeaderLen, grpcHeaderLen+len(*src)/2+64))
	z, _ := gzipWriters.Get().(*gzip.Writer)
	if z == nil {
		z = gzip.NewWriter(out)
	} else {
		z.Reset(out)
	}
	_, err := z.Write((*src)[grpcHeaderLen:])
	if cerr := z.Close(); err == nil {
		err = cerr
	}
	gzipWriters.Put(z)
	if err != nil {
		return nil, err
	}
	b := out.Bytes()
	return &b, nil
}

// decompress inflates a message compressed with encoding: gzip here, any
// other name with a compressor registered with grpc-go's encoding
// package. The result is at most limit bytes.
func decompress(name string, data []byte, limit int) (*[]byte, error) {
	var r io.Reader
	if name == "gzip" {
		z, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if z == nil {
			z, err = gzip.NewReader(bytes.NewReader(data))
		} else {
			err = z.Reset(bytes.NewReader(data))
		}
		if err != nil {
			return nil, status.Errorf(codes.Internal, "grpc: failed to decompress the message: %v", err)
		}
		defer gzipReaders.Put(z)
		r = z
	} else {
		c := encoding.GetCompressor(name)
		if c == nil {
			return nil, status.Errorf(codes.Internal, "grpc: Decompressor is not installed for grpc-encoding %q", name)
		}
		dr, err := c.Decompress(bytes.NewReader(data))
		if err != nil {
			return nil, status.Errorf(codes.Internal, "grpc: failed to decompress the message: %v", err)
		}
		if cl, ok := dr.(io.Closer); ok {
			defer cl.Close()
		}
		r = dr
	}
	out := getBuf(max(2*len(data), 512))
	*out = (*out)[:0]
	lr := io.LimitedReader{R: r, N: int64(limit) + 1}
	for {
		if len(*out) == cap(*out) {
			grown := getBuf(2 * cap(*out))
			*grown = append((*grown)[:0], *out...)
			putBuf(out)
			out = grown
		}
		n, err := lr.Read((*out)[len(*out):cap(*out)])
		*out = (*out)[:len(*out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			putBuf(out)
			return nil, status.Errorf(codes.Internal, "grpc: failed to read decompressed data: %v", err)
		}
	}
	if len(*out) > limit {
		putBuf(out)
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message after decompression larger than max %d", limit)
	}
	return out, nil
}
