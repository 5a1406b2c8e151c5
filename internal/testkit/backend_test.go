package testkit

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

func TestMain(m *testing.M) { VerifyNoLeaks(m) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBackendUnary(t *testing.T) {
	t.Parallel()
	b := StartBackend(t)
	client := testingv1.NewEchoServiceClient(b.Dial(t))
	ctx := testContext(t)

	every := &testingv1.Everything{
		DoubleValue: 1.5, Int64Value: -7, Uint64Value: 1 << 60, BytesValue: []byte{0, 1},
		Color: testingv1.Color_COLOR_GREEN, Nested: &testingv1.Nested{Name: "n", N: 2, Child: &testingv1.Nested{Name: "c"}},
		Id: "x", Strings: []string{"a", "b"}, Labels: map[string]string{"k": "v"},
		ById: map[int32]*testingv1.Nested{3: {Name: "three"}}, Choice: &testingv1.Everything_Number{Number: 9},
		Maybe: new(int32), Ts: timestamppb.New(time.Unix(1, 2)), St: &structpb.Struct{},
		StringWrapper: wrapperspb.String("w"),
	}
	for name, call := range map[string]func(context.Context, *testingv1.Everything, ...grpc.CallOption) (*testingv1.Everything, error){
		"Echo": client.Echo, "EchoResponseBody": client.EchoResponseBody,
		"Unannotated": client.Unannotated, "Configured": client.Configured,
	} {
		got, err := call(ctx, every)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(every, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: echo mismatch (-want +got):\n%s", name, diff)
		}
	}

	upd := &testingv1.UpdateThingRequest{Thing: &testingv1.Everything{Id: "t"}}
	if got, err := client.UpdateThing(ctx, upd); err != nil || !cmp.Equal(upd, got, protocmp.Transform()) {
		t.Errorf("UpdateThing = %v, %v; want %v", got, err, upd)
	}

	up := &httpbody.HttpBody{ContentType: "image/png", Data: []byte("png")}
	if got, err := client.Upload(ctx, up); err != nil || !cmp.Equal(up, got, protocmp.Transform()) {
		t.Errorf("Upload = %v, %v; want %v", got, err, up)
	}
	down, err := client.Download(ctx, &testingv1.DownloadRequest{Name: "a.txt"})
	if err != nil || down.GetContentType() != "text/plain" || string(down.GetData()) != "content of a.txt" {
		t.Errorf("Download = %v, %v; want text/plain %q", down, err, "content of a.txt")
	}
	named, err := client.UploadNamed(ctx, &testingv1.UploadNamedRequest{Name: "f", File: up})
	want := &testingv1.UploadNamedResponse{Name: "f", ContentType: "image/png", Size: 3}
	if err != nil || !cmp.Equal(want, named, protocmp.Transform()) {
		t.Errorf("UploadNamed = %v, %v; want %v", named, err, want)
	}
}

func TestBackendFail(t *testing.T) {
	t.Parallel()
	client := testingv1.NewEchoServiceClient(StartBackend(t).Dial(t))
	ctx := testContext(t)

	_, err := client.Fail(ctx, &testingv1.FailRequest{Code: int32(codes.NotFound), Message: "nope"})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "nope" || len(st.Details()) != 0 {
		t.Errorf("Fail = %v; want NotFound nope without details", st)
	}
	_, err = client.Fail(ctx, &testingv1.FailRequest{Code: int32(codes.Unavailable), Message: "later", WithDetails: true})
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || len(st.Details()) != 2 {
		t.Fatalf("Fail = %v (%d details); want Unavailable with 2 details", st, len(st.Details()))
	}
	info, ok := st.Details()[0].(*errdetails.ErrorInfo)
	if !ok || info.GetReason() != "TEST" || info.GetDomain() != "rosetta.test" {
		t.Errorf("details[0] = %v; want ErrorInfo TEST/rosetta.test", st.Details()[0])
	}
	retry, ok := st.Details()[1].(*errdetails.RetryInfo)
	if !ok || retry.GetRetryDelay().AsDuration() != time.Second {
		t.Errorf("details[1] = %v; want RetryInfo 1s", st.Details()[1])
	}
	if _, err := client.Fail(ctx, &testingv1.FailRequest{}); err != nil {
		t.Errorf("Fail(code 0) = %v; want nil", err)
	}
}

func TestBackendSleep(t *testing.T) {
	t.Parallel()
	client := testingv1.NewEchoServiceClient(StartBackend(t).Dial(t))

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := client.Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(time.Millisecond)})
	if err != nil || !resp.GetHadDeadline() || resp.GetDeadlineRemaining().AsDuration() <= 0 {
		t.Errorf("Sleep = %v, %v; want had_deadline and a positive remainder", resp, err)
	}

	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = client.Sleep(short, &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
	if code := status.Code(err); code != codes.DeadlineExceeded {
		t.Errorf("Sleep past deadline: got %v; want DeadlineExceeded", code)
	}
}

