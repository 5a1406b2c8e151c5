package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// startInteropBackend starts grpc-go's interop TestService with server
// reflection on 127.0.0.1:0 and returns its address.
func startInteropBackend(t testing.TB) string {
	t.Helper()
	lis := testkit.ListenLocal(t)
	srv := grpc.NewServer(grpc.WaitForHandlers(true))
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	reflection.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("interop backend: serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// dialGateway returns a plaintext (h2c) gRPC client connection to the
// gateway at baseURL, closed when the test ends.
func dialGateway(t testing.TB, baseURL string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(baseURL, "http://"), opts...)
	if err != nil {
		t.Fatalf("dial gateway %s: %v", baseURL, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// startGRPCGateway starts the EchoService backend and a gateway in front of
// it (basicConfig) and returns a client connection to the gateway.
func startGRPCGateway(t *testing.T, opts ...testkit.BackendOption) (*grpc.ClientConn, *testkit.Backend, *Gateway) {
	t.Helper()
	return startGRPCGatewayOn(t, "", opts...)
}

// startGRPCGatewayOn is startGRPCGateway with the gRPC path chosen (see
// startGatewayOn).
func startGRPCGatewayOn(t *testing.T, path string, opts ...testkit.BackendOption) (*grpc.ClientConn, *testkit.Backend, *Gateway) {
	t.Helper()
	be := testkit.StartBackend(t, opts...)
	url, g := startGatewayOn(t, path, be.Addr, basicConfig)
	return dialGateway(t, url), be, g
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus fails unless err is a gRPC status with the code and, when msg
// is not empty, exactly that message.
func wantStatus(t *testing.T, err error, code codes.Code, msg string) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != code || (msg != "" && st.Message() != msg) {
		t.Fatalf("status: got %s %q; want %s %q", st.Code(), st.Message(), code, msg)
	}
	return st
}

func TestGRPCInterop(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		addr := startInteropBackend(t)
		url, _ := startGatewayOn(t, path, addr, basicConfig)
		for _, gz := range []bool{false, true} {
			var opts []grpc.CallOption
			name := "identity"
			if gz {
				opts = append(opts, grpc.UseCompressor(gzip.Name))
				name = "gzip"
			}
			cc := dialGateway(t, url)
			tc := testgrpc.NewTestServiceClient(cc)
			cases := []struct {
				name string
				run  func(ctx context.Context)
			}{
				{"empty_unary", func(ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc, opts...) }},
				{"large_unary", func(ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc, opts...) }},
				{"client_streaming", func(ctx context.Context) { interop.DoClientStreaming(ctx, tc, opts...) }},
				{"server_streaming", func(ctx context.Context) { interop.DoServerStreaming(ctx, tc, opts...) }},
				{"ping_pong", func(ctx context.Context) { interop.DoPingPong(ctx, tc, opts...) }},
				{"empty_stream", func(ctx context.Context) { interop.DoEmptyStream(ctx, tc, opts...) }},
				{"custom_metadata", func(ctx context.Context) { interop.DoCustomMetadata(ctx, tc, opts...) }},
				{"status_code_and_message", func(ctx context.Context) { interop.DoStatusCodeAndMessage(ctx, tc, opts...) }},
				{"special_status_message", func(ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc, opts...) }},
				{"timeout_on_sleeping_server", func(ctx context.Context) { interop.DoTimeoutOnSleepingServer(ctx, tc, opts...) }},
				{"cancel_after_begin", func(ctx context.Context) { interop.DoCancelAfterBegin(ctx, tc, opts...) }},
				{"cancel_after_first_response", func(ctx context.Context) { interop.DoCancelAfterFirstResponse(ctx, tc, opts...) }},
				{"unimplemented_method", func(ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) }},
				{"unimplemented_service", func(ctx context.Context) {
					interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
				}},
			}
			for _, c := range cases {
				// The interop helpers end the process through grpclog.Fatal
				// when a check fails; the log line names the failed check.
				t.Run(name+"/"+c.name, func(t *testing.T) { c.run(testContext(t)) })
			}
		}
	})
}

