package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

const echoService = "/rosetta.testing.v1.EchoService/"

// startBrowserGateway starts a backend and a gateway with cfg (basicConfig
// when ""). It also closes http.DefaultClient's idle connections before
// the gateway shuts down: a connection the client dialed but never used is
// "new" to the server, and Shutdown waits 5s for such connections.
func startBrowserGateway(t *testing.T, cfg string) string {
	t.Helper()
	if cfg == "" {
		cfg = basicConfig
	}
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, cfg)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return url
}

// newH2CClient returns an HTTP client that speaks cleartext HTTP/2 only,
// its idle connections closed when the test ends.
func newH2CClient(t *testing.T) *http.Client {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// newHTTP1Client returns an HTTP/1.1 client, its idle connections closed
// when the test ends.
func newHTTP1Client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// transports are the HTTP versions every browser-protocol test runs over.
func transportsFor(t *testing.T) map[string]*http.Client {
	return map[string]*http.Client{"http1": newHTTP1Client(t), "h2c": newH2CClient(t)}
}

// wantCode checks that err is a connect error with code.
func wantCode(t *testing.T, err error, code connect.Code) *connect.Error {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got error %v; want a *connect.Error with code %v", err, code)
	}
	if ce.Code() != code {
		t.Fatalf("got code %v (%v); want %v", ce.Code(), ce, code)
	}
	return ce
}

// checkFailDetails checks the error of Fail{code: 5, message: "nope",
// with_details: true}: code, message and the ErrorInfo detail.
func checkFailDetails(t *testing.T, err error) {
	t.Helper()
	ce := wantCode(t, err, connect.CodeNotFound)
	if ce.Message() != "nope" {
		t.Errorf("message: got %q; want %q", ce.Message(), "nope")
	}
	details := ce.Details()
	if len(details) != 2 {
		t.Fatalf("got %d details; want 2", len(details))
	}
	if details[0].Type() != "google.rpc.ErrorInfo" {
		t.Errorf("detail type: got %q; want google.rpc.ErrorInfo", details[0].Type())
	}
	v, err := details[0].Value()
	if err != nil {
		t.Fatalf("detail value: %v", err)
	}
	want := &errdetails.ErrorInfo{Reason: "TEST", Domain: "rosetta.test"}
	if diff := cmp.Diff(want, v, protocmp.Transform()); diff != "" {
		t.Errorf("ErrorInfo (-want +got):\n%s", diff)
	}
}

