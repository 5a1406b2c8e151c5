package gateway

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/observe"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// generatedID is the shape of a request ID the gateway makes.
var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// requestIDCases are client X-Request-Id values and whether the gateway
// keeps them ("" sends none).
var requestIDCases = []struct {
	name, sent string
	kept       bool
}{
	{"valid", "Req-01.a:b", true},
	{"128 chars", strings.Repeat("a", 127) + "Z", true},
	{"129 chars", strings.Repeat("a", 129), false},
	{"space", "bad id", false},
	{"quote", `a"b`, false},
	{"slash", "a/b", false},
	{"non-ASCII", "caf\u00e9", false},
	{"underscore", "a_b", true},
	{"absent", "", false},
}

// TestRequestID: on every protocol and both gRPC paths, a valid
// X-Request-Id is kept and anything else (too long, a character outside
// [A-Za-z0-9._:-], none) is replaced by a generated ID; the ID reaches
// the upstream (once), comes back in the response head (x-request-id
// header metadata on gRPC) and is in the call's access line.
func TestRequestID(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		var logs syncBuffer
		o := newObsGateway(t, observeConfig, &logs).start(t, path)
		seen := map[string]string{} // request ID → protocol
		calls := 0
		for _, protocol := range obsProtocols {
			for _, c := range requestIDCases {
				if protocol == "grpc" && c.name == "non-ASCII" {
					continue // grpc-go refuses to send it
				}
				calls++
				t.Run(protocol+"/"+c.name, func(t *testing.T) {
					var hdr http.Header
					if c.sent != "" {
						hdr = http.Header{observe.RequestIDHeader: {c.sent}}
					}
					res := callMetadata(t, protocol, o.url, hdr)
					ids := res.header.Values(observe.RequestIDHeader)
					if len(ids) != 1 {
						t.Fatalf("response X-Request-Id %q; want one", ids)
					}
					id := ids[0]
					switch {
					case c.kept && id != c.sent:
						t.Errorf("response X-Request-Id %q; want the client's %q", id, c.sent)
					case !c.kept && (id == c.sent || !generatedID.MatchString(id)):
						t.Errorf("response X-Request-Id %q; want a generated ID in place of %q", id, c.sent)
					}
					if up := res.seen["x-request-id"]; len(up) != 1 || up[0] != id {
						t.Errorf("upstream received x-request-id %q; want [%s]", up, id)
					}
					if other, dup := seen[id]; dup && !c.kept {
						t.Errorf("generated ID %s given twice (%s, %s)", id, other, protocol)
					}
					seen[id] = protocol
				})
			}
		}
		// Every call's access line has its request ID.
		var lines []map[string]any
		waitUntil(t, func() bool { lines = logs.lines(); return len(lines) >= calls }, "access lines")
		logged := map[string]string{}
		for _, l := range lines {
			id, _ := l["request_id"].(string)
			inbound, _ := l["inbound"].(string)
			logged[id] = inbound
		}
		for id, protocol := range seen {
			if logged[id] != protocol {
				t.Errorf("request %s (%s): access line inbound %q; want one with its request ID", id, protocol, logged[id])
			}
		}
	})
}

// requestIDPolicyConfig refuses EchoService.Metadata without an API key.
const requestIDPolicyConfig = `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
  web:
    kind: http
    targets: ["$WEB"]
consumers:
  - {name: alice, keys: [alice-key]}
routes:
  - selector: rosetta.testing.v1.EchoService.Metadata
    plugins:
      - key-auth: {}
  - uri: /web/*
    service: web
`