func TestGRPCMetadataAndTrailers(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, _, _ := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)
		ctx := metadata.AppendToOutgoingContext(testContext(t), "x-custom", "abc", "x-bin-bin", string([]byte{0, 1, 2, 127}))
		var header, trailer metadata.MD
		resp, err := client.Metadata(ctx, &testingv1.MetadataRequest{
			HeaderOut:  map[string]string{"x-head": "h1"},
			TrailerOut: map[string]string{"x-trail": "t1"},
		}, grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatalf("Metadata: %v", err)
		}
		if got := resp.GetIncoming()["x-custom"].GetValues(); len(got) != 1 || got[0] != "abc" {
			t.Errorf("backend saw x-custom %q; want [abc]", got)
		}
		if got := resp.GetIncoming()["x-bin-bin"].GetValues(); len(got) != 1 || got[0] != string([]byte{0, 1, 2, 127}) {
			t.Errorf("backend saw x-bin-bin %q; want the bytes sent", got)
		}
		if got := resp.GetIncoming()["grpc-timeout"]; got != nil {
			t.Errorf("grpc-timeout reached the backend as metadata: %q", got.GetValues())
		}
		if got := header.Get("x-head"); len(got) != 1 || got[0] != "h1" {
			t.Errorf("header x-head: got %q; want [h1]", got)
		}
		if got := trailer.Get("x-trail"); len(got) != 1 || got[0] != "t1" {
			t.Errorf("trailer x-trail: got %q; want [t1]", got)
		}
	})
}

func TestGRPCStatusDetails(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, _, _ := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)
		_, err := client.Fail(testContext(t), &testingv1.FailRequest{
			Code: int32(codes.FailedPrecondition), Message: "not ready: 100% ünïcode", WithDetails: true,
		})
		st := wantStatus(t, err, codes.FailedPrecondition, "not ready: 100% ünïcode")
		var info *errdetails.ErrorInfo
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				info = d
			case *errdetails.RetryInfo:
				retry = d
			}
		}
		if info.GetReason() != "TEST" || info.GetDomain() != "rosetta.test" {
			t.Errorf("ErrorInfo detail: got %v", info)
		}
		if retry.GetRetryDelay().AsDuration() != time.Second {
			t.Errorf("RetryInfo detail: got %v", retry)
		}
	})
}

func TestGRPCGzip(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, _, _ := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)
		in := &testingv1.Everything{StringValue: strings.Repeat("compress me ", 1000), Strings: []string{"a", "b"}}
		out, err := client.Echo(testContext(t), in, grpc.UseCompressor(gzip.Name))
		if err != nil {
			t.Fatalf("Echo with gzip: %v", err)
		}
		if !proto.Equal(in, out) {
			t.Errorf("Echo with gzip returned a different message")
		}

		stream, err := client.BidiStream(testContext(t), grpc.UseCompressor(gzip.Name))
		if err != nil {
			t.Fatal(err)
		}
		for i := int32(1); i <= 3; i++ {
			if err := stream.Send(&testingv1.StreamItem{Index: i, Text: strings.Repeat("z", 5000)}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			item, err := stream.Recv()
			if err != nil || item.GetIndex() != i {
				t.Fatalf("recv %d: %v, %v", i, item.GetIndex(), err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of bidi stream: got %v; want io.EOF", err)
		}
	})
}

func TestGRPCUnknownServiceAndMethod(t *testing.T) {
	t.Parallel()
	cc, _, _ := startGRPCGateway(t)
	ctx := testContext(t)
	err := cc.Invoke(ctx, "/no.such.Service/Call", &emptypb.Empty{}, &emptypb.Empty{})
	wantStatus(t, err, codes.Unimplemented, "unknown service no.such.Service")
	err = cc.Invoke(ctx, "/rosetta.testing.v1.EchoService/Nope", &emptypb.Empty{}, &emptypb.Empty{})
	wantStatus(t, err, codes.Unimplemented, "unknown method Nope for service rosetta.testing.v1.EchoService")
}

