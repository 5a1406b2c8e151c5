package h2call_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/google/go-cmp/cmp"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
)

// okHead is the head of a gRPC answer.
var okHead = []string{":status", "200", "content-type", "application/grpc"}

func statusDetailsBin(t testing.TB, code codes.Code, padded bool) string {
	t.Helper()
	d, err := anypb.New(&errdetails.ErrorInfo{Reason: "R", Domain: "d"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&spb.Status{Code: int32(code), Message: "from details", Details: []*anypb.Any{d}})
	if err != nil {
		t.Fatal(err)
	}
	if padded {
		return base64.StdEncoding.EncodeToString(b)
	}
	return base64.RawStdEncoding.EncodeToString(b)
}

// TestStatusParity answers unary calls with crafted frames and checks
// that h2call reports what grpc-go's client reports: the same code and
// message, and the same status details.
func TestStatusParity(t *testing.T) {
	t.Parallel()
	msg, _ := proto.Marshal(&testingv1.Everything{StringValue: "hi"})
	frame := grpcFrame(msg)
	compressed := append([]byte(nil), frame...)
	compressed[0] = 1
	type fc = *fakeConn
	cases := []struct {
		name   string
		answer func(c fc, id uint32)
		kind   h2call.Kind
		// wireOK: the server answered OK and the client found the answer
		// wrong; the attempt's outcome is the server's OK.
		wireOK bool
	}{
		{name: "ok", answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, false, frame)
			c.headers(id, true, "grpc-status", "0")
		}},
		{name: "trailers-only/ok-without-message", wireOK: true, answer: func(c fc, id uint32) {
			c.headers(id, true, append(okHead, "grpc-status", "0")...)
		}},
		{name: "trailers-only/status", answer: func(c fc, id uint32) {
			c.headers(id, true, append(okHead, "grpc-status", "7", "grpc-message", "no%20way")...)
		}},
		{name: "trailers/percent-message", answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.headers(id, true, "grpc-status", "3", "grpc-message", "caf%C3%A9 50%25 %zz end%")
		}},
		{name: "trailers/details/unpadded", answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.headers(id, true, "grpc-status", "3", "grpc-message", "m", "grpc-status-details-bin", statusDetailsBin(t, codes.InvalidArgument, false))
		}},
		{name: "trailers/details/padded", answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.headers(id, true, "grpc-status", "3", "grpc-message", "m", "grpc-status-details-bin", statusDetailsBin(t, codes.InvalidArgument, true))
		}},
		{name: "trailers/details/mismatch", answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.headers(id, true, "grpc-status", "3", "grpc-message", "m", "grpc-status-details-bin", statusDetailsBin(t, codes.NotFound, false))
		}},
		{name: "trailers/no-status", answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, false, frame)
			c.headers(id, true, "x-other", "1")
		}},
		{name: "trailers/malformed-status", answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.headers(id, true, "grpc-status", "abc")
		}},
		{name: "no-trailers", kind: h2call.Broken, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, true, frame)
		}},
		{name: "truncated/payload", kind: h2call.Broken, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, false, frame[:len(frame)-2])
			c.headers(id, true, "grpc-status", "0")
		}},
		{name: "truncated/prefix", kind: h2call.Broken, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, false, frame[:3])
			c.headers(id, true, "grpc-status", "0")
		}},
		{name: "truncated/no-trailers", kind: h2call.Broken, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, true, frame[:len(frame)-1])
		}},
		{name: "two-messages", kind: h2call.Abandoned, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, false, frame)
			c.data(id, false, frame)
			c.headers(id, true, "grpc-status", "0")
		}},
		{name: "too-large", kind: h2call.Abandoned, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, false, []byte{0, 0, 0x50, 0, 0})
		}},
		{name: "compressed/identity", wireOK: true, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.data(id, false, compressed)
			c.headers(id, true, "grpc-status", "0")
		}},
		{name: "compressed/unknown", wireOK: true, answer: func(c fc, id uint32) {
			c.headers(id, false, append(okHead, "grpc-encoding", "snappy")...)
			c.data(id, false, compressed)
			c.headers(id, true, "grpc-status", "0")
		}},
		{name: "malformed-bin-header", kind: h2call.Broken, answer: func(c fc, id uint32) {
			c.headers(id, false, append(okHead, "x-bin", "!!!")...)
		}},
		{name: "rst/cancel", kind: h2call.Broken, answer: func(c fc, id uint32) { c.rst(id, http2.ErrCodeCancel) }},
		{name: "rst/internal", kind: h2call.Broken, answer: func(c fc, id uint32) { c.rst(id, http2.ErrCodeInternal) }},
		{name: "rst/flow-control", kind: h2call.Broken, answer: func(c fc, id uint32) { c.rst(id, http2.ErrCodeFlowControl) }},
		{name: "rst/no-error-after-head", kind: h2call.Broken, answer: func(c fc, id uint32) {
			c.headers(id, false, okHead...)
			c.rst(id, http2.ErrCodeNo)
		}},
		{name: "rst/refused", kind: h2call.Refused, answer: func(c fc, id uint32) { c.rst(id, http2.ErrCodeRefusedStream) }},
		{name: "http/503-body", answer: func(c fc, id uint32) {
			c.headers(id, false, ":status", "503", "content-type", "text/plain")
			c.data(id, true, []byte("upstream down"))
		}},
		{name: "http/404-no-body", answer: func(c fc, id uint32) { c.headers(id, true, ":status", "404") }},
		{name: "http/401", answer: func(c fc, id uint32) { c.headers(id, true, ":status", "401", "content-type", "text/html") }},
		{name: "http/429", answer: func(c fc, id uint32) { c.headers(id, true, ":status", "429") }},
		{name: "http/400", answer: func(c fc, id uint32) { c.headers(id, true, ":status", "400") }},
		{name: "http/502-trailers", answer: func(c fc, id uint32) {
			c.headers(id, false, ":status", "502")
			c.data(id, false, []byte("bad gateway"))
			c.headers(id, true, "x-after", "1")
		}},
		{name: "http/500-long-body", answer: func(c fc, id uint32) {
			c.headers(id, false, ":status", "500")
			c.data(id, false, make([]byte, 1500))
		}},
		{name: "http/200-not-grpc", answer: func(c fc, id uint32) {
			c.headers(id, false, ":status", "200", "content-type", "text/html")
			c.data(id, true, []byte("<html>"))
		}},
		{name: "http/503-grpc-content-type", answer: func(c fc, id uint32) {
			c.headers(id, true, ":status", "503", "content-type", "application/grpc")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := startFake(t, func(c *fakeConn, id uint32, _ []hpack.HeaderField) { tc.answer(c, id) })
			cc, rec := newConn(t, addr, h2call.Options{}, h2.ClientOptions{})
			ref, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			got := &testingv1.Everything{}
			err = cc.Invoke(context.Background(), echoMethod, &testingv1.Everything{}, got)
			refErr := ref.Invoke(context.Background(), echoMethod, &testingv1.Everything{}, &testingv1.Everything{})
			if d := cmp.Diff(status.Convert(refErr).Proto(), status.Convert(err).Proto(), protocmp.Transform()); d != "" {
				t.Fatalf("status (-grpc-go +h2call):\n%s", d)
			}
			want := status.Code(err)
			if tc.wireOK {
				want = codes.OK
			}
			if out := rec.wait(t, 1); out.Kind != tc.kind || out.Code != want {
				t.Fatalf("outcome = %+v; want kind %v, code %v", out, tc.kind, want)
			}
		})
	}
}

// TestHTTPStatus answers with net/http's HTTP/2 server, as a proxy in
// front of a backend would.
func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
	}))
	cc, rec := newConn(t, addr, h2call.Options{}, h2.ClientOptions{})
	ref, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	err = cc.Invoke(context.Background(), echoMethod, &testingv1.Everything{}, &testingv1.Everything{})
	refErr := ref.Invoke(context.Background(), echoMethod, &testingv1.Everything{}, &testingv1.Everything{})
	st := wantCode(t, err, codes.Unavailable)
	if st.Message() != status.Convert(refErr).Message() {
		t.Fatalf("message %q; want grpc-go's %q", st.Message(), status.Convert(refErr).Message())
	}
	if out := rec.wait(t, 1); out.Kind != h2call.Answered || out.HTTPStatus != 503 {
		t.Fatalf("outcome = %+v; want answered with HTTP 503", out)
	}
}
