package h2call_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // lets the backend take and send gzip messages
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
)

const echoMethod = "/rosetta.testing.v1.EchoService/Echo"

func everything() *testingv1.Everything {
	return &testingv1.Everything{
		StringValue: "héllo, wörld",
		BytesValue:  bytes.Repeat([]byte{0, 1, 2, 0xff}, 64),
		Int64Value:  -42,
		Strings:     []string{"a", "b"},
		Labels:      map[string]string{"k": "v"},
		Nested:      &testingv1.Nested{},
	}
}

func wantCode(t testing.TB, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("got error %v (%T); want a status error with code %v", err, err, code)
	}
	if st.Code() != code {
		t.Fatalf("got %v %q; want code %v", st.Code(), st.Message(), code)
	}
	return st
}

func TestUnary(t *testing.T) {
	t.Parallel()
	_, cc, client, rec := startBackend(t)
	ctx := context.Background()

	t.Run("generated", func(t *testing.T) {
		req := everything()
		var hdr, trl metadata.MD
		got, err := client.Echo(ctx, req, grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(req, got, protocmp.Transform()); d != "" {
			t.Fatalf("echo (-want +got):\n%s", d)
		}
		if got := hdr.Get("content-type"); len(got) != 1 || got[0] != "application/grpc" {
			t.Fatalf("header content-type = %q; want application/grpc", got)
		}
		if trl == nil {
			t.Fatal("trailer = nil; want the (empty) trailer metadata")
		}
	})
	t.Run("raw", func(t *testing.T) {
		in, _ := proto.Marshal(everything())
		var out []byte
		if err := cc.Invoke(ctx, echoMethod, &in, &out, rawCall); err != nil {
			t.Fatal(err)
		}
		got := &testingv1.Everything{}
		if err := proto.Unmarshal(out, got); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(everything(), got, protocmp.Transform()); d != "" {
			t.Fatalf("echo (-want +got):\n%s", d)
		}
	})
	t.Run("dynamicpb", func(t *testing.T) {
		md := everything().ProtoReflect().Descriptor()
		req := dynamicpb.NewMessage(md)
		b, _ := proto.Marshal(everything())
		if err := proto.Unmarshal(b, req); err != nil {
			t.Fatal(err)
		}
		resp := dynamicpb.NewMessage(md)
		if err := cc.Invoke(ctx, echoMethod, req, resp); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(req, resp) {
			t.Fatalf("got %v; want %v", resp, req)
		}
	})
	t.Run("empty", func(t *testing.T) {
		got, err := client.Echo(ctx, &testingv1.Everything{})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, &testingv1.Everything{}) {
			t.Fatalf("got %v; want an empty message", got)
		}
	})
	t.Run("outcome", func(t *testing.T) {
		n := rec.count()
		if _, err := client.Echo(ctx, everything()); err != nil {
			t.Fatal(err)
		}
		out := rec.wait(t, n+1)
		if out.Kind != h2call.Answered || out.Code != codes.OK || !out.Sent || !out.Received || out.HTTPStatus != 200 || out.Err != nil {
			t.Fatalf("outcome = %+v; want answered OK, sent, received, HTTP 200", out)
		}
	})
}

