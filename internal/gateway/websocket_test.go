package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// wsURL turns the gateway's http:// base URL into a ws:// URL for path.
func wsURL(base, path string) string { return "ws" + strings.TrimPrefix(base, "http") + path }

// dialWS opens a WebSocket through the gateway; the socket is closed when
// the test ends.
func dialWS(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func wsContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wsSend(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	if err := c.Write(wsContext(t), websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("write %s: %v", text, err)
	}
}

func wsSendProto(t *testing.T, c *websocket.Conn, m proto.Message) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(wsContext(t), websocket.MessageBinary, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// wsRead reads one frame and checks its type.
func wsRead(t *testing.T, c *websocket.Conn, want websocket.MessageType) []byte {
	t.Helper()
	typ, b, err := c.Read(wsContext(t))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != want {
		t.Fatalf("frame type: got %v; want %v (%q)", typ, want, b)
	}
	return b
}

// statusFrame is the final frame of a call.
type statusFrame struct {
	Status struct {
		Code    int               `json:"code"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details"`
	} `json:"@status"`
	Headers  map[string][]string `json:"@headers"`
	Trailers map[string][]string `json:"@trailers"`
}

func wsReadStatus(t *testing.T, c *websocket.Conn) statusFrame {
	t.Helper()
	b := wsRead(t, c, websocket.MessageText)
	var st statusFrame
	if err := json.Unmarshal(b, &st); err != nil || !strings.Contains(string(b), `"@status"`) {
		t.Fatalf("want a status frame, got %s (%v)", b, err)
	}
	return st
}

// wsExpectClose reads until the socket closes and checks the close code
// and, when not empty, the reason.
func wsExpectClose(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	_, b, err := c.Read(wsContext(t))
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("want close %d, got frame %q err %v", code, b, err)
	}
	if ce.Code != code || (reason != "" && ce.Reason != reason) {
		t.Errorf("close: got %d %q; want %d %q", ce.Code, ce.Reason, code, reason)
	}
}

// wsExpectOK checks a status frame with code 0 and close 1000.
func wsExpectOK(t *testing.T, c *websocket.Conn) statusFrame {
	t.Helper()
	st := wsReadStatus(t, c)
	if st.Status.Code != 0 || st.Status.Message != "" || st.Status.Details == nil {
		t.Errorf("status: got %+v; want code 0", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusNormalClosure, "")
	return st
}

func TestWebSocketUnary(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	cases := []struct {
		name, path, send, want string
	}{
		{"binding_post", "/v1/echo", `{"stringValue": "hi", "ints": [1, 2]}`, `{"stringValue": "hi", "ints": [1, 2]}`},
		{"fallback", "/rosetta.testing.v1.EchoService/Echo", `{"stringValue": "hi"}`, `{"stringValue": "hi"}`},
		{"fallback_unannotated", "/rosetta.testing.v1.EchoService/Unannotated", `{"int32Value": 7}`, `{"int32Value": 7}`},
		// Query values fill fields the frame leaves unset; path values win.
		{"path_and_query", "/v1/echo/abc?stringValue=q&boolValue=true", `{"id": "frame", "int32Value": 3, "boolValue": false}`,
			`{"id": "abc", "stringValue": "q", "int32Value": 3, "boolValue": true}`},
		{"close_send_only", "/v1/echo/abc?stringValue=q", `{"@close_send": true}`, `{"id": "abc", "stringValue": "q"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialWS(t, wsURL(base, tc.path), nil)
			if c.Subprotocol() != "" {
				t.Errorf("subprotocol: got %q; want none (none was offered)", c.Subprotocol())
			}
			wsSend(t, c, tc.send)
			assertJSON(t, string(wsRead(t, c, websocket.MessageText)), tc.want)
			wsExpectOK(t, c)
		})
	}
}

func TestWebSocketServerStream(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	c := dialWS(t, wsURL(base, "/v1/stream?count=3&text=s"), &websocket.DialOptions{Subprotocols: []string{"rosetta.json.v1"}})
	if c.Subprotocol() != "rosetta.json.v1" {
		t.Errorf("subprotocol: got %q; want rosetta.json.v1", c.Subprotocol())
	}
	wsSend(t, c, `{}`)
	for i := 1; i <= 3; i++ {
		assertJSON(t, string(wsRead(t, c, websocket.MessageText)), `{"index": `+string(rune('0'+i))+`, "text": "s"}`)
	}
	wsExpectOK(t, c)
}

func TestWebSocketClientStream(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	for _, path := range []string{"/v1/stream:client", "/rosetta.testing.v1.EchoService/ClientStream"} {
		c := dialWS(t, wsURL(base, path), nil)
		for _, text := range []string{"a", "b", "c"} {
			wsSend(t, c, `{"text": "`+text+`"}`)
		}
		wsSend(t, c, `{"@close_send": true}`)
		assertJSON(t, string(wsRead(t, c, websocket.MessageText)), `{"count": 3, "texts": ["a", "b", "c"]}`)
		wsExpectOK(t, c)
	}
}

func TestWebSocketBidiStream(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	c := dialWS(t, wsURL(base, "/v1/stream:bidi"), nil)
	for i := 1; i <= 3; i++ {
		item := `{"index": ` + string(rune('0'+i)) + `, "text": "t"}`
		wsSend(t, c, item)
		assertJSON(t, string(wsRead(t, c, websocket.MessageText)), item)
	}
	wsSend(t, c, `{"@close_send": true}`)
	wsExpectOK(t, c)
}

func TestWebSocketProtoSubprotocol(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	c := dialWS(t, wsURL(base, "/rosetta.testing.v1.EchoService/BidiStream"),
		&websocket.DialOptions{Subprotocols: []string{"rosetta.proto.v1"}})
	if c.Subprotocol() != "rosetta.proto.v1" {
		t.Fatalf("subprotocol: got %q; want rosetta.proto.v1", c.Subprotocol())
	}
	for i := int32(1); i <= 3; i++ {
		sent := &testingv1.StreamItem{Index: i, Text: "bin"}
		wsSendProto(t, c, sent)
		got := &testingv1.StreamItem{}
		if err := proto.Unmarshal(wsRead(t, c, websocket.MessageBinary), got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sent, got, protocmp.Transform()); diff != "" {
			t.Errorf("item %d (-sent +got):\n%s", i, diff)
		}
	}
	wsSend(t, c, `{"@close_send": true}`)
	wsExpectOK(t, c)

	// Server stream in proto mode: path and query values are merged into
	// the binary request.
	c = dialWS(t, wsURL(base, "/v1/stream?text=q"), &websocket.DialOptions{Subprotocols: []string{"rosetta.proto.v1"}})
	wsSendProto(t, c, &testingv1.StreamRequest{Count: 2})
	for i := int32(1); i <= 2; i++ {
		got := &testingv1.StreamItem{}
		if err := proto.Unmarshal(wsRead(t, c, websocket.MessageBinary), got); err != nil {
			t.Fatal(err)
		}
		if got.GetIndex() != i || got.GetText() != "q" {
			t.Errorf("item: got %v; want index %d text q", got, i)
		}
	}
	wsExpectOK(t, c)
}

func TestWebSocketBackendError(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	c := dialWS(t, wsURL(base, "/v1/stream?count=5&failAt=3"), nil)
	wsSend(t, c, `{}`)
	wsRead(t, c, websocket.MessageText)
	wsRead(t, c, websocket.MessageText)
	st := wsReadStatus(t, c)
	if st.Status.Code != 10 || st.Status.Message != "failing at 3" {
		t.Errorf("status: got %+v; want 10 (ABORTED) failing at 3", st.Status)
	}
	wsExpectClose(t, c, 4010, "failing at 3")

	// A unary error: details and the long message cut to 123 bytes.
	long := strings.Repeat("é", 100) // 200 bytes
	c = dialWS(t, wsURL(base, "/v1/fail"), nil)
	wsSend(t, c, `{"code": 5, "message": "`+long+`", "withDetails": true}`)
	st = wsReadStatus(t, c)
	if st.Status.Code != 5 || st.Status.Message != long || len(st.Status.Details) != 2 {
		t.Errorf("status: got %+v; want NOT_FOUND with 2 details", st.Status)
	}
	wsExpectClose(t, c, 4005, strings.Repeat("é", 61))
}

func TestWebSocketBadFrames(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	c := dialWS(t, wsURL(base, "/v1/stream:bidi"), nil)
	wsSend(t, c, `{"index": "not a number"}`)
	st := wsReadStatus(t, c)
	if st.Status.Code != 3 || !strings.Contains(st.Status.Message, "index") || len(st.Status.Details) != 1 ||
		!strings.Contains(string(st.Status.Details[0]), `"field":"index"`) {
		t.Errorf("status: got %+v; want INVALID_ARGUMENT naming field index", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusInvalidFramePayloadData, "")

	// The gateway is fine: another socket works.
	c = dialWS(t, wsURL(base, "/v1/stream:bidi"), nil)
	wsSend(t, c, `{"text": "ok"}`)
	assertJSON(t, string(wsRead(t, c, websocket.MessageText)), `{"text": "ok"}`)
	wsSend(t, c, `{"@close_send": true}`)
	wsExpectOK(t, c)

	// A binary frame on a JSON socket.
	c = dialWS(t, wsURL(base, "/v1/stream:bidi"), nil)
	if err := c.Write(wsContext(t), websocket.MessageBinary, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if st := wsReadStatus(t, c); st.Status.Code != 3 {
		t.Errorf("status: got %+v; want INVALID_ARGUMENT", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusUnsupportedData, "")

	// Invalid protobuf on a proto socket.
	c = dialWS(t, wsURL(base, "/v1/stream:bidi"), &websocket.DialOptions{Subprotocols: []string{"rosetta.proto.v1"}})
	if err := c.Write(wsContext(t), websocket.MessageBinary, []byte{0x0a, 0xff}); err != nil {
		t.Fatal(err)
	}
	if st := wsReadStatus(t, c); st.Status.Code != 3 {
		t.Errorf("status: got %+v; want INVALID_ARGUMENT", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusInvalidFramePayloadData, "")

	// A second message to a unary method.
	c = dialWS(t, wsURL(base, "/rosetta.testing.v1.EchoService/Sleep"), nil)
	wsSend(t, c, `{"duration": "10s"}`)
	wsSend(t, c, `{}`)
	if st := wsReadStatus(t, c); st.Status.Code != 3 {
		t.Errorf("status: got %+v; want INVALID_ARGUMENT", st.Status)
	}
	wsExpectClose(t, c, 4003, "")
}

func TestWebSocketMessageTooBig(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	base, _ := startGateway(t, be.Addr, basicConfig+`
websocket:
  max_message_bytes: 1024
`)
	c := dialWS(t, wsURL(base, "/v1/stream:bidi"), nil)
	wsSend(t, c, `{"text": "`+strings.Repeat("x", 1000)+`"}`) // within the limit
	wsRead(t, c, websocket.MessageText)
	wsSend(t, c, `{"text": "`+strings.Repeat("x", 2000)+`"}`)
	if st := wsReadStatus(t, c); st.Status.Code != 8 {
		t.Errorf("status: got %+v; want RESOURCE_EXHAUSTED", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusMessageTooBig, "")
}

func TestWebSocketBeforeUpgrade(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	base, _ := startGateway(t, be.Addr, basicConfig+`
websocket:
  allowed_origins: ["https://app.example.com", "https://*.trusted.example"]
`)
	dial := func(path string, opts *websocket.DialOptions) (int, string) {
		t.Helper()
		c, resp, err := websocket.Dial(wsContext(t), wsURL(base, path), opts)
		if err == nil {
			_ = c.CloseNow()
			return 101, ""
		}
		if resp == nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	origin := func(o string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {o}}}
	}
	for _, tc := range []struct {
		name, path string
		opts       *websocket.DialOptions
		status     int
		msg        string
	}{
		{"unknown_route", "/v9/nothing", nil, 404, "no WebSocket route"},
		{"unknown_method", "/rosetta.testing.v1.EchoService/Nope", nil, 404, "no WebSocket route"},
		{"origin_refused", "/v1/echo", origin("https://evil.example"), 403, "websocket.allowed_origins"},
		{"origin_listed", "/v1/echo", origin("https://app.example.com"), 101, ""},
		{"origin_pattern", "/v1/echo", origin("https://a.trusted.example"), 101, ""},
		{"bad_query", "/v1/stream?count=abc", nil, 400, "count"},
		{"bad_path", "/v1/echo/nested/x/notanumber", nil, 400, "nested.n"},
		{"unknown_subprotocol", "/v1/echo", &websocket.DialOptions{Subprotocols: []string{"graphql-ws"}}, 400, "rosetta.json.v1"},
	} {
		status, body := dial(tc.path, tc.opts)
		if status != tc.status || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: got %d %s; want %d containing %q", tc.name, status, body, tc.status, tc.msg)
		}
		if status >= 400 && !strings.Contains(body, `"code"`) {
			t.Errorf("%s: body is not google.rpc.Status JSON: %s", tc.name, body)
		}
	}
}

func TestWebSocketBearerToken(t *testing.T) {
	t.Parallel()
	base := startDefault(t)
	for _, tc := range []struct {
		name, query string
		opts        *websocket.DialOptions
		want        string
	}{
		{"access_token", "?access_token=tok1", nil, "Bearer tok1"},
		{"subprotocol", "", &websocket.DialOptions{Subprotocols: []string{"rosetta.json.v1", "rosetta.bearer.tok2"}}, "Bearer tok2"},
		{"header_wins", "?access_token=tok3", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Basic abc"}}}, "Basic abc"},
	} {
		c := dialWS(t, wsURL(base, "/v1/metadata"+tc.query), tc.opts)
		if strings.HasPrefix(c.Subprotocol(), "rosetta.bearer.") {
			t.Errorf("%s: the bearer subprotocol was echoed", tc.name)
		}
		wsSend(t, c, `{"headerOut": {"h": "1"}, "trailerOut": {"t": "2"}}`)
		var resp struct {
			Incoming map[string]struct{ Values []string } `json:"incoming"`
		}
		if err := json.Unmarshal(wsRead(t, c, websocket.MessageText), &resp); err != nil {
			t.Fatal(err)
		}
		if got := resp.Incoming["authorization"].Values; len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: authorization: got %q; want %q", tc.name, got, tc.want)
		}
		if _, ok := resp.Incoming["access_token"]; ok {
			t.Errorf("%s: access_token leaked into metadata", tc.name)
		}
		st := wsExpectOK(t, c)
		if diff := cmp.Diff(map[string][]string{"h": {"1"}}, st.Headers); diff != "" {
			t.Errorf("%s: @headers (-want +got):\n%s", tc.name, diff)
		}
		if diff := cmp.Diff(map[string][]string{"t": {"2"}}, st.Trailers); diff != "" {
			t.Errorf("%s: @trailers (-want +got):\n%s", tc.name, diff)
		}
	}
}

// streamWatch is a backend stream interceptor that counts the messages
// backends send and reports when handlers return.
type streamWatch struct {
	sent     atomic.Int64
	returned chan string
}

func newStreamWatch() *streamWatch { return &streamWatch{returned: make(chan string, 16)} }

func (w *streamWatch) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, "/rosetta.testing.v1.") {
		return handler(srv, ss) // reflection
	}
	err := handler(srv, &countingStream{ServerStream: ss, sent: &w.sent})
	w.returned <- info.FullMethod
	return err
}

type countingStream struct {
	grpc.ServerStream
	sent *atomic.Int64
}

func (s *countingStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.sent.Add(1)
	}
	return err
}

func TestWebSocketClientGoneCancelsBackend(t *testing.T) {
	t.Parallel()
	w := newStreamWatch()
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.StreamInterceptor(w.intercept)))
	base, _ := startGateway(t, be.Addr, basicConfig)
	for _, mode := range []string{"close_now", "close_1000"} {
		c := dialWS(t, wsURL(base, "/v1/stream?count=3&interval=3600s"), nil)
		wsSend(t, c, `{}`)
		wsRead(t, c, websocket.MessageText) // the stream is open; the backend now waits an hour
		if mode == "close_now" {
			_ = c.CloseNow()
		} else {
			_ = c.Close(websocket.StatusNormalClosure, "bye")
		}
		select {
		case m := <-w.returned:
			if m != "/rosetta.testing.v1.EchoService/ServerStream" {
				t.Errorf("%s: handler returned: %s", mode, m)
			}
		case <-wsContext(t).Done():
			t.Fatalf("%s: the backend handler did not return after the client went away", mode)
		}
	}
}

func TestWebSocketIdleTimeout(t *testing.T) {
	t.Parallel()
	w := newStreamWatch()
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.StreamInterceptor(w.intercept)))
	base, _ := startGateway(t, be.Addr, basicConfig+`
websocket:
  idle_timeout: 1s
  ping_interval: 200ms
`)
	// Several pings before the idle timeout; each pong has the interval
	// (200ms) to come back, which a loaded test machine keeps.
	c := dialWS(t, wsURL(base, "/v1/stream?count=2&interval=3600s"), nil)
	wsSend(t, c, `{}`)
	wsRead(t, c, websocket.MessageText)
	// Pings (answered by the client's reader) do not count as messages.
	st := wsReadStatus(t, c)
	if st.Status.Code != 4 || !strings.Contains(st.Status.Message, "idle_timeout") {
		t.Errorf("status: got %+v; want DEADLINE_EXCEEDED naming idle_timeout", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusGoingAway, "")
	<-w.returned
}

// TestWebSocketSlowReader checks backpressure: a client that stops reading
// stalls the backend's stream through TCP and HTTP/2 flow control, instead
// of the gateway buffering the stream.
func TestWebSocketSlowReader(t *testing.T) {
	t.Parallel()
	w := newStreamWatch()
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.StreamInterceptor(w.intercept)))
	base, _ := startGateway(t, be.Addr, basicConfig)
	const total = 100000
	text := strings.Repeat("x", 16<<10) // 16 KiB per message: 1.6 GB if nothing pushed back
	// The text travels in the frame: a 16 KiB URL is over the listener's
	// max_uri_bytes.
	c := dialWS(t, wsURL(base, "/v1/stream?count=100000"), nil)
	wsSend(t, c, `{"text": "`+text+`"}`)
	wsRead(t, c, websocket.MessageText)
	// Wait until the backend stops making progress: 20 polls in a row
	// without a sent message. Buffers on the way (socket buffers, HTTP/2
	// windows) hold some megabytes, not the stream.
	stalled := func() int64 {
		last, same := int64(-1), 0
		for same < 20 {
			select {
			case <-wsContext(t).Done():
				t.Fatalf("the backend never stalled: %d of %d messages sent", w.sent.Load(), total)
			case <-time.After(25 * time.Millisecond):
			}
			if n := w.sent.Load(); n == last {
				same++
			} else {
				last, same = n, 0
			}
		}
		return last
	}
	sent := stalled()
	if sent >= total/10 {
		t.Fatalf("backend sent %d of %d messages to a client that read 1: the gateway buffers instead of pushing back", sent, total)
	}
	// Reading resumes the stream.
	for i := 0; i < 2000; i++ {
		wsRead(t, c, websocket.MessageText)
	}
	if after := stalled(); after <= sent {
		t.Errorf("backend sent %d after the client read 2000 more; want more than %d", after, sent)
	}
	t.Logf("in flight at stall: %d messages of 16 KiB", sent-1)
	_ = c.CloseNow()
	<-w.returned
}

func TestWebSocketGatewayShutdown(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	base, g := startGateway(t, be.Addr, basicConfig)
	c := dialWS(t, wsURL(base, "/v1/stream:bidi"), nil)
	wsSend(t, c, `{"text": "a"}`)
	wsRead(t, c, websocket.MessageText)
	// What Shutdown does once the listeners stopped: end every socket
	// (and wait for the close handshake, so read meanwhile).
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		g.ws.close(wsContext(t))
	}()
	st := wsReadStatus(t, c)
	if st.Status.Code != 14 {
		t.Errorf("status: got %+v; want UNAVAILABLE", st.Status)
	}
	wsExpectClose(t, c, websocket.StatusGoingAway, "")
	<-closed
}

// TestWebSocketOpenedWhileClosing: sockets that open while the gateway
// ends its sockets (what Shutdown does), before the close and after it,
// are all closed with 1001, and the close returns. Under -race it shows
// that counting a new socket's handler in does not race the wait for the
// open ones.
func TestWebSocketOpenedWhileClosing(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	for range 5 {
		base, g := startGateway(t, be.Addr, basicConfig)
		var opened atomic.Int64
		stop := testkit.Repeat(4, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, wsURL(base, "/v1/stream:bidi"), nil)
			if err != nil {
				t.Errorf("dial: %v", err)
				return false
			}
			opened.Add(1)
			for err == nil {
				_, _, err = c.Read(ctx)
			}
			if ce := (websocket.CloseError{}); !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
				t.Errorf("socket ended with %v; want close 1001", err)
			}
			return true
		})
		waitUntil(t, func() bool { return opened.Load() > 0 }, "a socket open before the close")
		g.ws.close(wsContext(t))
		n := opened.Load()
		waitUntil(t, func() bool { return opened.Load() > n+4 }, "sockets opened after the close")
		stop()
	}
}
