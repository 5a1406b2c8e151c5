package gateway

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

func TestConnectClient(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	codecs := map[string][]connect.ClientOption{
		"proto":      nil,
		"json":       {connect.WithProtoJSON()},
		"proto+gzip": {connect.WithSendGzip()},
		"json+gzip":  {connect.WithProtoJSON(), connect.WithSendGzip()},
	}
	for tname, hc := range transportsFor(t) {
		for cname, opts := range codecs {
			t.Run(tname+"/"+cname, func(t *testing.T) {
				t.Parallel()
				runClientSuite(t, url, hc, opts...)
				runConnectStreams(t, url, hc, tname == "h2c", opts...)
				t.Run("large message", func(t *testing.T) {
					t.Parallel()
					echo := connect.NewClient[testingv1.Everything, testingv1.Everything](hc, url+echoService+"Echo", opts...)
					in := &testingv1.Everything{StringValue: strings.Repeat("large ", 2000)}
					resp, err := echo.CallUnary(t.Context(), connect.NewRequest(in))
					if err != nil {
						t.Fatalf("Echo: %v", err)
					}
					if resp.Msg.GetStringValue() != in.GetStringValue() {
						t.Errorf("large message came back changed")
					}
				})
			})
		}
	}
}

// runConnectStreams tests client streams (any transport) and bidi streams
// (HTTP/2 only).
func runConnectStreams(t *testing.T, url string, hc *http.Client, h2 bool, opts ...connect.ClientOption) {
	t.Run("client stream", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.StreamItem, testingv1.StreamSummary](hc, url+echoService+"ClientStream", opts...)
		st := c.CallClientStream(t.Context())
		for _, s := range []string{"a", "b", "c"} {
			if err := st.Send(&testingv1.StreamItem{Text: s}); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		resp, err := st.CloseAndReceive()
		if err != nil {
			t.Fatalf("ClientStream: %v", err)
		}
		want := &testingv1.StreamSummary{Count: 3, Texts: []string{"a", "b", "c"}}
		if diff := cmp.Diff(want, resp.Msg, protocmp.Transform()); diff != "" {
			t.Errorf("summary (-want +got):\n%s", diff)
		}
	})
	if !h2 {
		return
	}
	t.Run("bidi stream", func(t *testing.T) {
		t.Parallel()
		c := connect.NewClient[testingv1.StreamItem, testingv1.StreamItem](hc, url+echoService+"BidiStream", opts...)
		st := c.CallBidiStream(t.Context())
		for i, s := range []string{"x", "y"} {
			if err := st.Send(&testingv1.StreamItem{Index: int32(i), Text: s}); err != nil {
				t.Fatalf("send: %v", err)
			}
			got, err := st.Receive()
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			if got.GetText() != s {
				t.Errorf("echo: got %q; want %q", got.GetText(), s)
			}
		}
		if err := st.CloseRequest(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Receive(); err == nil || !strings.Contains(err.Error(), "EOF") {
			t.Errorf("after close: got %v; want EOF", err)
		}
		if err := st.CloseResponse(); err != nil {
			t.Error(err)
		}
	})
}