func TestStreams(t *testing.T) {
	t.Parallel()
	_, _, client, _ := startBackend(t)
	ctx := context.Background()

	t.Run("server", func(t *testing.T) {
		st, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: 5, Text: "x"})
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := st.Header()
		if err != nil || len(hdr.Get("content-type")) != 1 {
			t.Fatalf("Header() = %v, %v; want the response head", hdr, err)
		}
		for i := int32(1); ; i++ {
			item, err := st.Recv()
			if errors.Is(err, io.EOF) {
				if i != 6 {
					t.Fatalf("got %d items; want 5", i-1)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if item.GetIndex() != i || item.GetText() != "x" {
				t.Fatalf("item %d = %v", i, item)
			}
		}
		if st.Trailer() == nil {
			t.Fatal("Trailer() = nil after the end")
		}
	})
	t.Run("server/fails", func(t *testing.T) {
		st, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: 5, FailAt: 3})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, err = st.Recv()
			if err != nil {
				break
			}
			n++
		}
		if s := wantCode(t, err, codes.Aborted); s.Message() != "failing at 3" || n != 2 {
			t.Fatalf("got %d items, then %q; want 2, then \"failing at 3\"", n, s.Message())
		}
	})
	t.Run("client", func(t *testing.T) {
		st, err := client.ClientStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"a", "b", "c"} {
			if err := st.Send(&testingv1.StreamItem{Text: s}); err != nil {
				t.Fatal(err)
			}
		}
		sum, err := st.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if sum.GetCount() != 3 || strings.Join(sum.GetTexts(), "") != "abc" {
			t.Fatalf("summary = %v; want 3 items abc", sum)
		}
	})
	t.Run("bidi", func(t *testing.T) {
		st, err := client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Ping-pong: each answer comes before the next request is sent,
		// so this only passes full duplex.
		for i := int32(1); i <= 10; i++ {
			if err := st.Send(&testingv1.StreamItem{Index: i}); err != nil {
				t.Fatal(err)
			}
			item, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if item.GetIndex() != i {
				t.Fatalf("got item %d; want %d", item.GetIndex(), i)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("Recv after CloseSend = %v; want io.EOF", err)
		}
	})
	t.Run("bidi/send-after-end", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := client.BidiStream(sctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		var serr error
		for range 100 {
			if serr = st.Send(&testingv1.StreamItem{}); serr != nil {
				break
			}
		}
		if !errors.Is(serr, io.EOF) {
			t.Fatalf("Send after the end = %v; want io.EOF", serr)
		}
		_, err = st.Recv()
		wantCode(t, err, codes.Canceled)
	})
}

// serverSide records how the backend's handlers ended and what deadline
// they saw.
type serverSide struct {
	mu       sync.Mutex
	started  chan string
	ended    map[string]error
	deadline map[string]bool
	endedCh  chan string
}

func newServerSide() *serverSide {
	return &serverSide{started: make(chan string, 16), ended: map[string]error{}, deadline: map[string]bool{}, endedCh: make(chan string, 16)}
}

func (s *serverSide) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	_, has := ctx.Deadline()
	s.mu.Lock()
	s.deadline[info.FullMethod] = has
	s.mu.Unlock()
	s.started <- info.FullMethod
	resp, err := h(ctx, req)
	s.mu.Lock()
	s.ended[info.FullMethod] = err
	s.mu.Unlock()
	s.endedCh <- info.FullMethod
	return resp, err
}

func (s *serverSide) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	s.started <- info.FullMethod
	err := h(srv, ss)
	s.mu.Lock()
	s.ended[info.FullMethod] = err
	s.mu.Unlock()
	s.endedCh <- info.FullMethod
	return err
}

func (s *serverSide) waitEnd(t testing.TB) error {
	t.Helper()
	select {
	case m := <-s.endedCh:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.ended[m]
	case <-time.After(10 * time.Second):
		t.Fatal("the backend handler did not end in 10s")
		return nil
	}
}

func (s *serverSide) waitStart(t testing.TB) {
	t.Helper()
	select {
	case <-s.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend handler did not start in 10s")
	}
}

