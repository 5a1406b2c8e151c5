package transports

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// rawCodec passes messages as bytes, so the test needs no protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// grpcStub answers every relayed call with one empty message and OK.
type grpcStub struct{}

func (grpcStub) Headers(s *h2.Stream, _ []hpack.HeaderField, end bool) {
	if end {
		grpcStub{}.answer(s)
	}
}

func (grpcStub) Data(s *h2.Stream, p []byte, end bool) {
	s.Credit(len(p))
	if end {
		grpcStub{}.answer(s)
	}
}

func (grpcStub) Reset(*h2.Stream, error) {}

func (grpcStub) answer(s *h2.Stream) {
	_ = s.WriteData([]byte{0, 0, 0, 0, 0}, false)
	_ = s.WriteHeaders([]hpack.HeaderField{{Name: "grpc-status", Value: "0"}}, true)
}

// TestHeadLimitsGRPCClient checks what a real gRPC client (grpc-go over
// h2c) gets for metadata over the head limits when the call would be
// relayed frame by frame: the HTTP 431 the stream is answered with, which
// grpc-go turns into an error naming it; the relay never sees the call,
// and the client's next call on the same connection goes through.
func TestHeadLimitsGRPCClient(t *testing.T) {
	t.Parallel()
	var relayed atomic.Int32
	s := newServer(t, listenerConfig(), http.NotFoundHandler(), nil)
	s.InterceptHTTP2(func(st *h2.Stream, head *h2.RequestHead) h2.Events {
		relayed.Add(1)
		_ = st.WriteHeaders([]hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"}}, false)
		return grpcStub{}
	})
	serve(t, s)
	cc, err := grpc.NewClient("passthrough:///"+s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	call := func(md metadata.MD) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		in, out := []byte{}, []byte{}
		return cc.Invoke(metadata.NewOutgoingContext(ctx, md), "/test.v1.Test/Call", &in, &out, grpc.ForceCodecV2(rawCodec{}))
	}
	many := metadata.MD{}
	for i := range 150 {
		many.Set(fmt.Sprintf("x-meta-%d", i), "1")
	}
	for _, tc := range []struct {
		name string
		md   metadata.MD
	}{
		{"150 metadata entries", many},
		{"100 KiB of metadata", metadata.Pairs("x-big", strings.Repeat("a", 100<<10))},
	} {
		err := call(tc.md)
		st := status.Convert(err)
		if st.Code() == codes.OK || !strings.Contains(st.Message(), "431") {
			t.Errorf("%s: got %v; want an error naming HTTP status 431", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	if n := relayed.Load(); n != 0 {
		t.Errorf("relay saw %d calls over the limits; want 0", n)
	}
	if err := call(metadata.Pairs("x-small", "1")); err != nil {
		t.Errorf("call within the limits: %v", err)
	}
	if n := relayed.Load(); n != 1 {
		t.Errorf("relay saw %d calls; want 1", n)
	}
}
