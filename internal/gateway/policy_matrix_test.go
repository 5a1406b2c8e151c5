package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy/concurrency"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// This file is the policy matrix: each plugin (jwt-auth, jwt-auth with
// scopes, key-auth, rate-limiting, concurrency-limit) against every inbound
// protocol the gateway speaks, over every transport that protocol runs on:
// the exact refusal each protocol renders, and that an allowed call passes.

const (
	matrixSecret   = "matrix-secret-7d0c4e1f9a2b3c4d5e6f70819a"
	matrixAudience = "rosetta-api"
	aliceKey       = "alice-key-5f1e2d3c4b5a69788796a5b4"
	// matrixSelector and matrixURI are the matrix gateways' two routes.
	matrixSelector = "rosetta.testing.v1.EchoService.*"
	matrixURI      = "/web/*"
)

// matrixPlugins are the plugins lists of the matrix gateways, indented for
// a route's plugins key.
var matrixPlugins = map[string]string{
	"jwt": `
      - jwt-auth:
          secret: ` + matrixSecret + `
          audience: ` + matrixAudience + `
          scopes: [read]
          claims_to_headers: { sub: x-user-id, tenant: x-tenant }`,
	"key-auth": `
      - key-auth: { header: apikey, query: apikey }`,
	"rate-limiting": `
      - rate-limiting: { limit: 2, period: 3600, key: "header:x-bucket" }`,
	"concurrency-limit": `
      - concurrency-limit: { max: 1 }`,
}