func startObservedBackend(t testing.TB) (*serverSide, *h2call.Conn, testingv1.EchoServiceClient, *outcomes) {
	ss := newServerSide()
	_, cc, client, rec := startBackend(t, testkit.WithServerOptions(grpc.UnaryInterceptor(ss.unary), grpc.StreamInterceptor(ss.stream)))
	return ss, cc, client, rec
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	t.Run("announced", func(t *testing.T) {
		t.Parallel()
		_, _, client, _ := startObservedBackend(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		resp, err := client.Sleep(ctx, &testingv1.SleepRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if rem := resp.GetDeadlineRemaining().AsDuration(); !resp.GetHadDeadline() || rem <= 0 || rem > time.Hour {
			t.Fatalf("backend saw deadline %v, %v left; want one within the hour", resp.GetHadDeadline(), rem)
		}
	})
	t.Run("exceeded", func(t *testing.T) {
		t.Parallel()
		ss, _, client, rec := startObservedBackend(t)
		// Long enough for the call to reach the backend on a loaded
		// machine: the test is about what happens after it did.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := client.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(time.Hour)})
		wantCode(t, err, codes.DeadlineExceeded)
		if serr := ss.waitEnd(t); status.Code(serr) != codes.DeadlineExceeded && status.Code(serr) != codes.Canceled {
			t.Fatalf("backend handler ended with %v; want its context ended", serr)
		}
		if out := rec.wait(t, 1); out.Code != codes.DeadlineExceeded {
			t.Fatalf("outcome = %+v; want DEADLINE_EXCEEDED", out)
		}
	})
	t.Run("unannounced", func(t *testing.T) {
		t.Parallel()
		ss, _, client, rec := startObservedBackend(t)
		base, cancel := context.WithTimeout(context.Background(), time.Second) // as in "exceeded"
		defer cancel()
		_, err := client.Sleep(unannounced{base}, &testingv1.SleepRequest{Duration: durationpb.New(time.Hour)})
		wantCode(t, err, codes.DeadlineExceeded)
		// The backend saw no deadline, and the call was canceled under it.
		if serr := ss.waitEnd(t); status.Code(serr) != codes.Canceled {
			t.Fatalf("backend handler ended with %v; want CANCELED", serr)
		}
		ss.mu.Lock()
		had := ss.deadline["/rosetta.testing.v1.EchoService/Sleep"]
		ss.mu.Unlock()
		if had {
			t.Fatal("the backend saw a deadline; want none announced")
		}
		if out := rec.wait(t, 1); out.Kind != h2call.Abandoned || out.Code != codes.DeadlineExceeded {
			t.Fatalf("outcome = %+v; want abandoned DEADLINE_EXCEEDED", out)
		}
	})
	t.Run("already-past", func(t *testing.T) {
		t.Parallel()
		_, _, client, rec := startObservedBackend(t)
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		_, err := client.Echo(ctx, everything())
		wantCode(t, err, codes.DeadlineExceeded)
		if rec.count() != 0 {
			t.Fatalf("%d attempts; want none for a call past its deadline", rec.count())
		}
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	t.Run("unary", func(t *testing.T) {
		t.Parallel()
		ss, _, client, rec := startObservedBackend(t)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			ss.waitStart(t)
			cancel()
		}()
		_, err := client.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(time.Hour)})
		wantCode(t, err, codes.Canceled)
		if serr := ss.waitEnd(t); status.Code(serr) != codes.Canceled {
			t.Fatalf("backend handler ended with %v; want CANCELED", serr)
		}
		if out := rec.wait(t, 1); out.Kind != h2call.Abandoned || !out.Sent {
			t.Fatalf("outcome = %+v; want abandoned, sent", out)
		}
	})
	t.Run("stream", func(t *testing.T) {
		t.Parallel()
		ss, _, client, _ := startObservedBackend(t)
		ctx, cancel := context.WithCancel(context.Background())
		st, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: 1000, Interval: durationpb.New(time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		// Nobody is in Recv: the context alone must reset the stream.
		cancel()
		if serr := ss.waitEnd(t); status.Code(serr) != codes.Canceled {
			t.Fatalf("backend handler ended with %v; want CANCELED", serr)
		}
		var rerr error
		for rerr == nil {
			_, rerr = st.Recv()
		}
		wantCode(t, rerr, codes.Canceled)
	})
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	_, _, client, _ := startBackend(t)
	// Not printable, but valid UTF-8: the backend echoes it in a string.
	bin := "\x00\x01\u00e9\x7f"
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.MD{
		"x-token":     {"abc"},
		"x-multi":     {"1", "2"},
		"x-trace-bin": {bin},
		// Reserved and connection-specific fields are not metadata.
		"grpc-status": {"13"},
		"te":          {"gzip"},
		"connection":  {"close"},
	})
	ctx = metadata.AppendToOutgoingContext(ctx, "X-Appended", "yes")
	var hdr, trl metadata.MD
	resp, err := client.Metadata(ctx, &testingv1.MetadataRequest{
		HeaderOut:  map[string]string{"h-one": "1", "h-bin": bin},
		TrailerOut: map[string]string{"t-one": "x", "t-bin": bin},
	}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatal(err)
	}
	in := map[string][]string{}
	for k, v := range resp.GetIncoming() {
		in[k] = v.GetValues()
	}
	for k, want := range map[string][]string{
		"x-token": {"abc"}, "x-multi": {"1", "2"}, "x-trace-bin": {bin}, "x-appended": {"yes"},
		"user-agent": {"rosetta"}, "content-type": {"application/grpc"},
	} {
		if d := cmp.Diff(want, in[k]); d != "" {
			t.Errorf("backend metadata %s (-want +got):\n%s", k, d)
		}
	}
	for _, k := range []string{"grpc-status", "connection"} {
		if v, ok := in[k]; ok {
			t.Errorf("backend metadata has %s = %q; want it not forwarded", k, v)
		}
	}
	if d := cmp.Diff([]string{"trailers"}, in["te"]); d != "" && in["te"] != nil {
		t.Errorf("te (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{bin}, hdr.Get("h-bin")); d != "" {
		t.Errorf("header h-bin (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"1"}, hdr.Get("h-one")); d != "" {
		t.Errorf("header h-one (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{bin}, trl.Get("t-bin")); d != "" {
		t.Errorf("trailer t-bin (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"x"}, trl.Get("t-one")); d != "" {
		t.Errorf("trailer t-one (-want +got):\n%s", d)
	}

	t.Run("invalid", func(t *testing.T) {
		ctx := metadata.NewOutgoingContext(context.Background(), metadata.MD{"x-name": {"caf\xc3\xa9"}})
		_, err := client.Echo(ctx, everything())
		if st := wantCode(t, err, codes.Internal); !strings.Contains(st.Message(), "non-printable") {
			t.Fatalf("message %q; want grpc-go's non-printable wording", st.Message())
		}
	})
}

func TestStatusDetails(t *testing.T) {
	t.Parallel()
	be, _, client, rec := startBackend(t)
	ref := testingv1.NewEchoServiceClient(be.Dial(t))
	req := &testingv1.FailRequest{Code: int32(codes.FailedPrecondition), Message: "50% done: ünïcode\nand a line", WithDetails: true}
	var hdr, trl, refHdr, refTrl metadata.MD
	_, err := client.Fail(context.Background(), req, grpc.Header(&hdr), grpc.Trailer(&trl))
	_, refErr := ref.Fail(context.Background(), req, grpc.Header(&refHdr), grpc.Trailer(&refTrl))
	st := wantCode(t, err, codes.FailedPrecondition)
	if d := cmp.Diff(status.Convert(refErr).Proto(), st.Proto(), protocmp.Transform()); d != "" {
		t.Fatalf("status (-grpc-go +h2call):\n%s", d)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if e, ok := d.(*errdetails.ErrorInfo); ok {
			info = e
		}
	}
	if info.GetReason() != "TEST" {
		t.Fatalf("details %v; want an ErrorInfo with reason TEST", st.Details())
	}
	// A trailers-only answer: no header metadata, the trailers carry the
	// rest, as grpc-go reports them.
	if hdr != nil || refHdr != nil {
		t.Fatalf("header = %v (grpc-go %v); want nil for trailers-only", hdr, refHdr)
	}
	if d := cmp.Diff(refTrl, trl); d != "" {
		t.Fatalf("trailer (-grpc-go +h2call):\n%s", d)
	}
	if out := rec.wait(t, 1); out.Kind != h2call.Answered || out.Code != codes.FailedPrecondition {
		t.Fatalf("outcome = %+v; want answered FAILED_PRECONDITION", out)
	}

	t.Run("stream/trailers-only", func(t *testing.T) {
		st, err := client.ServerStream(context.Background(), &testingv1.StreamRequest{Count: 3, FailAt: 1})
		if err != nil {
			t.Fatal(err)
		}
		if hdr, err := st.Header(); hdr != nil || err != nil {
			t.Fatalf("Header() = %v, %v; want nil, nil for trailers-only", hdr, err)
		}
		_, err = st.Recv()
		wantCode(t, err, codes.Aborted)
		if st.Trailer() == nil {
			t.Fatal("Trailer() = nil; want the trailers-only block")
		}
	})
}

func TestLargeMessages(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.MaxRecvMsgSize(32<<20), grpc.MaxSendMsgSize(32<<20)))
	cc, _ := newConn(t, be.Addr, h2call.Options{MaxRecvMsgSize: 32 << 20}, h2.ClientOptions{})
	client := testingv1.NewEchoServiceClient(cc)
	big := bytes.Repeat([]byte("0123456789abcdef"), size/16)

	t.Run("unary", func(t *testing.T) {
		got, err := client.Echo(context.Background(), &testingv1.Everything{BytesValue: big})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.GetBytesValue(), big) {
			t.Fatalf("got %d bytes back; want the %d sent", len(got.GetBytesValue()), len(big))
		}
	})
	t.Run("raw", func(t *testing.T) {
		in, _ := proto.Marshal(&testingv1.Everything{BytesValue: big})
		var out []byte
		if err := cc.Invoke(context.Background(), echoMethod, &in, &out, rawCall); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("got %d bytes back; want the %d sent", len(out), len(in))
		}
	})
	t.Run("bidi", func(t *testing.T) {
		st, err := client.BidiStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Repeat("z", 3<<20)
		const n = 6
		errc := make(chan error, 1)
		go func() {
			for i := int32(1); i <= n; i++ {
				if err := st.Send(&testingv1.StreamItem{Index: i, Text: text}); err != nil {
					errc <- err
					return
				}
			}
			errc <- st.CloseSend()
		}()
		for i := int32(1); i <= n; i++ {
			item, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if item.GetIndex() != i || len(item.GetText()) != len(text) {
				t.Fatalf("item %d: %d bytes; want item %d, %d bytes", item.GetIndex(), len(item.GetText()), i, len(text))
			}
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end = %v; want io.EOF", err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})
}

// compressionSeen records the compression of the backend's messages.
type compressionSeen struct {
	mu      sync.Mutex
	in, out string
}

func (c *compressionSeen) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (c *compressionSeen) HandleRPC(_ context.Context, s stats.RPCStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s := s.(type) {
	case *stats.InHeader:
		c.in = s.Compression
	case *stats.OutHeader:
		c.out = s.Compression
	}
}
func (c *compressionSeen) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *compressionSeen) HandleConn(context.Context, stats.ConnStats) {}

func TestCompression(t *testing.T) {
	t.Parallel()
	seen := &compressionSeen{}
	sendGzip := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-want-gzip")) > 0 {
			if err := grpc.SetSendCompressor(ctx, "gzip"); err != nil {
				return nil, err
			}
		}
		return h(ctx, req)
	}
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.StatsHandler(seen), grpc.UnaryInterceptor(sendGzip)))
	req := everything()
	req.StringValue = strings.Repeat("compress me ", 500)
	in, _ := proto.Marshal(req)

	for _, tc := range []struct {
		name       string
		acceptGzip bool
		opts       []grpc.CallOption
		md         []string
		wantIn     string
	}{
		{name: "request+response", opts: []grpc.CallOption{grpc.UseCompressor("gzip")}, wantIn: "gzip"},
		{name: "response-only", acceptGzip: true, md: []string{"x-want-gzip", "1"}},
	} {
		for _, raw := range []bool{false, true} {
			name := tc.name + "/proto"
			if raw {
				name = tc.name + "/raw"
			}
			t.Run(name, func(t *testing.T) {
				cc, _ := newConn(t, be.Addr, h2call.Options{AcceptGzip: tc.acceptGzip}, h2.ClientOptions{})
				ctx := metadata.AppendToOutgoingContext(context.Background(), tc.md...)
				if raw {
					var out []byte
					if err := cc.Invoke(ctx, echoMethod, &in, &out, append(tc.opts, rawCall)...); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out, in) {
						t.Fatal("raw codec got bytes that differ from the uncompressed message")
					}
				} else {
					got := &testingv1.Everything{}
					if err := cc.Invoke(ctx, echoMethod, req, got, tc.opts...); err != nil {
						t.Fatal(err)
					}
					if !proto.Equal(got, req) {
						t.Fatal("echo differs")
					}
				}
				seen.mu.Lock()
				gotIn, gotOut := seen.in, seen.out
				seen.mu.Unlock()
				if gotIn != tc.wantIn || gotOut != "gzip" {
					t.Fatalf("backend compression in %q, out %q; want in %q, out gzip", gotIn, gotOut, tc.wantIn)
				}
			})
		}
	}
	t.Run("unknown-compressor", func(t *testing.T) {
		cc, _ := newConn(t, be.Addr, h2call.Options{}, h2.ClientOptions{})
		err := cc.Invoke(context.Background(), echoMethod, req, &testingv1.Everything{}, grpc.UseCompressor("snappy"))
		wantCode(t, err, codes.Internal)
	})
}

