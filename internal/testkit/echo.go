package testkit

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// EchoServer implements rosetta.testing.v1.EchoService: each method returns
// what it received (see echo.proto for the few that do more). It is safe for
// concurrent use and every method returns when its context ends.
type EchoServer struct {
	testingv1.UnimplementedEchoServiceServer
}

// NewEchoServer returns an [EchoServer], for tests that run their own
// grpc.Server instead of [StartBackend].
func NewEchoServer() *EchoServer { return &EchoServer{} }

// Echo returns req.
func (*EchoServer) Echo(_ context.Context, req *testingv1.Everything) (*testingv1.Everything, error) {
	return req, nil
}

// EchoResponseBody returns req.
func (*EchoServer) EchoResponseBody(_ context.Context, req *testingv1.Everything) (*testingv1.Everything, error) {
	return req, nil
}

// UpdateThing returns req.
func (*EchoServer) UpdateThing(_ context.Context, req *testingv1.UpdateThingRequest) (*testingv1.UpdateThingRequest, error) {
	return req, nil
}

// Unannotated returns req.
func (*EchoServer) Unannotated(_ context.Context, req *testingv1.Everything) (*testingv1.Everything, error) {
	return req, nil
}

// Configured returns req.
func (*EchoServer) Configured(_ context.Context, req *testingv1.Everything) (*testingv1.Everything, error) {
	return req, nil
}

// Fail returns status(req.code, req.message), with ErrorInfo and RetryInfo
// details when req.with_details is set. Code 0 returns Empty.
func (*EchoServer) Fail(_ context.Context, req *testingv1.FailRequest) (*emptypb.Empty, error) {
	code := codes.Code(req.GetCode())
	if code == codes.OK {
		return &emptypb.Empty{}, nil
	}
	st := status.New(code, req.GetMessage())
	if req.GetWithDetails() {
		var err error
		st, err = st.WithDetails(
			&errdetails.ErrorInfo{Reason: "TEST", Domain: "rosetta.test"},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)},
		)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "attach details: %v", err)
		}
	}
	return nil, st.Err()
}

// Sleep waits for req.duration or until ctx ends, and reports the deadline
// it saw when the call started.
func (*EchoServer) Sleep(ctx context.Context, req *testingv1.SleepRequest) (*testingv1.SleepResponse, error) {
	resp := &testingv1.SleepResponse{}
	if dl, ok := ctx.Deadline(); ok {
		resp.HadDeadline = true
		resp.DeadlineRemaining = durationpb.New(time.Until(dl))
	}
	timer := time.NewTimer(req.GetDuration().AsDuration())
	defer timer.Stop()
	select {
	case <-timer.C:
		return resp, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// Metadata returns all incoming metadata and sets req.header_out as response
// header metadata and req.trailer_out as trailer metadata.
func (*EchoServer) Metadata(ctx context.Context, req *testingv1.MetadataRequest) (*testingv1.MetadataResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	resp := &testingv1.MetadataResponse{Incoming: make(map[string]*testingv1.Values, len(md))}
	for k, vs := range md {
		resp.Incoming[k] = &testingv1.Values{Values: vs}
	}
	if len(req.GetHeaderOut()) > 0 {
		if err := grpc.SetHeader(ctx, metadata.New(req.GetHeaderOut())); err != nil {
			return nil, status.Errorf(codes.Internal, "set header: %v", err)
		}
	}
	if len(req.GetTrailerOut()) > 0 {
		if err := grpc.SetTrailer(ctx, metadata.New(req.GetTrailerOut())); err != nil {
			return nil, status.Errorf(codes.Internal, "set trailer: %v", err)
		}
	}
	return resp, nil
}

// Upload returns the content type and data it received.
func (*EchoServer) Upload(_ context.Context, req *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	return &httpbody.HttpBody{ContentType: req.GetContentType(), Data: req.GetData()}, nil
}

// Download returns "content of <name>" with req.content_type (default
// text/plain).
func (*EchoServer) Download(_ context.Context, req *testingv1.DownloadRequest) (*httpbody.HttpBody, error) {
	ct := req.GetContentType()
	if ct == "" {
		ct = "text/plain"
	}
	return &httpbody.HttpBody{ContentType: ct, Data: []byte("content of " + req.GetName())}, nil
}

// UploadNamed reports the name, content type and size of req.file.
func (*EchoServer) UploadNamed(_ context.Context, req *testingv1.UploadNamedRequest) (*testingv1.UploadNamedResponse, error) {
	return &testingv1.UploadNamedResponse{
		Name:        req.GetName(),
		ContentType: req.GetFile().GetContentType(),
		Size:        int64(len(req.GetFile().GetData())),
	}, nil
}

// ServerStream sends req.count items with index 1..count and text req.text,
// waiting req.interval between them. At index req.fail_at (when not 0) it
// fails with ABORTED "failing at N" instead of sending.
func (*EchoServer) ServerStream(req *testingv1.StreamRequest, stream grpc.ServerStreamingServer[testingv1.StreamItem]) error {
	ctx := stream.Context()
	interval := req.GetInterval().AsDuration()
	for i := int32(1); i <= req.GetCount(); i++ {
		if i > 1 && interval > 0 {
			timer := time.NewTimer(interval)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		if i == req.GetFailAt() {
			return status.Errorf(codes.Aborted, "failing at %d", i)
		}
		if err := stream.Send(&testingv1.StreamItem{Index: i, Text: req.GetText()}); err != nil {
			return err
		}
	}
	return nil
}

// ClientStream counts the items it receives and returns their texts when the
// client half-closes.
func (*EchoServer) ClientStream(stream grpc.ClientStreamingServer[testingv1.StreamItem, testingv1.StreamSummary]) error {
	sum := &testingv1.StreamSummary{}
	for {
		item, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(sum)
		}
		if err != nil {
			return err
		}
		sum.Count++
		sum.Texts = append(sum.Texts, item.GetText())
	}
}

// BidiStream sends back each item it receives until the client half-closes.
func (*EchoServer) BidiStream(stream grpc.BidiStreamingServer[testingv1.StreamItem, testingv1.StreamItem]) error {
	for {
		item, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(item); err != nil {
			return err
		}
	}
}

var _ testingv1.EchoServiceServer = (*EchoServer)(nil)