func TestConnectWire(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	post := func(t *testing.T, path, body string, headers ...string) response {
		t.Helper()
		return do(t, "POST", url+path, body, append([]string{"Connect-Protocol-Version: 1"}, headers...)...)
	}
	t.Run("error JSON", func(t *testing.T) {
		t.Parallel()
		r := post(t, echoService+"Fail", `{"code": 5, "message": "nope", "withDetails": true}`)
		if r.status != 404 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("got %d %q; want 404 application/json", r.status, r.header.Get("Content-Type"))
		}
		var e struct {
			Code, Message string
			Details       []struct {
				Type, Value string
				Debug       json.RawMessage
			}
		}
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			t.Fatal(err)
		}
		if e.Code != "not_found" || e.Message != "nope" || len(e.Details) != 2 || e.Details[0].Type != "google.rpc.ErrorInfo" {
			t.Fatalf("got %s", r.body)
		}
		raw, err := base64.RawStdEncoding.DecodeString(e.Details[0].Value)
		var info errdetails.ErrorInfo
		if err != nil || proto.Unmarshal(raw, &info) != nil || info.GetReason() != "TEST" {
			t.Errorf("detail value %q does not decode to the ErrorInfo (%v)", e.Details[0].Value, err)
		}
		assertJSON(t, string(e.Details[0].Debug), `{"reason": "TEST", "domain": "rosetta.test"}`)
	})
	for code, status := range map[int]int{14: 503, 16: 401, 8: 429, 9: 400, 12: 501, 4: 504} {
		t.Run("status/"+http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			r := post(t, echoService+"Fail", `{"code": `+strconv.Itoa(code)+`, "message": "m"}`)
			if r.status != status {
				t.Errorf("code %d: got HTTP %d; want %d (%s)", code, r.status, status, r.body)
			}
		})
	}
	t.Run("unknown method", func(t *testing.T) {
		t.Parallel()
		r := post(t, echoService+"Nope", `{}`)
		if r.status != 404 || !strings.Contains(r.body, `"code":"unimplemented"`) {
			t.Errorf("got %d %s; want 404 unimplemented", r.status, r.body)
		}
	})
	t.Run("metadata", func(t *testing.T) {
		t.Parallel()
		r := post(t, echoService+"Metadata", `{"headerOut": {"x-h": "hv"}, "trailerOut": {"x-t": "tv"}}`)
		if r.status != 200 || r.header.Get("X-H") != "hv" || r.header.Get("Trailer-X-T") != "tv" {
			t.Errorf("got %d %v; want X-H and Trailer-X-T", r.status, r.header)
		}
	})
	t.Run("GET refused without NO_SIDE_EFFECTS", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+echoService+"Echo?connect=v1&encoding=json&message=%7B%7D", "")
		if r.status != 405 || r.header.Get("Allow") != "POST" || !strings.Contains(r.body, "NO_SIDE_EFFECTS") {
			t.Errorf("got %d Allow=%q %s; want 405 with Allow: POST", r.status, r.header.Get("Allow"), r.body)
		}
		c := connect.NewClient[testingv1.Everything, testingv1.Everything](http.DefaultClient, url+echoService+"Echo",
			connect.WithHTTPGet(), connect.WithIdempotency(connect.IdempotencyNoSideEffects))
		_, err := c.CallUnary(t.Context(), connect.NewRequest(&testingv1.Everything{}))
		wantCode(t, err, connect.CodeUnimplemented)
	})
	t.Run("gzip response", func(t *testing.T) {
		t.Parallel()
		big := strings.Repeat("z", 4000)
		r := post(t, echoService+"Echo", `{"stringValue": "`+big+`"}`, "Accept-Encoding: gzip")
		if r.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding: got %q; want gzip", r.header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		assertJSON(t, string(plain), `{"stringValue": "`+big+`"}`)
	})
	t.Run("bad timeout", func(t *testing.T) {
		t.Parallel()
		r := post(t, echoService+"Echo", `{}`, "Connect-Timeout-Ms: soon")
		if r.status != 400 || !strings.Contains(r.body, "Connect-Timeout-Ms") {
			t.Errorf("got %d %s; want 400 naming Connect-Timeout-Ms", r.status, r.body)
		}
	})
	t.Run("unsupported content type", func(t *testing.T) {
		t.Parallel()
		r := post(t, echoService+"Echo", `<x/>`, "Content-Type: application/xml")
		if r.status != 415 {
			t.Errorf("got %d %s; want 415", r.status, r.body)
		}
	})
	t.Run("stream truncated envelope", func(t *testing.T) {
		t.Parallel()
		env := []byte{0, 0, 0, 0, 9, 1, 2}
		r := do(t, "POST", url+echoService+"ClientStream", string(env), "Content-Type: application/connect+proto")
		end := lastEnvelope(t, []byte(r.body))
		if r.status != 200 || !strings.Contains(end, `"code":"invalid_argument"`) || !strings.Contains(end, "truncated") {
			t.Errorf("got %d end-stream %s; want 200 with invalid_argument", r.status, end)
		}
		ok := post(t, echoService+"Echo", `{"id": "after"}`)
		expect(t, ok, 200, `{"id": "after"}`)
	})
}