// TestRequestIDOnErrors: answers that do not come from the upstream's
// head (errors, policy refusals, unknown methods) carry the request ID
// too, on the HTTP protocols as a header and on gRPC as x-request-id in
// the response HEADERS: the first header block of a call that fails
// after it, the only one of a trailers-only answer (which grpc-go
// reports as trailer metadata).
func TestRequestIDOnErrors(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		o := newObsGateway(t, requestIDPolicyConfig, nil).start(t, path)
		cl := testingv1.NewEchoServiceClient(dialGateway(t, o.url))
		for _, c := range []struct {
			name string
			call func(ctx context.Context, opts ...grpc.CallOption) error
			code codes.Code
		}{
			{"upstream error", func(ctx context.Context, opts ...grpc.CallOption) error {
				_, err := cl.Fail(ctx, &testingv1.FailRequest{Code: int32(codes.NotFound), Message: "nope"}, opts...)
				return err
			}, codes.NotFound},
			{"refusal", func(ctx context.Context, opts ...grpc.CallOption) error {
				_, err := cl.Metadata(ctx, &testingv1.MetadataRequest{}, opts...)
				return err
			}, codes.Unauthenticated},
			{"unknown method", func(ctx context.Context, opts ...grpc.CallOption) error {
				return dialGateway(t, o.url).Invoke(ctx, "/rosetta.testing.v1.EchoService/Nope", &testingv1.Everything{}, &testingv1.Everything{}, opts...)
			}, codes.Unimplemented},
		} {
			for _, sent := range []string{"", "err-id-1", "bad id"} {
				ctx := testContext(t)
				if sent != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, observe.RequestIDMetadata, sent)
				}
				// A trailers-only answer is one HEADERS frame, which
				// grpc-go reports as trailer metadata.
				var head, trail metadata.MD
				wantStatus(t, c.call(ctx, grpc.Header(&head), grpc.Trailer(&trail)), c.code, "")
				ids := append(head.Get(observe.RequestIDMetadata), trail.Get(observe.RequestIDMetadata)...)
				if len(ids) != 1 || (sent == "err-id-1") != (ids[0] == sent) || sent != "err-id-1" && !generatedID.MatchString(ids[0]) {
					t.Errorf("grpc %s, sent %q: x-request-id metadata %q in the head, %q in the trailers-only answer", c.name, sent, head, trail)
				}
			}
		}
		// A stream that fails after its first message: the ID is in the
		// response head, not in the trailers.
		ctx := metadata.AppendToOutgoingContext(testContext(t), observe.RequestIDMetadata, "stream-id")
		ss, err := cl.ServerStream(ctx, &testingv1.StreamRequest{Count: 3, FailAt: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ss.Recv(); err != nil {
			t.Fatal(err)
		}
		_, err = ss.Recv()
		wantStatus(t, err, codes.Aborted, "")
		head, _ := ss.Header()
		if got := head.Get(observe.RequestIDMetadata); len(got) != 1 || got[0] != "stream-id" {
			t.Errorf("failed stream: x-request-id header metadata %q; want [stream-id]", got)
		}
		if got := ss.Trailer().Get(observe.RequestIDMetadata); len(got) != 0 {
			t.Errorf("failed stream: x-request-id trailer metadata %q; want none", got)
		}
		for _, c := range []struct {
			name, method, url string
			status            int
			hdr               []string
		}{
			{"rest error", "POST", "/v1/fail", 404, []string{"Content-Type: application/json"}},
			{"rest refusal", "POST", "/v1/metadata", 401, []string{"Content-Type: application/json"}},
			{"connect refusal", "POST", metadataRPC, 401, []string{"Content-Type: application/json", "Connect-Protocol-Version: 1"}},
			{"not found", "GET", "/nowhere", 404, nil},
		} {
			r := do(t, c.method, o.url+c.url, `{"code": 5}`, append(c.hdr, "X-Request-Id: err-id-2")...)
			if r.status != c.status || r.header.Get(observe.RequestIDHeader) != "err-id-2" {
				t.Errorf("%s: %d, X-Request-Id %q; want %d, err-id-2", c.name, r.status, r.header.Get(observe.RequestIDHeader), c.status)
			}
		}
		// gRPC-Web refusal: in the response head.
		r := doWebWithHeader(t, o.url+metadataRPC, "X-Request-Id: err-id-3")
		if r.StatusCode != 200 || r.Header.Get(observe.RequestIDHeader) != "err-id-3" {
			t.Errorf("grpc-web refusal: %d, X-Request-Id %q; want 200, err-id-3", r.StatusCode, r.Header.Get(observe.RequestIDHeader))
		}
	})
}

// doWebWithHeader sends an empty gRPC-Web call with one more header.
func doWebWithHeader(t *testing.T, url, header string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), "POST", url, strings.NewReader(string(webFrame(0, nil))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	k, v, _ := strings.Cut(header, ":")
	req.Header.Set(k, strings.TrimSpace(v))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

// TestRequestIDStreams: SSE streams and WebSockets (the bridge's and a
// uri route's) return the request ID in their response head.
func TestRequestIDStreams(t *testing.T) {
	t.Parallel()
	o := newObsGateway(t, observeConfig, nil).start(t, "")
	r := do(t, "GET", o.url+"/v1/stream?count=1", "", "Accept: text/event-stream", "X-Request-Id: sse-1")
	if r.status != 200 || r.header.Get(observe.RequestIDHeader) != "sse-1" {
		t.Errorf("sse: %d, X-Request-Id %q; want 200, sse-1", r.status, r.header.Get(observe.RequestIDHeader))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(o.url, "/v1/echo"), &websocket.DialOptions{HTTPHeader: http.Header{"X-Request-Id": {"bad id"}}})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer c.CloseNow()
	if id := resp.Header.Get(observe.RequestIDHeader); !generatedID.MatchString(id) {
		t.Errorf("websocket: X-Request-Id %q; want a generated ID", id)
	}
	wsSend(t, c, `{"stringValue": "ws"}`)
	wsRead(t, c, websocket.MessageText)
	wsExpectOK(t, c)
}
