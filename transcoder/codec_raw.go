package transcoder

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// rawCodec is a grpc-go codec that passes message bytes through unchanged:
// the gRPC-Web and Connect adapters hand it already-encoded protobuf
// messages and get the backend's encoded messages back, so nothing is
// decoded on the forwarding path. Its messages are *[]byte.
//
// Its name is "proto", so the backend sees application/grpc+proto, which is
// what the bytes are.
type rawCodec struct{}

// RawCall is the call option that makes a call use [rawCodec].
var RawCall = grpc.ForceCodecV2(rawCodec{})

// Marshal returns the bytes *v points to, without copying.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T: want *[]byte", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

// Unmarshal stores a copy of data in *v.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T: want *[]byte", v)
	}
	*b = data.Materialize()
	return nil
}

// Name returns "proto": the bytes are protobuf messages.
func (rawCodec) Name() string { return "proto" }

var _ encoding.CodecV2 = rawCodec{}