// lastEnvelope returns the payload of the last envelope of a Connect
// streaming body, which must be the end-of-stream message.
func lastEnvelope(t *testing.T, b []byte) string {
	t.Helper()
	var last []byte
	var flags byte
	for len(b) >= 5 {
		n := binary.BigEndian.Uint32(b[1:5])
		flags, last = b[0], b[5:5+n]
		b = b[5+n:]
	}
	if flags&0x02 == 0 {
		t.Fatalf("the last envelope is not an end-of-stream message (flags %#x)", flags)
	}
	return string(last)
}

// writeSideEffectFreeDescriptors writes echo.proto's descriptor set with
// EchoService.Echo marked idempotency_level = NO_SIDE_EFFECTS, so the GET
// path can be tested without changing the proto file.
func writeSideEffectFreeDescriptors(t *testing.T) string {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(testingv1.File_rosetta_testing_v1_echo_proto)
	for _, svc := range set.File[len(set.File)-1].GetService() {
		for _, m := range svc.GetMethod() {
			if m.GetName() == "Echo" {
				opts := &descriptorpb.MethodOptions{}
				if m.Options != nil {
					opts = proto.Clone(m.Options).(*descriptorpb.MethodOptions)
				}
				opts.IdempotencyLevel = descriptorpb.MethodOptions_NO_SIDE_EFFECTS.Enum()
				m.Options = opts
			}
		}
	}
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "echo.binpb")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestConnectGet(t *testing.T) {
	t.Parallel()
	file := writeSideEffectFreeDescriptors(t)
	url := startBrowserGateway(t, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    descriptors:
      files: ["`+file+`"]
`)
	for name, opts := range map[string][]connect.ClientOption{"proto": nil, "json": {connect.WithProtoJSON()}} {
		t.Run("client/"+name, func(t *testing.T) {
			t.Parallel()
			opts = append(opts, connect.WithHTTPGet(), connect.WithIdempotency(connect.IdempotencyNoSideEffects))
			c := connect.NewClient[testingv1.Everything, testingv1.Everything](newHTTP1Client(t), url+echoService+"Echo", opts...)
			in := &testingv1.Everything{StringValue: "via get", Ints: []int32{1, 2}}
			resp, err := c.CallUnary(t.Context(), connect.NewRequest(in))
			if err != nil {
				t.Fatalf("GET Echo: %v", err)
			}
			if diff := cmp.Diff(in, resp.Msg, protocmp.Transform()); diff != "" {
				t.Errorf("Echo (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("raw base64 proto", func(t *testing.T) {
		t.Parallel()
		msg, _ := proto.Marshal(&testingv1.Everything{Id: "g"})
		q := "connect=v1&encoding=proto&base64=1&message=" + base64.RawURLEncoding.EncodeToString(msg)
		r := do(t, "GET", url+echoService+"Echo?"+q, "")
		var got testingv1.Everything
		if r.status != 200 || r.header.Get("Content-Type") != "application/proto" || proto.Unmarshal([]byte(r.body), &got) != nil || got.GetId() != "g" {
			t.Errorf("got %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
		}
	})
	t.Run("raw json", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+echoService+"Echo?connect=v1&encoding=json&message=%7B%22id%22%3A%22j%22%7D", "")
		expect(t, r, 200, `{"id": "j"}`)
	})
	t.Run("other methods still refuse GET", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+echoService+"Unannotated?connect=v1&encoding=json&message=%7B%7D", "")
		if r.status != 405 {
			t.Errorf("got %d; want 405", r.status)
		}
	})
}

// TestConnectTransportErrors: a request the Connect protocol cannot take
// at all (wrong HTTP method or media type) gets the bare HTTP status with
// a plain-text reason, so that Connect clients derive the code from the
// status (unknown), as the protocol says; gRPC with a verb other than POST
// is UNIMPLEMENTED.
func TestConnectTransportErrors(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	for _, tc := range []struct {
		method, ct string
		status     int
		header     string
	}{
		{"DELETE", "application/json", 405, "Allow"},
		{"POST", "application/foo", 415, "Accept-Post"},
		{"POST", "application/connect+foo", 415, "Accept-Post"},
		{"PUT", "application/connect+proto", 405, ""},
	} {
		r := do(t, tc.method, url+echoService+"Echo", "{}", "Content-Type: "+tc.ct, "Connect-Protocol-Version: 1")
		if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || (tc.header != "" && r.header.Get(tc.header) == "") {
			t.Errorf("%s %s: got %d %q (%s: %q); want %d text/plain", tc.method, tc.ct, r.status, r.header.Get("Content-Type"), tc.header, r.header.Get(tc.header), tc.status)
		}
	}
	hc := newH2CClient(t)
	req, _ := http.NewRequest("DELETE", url+echoService+"Echo", strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Grpc-Status") != "12" || !strings.Contains(resp.Header.Get("Grpc-Message"), "POST") {
		t.Errorf("gRPC DELETE: grpc-status %q message %q; want 12 saying POST", resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"))
	}
}

// TestStreamUnreadBodyKeepsConnection: a streaming call over HTTP/1.1
// whose handler ends before reading the whole (chunked, so net/http's)
// request body leaves a connection that serves the next request. Go's
// HTTP/1 server, with full duplex enabled, reads the unread rest after it
// stopped its background read, and the read it then starts panics at the
// next request, closing the connection under a client that reuses it
// (golang/go#68560); the handlers close the body before they return
// (transcoder.EnableFullDuplex). Each case enables full duplex and stops
// at its second message, leaving the third (64 KiB) unread: Connect's
// server stream refuses a second request message; REST's and gRPC-Web's
// client streams fail on a bad one. The Connect and REST cases fail
// without the fix ("second answer: unexpected EOF"); gRPC-Web's pump
// reads the rest of the body itself (rpc.StartPump, up to 1 MiB within
// 5 s), and its case keeps it that way.
func TestStreamUnreadBodyKeepsConnection(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, "")
	addr := strings.TrimPrefix(url, "http://")
	envelopes := func(msgs ...string) string {
		var out []byte
		for _, m := range msgs {
			var b [5]byte
			binary.BigEndian.PutUint32(b[1:], uint32(len(m)))
			out = append(append(out, b[:]...), m...)
		}
		return string(out)
	}
	const count, good, bad = `{"count": 1}`, `{"text": "a"}`, `{"index": "x"}`
	// big is larger than the REST decoder's read-ahead, so that it stays
	// unread when the handler stops at bad.
	big := `{"text": "` + strings.Repeat("b", 64<<10) + `"}`
	const badMessage = "invalid value for int32 field index"
	for _, tc := range []struct {
		name, target, headers, body string
		status                      int
		refusal                     string
	}{
		{"connect", "POST " + echoService + "ServerStream", "Content-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\n",
			envelopes(count, count, count), 200, "takes one request message, but the request has more"},
		{"grpc-web", "POST " + echoService + "ClientStream", "Content-Type: application/grpc-web+json\r\n",
			envelopes(good, bad, big), 200, badMessage},
		{"rest", "POST /v1/stream:client", "Content-Type: application/json\r\n",
			good + "\n" + bad + "\n" + big + "\n", 400, badMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn := testkit.DialRaw(t, addr)
			br := bufio.NewReader(conn)
			// exchange writes req on the connection and reads its answer.
			exchange := func(what, req string) (*http.Response, string) {
				t.Helper()
				if _, err := io.WriteString(conn, req); err != nil {
					t.Fatalf("%s request: %v", what, err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s answer: %v; want an answer (the server closed the connection after the first)", what, err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(got)
			}
			chunked := strconv.FormatInt(int64(len(tc.body)), 16) + "\r\n" + tc.body + "\r\n0\r\n\r\n"
			resp, got := exchange("first", tc.target+" HTTP/1.1\r\nHost: gw\r\n"+tc.headers+"Transfer-Encoding: chunked\r\n\r\n"+chunked)
			// Connect ends the stream with the error, REST answers the JSON
			// error, gRPC-Web trailers-only (the status in the head).
			if answer := got + resp.Header.Get("Grpc-Message"); resp.StatusCode != tc.status || !strings.Contains(answer, tc.refusal) {
				t.Errorf("first answer: %d %v %q; want %d and %q", resp.StatusCode, resp.Header, got, tc.status, tc.refusal)
			}
			resp, got = exchange("second", "POST "+echoService+"Echo HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nConnect-Protocol-Version: 1\r\nContent-Length: 2\r\n\r\n{}")
			if resp.StatusCode != 200 || got != "{}" {
				t.Errorf("second answer: %d %q; want 200 {}", resp.StatusCode, got)
			}
		})
	}
}