func TestMaxMessageSizes(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	req := &testingv1.Everything{BytesValue: make([]byte, 2048)}
	for _, tc := range []struct {
		name string
		opts h2call.Options
		dial []grpc.CallOption
		call []grpc.CallOption
	}{
		{name: "recv/conn", opts: h2call.Options{MaxRecvMsgSize: 1024}, dial: []grpc.CallOption{grpc.MaxCallRecvMsgSize(1024)}},
		{name: "recv/call", call: []grpc.CallOption{grpc.MaxCallRecvMsgSize(1024)}},
		{name: "send/conn", opts: h2call.Options{MaxSendMsgSize: 1024}, dial: []grpc.CallOption{grpc.MaxCallSendMsgSize(1024)}},
		{name: "send/call", call: []grpc.CallOption{grpc.MaxCallSendMsgSize(1024)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, rec := newConn(t, be.Addr, tc.opts, h2.ClientOptions{})
			ref := be.Dial(t, grpc.WithDefaultCallOptions(tc.dial...))
			err := cc.Invoke(context.Background(), echoMethod, req, &testingv1.Everything{}, tc.call...)
			refErr := ref.Invoke(context.Background(), echoMethod, req, &testingv1.Everything{}, tc.call...)
			st := wantCode(t, err, codes.ResourceExhausted)
			if st.Message() != status.Convert(refErr).Message() {
				t.Fatalf("message %q; want grpc-go's %q", st.Message(), status.Convert(refErr).Message())
			}
			if strings.HasPrefix(tc.name, "recv") {
				if out := rec.wait(t, 1); out.Kind != h2call.Abandoned || out.Code != codes.ResourceExhausted {
					t.Fatalf("outcome = %+v; want abandoned RESOURCE_EXHAUSTED", out)
				}
			} else if rec.count() != 0 {
				t.Fatalf("%d attempts; want none for a request over the limit", rec.count())
			}
		})
	}
}