func TestGRPCBackendDown(t *testing.T) {
	t.Parallel()
	cc, be, _ := startGRPCGateway(t)
	be.Server.Stop()
	_, err := testingv1.NewEchoServiceClient(cc).Echo(testContext(t), &testingv1.Everything{})
	wantStatus(t, err, codes.Unavailable, "upstream test is unavailable")
}

func TestGRPCDeadline(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, _, _ := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)

		ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
		defer cancel()
		resp, err := client.Sleep(ctx, &testingv1.SleepRequest{})
		if err != nil {
			t.Fatalf("Sleep: %v", err)
		}
		if rem := resp.GetDeadlineRemaining().AsDuration(); !resp.GetHadDeadline() || rem > 5*time.Second || rem <= 0 {
			t.Errorf("backend deadline: had %v, remaining %v; want about 5s", resp.GetHadDeadline(), rem)
		}

		ctx, cancel = context.WithTimeout(testContext(t), 200*time.Millisecond)
		defer cancel()
		_, err = client.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(10 * time.Second)})
		wantStatus(t, err, codes.DeadlineExceeded, "")

		// Without a client deadline, a unary call is bounded by the
		// upstream's timeout, which the gateway enforces without telling
		// the backend (see TestGRPCUpstreamTimeout).
		resp, err = client.Sleep(context.Background(), &testingv1.SleepRequest{})
		if err != nil {
			t.Fatalf("Sleep: %v", err)
		}
		if resp.GetHadDeadline() {
			t.Errorf("the backend saw a deadline (%v) the client did not set", resp.GetDeadlineRemaining().AsDuration())
		}
	})
}

// TestGRPCUpstreamTimeout: the upstream's timeout bounds unary calls
// without a client deadline; the gateway ends them with DEADLINE_EXCEEDED
// and the backend call is canceled.
func TestGRPCUpstreamTimeout(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		url, _ := startGatewayOn(t, path, be.Addr, basicConfig+"    timeout: 1s\n")
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		_, err := client.Sleep(context.Background(), &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
		wantStatus(t, err, codes.DeadlineExceeded, "")
		// With a longer client deadline, the upstream's timeout caps it and
		// the backend is told.
		resp, err := client.Sleep(testContext(t), &testingv1.SleepRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if rem := resp.GetDeadlineRemaining().AsDuration(); !resp.GetHadDeadline() || rem > time.Second {
			t.Errorf("backend deadline: had %v, remaining %v; want at most 1s", resp.GetHadDeadline(), rem)
		}
	})
}

// TestGRPCRouteTimeout: a route's timeout caps the client's deadline and
// applies when the client sets none, streams included.
func TestGRPCRouteTimeout(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		url, _ := startGatewayOn(t, path, be.Addr, basicConfig+`
routes:
  - selector: rosetta.testing.v1.EchoService.*
    timeout: 2s
`)
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		resp, err := client.Sleep(testContext(t), &testingv1.SleepRequest{})
		if err != nil {
			t.Fatalf("Sleep: %v", err)
		}
		if rem := resp.GetDeadlineRemaining().AsDuration(); !resp.GetHadDeadline() || rem > 2*time.Second || rem <= 0 {
			t.Errorf("route deadline: had %v, remaining %v; want at most 2s", resp.GetHadDeadline(), rem)
		}
		_, err = client.Sleep(testContext(t), &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
		wantStatus(t, err, codes.DeadlineExceeded, "")
		// Without a client deadline the route's timeout is enforced by
		// the gateway, not announced to the backend.
		resp, err = client.Sleep(context.Background(), &testingv1.SleepRequest{})
		if err != nil || resp.GetHadDeadline() {
			t.Errorf("without a client deadline: %v, backend had deadline %v; want none", err, resp.GetHadDeadline())
		}
		_, err = client.Sleep(context.Background(), &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
		wantStatus(t, err, codes.DeadlineExceeded, "")
		stream, err := client.ServerStream(context.Background(), &testingv1.StreamRequest{Count: 2, Interval: durationpb.New(time.Minute)})
		if err == nil {
			_, err = stream.Recv()
			if err == nil {
				_, err = stream.Recv()
			}
		}
		wantStatus(t, err, codes.DeadlineExceeded, "")
	})
}

