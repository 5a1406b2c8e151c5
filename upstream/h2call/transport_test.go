package h2call_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
)

func grpcRequest(t testing.TB, ctx context.Context, addr, method string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+method, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Custom", "1")
	return req
}

func marshalFrame(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return grpcFrame(b)
}

// netHTTP2 is net/http's HTTP/2 transport (h2c), the reference.
func netHTTP2(t testing.TB) *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

type response struct {
	Status  int
	Header  http.Header
	Body    []byte
	Trailer http.Header
}

func roundTrip(t testing.TB, rt http.RoundTripper, req *http.Request) (response, error) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, body, resp.Trailer}, err
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	be, cc, _, rec := startBackend(t)
	ref := netHTTP2(t)
	ctx := context.Background()

	for _, tc := range []struct {
		name   string
		method string
		req    proto.Message
	}{
		{name: "unary", method: echoMethod, req: everything()},
		{name: "trailers-only", method: "/rosetta.testing.v1.EchoService/Fail", req: &testingv1.FailRequest{Code: 5, Message: "nope", WithDetails: true}},
		{name: "server-stream", method: "/rosetta.testing.v1.EchoService/ServerStream", req: &testingv1.StreamRequest{Count: 3, Text: "t"}},
		{name: "no-body", method: echoMethod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.req != nil {
				body = marshalFrame(t, tc.req)
			}
			mk := func() *http.Request {
				var r io.Reader
				if body != nil {
					r = bytes.NewReader(body)
				}
				return grpcRequest(t, ctx, be.Addr, tc.method, r)
			}
			got, err := roundTrip(t, cc, mk())
			if err != nil {
				t.Fatal(err)
			}
			want, err := roundTrip(t, ref, mk())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("response (-net/http +h2call):\n%s", d)
			}
		})
	}
	if out := rec.wait(t, 1); out.Kind != h2call.Answered || out.Code != codes.OK || out.HTTPStatus != 200 {
		t.Fatalf("outcome = %+v; want answered OK", out)
	}

	t.Run("bidi/full-duplex", func(t *testing.T) {
		pr, pw := io.Pipe()
		type result struct {
			resp *http.Response
			err  error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := cc.RoundTrip(grpcRequest(t, ctx, be.Addr, "/rosetta.testing.v1.EchoService/BidiStream", pr))
			res <- result{resp, err}
		}()
		var resp *http.Response
		for i := int32(1); i <= 5; i++ {
			frame := marshalFrame(t, &testingv1.StreamItem{Index: i})
			if _, err := pw.Write(frame); err != nil {
				t.Fatal(err)
			}
			if resp == nil {
				r := <-res
				if r.err != nil {
					t.Fatal(r.err)
				}
				resp = r.resp
				defer resp.Body.Close()
			}
			got := make([]byte, len(frame))
			if _, err := io.ReadFull(resp.Body, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, frame) {
				t.Fatalf("message %d: got %x; want %x", i, got, frame)
			}
		}
		_ = pw.Close()
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
			t.Fatalf("end: %d more bytes, %v; want none, EOF", len(rest), err)
		}
		if resp.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("trailer = %v; want grpc-status 0", resp.Trailer)
		}
	})
}

func TestRoundTripLarge(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.MaxRecvMsgSize(32<<20), grpc.MaxSendMsgSize(32<<20)))
	cc, _ := newConn(t, be.Addr, h2call.Options{}, h2.ClientOptions{})
	frame := marshalFrame(t, &testingv1.Everything{BytesValue: bytes.Repeat([]byte("large!"), 8<<20/6)})
	got, err := roundTrip(t, cc, grpcRequest(t, context.Background(), be.Addr, echoMethod, bytes.NewReader(frame)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Body, frame) || got.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("got %d bytes, trailer %v; want the %d sent and grpc-status 0", len(got.Body), got.Trailer, len(frame))
	}
}

type failingReader struct {
	first []byte
	err   error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return 0, r.err
}

func TestRoundTripAbort(t *testing.T) {
	t.Parallel()
	t.Run("context", func(t *testing.T) {
		t.Parallel()
		ss, cc, _, rec := startObservedBackend(t)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			ss.waitStart(t)
			cancel()
		}()
		frame := marshalFrame(t, &testingv1.SleepRequest{Duration: durationpb.New(time.Hour)})
		_, err := cc.RoundTrip(grpcRequest(t, ctx, "x", "/rosetta.testing.v1.EchoService/Sleep", bytes.NewReader(frame)))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RoundTrip = %v; want context.Canceled", err)
		}
		if serr := ss.waitEnd(t); status.Code(serr) != codes.Canceled {
			t.Fatalf("backend handler ended with %v; want CANCELED", serr)
		}
		if out := rec.wait(t, 1); out.Kind != h2call.Abandoned || out.Code != codes.Canceled {
			t.Fatalf("outcome = %+v; want abandoned CANCELED", out)
		}
	})
	t.Run("body-close", func(t *testing.T) {
		t.Parallel()
		ss, cc, _, _ := startObservedBackend(t)
		frame := marshalFrame(t, &testingv1.StreamRequest{Count: 100000, Interval: durationpb.New(time.Millisecond)})
		resp, err := cc.RoundTrip(grpcRequest(t, context.Background(), "x", "/rosetta.testing.v1.EchoService/ServerStream", bytes.NewReader(frame)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := resp.Body.Read(make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if serr := ss.waitEnd(t); status.Code(serr) != codes.Canceled {
			t.Fatalf("backend handler ended with %v; want CANCELED", serr)
		}
		if _, err := resp.Body.Read(make([]byte, 64)); err == nil {
			t.Fatal("Read after Close succeeded")
		}
	})
	t.Run("request-body-error", func(t *testing.T) {
		t.Parallel()
		ss, cc, _, _ := startObservedBackend(t)
		boom := errors.New("boom")
		body := &failingReader{first: marshalFrame(t, &testingv1.StreamItem{Index: 1}), err: boom}
		resp, err := cc.RoundTrip(grpcRequest(t, context.Background(), "x", "/rosetta.testing.v1.EchoService/BidiStream", body))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		if !errors.Is(err, boom) {
			t.Fatalf("got %v; want the body's error", err)
		}
		if serr := ss.waitEnd(t); status.Code(serr) != codes.Canceled {
			t.Fatalf("backend handler ended with %v; want CANCELED", serr)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		addr := startFake(t, func(c *fakeConn, id uint32, _ []hpack.HeaderField) { c.goAway(0, 0) })
		cc, rec := newConn(t, addr, h2call.Options{}, h2.ClientOptions{})
		if _, err := cc.RoundTrip(grpcRequest(t, context.Background(), addr, echoMethod, bytes.NewReader(grpcFrame(nil)))); err == nil {
			t.Fatal("RoundTrip succeeded on a refused stream")
		}
		if out := rec.wait(t, 1); out.Kind != h2call.Refused || out.Sent {
			t.Fatalf("outcome = %+v; want refused, not sent", out)
		}
	})
	t.Run("http-503", func(t *testing.T) {
		t.Parallel()
		addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream down", http.StatusServiceUnavailable)
		}))
		cc, _ := newConn(t, addr, h2call.Options{}, h2.ClientOptions{})
		got, err := roundTrip(t, cc, grpcRequest(t, context.Background(), addr, echoMethod, bytes.NewReader(grpcFrame(nil))))
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != 503 || string(got.Body) != "upstream down\n" {
			t.Fatalf("got %d %q; want 503 \"upstream down\\n\"", got.Status, got.Body)
		}
	})
}