func TestBackendMetadata(t *testing.T) {
	t.Parallel()
	client := testingv1.NewEchoServiceClient(StartBackend(t).Dial(t))
	ctx := metadata.AppendToOutgoingContext(testContext(t), "x-in", "1", "x-in", "2")

	var header, trailer metadata.MD
	resp, err := client.Metadata(ctx, &testingv1.MetadataRequest{
		HeaderOut:  map[string]string{"x-head": "h"},
		TrailerOut: map[string]string{"x-trail": "t"},
	}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetIncoming()["x-in"].GetValues(); !cmp.Equal(got, []string{"1", "2"}) {
		t.Errorf("incoming x-in = %q; want [1 2]", got)
	}
	if _, ok := resp.GetIncoming()[":authority"]; !ok {
		t.Errorf("incoming = %v; want :authority too", resp.GetIncoming())
	}
	if got := header.Get("x-head"); !cmp.Equal(got, []string{"h"}) {
		t.Errorf("header x-head = %q; want [h]", got)
	}
	if got := trailer.Get("x-trail"); !cmp.Equal(got, []string{"t"}) {
		t.Errorf("trailer x-trail = %q; want [t]", got)
	}
}

func TestBackendStreams(t *testing.T) {
	t.Parallel()
	client := testingv1.NewEchoServiceClient(StartBackend(t).Dial(t))
	ctx := testContext(t)

	t.Run("server", func(t *testing.T) {
		stream, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: 3, Text: "hi", Interval: durationpb.New(time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		var got []int32
		for {
			item, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if item.GetText() != "hi" {
				t.Errorf("item text = %q; want hi", item.GetText())
			}
			got = append(got, item.GetIndex())
		}
		if !cmp.Equal(got, []int32{1, 2, 3}) {
			t.Errorf("indexes = %v; want [1 2 3]", got)
		}
	})
	t.Run("server_fail", func(t *testing.T) {
		stream, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: 5, FailAt: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first item: %v", err)
		}
		_, err = stream.Recv()
		if st := status.Convert(err); st.Code() != codes.Aborted || st.Message() != "failing at 2" {
			t.Errorf("second recv = %v; want Aborted failing at 2", st)
		}
	})
	t.Run("client", func(t *testing.T) {
		stream, err := client.ClientStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, text := range []string{"a", "b"} {
			if err := stream.Send(&testingv1.StreamItem{Index: int32(i + 1), Text: text}); err != nil {
				t.Fatal(err)
			}
		}
		sum, err := stream.CloseAndRecv()
		want := &testingv1.StreamSummary{Count: 2, Texts: []string{"a", "b"}}
		if err != nil || !cmp.Equal(want, sum, protocmp.Transform()) {
			t.Errorf("ClientStream = %v, %v; want %v", sum, err, want)
		}
	})
	t.Run("bidi", func(t *testing.T) {
		stream, err := client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := int32(1); i <= 2; i++ {
			in := &testingv1.StreamItem{Index: i, Text: "x"}
			if err := stream.Send(in); err != nil {
				t.Fatal(err)
			}
			out, err := stream.Recv()
			if err != nil || !cmp.Equal(in, out, protocmp.Transform()) {
				t.Fatalf("echo = %v, %v; want %v", out, err, in)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("recv after CloseSend = %v; want EOF", err)
		}
	})
}

// An open stream must not keep the backend's cleanup from finishing.
func TestBackendStopsWithOpenStream(t *testing.T) {
	t.Parallel()
	b := StartBackend(t)
	client := testingv1.NewEchoServiceClient(b.Dial(t))
	stream, err := client.BidiStream(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testingv1.StreamItem{Index: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	b.Server.Stop()
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("recv after Stop = %v; want Unavailable", err)
	}
}

func TestBackendHealthAndReflection(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	b := StartBackend(t)
	cc := b.Dial(t)

	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: testingv1.EchoService_ServiceDesc.ServiceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check = %v, %v; want SERVING", resp, err)
	}

	services := listServices(t, ctx, cc)
	if !services[testingv1.EchoService_ServiceDesc.ServiceName] {
		t.Errorf("reflection services = %v; want EchoService", services)
	}

	noRefl := StartBackend(t, WithoutReflection()).Dial(t)
	stream, err := reflectionpb.NewServerReflectionClient(noRefl).ServerReflectionInfo(ctx)
	if err == nil {
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection WithoutReflection: got %v; want Unimplemented", err)
	}
}

func listServices(t *testing.T, ctx context.Context, cc *grpc.ClientConn) map[string]bool {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		names[s.GetName()] = true
	}
	return names
}