func TestGRPCMessageSizeLimit(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		url, _ := startGatewayOn(t, path, be.Addr, basicConfig+"    max_message_bytes: 1024\n")
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))

		// Under the limit both ways.
		if _, err := client.Echo(testContext(t), &testingv1.Everything{StringValue: strings.Repeat("x", 900)}); err != nil {
			t.Fatalf("Echo under the limit: %v", err)
		}
		// A request message over the limit.
		_, err := client.Echo(testContext(t), &testingv1.Everything{StringValue: strings.Repeat("x", 2000)})
		st := wantStatus(t, err, codes.ResourceExhausted, "")
		if !strings.Contains(st.Message(), "request message of 2003 bytes is larger than the limit of 1024 bytes") {
			t.Errorf("message: %q", st.Message())
		}
		// A small request whose response is over the limit: Metadata echoes
		// the incoming metadata.
		ctx := metadata.AppendToOutgoingContext(testContext(t), "x-big", strings.Repeat("y", 2000))
		_, err = client.Metadata(ctx, &testingv1.MetadataRequest{})
		st = wantStatus(t, err, codes.ResourceExhausted, "")
		if !strings.Contains(st.Message(), "response message of") {
			t.Errorf("message: %q", st.Message())
		}
		// A stream whose third message is too big: the first two arrive.
		stream, err := client.BidiStream(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		for i, size := range []int{10, 500, 3000} {
			if err := stream.Send(&testingv1.StreamItem{Index: int32(i), Text: strings.Repeat("s", size)}); err != nil {
				break // the gateway may have ended the call already
			}
			if size > 1024 {
				break
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("recv %d: %v", i, err)
			}
		}
		_, err = stream.Recv()
		wantStatus(t, err, codes.ResourceExhausted, "")
	})
}

func TestGRPCClientCancelReachesBackend(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		var running, returned atomic.Int32
		done := make(chan struct{}, 1)
		interceptor := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if info.FullMethod != "/rosetta.testing.v1.EchoService/ServerStream" {
				return handler(srv, ss) // e.g. the gateway's reflection stream
			}
			running.Add(1)
			err := handler(srv, ss)
			returned.Add(1)
			done <- struct{}{}
			return err
		}
		cc, _, _ := startGRPCGatewayOn(t, path, testkit.WithServerOptions(grpc.StreamInterceptor(interceptor)))
		client := testingv1.NewEchoServiceClient(cc)

		ctx, cancel := context.WithCancel(testContext(t))
		stream, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: 1000, Interval: durationpb.New(time.Hour), Text: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if item, err := stream.Recv(); err != nil || item.GetIndex() != 1 {
			t.Fatalf("first item: %v, %v", item, err)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("the backend handler still runs 5s after the client canceled (running %d, returned %d)", running.Load(), returned.Load())
		}
		_, err = stream.Recv()
		wantStatus(t, err, codes.Canceled, "")
	})
}

func TestGRPCReflection(t *testing.T) {
	t.Parallel()
	cc, _, _ := startGRPCGateway(t)
	ctx := testContext(t)
	wantServices := []string{
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"rosetta.examples.library.v1.LibraryService",
		"rosetta.testing.v1.EchoService",
	}
	const symbol = "rosetta.testing.v1.EchoService"

	t.Run("v1", func(t *testing.T) {
		stream, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = stream.CloseSend() }()
		if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		checkServices(t, got, wantServices)

		if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}}); err != nil {
			t.Fatal(err)
		}
		resp, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		checkFiles(t, resp.GetFileDescriptorResponse().GetFileDescriptorProto(), "EchoService")
	})

	t.Run("v1alpha", func(t *testing.T) {
		stream, err := reflectionv1alpha.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = stream.CloseSend() }()
		if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		checkServices(t, got, wantServices)

		if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}}); err != nil {
			t.Fatal(err)
		}
		resp, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		checkFiles(t, resp.GetFileDescriptorResponse().GetFileDescriptorProto(), "EchoService")

		// The gateway's own protos resolve too (grpcurl describe).
		if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "grpc.health.v1.Health"}}); err != nil {
			t.Fatal(err)
		}
		resp, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		checkFiles(t, resp.GetFileDescriptorResponse().GetFileDescriptorProto(), "Health")
	})
}