func TestGoAway(t *testing.T) {
	t.Parallel()
	t.Run("graceful", func(t *testing.T) {
		be, _, client, _ := startBackend(t)
		st, err := client.BidiStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&testingv1.StreamItem{Index: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan struct{})
		go func() {
			be.Server.GracefulStop()
			close(stopped)
		}()
		// New calls cannot use the draining connection and find no other
		// (the listener is closed): UNAVAILABLE, once the GOAWAY is in.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := client.Echo(context.Background(), everything())
			if status.Code(err) == codes.Unavailable {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("calls still go through a draining connection: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// The open stream finishes normally.
		if err := st.Send(&testingv1.StreamItem{Index: 2}); err != nil {
			t.Fatal(err)
		}
		if item, err := st.Recv(); err != nil || item.GetIndex() != 2 {
			t.Fatalf("Recv = %v, %v; want item 2", item, err)
		}
		_ = st.CloseSend()
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end = %v; want io.EOF", err)
		}
		<-stopped
	})
	t.Run("stop", func(t *testing.T) {
		be, _, client, rec := startBackend(t)
		st, err := client.ServerStream(context.Background(), &testingv1.StreamRequest{Count: 1000, Interval: durationpb.New(time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		be.Server.Stop()
		for err == nil {
			_, err = st.Recv()
		}
		wantCode(t, err, codes.Unavailable)
		if out := rec.wait(t, 1); out.Kind != h2call.Broken || !out.Sent || !out.Received {
			t.Fatalf("outcome = %+v; want broken, sent, received", out)
		}
	})
	t.Run("refused", func(t *testing.T) {
		addr := startFake(t, func(c *fakeConn, id uint32, _ []hpack.HeaderField) { c.goAway(0, 0) })
		cc, rec := newConn(t, addr, h2call.Options{}, h2.ClientOptions{})
		err := cc.Invoke(context.Background(), echoMethod, everything(), &testingv1.Everything{})
		wantCode(t, err, codes.Unavailable)
		if out := rec.wait(t, 1); out.Kind != h2call.Refused || out.Sent {
			t.Fatalf("outcome = %+v; want refused, not sent", out)
		}
	})
}

func TestConnectFailure(t *testing.T) {
	t.Parallel()
	addr := testkit.RefusingAddr(t)
	cc, rec := newConn(t, addr, h2call.Options{}, h2.ClientOptions{})
	for i := range 2 {
		err := cc.Invoke(context.Background(), echoMethod, everything(), &testingv1.Everything{})
		if st := wantCode(t, err, codes.Unavailable); !strings.Contains(st.Message(), "connection error") {
			t.Fatalf("call %d: message %q; want a connection error", i, st.Message())
		}
	}
	if rec.count() != 0 {
		t.Fatalf("%d attempts; want none when no connection could be made", rec.count())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := testingv1.NewEchoServiceClient(cc).Echo(ctx, everything())
	wantCode(t, err, codes.Canceled)
}