// runClientSuite runs the tests shared by the gRPC-Web and Connect
// clients against a gateway at url.
func runClientSuite(t *testing.T, url string, hc *http.Client, opts ...connect.ClientOption) {
	echo := connect.NewClient[testingv1.Everything, testingv1.Everything](hc, url+echoService+"Echo", opts...)
	t.Run("unary", func(t *testing.T) {
		t.Parallel()
		in := &testingv1.Everything{StringValue: "hi", Int64Value: 1 << 40, Strings: []string{"a", "b"}, Nested: &testingv1.Nested{Name: "n"}}
		resp, err := echo.CallUnary(t.Context(), connect.NewRequest(in))
		if err != nil {
			t.Fatalf("Echo: %v", err)
		}
		if diff := cmp.Diff(in, resp.Msg, protocmp.Transform()); diff != "" {
			t.Errorf("Echo (-want +got):\n%s", diff)
		}
	})
	t.Run("server stream", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.StreamRequest, testingv1.StreamItem](hc, url+echoService+"ServerStream", opts...)
		st, err := c.CallServerStream(t.Context(), connect.NewRequest(&testingv1.StreamRequest{Count: 3, Text: "s"}))
		if err != nil {
			t.Fatalf("ServerStream: %v", err)
		}
		defer st.Close()
		var got []int32
		for st.Receive() {
			if st.Msg().GetText() != "s" {
				t.Errorf("text: got %q; want s", st.Msg().GetText())
			}
			got = append(got, st.Msg().GetIndex())
		}
		if err := st.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if diff := cmp.Diff([]int32{1, 2, 3}, got); diff != "" {
			t.Errorf("indexes (-want +got):\n%s", diff)
		}
	})
	t.Run("server stream of large messages", func(t *testing.T) {
		t.Parallel()
		// Large enough for the Connect adapter to gzip each envelope.
		text := strings.Repeat("big ", 1000)
		c := connect.NewClient[testingv1.StreamRequest, testingv1.StreamItem](hc, url+echoService+"ServerStream", opts...)
		st, err := c.CallServerStream(t.Context(), connect.NewRequest(&testingv1.StreamRequest{Count: 2, Text: text}))
		if err != nil {
			t.Fatalf("ServerStream: %v", err)
		}
		defer st.Close()
		n := 0
		for st.Receive() {
			if st.Msg().GetText() != text {
				t.Errorf("message %d came back changed", n)
			}
			n++
		}
		if err := st.Err(); err != nil || n != 2 {
			t.Errorf("got %d messages, %v; want 2", n, err)
		}
	})
	t.Run("server stream error midway", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.StreamRequest, testingv1.StreamItem](hc, url+echoService+"ServerStream", opts...)
		st, err := c.CallServerStream(t.Context(), connect.NewRequest(&testingv1.StreamRequest{Count: 3, FailAt: 2}))
		if err != nil {
			t.Fatalf("ServerStream: %v", err)
		}
		defer st.Close()
		n := 0
		for st.Receive() {
			n++
		}
		if n != 1 {
			t.Errorf("got %d messages; want 1", n)
		}
		if ce := wantCode(t, st.Err(), connect.CodeAborted); ce.Message() != "failing at 2" {
			t.Errorf("message: got %q", ce.Message())
		}
	})
	t.Run("error with details", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.FailRequest, emptypb.Empty](hc, url+echoService+"Fail", opts...)
		_, err := c.CallUnary(t.Context(), connect.NewRequest(&testingv1.FailRequest{Code: 5, Message: "nope", WithDetails: true}))
		checkFailDetails(t, err)
	})
	t.Run("metadata", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.MetadataRequest, testingv1.MetadataResponse](hc, url+echoService+"Metadata", opts...)
		req := connect.NewRequest(&testingv1.MetadataRequest{
			HeaderOut:  map[string]string{"x-h": "hv"},
			TrailerOut: map[string]string{"x-t": "tv"},
		})
		req.Header().Set("X-Custom", "c")
		req.Header().Set("X-Thing-Bin", base64.StdEncoding.EncodeToString([]byte{0, 1, 2}))
		resp, err := c.CallUnary(t.Context(), req)
		if err != nil {
			t.Fatalf("Metadata: %v", err)
		}
		in := resp.Msg.GetIncoming()
		if got := in["x-custom"].GetValues(); len(got) != 1 || got[0] != "c" {
			t.Errorf("x-custom at the backend: got %q; want [c]", got)
		}
		if got := in["x-thing-bin"].GetValues(); len(got) != 1 || got[0] != "\x00\x01\x02" {
			t.Errorf("x-thing-bin at the backend: got %q; want the decoded bytes", got)
		}
		for _, k := range []string{"x-grpc-web", "x-user-agent", "connect-protocol-version", "connect-timeout-ms"} {
			if in[k] != nil {
				t.Errorf("protocol header %s reached the backend: %q", k, in[k].GetValues())
			}
		}
		if got := resp.Header().Get("X-H"); got != "hv" {
			t.Errorf("header x-h: got %q; want hv", got)
		}
		if got := resp.Trailer().Get("X-T"); got != "tv" {
			t.Errorf("trailer x-t: got %q; want tv (trailers %v)", got, resp.Trailer())
		}
	})
	t.Run("deadline propagates", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.SleepRequest, testingv1.SleepResponse](hc, url+echoService+"Sleep", opts...)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		resp, err := c.CallUnary(ctx, connect.NewRequest(&testingv1.SleepRequest{}))
		if err != nil {
			t.Fatalf("Sleep: %v", err)
		}
		if rem := resp.Msg.GetDeadlineRemaining().AsDuration(); !resp.Msg.GetHadDeadline() || rem > 5*time.Second || rem < 3*time.Second {
			t.Errorf("backend deadline: got had=%v remaining=%v; want about 5s", resp.Msg.GetHadDeadline(), rem)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.SleepRequest, testingv1.SleepResponse](hc, url+echoService+"Sleep", opts...)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := c.CallUnary(ctx, connect.NewRequest(&testingv1.SleepRequest{Duration: durationpb.New(10 * time.Second)}))
		wantCode(t, err, connect.CodeDeadlineExceeded)
	})
	t.Run("unknown method", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{echoService + "Nope", "/no.such.Service/Method"} {
			c := connect.NewClient[testingv1.Everything, testingv1.Everything](hc, url+path, opts...)
			_, err := c.CallUnary(t.Context(), connect.NewRequest(&testingv1.Everything{}))
			wantCode(t, err, connect.CodeUnimplemented)
		}
	})
}