// checkServices fails unless got lists exactly want (in any order).
func checkServices(t *testing.T, got, want []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range got {
		seen[s] = true
	}
	for _, s := range want {
		if !seen[s] {
			t.Errorf("reflection list lacks %s (got %q)", s, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("reflection list: got %q; want %q", got, want)
	}
}

// checkFiles fails unless the serialized files include one that defines
// the service.
func checkFiles(t *testing.T, raw [][]byte, service string) {
	t.Helper()
	if len(raw) == 0 {
		t.Fatal("no file descriptors returned")
	}
	for _, b := range raw {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fd); err != nil {
			t.Fatalf("bad file descriptor: %v", err)
		}
		for _, s := range fd.GetService() {
			if s.GetName() == service {
				return
			}
		}
	}
	t.Errorf("no returned file defines service %s", service)
}

func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	cc, be, g := startGRPCGateway(t)
	// The backend's health says NOT_SERVING; the gateway's own wins.
	be.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	resp, err := healthpb.NewHealthClient(cc).Check(testContext(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gateway health: got %s; want SERVING", resp.GetStatus())
	}

	// Shutdown's first step: while draining, the gateway says NOT_SERVING.
	g.local.draining()
	resp, err = healthpb.NewHealthClient(cc).Check(testContext(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while draining: got %s, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
}

func TestGRPCOverHTTP1(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, basicConfig)
	req, err := http.NewRequest(http.MethodPost, url+"/rosetta.testing.v1.EchoService/Echo", strings.NewReader("garbage"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := http.DefaultClient.Do(req) // HTTP/1.1: no TLS, no h2c
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s %d; want HTTP/1.1 200", resp.Proto, resp.StatusCode)
	}
	if got := resp.Header.Get("Grpc-Status"); got != "12" {
		t.Errorf("grpc-status: got %q; want 12 (UNIMPLEMENTED)", got)
	}
	if got := resp.Header.Get("Grpc-Message"); !strings.Contains(got, "gRPC requires HTTP/2") {
		t.Errorf("grpc-message: got %q", got)
	}

	// Garbage over h2c: its first "length prefix" claims a message far
	// over the limit, so the gateway refuses it without forwarding it.
	h2c := newH2CClient(t)
	req, err = http.NewRequest(http.MethodPost, url+"/rosetta.testing.v1.EchoService/Echo", strings.NewReader("garbage garbage"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err = h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if got := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status"); resp.ProtoMajor != 2 || got != "8" {
		t.Errorf("garbage over h2c: got %s, grpc-status %q (message %q); want HTTP/2, 8", resp.Proto, got, resp.Header.Get("Grpc-Message"))
	}

	cc := dialGateway(t, url)
	if _, err := testingv1.NewEchoServiceClient(cc).Echo(testContext(t), &testingv1.Everything{Id: "still"}); err != nil {
		t.Fatalf("Echo after garbage: %v", err)
	}
}

func TestGRPCTLSUpstream(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		ca := testkit.NewCA(t, "rosetta test CA")
		leaf := ca.Issue(t, "backend", "backend.test", "127.0.0.1")
		be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.Creds(credentials.NewServerTLSFromCert(&leaf.TLS))))
		url, _ := startGatewayOn(t, path, be.Addr, basicConfig+"    tls: { ca: "+ca.CertFile+", server_name: backend.test }\n")
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		out, err := client.Echo(testContext(t), &testingv1.Everything{Id: "over tls"})
		if err != nil || out.GetId() != "over tls" {
			t.Fatalf("Echo over TLS: %v, %v", out, err)
		}
		if err := drainStream(client, &testingv1.StreamRequest{Count: 3, Text: "s"}); err != nil {
			t.Fatalf("server stream over TLS: %v", err)
		}
	})
}