// policyGatewayConfig is a gateway with a plain listener and a TLS one that
// also serves HTTP/3, the test backend, a plain HTTP upstream (web) and the
// consumer alice; routes is the YAML of its routes list.
func policyGatewayConfig(tlsFiles *testkit.Leaf, webAddr, top, routes string) string {
	return fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
  - address: "127.0.0.1:0"
    tls: { cert: %q, key: %q }
    http3: true
upstreams:
  test:
    targets: ["$BACKEND"]
  web:
    kind: http
    targets: [%q]
consumers:
  - name: alice
    jwt_subject: alice-sub
    keys: [%q]
%s
routes:
%s
`, tlsFiles.CertFile, tlsFiles.KeyFile, webAddr, aliceKey, top, routes)
}

// matrixRoutes puts the same plugins on a selector route over EchoService
// and on a uri route to the web upstream.
func matrixRoutes(plugins string) string {
	return `
  - selector: ` + matrixSelector + `
    plugins:` + plugins + `
  - uri: ` + matrixURI + `
    service: web
    plugins:` + plugins
}

// startPolicyWeb starts the plain HTTP upstream of the policy tests: a path
// ending in /hold answers its header and then holds the response open
// until the client goes away; /ws accepts a WebSocket and sends the
// X-Consumer it was opened with as its one message (and, when the
// upgrade carried a query, Authorization or subprotocols, a second
// message listing them); any other path
// answers the request's header fields (names in lower case) and query as
// JSON, in the shape of EchoService.Metadata's answer: {"incoming": {name:
// {"values": [...]}}}.
func startPolicyWeb(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ws") {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			if c.Write(r.Context(), websocket.MessageText, []byte("x-consumer: "+r.Header.Get("X-Consumer"))) != nil {
				return
			}
			if r.URL.RawQuery != "" || r.Header.Get("Authorization") != "" || r.Header.Get("Sec-WebSocket-Protocol") != "" {
				seen := "query=" + r.URL.RawQuery + " authorization=" + r.Header.Get("Authorization") + " protocols=" + r.Header.Get("Sec-WebSocket-Protocol")
				if c.Write(r.Context(), websocket.MessageText, []byte(seen)) != nil {
					return
				}
			}
			_ = c.Close(websocket.StatusNormalClosure, "")
			return
		}
		if strings.HasSuffix(r.URL.Path, "/hold") {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		in := map[string]map[string][]string{}
		for k, v := range r.Header {
			in[strings.ToLower(k)] = map[string][]string{"values": v}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"incoming": in, "query": r.URL.RawQuery})
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// policyEnv is what the policy tests share: one EchoService backend, the
// plain HTTP upstream and a CA with a certificate for the TLS listeners.
type policyEnv struct {
	backend *testkit.Backend
	web     string
	ca      *testkit.CA
	leaf    *testkit.Leaf
}

func newPolicyEnv(t *testing.T) *policyEnv {
	t.Helper()
	ca := testkit.NewCA(t, "policy-ca")
	return &policyEnv{
		backend: testkit.StartBackend(t),
		web:     startPolicyWeb(t),
		ca:      ca,
		leaf:    ca.Issue(t, "localhost", "localhost", "127.0.0.1"),
	}
}

// policyGateway is one gateway config started twice: g serves every
// protocol (gRPC over HTTP/2 through the frame relay), gh serves gRPC
// through the handler path only. Its clients are closed before the
// gateways shut down.
type policyGateway struct {
	g, gh        *Gateway
	plain, tls   string // base URLs of g's plain and TLS (+HTTP/3) listeners
	relayCC      *grpc.ClientConn
	handlerCC    *grpc.ClientConn
	h1, h2c, h3  *http.Client
	h3tr         *http3.Transport
	h2ws         *http2.Transport // extended CONNECT over h2c
	handlerPlain string
}

// start starts yamlText twice (relay and handler paths) and the clients.
func (e *policyEnv) start(t *testing.T, yamlText string) *policyGateway {
	t.Helper()
	p := &policyGateway{}
	p.plain, p.g = startGatewayOn(t, "relay", e.backend.Addr, yamlText)
	p.handlerPlain, p.gh = startGatewayOn(t, "handler", e.backend.Addr, yamlText)
	p.tls = "https://" + p.g.Addrs()[1].String()
	// Registered after the gateways, so these cleanups run first.
	p.relayCC = dialGateway(t, p.plain)
	p.handlerCC = dialGateway(t, p.handlerPlain)
	p.h1 = newHTTP1Client(t)
	p.h2c = newH2CClient(t)
	p.h3tr = &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), ServerName: "localhost"}}
	t.Cleanup(func() { _ = p.h3tr.Close() })
	p.h3 = &http.Client{Transport: p.h3tr}
	p.h2ws = h2cTransport()
	t.Cleanup(p.h2ws.CloseIdleConnections)
	return p
}

// base and client are the URL and client of a transport: http1, h2c or h3.
func (p *policyGateway) base(tr string) string {
	if tr == "h3" {
		return p.tls
	}
	return p.plain
}

func (p *policyGateway) client(tr string) *http.Client {
	switch tr {
	case "h2c":
		return p.h2c
	case "h3":
		return p.h3
	}
	return p.h1
}

// answerKind is how a protocol renders a refusal.
type answerKind int

const (
	// kindHTTP: an HTTP status, WWW-Authenticate / Retry-After /
	// RateLimit-* fields and a google.rpc.Status JSON body (REST, SSE,
	// plain HTTP routes, WebSocket before the upgrade).
	kindHTTP answerKind = iota
	// kindGRPC: a gRPC status.
	kindGRPC
	// kindGRPCWeb: a trailers-only answer (HTTP 200, grpc-status in the
	// header, no body).
	kindGRPCWeb
	// kindConnectUnary: the code's HTTP status and a Connect error body.
	kindConnectUnary
	// kindConnectStream: HTTP 200 and the error in the end-of-stream
	// message.
	kindConnectStream
)

// answer is what one call got, whatever its protocol.
type answer struct {
	status int // HTTP status; 0 for gRPC
	header http.Header
	body   string // HTTP kinds: the body
	code   codes.Code
	msg    string
	// bodyBytes is the size of a gRPC-Web or Connect response body.
	bodyBytes int64
	// seen is the metadata (header fields, for plain HTTP routes) that
	// the upstream received, names in lower case; nil when the protocol's
	// call does not report it.
	seen map[string][]string
}

// metadataBody is EchoService.Metadata's answer in JSON (and the web
// upstream's).
type metadataBody struct {
	Incoming map[string]struct {
		Values []string `json:"values"`
	} `json:"incoming"`
	Query string `json:"query"`
}

func (b metadataBody) seen() map[string][]string {
	out := make(map[string][]string, len(b.Incoming))
	for k, v := range b.Incoming {
		out[k] = v.Values
	}
	return out
}

// httpAnswer reads an HTTP-kind answer: on a 200 with a metadataBody its
// seen; otherwise the google.rpc.Status of the body.
func httpAnswer(t *testing.T, status int, header http.Header, body string) answer {
	t.Helper()
	a := answer{status: status, header: header, body: body}
	if status == http.StatusOK {
		var mb metadataBody
		if json.Unmarshal([]byte(body), &mb) == nil && mb.Incoming != nil {
			a.seen = mb.seen()
		}
		return a
	}
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("HTTP %d: body is not a google.rpc.Status: %v: %q", status, err, body)
	}
	a.code, a.msg = codes.Code(st.Code), st.Message
	return a
}

// sendHTTP sends one request with hdr and reads the whole answer.
func sendHTTP(t *testing.T, c *http.Client, method, url, body string, hdr http.Header) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testContext(t), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	setHeader(req.Header, hdr)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return httpAnswer(t, resp.StatusCode, resp.Header, string(b))
}

// holdHTTP starts a request that stays open; release cancels it and waits
// for it to end.
func holdHTTP(t *testing.T, c *http.Client, url string, hdr http.Header) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	setHeader(req.Header, hdr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	return func() { cancel(); <-done }
}

// holdCall runs call in the background until release cancels its context.
func holdCall(call func(ctx context.Context)) (release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(ctx)
	}()
	return func() { cancel(); <-done }
}

// captureRT records the status, header and body size of the last
// response, under a Connect client.
type captureRT struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	status int
	header http.Header
	body   *capturedBody
}

type capturedBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *capturedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (c *captureRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	cb := &capturedBody{ReadCloser: resp.Body}
	c.mu.Lock()
	c.status, c.header, c.body = resp.StatusCode, resp.Header.Clone(), cb
	c.mu.Unlock()
	resp.Body = cb
	return resp, nil
}

// fill copies what was captured into a.
func (c *captureRT) fill(a *answer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a.status, a.header = c.status, c.header
	if c.body != nil {
		a.bodyBytes = c.body.n.Load()
	}
}

// connectAnswer sets a's code and message from a Connect client error.
func connectAnswer(a *answer, err error) {
	if err == nil {
		return
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		a.code, a.msg = codes.Code(ce.Code()), ce.Message()
		return
	}
	a.code, a.msg = codes.Unknown, err.Error()
}

// setHeader copies hdr's fields into dst.
func setHeader(dst, hdr http.Header) {
	for k, v := range hdr {
		dst[k] = slices.Clone(v)
	}
}

// headerRT adds header fields to every request (the extended CONNECT of a
// WebSocket over HTTP/2 or HTTP/3, which h2WebSocket builds itself).
type headerRT struct {
	rt  http.RoundTripper
	hdr http.Header
}

func (h headerRT) RoundTrip(req *http.Request) (*http.Response, error) {
	setHeader(req.Header, h.hdr)
	return h.rt.RoundTrip(req)
}

// dialPolicyWS opens a WebSocket over tr carrying hdr. On a refused
// upgrade it returns the answer and a nil socket.
func dialPolicyWS(t *testing.T, p *policyGateway, tr, path string, hdr http.Header, opts *websocket.DialOptions) (*websocket.Conn, answer) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	switch tr {
	case "h2c":
		opts.HTTPClient = &http.Client{Transport: &h2WebSocket{rt: headerRT{p.h2ws, hdr}}}
	case "h3":
		opts.HTTPClient = &http.Client{Transport: &h2WebSocket{rt: headerRT{p.h3tr, hdr}, h3: true}}
	default:
		opts.HTTPClient = p.h1
		opts.HTTPHeader = hdr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(p.base(tr), path), opts)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s over %s: %v", path, tr, err)
		}
		var b []byte
		if resp.Body != nil {
			b, _ = io.ReadAll(resp.Body)
		}
		return nil, httpAnswer(t, resp.StatusCode, resp.Header, string(b))
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, answer{status: resp.StatusCode, header: resp.Header}
}

// matrixProto is one inbound protocol over one transport.
type matrixProto struct {
	name string // "<protocol>/<transport>", e.g. "grpc-web/h2c"
	kind answerKind
	// uri is set for the plain HTTP route (its own config route).
	uri bool
	// handler is set for the gRPC handler path (the second gateway).
	handler bool
	// call makes one allowed-or-refused call carrying hdr.
	call func(t *testing.T, p *policyGateway, hdr http.Header) answer
	// hold starts a call that stays in flight until release.
	hold func(t *testing.T, p *policyGateway, hdr http.Header) (release func())
}

func restProto(tr string) matrixProto {
	return matrixProto{
		name: "rest/" + tr, kind: kindHTTP,
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			return sendHTTP(t, p.client(tr), "POST", p.base(tr)+"/v1/metadata", `{}`, hdr)
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			return holdHTTP(t, p.client(tr), p.base(tr)+"/v1/sleep?duration=60s", hdr)
		},
	}
}

func sseProto(tr string) matrixProto {
	sse := func(hdr http.Header) http.Header {
		h := hdr.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("Accept", "text/event-stream")
		return h
	}
	return matrixProto{
		name: "sse/" + tr, kind: kindHTTP,
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			a := sendHTTP(t, p.client(tr), "GET", p.base(tr)+"/v1/stream?count=1&text=e", "", sse(hdr))
			if a.status == http.StatusOK {
				if ct := a.header.Get("Content-Type"); ct != "text/event-stream" || !strings.Contains(a.body, `"text":"e"`) {
					t.Errorf("SSE answer: got %q %q; want text/event-stream with the item", ct, a.body)
				}
			}
			return a
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			return holdHTTP(t, p.client(tr), p.base(tr)+"/v1/stream?count=2&interval=60s", sse(hdr))
		},
	}
}

func uriProto(tr string) matrixProto {
	return matrixProto{
		name: "http/" + tr, kind: kindHTTP, uri: true,
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			return sendHTTP(t, p.client(tr), "GET", p.base(tr)+"/web/echo", "", hdr)
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			return holdHTTP(t, p.client(tr), p.base(tr)+"/web/hold", hdr)
		},
	}
}

// rpcClientProto is gRPC-Web (web) or the Connect protocol, unary.
func rpcClientProto(name string, tr string, kind answerKind, opts ...connect.ClientOption) matrixProto {
	return matrixProto{
		name: name + "/" + tr, kind: kind,
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			capture := &captureRT{rt: p.client(tr).Transport}
			c := connect.NewClient[testingv1.MetadataRequest, testingv1.MetadataResponse](
				&http.Client{Transport: capture}, p.base(tr)+echoService+"Metadata", opts...)
			req := connect.NewRequest(&testingv1.MetadataRequest{})
			setHeader(req.Header(), hdr)
			resp, err := c.CallUnary(testContext(t), req)
			var a answer
			connectAnswer(&a, err)
			capture.fill(&a)
			if err == nil {
				a.seen = map[string][]string{}
				for k, v := range resp.Msg.GetIncoming() {
					a.seen[k] = v.GetValues()
				}
			}
			return a
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			c := connect.NewClient[testingv1.SleepRequest, testingv1.SleepResponse](p.client(tr), p.base(tr)+echoService+"Sleep", opts...)
			return holdCall(func(ctx context.Context) {
				req := connect.NewRequest(&testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
				setHeader(req.Header(), hdr)
				_, _ = c.CallUnary(ctx, req)
			})
		},
	}
}

func connectStreamProto(tr string) matrixProto {
	stream := func(p *policyGateway, hc *http.Client) *connect.Client[testingv1.StreamRequest, testingv1.StreamItem] {
		return connect.NewClient[testingv1.StreamRequest, testingv1.StreamItem](hc, p.base(tr)+echoService+"ServerStream")
	}
	return matrixProto{
		name: "connect-stream/" + tr, kind: kindConnectStream,
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			capture := &captureRT{rt: p.client(tr).Transport}
			req := connect.NewRequest(&testingv1.StreamRequest{Count: 2, Text: "s"})
			setHeader(req.Header(), hdr)
			st, err := stream(p, &http.Client{Transport: capture}).CallServerStream(testContext(t), req)
			var a answer
			if err == nil {
				n := 0
				for st.Receive() {
					n++
				}
				err = st.Err()
				_ = st.Close()
				if err == nil && n != 2 {
					t.Errorf("stream: got %d messages; want 2", n)
				}
			}
			connectAnswer(&a, err)
			capture.fill(&a)
			return a
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			c := stream(p, p.client(tr))
			return holdCall(func(ctx context.Context) {
				req := connect.NewRequest(&testingv1.StreamRequest{Count: 2, Interval: durationpb.New(time.Minute)})
				setHeader(req.Header(), hdr)
				st, err := c.CallServerStream(ctx, req)
				if err != nil {
					return
				}
				for st.Receive() {
				}
				_ = st.Close()
			})
		},
	}
}

func wsProto(tr string) matrixProto {
	return matrixProto{
		name: "ws/" + tr, kind: kindHTTP,
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			c, a := dialPolicyWS(t, p, tr, "/v1/metadata", hdr, nil)
			if c == nil {
				return a
			}
			wsSend(t, c, `{}`)
			var mb metadataBody
			if err := json.Unmarshal(wsRead(t, c, websocket.MessageText), &mb); err != nil {
				t.Fatalf("Metadata over the socket: %v", err)
			}
			wsExpectOK(t, c)
			a.seen = mb.seen()
			a.status = http.StatusOK // a switched protocol is an allowed call
			return a
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			// An open socket holds its call's slot, frames or not.
			c, a := dialPolicyWS(t, p, tr, "/v1/sleep", hdr, nil)
			if c == nil {
				t.Fatalf("hold: upgrade refused: %d %s", a.status, a.body)
			}
			return func() { _ = c.CloseNow() }
		},
	}
}

func grpcProto(path string) matrixProto {
	cc := func(p *policyGateway) testingv1.EchoServiceClient {
		if path == "handler" {
			return testingv1.NewEchoServiceClient(p.handlerCC)
		}
		return testingv1.NewEchoServiceClient(p.relayCC)
	}
	outgoing := grpcOutgoing
	return matrixProto{
		name: "grpc/" + path, kind: kindGRPC, handler: path == "handler",
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			var header, trailer metadata.MD
			resp, err := cc(p).Metadata(outgoing(testContext(t), hdr), &testingv1.MetadataRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
			// A refusal is trailers-only: its fields are the trailer.
			a := answer{header: http.Header{}}
			for k, v := range metadata.Join(header, trailer) {
				a.header[http.CanonicalHeaderKey(k)] = v
			}
			if err != nil {
				st, _ := status.FromError(err)
				a.code, a.msg = st.Code(), st.Message()
				return a
			}
			a.seen = map[string][]string{}
			for k, v := range resp.GetIncoming() {
				a.seen[k] = v.GetValues()
			}
			return a
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			client := cc(p)
			return holdCall(func(ctx context.Context) {
				_, _ = client.Sleep(outgoing(ctx, hdr), &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
			})
		},
	}
}

// grpcBidiProto is a bidi stream over one of the gRPC paths: one item
// sent and echoed, then the end of the stream.
func grpcBidiProto(path string) matrixProto {
	unary := grpcProto(path)
	cc := func(p *policyGateway) testingv1.EchoServiceClient {
		if path == "handler" {
			return testingv1.NewEchoServiceClient(p.handlerCC)
		}
		return testingv1.NewEchoServiceClient(p.relayCC)
	}
	return matrixProto{
		name: "grpc-bidi/" + path, kind: kindGRPC, handler: unary.handler,
		call: func(t *testing.T, p *policyGateway, hdr http.Header) answer {
			st, err := cc(p).BidiStream(grpcOutgoing(testContext(t), hdr))
			if err == nil {
				// A refused call may fail Send (io.EOF); Recv has the status.
				if st.Send(&testingv1.StreamItem{Text: "b"}) == nil {
					_ = st.CloseSend()
				}
				var item *testingv1.StreamItem
				if item, err = st.Recv(); err == nil {
					if item.GetText() != "b" {
						t.Errorf("echoed item: got %q; want b", item.GetText())
					}
					if _, err = st.Recv(); errors.Is(err, io.EOF) {
						err = nil
					} else if err == nil {
						err = errors.New("a second item instead of the end of the stream")
					}
				}
			}
			var a answer
			if err != nil {
				s, _ := status.FromError(err)
				a.code, a.msg = s.Code(), s.Message()
			}
			return a
		},
		hold: func(t *testing.T, p *policyGateway, hdr http.Header) func() {
			client := cc(p)
			return holdCall(func(ctx context.Context) {
				st, err := client.BidiStream(grpcOutgoing(ctx, hdr))
				if err != nil {
					return
				}
				_ = st.Send(&testingv1.StreamItem{Text: "hold"})
				for {
					if _, err := st.Recv(); err != nil {
						return
					}
				}
			})
		},
	}
}

// grpcOutgoing adds hdr to ctx as outgoing gRPC metadata.
func grpcOutgoing(ctx context.Context, hdr http.Header) context.Context {
	var kv []string
	for k, vs := range hdr {
		for _, v := range vs {
			kv = append(kv, strings.ToLower(k), v)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// matrixProtos are the protocol axis: every inbound protocol over every
// transport it runs on.
func matrixProtos() []matrixProto {
	var ps []matrixProto
	for _, tr := range []string{"http1", "h2c", "h3"} {
		ps = append(ps,
			restProto(tr),
			sseProto(tr),
			uriProto(tr),
			rpcClientProto("grpc-web", tr, kindGRPCWeb, connect.WithGRPCWeb()),
			rpcClientProto("connect", tr, kindConnectUnary),
			connectStreamProto(tr),
			wsProto(tr),
		)
	}
	return append(ps, grpcProto("relay"), grpcProto("handler"), grpcBidiProto("relay"), grpcBidiProto("handler"))
}

// want is what a call should get: OK, or a refusal.
type want struct {
	code codes.Code
	// reason must be part of the refusal's message.
	reason string
	// challenge is the exact WWW-Authenticate of an HTTP-kind refusal,
	// and of the www-authenticate metadata of a gRPC one ("" when not
	// checked).
	challenge string
	// restChallenge: only HTTP-kind answers carry the challenge (the
	// REST error writer's default one: the plugin sets none).
	restChallenge bool
	// hide is a credential the answer must never contain.
	hide string
	// seen are metadata entries the upstream must have received exactly
	// (a nil value: not at all), when the protocol reports them.
	seen map[string][]string
}

// httpStatusOf is the HTTP status of a refusal code.
func httpStatusOf(c codes.Code) int {
	switch c {
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// check asserts that a is what w says, as protocol p renders it.
func (w want) check(t *testing.T, p matrixProto, a answer) {
	t.Helper()
	if w.code == codes.OK {
		if a.code != codes.OK || (p.kind == kindHTTP && a.status != http.StatusOK) {
			t.Fatalf("got HTTP %d, %s %q; want the call allowed (body %q)", a.status, a.code, a.msg, a.body)
		}
		if p.kind == kindHTTP && a.header.Get("WWW-Authenticate") != "" {
			t.Errorf("an allowed call's answer has WWW-Authenticate %q", a.header.Get("WWW-Authenticate"))
		}
		if a.seen != nil {
			for k, v := range w.seen {
				if got := a.seen[k]; !slices.Equal(got, v) {
					t.Errorf("upstream got %s %q; want %q", k, got, v)
				}
			}
		}
		return
	}
	if a.code != w.code || !strings.Contains(a.msg, w.reason) {
		t.Errorf("got %s %q; want %s with %q", a.code, a.msg, w.code, w.reason)
	}
	if w.hide != "" {
		if strings.Contains(a.msg, w.hide) || strings.Contains(a.body, w.hide) {
			t.Errorf("the refusal echoes the credential: %q %q", a.msg, a.body)
		}
		for k, vs := range a.header {
			for _, v := range vs {
				if strings.Contains(v, w.hide) {
					t.Errorf("the refusal echoes the credential in %s: %q", k, v)
				}
			}
		}
	}
	switch p.kind {
	case kindHTTP:
		if a.status != httpStatusOf(w.code) {
			t.Errorf("HTTP status: got %d; want %d", a.status, httpStatusOf(w.code))
		}
		if ct := a.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type: got %q; want application/json", ct)
		}
		if w.challenge != "" {
			if got := a.header.Get("WWW-Authenticate"); got != w.challenge {
				t.Errorf("WWW-Authenticate: got %q; want %q", got, w.challenge)
			}
		}
		if w.code == codes.ResourceExhausted {
			if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 {
				t.Errorf("Retry-After: got %q; want a positive number of seconds", a.header.Get("Retry-After"))
			}
			if a.header.Get("RateLimit-Remaining") != "0" || a.header.Get("RateLimit-Limit") == "" {
				t.Errorf("refusal: RateLimit-Limit %q, -Remaining %q; want the limit and 0", a.header.Get("RateLimit-Limit"), a.header.Get("RateLimit-Remaining"))
			}
		}
	case kindGRPC:
		// Both gRPC paths send the refusal's fields as metadata.
		// (Calls that report no metadata leave a.header nil.)
		if w.challenge != "" && !w.restChallenge && a.header != nil {
			if got := a.header.Get("WWW-Authenticate"); got != w.challenge {
				t.Errorf("www-authenticate metadata: got %q; want %q", got, w.challenge)
			}
		}
	case kindGRPCWeb:
		if a.status != http.StatusOK || a.header.Get("Grpc-Status") != strconv.Itoa(int(w.code)) || a.bodyBytes != 0 {
			t.Errorf("gRPC-Web refusal: got HTTP %d, grpc-status header %q, %d body bytes; want a trailers-only answer (200, %d, no body)",
				a.status, a.header.Get("Grpc-Status"), a.bodyBytes, w.code)
		}
	case kindConnectUnary:
		if a.status != httpStatusOf(w.code) {
			t.Errorf("Connect unary refusal: got HTTP %d; want %d", a.status, httpStatusOf(w.code))
		}
	case kindConnectStream:
		if a.status != http.StatusOK {
			t.Errorf("Connect stream refusal: got HTTP %d; want 200 and the error in the end-of-stream message", a.status)
		}
	}
}

// wantRateLimit checks the RateLimit-* fields of a rate-limited answer.
func wantRateLimit(t *testing.T, h http.Header, remaining string) {
	t.Helper()
	if h.Get("RateLimit-Limit") != "2" || h.Get("RateLimit-Remaining") != remaining {
		t.Errorf("RateLimit-Limit %q, -Remaining %q; want 2, %s", h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), remaining)
	}
	if n, err := strconv.Atoi(h.Get("RateLimit-Reset")); err != nil || n < 1 {
		t.Errorf("RateLimit-Reset: got %q; want a positive number of seconds", h.Get("RateLimit-Reset"))
	}
}

// hsSign signs claims with HS256 and secret.
func hsSign(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// matrixClaims are the claims of an acceptable token for the jwt matrix
// gateway, changed by edit.
func matrixClaims(edit func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub": "alice-sub", "aud": matrixAudience, "scope": "read profile", "tenant": "t1",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// forged are header fields a client sends to pose as someone else: the
// claims_to_headers targets and x-consumer, plain and as REST's
// Grpc-Metadata-* form.
var forged = http.Header{
	"X-User-Id":                {"forged"},
	"X-Tenant":                 {"forged"},
	"X-Consumer":               {"forged"},
	"Grpc-Metadata-X-User-Id":  {"forged"},
	"Grpc-Metadata-X-Tenant":   {"forged"},
	"Grpc-Metadata-X-Consumer": {"forged"},
}

func withHeader(base http.Header, kv ...string) http.Header {
	h := base.Clone()
	if h == nil {
		h = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// authCase is one call of an authentication plugin's matrix.
type authCase struct {
	name string
	hdr  http.Header
	want want
}

func jwtCases(t *testing.T) []authCase {
	bearer := func(tok string) http.Header { return withHeader(forged, "Authorization", "Bearer "+tok) }
	invalid := `Bearer realm="rosetta", error="invalid_token"`
	tok := func(edit func(jwt.MapClaims)) string { return hsSign(t, matrixSecret, matrixClaims(edit)) }
	badSig := hsSign(t, "another-secret-0123456789abcdef0123", matrixClaims(nil))
	expired := tok(func(c jwt.MapClaims) {
		c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	})
	otherAud := tok(func(c jwt.MapClaims) { c["aud"] = "another-api" })
	noScope := tok(func(c jwt.MapClaims) { c["scope"] = "write profile" })
	alice := tok(nil)
	bob := tok(func(c jwt.MapClaims) { c["sub"] = "bob"; delete(c, "tenant") })
	return []authCase{
		{"missing", forged, want{code: codes.Unauthenticated, reason: "missing bearer token", challenge: `Bearer realm="rosetta"`}},
		{"malformed", bearer("not.a.token"), want{code: codes.Unauthenticated, reason: "malformed token", challenge: invalid, hide: "not.a.token"}},
		{"bad-signature", bearer(badSig), want{code: codes.Unauthenticated, reason: "invalid token signature", challenge: invalid, hide: badSig}},
		{"expired", bearer(expired), want{code: codes.Unauthenticated, reason: "token expired", challenge: invalid, hide: expired}},
		{"audience", bearer(otherAud), want{code: codes.Unauthenticated, reason: "audience mismatch", challenge: invalid, hide: otherAud}},
		{"missing-scope", bearer(noScope), want{code: codes.PermissionDenied, reason: "missing scope: read",
			challenge: `Bearer realm="rosetta", error="insufficient_scope", scope="read"`, hide: noScope}},
		// alice-sub is the jwt_subject of consumer alice.
		{"ok-consumer", bearer(alice), want{seen: map[string][]string{
			"x-user-id": {"alice-sub"}, "x-tenant": {"t1"}, "x-consumer": {"alice"}}}},
		// bob is no consumer's subject: x-consumer is the sub; the token
		// has no tenant, so x-tenant is not sent at all.
		{"ok-subject", bearer(bob), want{seen: map[string][]string{
			"x-user-id": {"bob"}, "x-tenant": nil, "x-consumer": {"bob"}}}},
	}
}

func keyAuthCases() []authCase {
	const wrong = "wrong-key-8c7b6a5f4e3d2c1b"
	return []authCase{
		{"missing", forged, want{code: codes.Unauthenticated, reason: "missing API key", challenge: `Bearer realm="rosetta"`, restChallenge: true}},
		{"invalid", withHeader(forged, "Apikey", wrong), want{code: codes.Unauthenticated, reason: "invalid API key",
			challenge: `Bearer realm="rosetta"`, restChallenge: true, hide: wrong}},
		{"ok", withHeader(forged, "Apikey", aliceKey), want{seen: map[string][]string{"x-consumer": {"alice"}}}},
	}
}

// TestPolicyMatrix runs each plugin against every protocol: the exact
// refusal each one sees, and an allowed call. Subtests are named
// <plugin>/<case>/<protocol>/<transport>, e.g. jwt/expired/grpc-web/h2c.
func TestPolicyMatrix(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	protos := matrixProtos()
	start := func(t *testing.T, plugin string) *policyGateway {
		return env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(matrixPlugins[plugin])))
	}
	runAuth := func(t *testing.T, p *policyGateway, cases []authCase) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				for _, proto := range protos {
					t.Run(proto.name, func(t *testing.T) {
						t.Parallel()
						c.want.check(t, proto, proto.call(t, p, c.hdr))
					})
				}
			})
		}
	}
	t.Run("jwt", func(t *testing.T) {
		t.Parallel()
		runAuth(t, start(t, "jwt"), jwtCases(t))
	})
	t.Run("key-auth", func(t *testing.T) {
		t.Parallel()
		runAuth(t, start(t, "key-auth"), keyAuthCases())
	})
	t.Run("rate-limiting", func(t *testing.T) {
		t.Parallel()
		p := start(t, "rate-limiting")
		for _, proto := range protos {
			t.Run("over-limit/"+proto.name, func(t *testing.T) {
				t.Parallel()
				// Each cell counts in a bucket of its own.
				hdr := http.Header{"X-Bucket": {proto.name}}
				for _, remaining := range []string{"1", "0"} {
					a := proto.call(t, p, hdr)
					want{}.check(t, proto, a)
					if proto.kind == kindHTTP {
						wantRateLimit(t, a.header, remaining)
					}
				}
				want{code: codes.ResourceExhausted, reason: "rate limit exceeded: 2 calls per 1h0m0s; retry in "}.check(t, proto, proto.call(t, p, hdr))
			})
		}
	})
	t.Run("concurrency-limit", func(t *testing.T) {
		t.Parallel()
		p := start(t, "concurrency-limit")
		// The cells share the route's one slot, so they run in turn.
		for _, proto := range protos {
			t.Run("over-limit/"+proto.name, func(t *testing.T) {
				g, route := p.g, matrixSelector
				if proto.handler {
					g = p.gh
				}
				if proto.uri {
					route = matrixURI
				}
				inFlight := slotsOf(t, g, route).InFlight
				release := proto.hold(t, p, nil)
				waitUntil(t, func() bool { return inFlight() == 1 }, "the held call takes the slot")
				want{code: codes.Unavailable, reason: "concurrency limit of 1 calls in flight reached on route " + route}.check(t, proto, proto.call(t, p, nil))
				if n := inFlight(); n != 1 {
					t.Errorf("after the refusal: %d calls in flight; want 1 (the held one)", n)
				}
				release()
				waitUntil(t, func() bool { return inFlight() == 0 }, "the slot is released when the held call ends")
				want{}.check(t, proto, proto.call(t, p, nil))
				waitUntil(t, func() bool { return inFlight() == 0 }, "the allowed call releases its slot")
			})
		}
	})
}

// slotsOf returns the concurrency-limit counter of a config route of g (a
// selector or a uri).
func slotsOf(t *testing.T, g *Gateway, route string) *concurrency.Slots {
	t.Helper()
	v, err := g.shared.Get("concurrency-limit|"+route, func() (any, error) {
		return nil, fmt.Errorf("no concurrency-limit counter for route %s", route)
	})
	if err != nil {
		t.Fatal(err)
	}
	return v.(*concurrency.Slots)
}