func TestGRPCWebClient(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	for name, hc := range transportsFor(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runClientSuite(t, url, hc, connect.WithGRPCWeb())
			t.Run("client stream", func(t *testing.T) {
				t.Parallel()
				c := connect.NewClient[testingv1.StreamItem, testingv1.StreamSummary](hc, url+echoService+"ClientStream", connect.WithGRPCWeb())
				st := c.CallClientStream(t.Context())
				for _, text := range []string{"a", "b"} {
					if err := st.Send(&testingv1.StreamItem{Text: text}); err != nil {
						t.Fatalf("send %s: %v", text, err)
					}
				}
				resp, err := st.CloseAndReceive()
				if err != nil || resp.Msg.GetCount() != 2 || strings.Join(resp.Msg.GetTexts(), ",") != "a,b" {
					t.Fatalf("client stream: %v, %v; want count 2, texts a,b", resp, err)
				}
			})
			// connect-go's client sends bidi streams over HTTP/2 only.
			if name != "http1" {
				t.Run("bidi stream, half duplex", func(t *testing.T) {
					t.Parallel()
					c := connect.NewClient[testingv1.StreamItem, testingv1.StreamItem](hc, url+echoService+"BidiStream", connect.WithGRPCWeb())
					st := c.CallBidiStream(t.Context())
					for i := int32(1); i <= 2; i++ {
						if err := st.Send(&testingv1.StreamItem{Index: i}); err != nil {
							t.Fatalf("send %d: %v", i, err)
						}
					}
					if err := st.CloseRequest(); err != nil {
						t.Fatal(err)
					}
					for i := int32(1); i <= 2; i++ {
						item, err := st.Receive()
						if err != nil || item.GetIndex() != i {
							t.Fatalf("receive %d: %v, %v", i, item, err)
						}
					}
					if _, err := st.Receive(); !errors.Is(err, io.EOF) {
						t.Fatalf("end of stream: %v", err)
					}
					_ = st.CloseResponse()
				})
			}
		})
	}
}

// TestGRPCWebJSON: the +json codec carries proto3 JSON messages both ways.
func TestGRPCWebJSON(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	r := doWeb(t, url+echoService+"Echo", "application/grpc-web+json", webFrame(0, []byte(`{"stringValue": "json", "int64Value": "7"}`)))
	if r.header.Get("Content-Type") != "application/grpc-web+json" || len(r.messages) != 1 || r.trailer != "grpc-status: 0\r\n" {
		t.Fatalf("got %q, %d messages, trailer %q; want application/grpc-web+json, 1, OK", r.header.Get("Content-Type"), len(r.messages), r.trailer)
	}
	assertJSON(t, string(r.messages[0]), `{"stringValue": "json", "int64Value": "7"}`)
}

// webFrame encodes one gRPC-Web frame.
func webFrame(flags byte, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// decodeTextBody decodes a grpc-web-text body of padded base64 chunks.
func decodeTextBody(t *testing.T, body string) []byte {
	t.Helper()
	var out []byte
	for len(body) > 0 {
		end := len(body)
		if i := strings.IndexByte(body, '='); i >= 0 {
			end = (i/4 + 1) * 4
		}
		b, err := base64.StdEncoding.DecodeString(body[:end])
		if err != nil {
			t.Fatalf("response is not base64: %v: %q", err, body)
		}
		out = append(out, b...)
		body = body[end:]
	}
	return out
}

type webResponse struct {
	status   int
	header   http.Header
	messages [][]byte
	trailer  string // the trailer frame's header block; "" when absent
}

// doWeb sends a hand-built gRPC-Web request and parses the response frames.
func doWeb(t *testing.T, url, contentType string, body []byte) webResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := newHTTP1Client(t).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(contentType, "application/grpc-web-text") {
		raw = decodeTextBody(t, string(raw))
	}
	out := webResponse{status: resp.StatusCode, header: resp.Header}
	for len(raw) > 0 {
		if len(raw) < 5 {
			t.Fatalf("truncated response frame: %q", raw)
		}
		n := binary.BigEndian.Uint32(raw[1:5])
		payload := raw[5 : 5+n]
		if raw[0]&0x80 != 0 {
			out.trailer = string(payload)
		} else {
			out.messages = append(out.messages, payload)
		}
		raw = raw[5+n:]
	}
	return out
}

func TestGRPCWebText(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	const ct = "application/grpc-web-text+proto"
	t.Run("unary in split padded chunks", func(t *testing.T) {
		t.Parallel()
		msg, _ := proto.Marshal(&testingv1.Everything{StringValue: "text"})
		frame := webFrame(0, msg)
		enc := base64.StdEncoding.EncodeToString
		body := enc(frame[:1]) + enc(frame[1:7]) + enc(frame[7:])
		r := doWeb(t, url+echoService+"Echo", ct, []byte(body))
		if r.status != 200 || r.header.Get("Content-Type") != ct {
			t.Fatalf("got %d %q; want 200 %q", r.status, r.header.Get("Content-Type"), ct)
		}
		if len(r.messages) != 1 {
			t.Fatalf("got %d messages; want 1", len(r.messages))
		}
		var got testingv1.Everything
		if err := proto.Unmarshal(r.messages[0], &got); err != nil || got.GetStringValue() != "text" {
			t.Errorf("got %v, %v; want string_value text", &got, err)
		}
		if r.trailer != "grpc-status: 0\r\n" {
			t.Errorf("trailer frame: got %q; want %q", r.trailer, "grpc-status: 0\r\n")
		}
	})
	t.Run("server stream", func(t *testing.T) {
		t.Parallel()
		msg, _ := proto.Marshal(&testingv1.StreamRequest{Count: 2, Text: "x"})
		r := doWeb(t, url+echoService+"ServerStream", ct, []byte(base64.StdEncoding.EncodeToString(webFrame(0, msg))))
		if len(r.messages) != 2 || r.trailer != "grpc-status: 0\r\n" {
			t.Fatalf("got %d messages, trailer %q; want 2 and status 0", len(r.messages), r.trailer)
		}
	})
	t.Run("trailers-only error", func(t *testing.T) {
		t.Parallel()
		msg, _ := proto.Marshal(&testingv1.FailRequest{Code: 5, Message: "gone 100%"})
		r := doWeb(t, url+echoService+"Fail", ct, []byte(base64.StdEncoding.EncodeToString(webFrame(0, msg))))
		if r.status != 200 || r.header.Get("Grpc-Status") != "5" || r.header.Get("Grpc-Message") != "gone 100%25" {
			t.Errorf("got %d status %q message %q; want 200, 5, %q", r.status, r.header.Get("Grpc-Status"), r.header.Get("Grpc-Message"), "gone 100%25")
		}
		if len(r.messages) != 0 || r.trailer != "" {
			t.Errorf("trailers-only body: got %d messages, trailer %q; want none", len(r.messages), r.trailer)
		}
	})
}

func TestGRPCWebMalformed(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	good, _ := proto.Marshal(&testingv1.Everything{StringValue: "ok"})
	tests := []struct {
		name, ct string
		body     []byte
		status   string
		msg      string
	}{
		{"truncated frame", "application/grpc-web+proto", webFrame(0, good)[:6], "3", "truncated"},
		{"truncated prefix", "application/grpc-web", []byte{0, 0}, "3", "truncated"},
		{"empty body", "application/grpc-web", nil, "12", "no message"},
		{"two messages", "application/grpc-web", append(webFrame(0, good), webFrame(0, good)...), "12", "more"},
		{"huge length prefix", "application/grpc-web", []byte{0, 0xff, 0xff, 0xff, 0xff, 1, 2}, "8", "larger than the limit"},
		{"bad base64", "application/grpc-web-text", []byte("!!!!notbase64"), "3", "not base64"},
		{"unknown codec", "application/grpc-web+thrift", webFrame(0, good), "12", "unsupported gRPC-Web codec"},
		{"bad JSON", "application/grpc-web+json", webFrame(0, []byte(`{"stringValue": 7}`)), "3", "stringValue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := doWeb(t, url+echoService+"Echo", tc.ct, tc.body)
			if r.header.Get("Grpc-Status") != tc.status || !strings.Contains(r.header.Get("Grpc-Message"), tc.msg) {
				t.Errorf("got grpc-status %q message %q; want %s with %q", r.header.Get("Grpc-Status"), r.header.Get("Grpc-Message"), tc.status, tc.msg)
			}
			// The gateway keeps serving: a good request right after works.
			ok := doWeb(t, url+echoService+"Echo", "application/grpc-web+proto", webFrame(0, good))
			if len(ok.messages) != 1 || ok.trailer != "grpc-status: 0\r\n" {
				t.Errorf("good request after %s: got %d messages, trailer %q", tc.name, len(ok.messages), ok.trailer)
			}
		})
	}
}

// TestGRPCWebUnsupportedEncoding: a grpc-encoding the gateway cannot
// decode is UNIMPLEMENTED, with the encodings it accepts.
func TestGRPCWebUnsupportedEncoding(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	good, _ := proto.Marshal(&testingv1.Everything{StringValue: "ok"})
	req, _ := http.NewRequest(http.MethodPost, url+echoService+"Echo", bytes.NewReader(webFrame(0, good)))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("Grpc-Encoding", "snappy")
	resp, err := newHTTP1Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Grpc-Status") != "12" || resp.Header.Get("Grpc-Accept-Encoding") != "gzip" ||
		!strings.Contains(resp.Header.Get("Grpc-Message"), "unsupported grpc-encoding") {
		t.Errorf("got grpc-status %q, accept %q, message %q; want 12, gzip, unsupported grpc-encoding",
			resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Accept-Encoding"), resp.Header.Get("Grpc-Message"))
	}
}
