package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/observe"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// observeConfig is a gateway with a config route over EchoService and a
// uri route to a plain HTTP upstream ($WEB) that echoes the headers it
// received.
const observeConfig = `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
  web:
    kind: http
    targets: ["$WEB"]
routes:
  - selector: rosetta.testing.v1.EchoService.*
    timeout: 10s
  - uri: /web/*
    service: web
`

const (
	echoRoute   = "rosetta.testing.v1.EchoService.*"
	metadataRPC = "/rosetta.testing.v1.EchoService/Metadata"
)

// startHeaderEcho starts a plain HTTP upstream that answers with the
// header fields it received, as EchoService.Metadata's JSON answer
// ({"incoming": {"name": {"values": [...]}}}, names in lower case).
func startHeaderEcho(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := map[string]map[string][]string{}
		for k, v := range r.Header {
			in[strings.ToLower(k)] = map[string][]string{"values": v}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "from-upstream") // the gateway's replaces it
		_ = json.NewEncoder(w).Encode(map[string]any{"incoming": in})
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// obsGateway is a gateway with observeConfig (or another config) in
// front of the test backend and a header echo.
type obsGateway struct {
	*Gateway
	url string
	be  *testkit.Backend
	web string
}

// newObsGateway builds (does not start) a gateway from yaml, with $WEB
// replaced by a header echo's address and the access log in logs (nil:
// discarded).
func newObsGateway(t *testing.T, yaml string, logs io.Writer) *obsGateway {
	t.Helper()
	be := testkit.StartBackend(t)
	web := startHeaderEcho(t)
	if logs == nil {
		logs = io.Discard
	}
	g := newTestGateway(t, be.Addr, strings.ReplaceAll(yaml, "$WEB", web), newJSONLogger(logs))
	return &obsGateway{Gateway: g, be: be, web: web}
}

// start starts the gateway on the gRPC path given (see startGatewayOn).
func (o *obsGateway) start(t *testing.T, path string) *obsGateway {
	t.Helper()
	o.url = startTestGateway(t, o.Gateway, path)
	return o
}

// memoryTracing is tracing into an in-memory exporter (spans exported as
// they end), parent-based with ratio for new traces.
func memoryTracing(ratio float64) (*observe.Tracing, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
	return observe.NewTracingWith(tp), exp
}

// obsProtocols are the protocols a call of EchoService.Metadata (or of
// the header echo, for http) is made on by callMetadata.
var obsProtocols = []string{"rest", "grpc", "grpc_web", "connect", "websocket", "http"}

// upstreamRequestID is the request ID the upstreams answer with, in
// their response head: the gateway's replaces it.
var upstreamRequestID = map[string]string{"x-request-id": "from-upstream"}

// metadataRequestJSON asks EchoService.Metadata to answer with
// upstreamRequestID.
const metadataRequestJSON = `{"headerOut": {"x-request-id": "from-upstream"}}`

// obsResult is what callMetadata learns of one call.
type obsResult struct {
	// seen is the metadata the upstream received (lower-case names).
	seen map[string][]string
	// header is the response head: the HTTP response's header, or the
	// gRPC header metadata (canonical names).
	header http.Header
}

// callMetadata makes one successful call of protocol with the
// request header hdr through the gateway at base, to a method or route
// that answers with the metadata the upstream received.
func callMetadata(t *testing.T, protocol, base string, hdr http.Header) obsResult {
	t.Helper()
	if protocol == "grpc" {
		md := metadata.MD{}
		for k, v := range hdr {
			md.Append(strings.ToLower(k), v...)
		}
		ctx := metadata.NewOutgoingContext(testContext(t), md)
		var head metadata.MD
		resp, err := testingv1.NewEchoServiceClient(dialGateway(t, base)).Metadata(ctx, &testingv1.MetadataRequest{HeaderOut: upstreamRequestID}, grpc.Header(&head))
		if err != nil {
			t.Fatalf("grpc Metadata: %v", err)
		}
		out := obsResult{seen: map[string][]string{}, header: http.Header{}}
		for k, v := range resp.GetIncoming() {
			out.seen[k] = v.GetValues()
		}
		for k, v := range head {
			out.header[http.CanonicalHeaderKey(k)] = v
		}
		return out
	}
	if protocol == "websocket" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, wsURL(base, "/v1/metadata"), &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			t.Fatalf("websocket: %v", err)
		}
		defer c.CloseNow()
		wsSend(t, c, metadataRequestJSON)
		var mb metadataBody
		if msg := wsRead(t, c, websocket.MessageText); json.Unmarshal(msg, &mb) != nil || mb.Incoming == nil {
			t.Fatalf("websocket: not a metadata answer: %s", msg)
		}
		wsExpectOK(t, c)
		return obsResult{seen: mb.seen(), header: resp.Header}
	}
	var req *http.Request
	var err error
	switch protocol {
	case "rest":
		req, err = http.NewRequest("POST", base+"/v1/metadata", strings.NewReader(metadataRequestJSON))
		req.Header.Set("Content-Type", "application/json")
	case "connect":
		req, err = http.NewRequest("POST", base+metadataRPC, strings.NewReader(metadataRequestJSON))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Connect-Protocol-Version", "1")
	case "grpc_web":
		msg, _ := proto.Marshal(&testingv1.MetadataRequest{HeaderOut: upstreamRequestID})
		req, err = http.NewRequest("POST", base+metadataRPC, bytes.NewReader(webFrame(0, msg)))
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		req.Header.Set("X-Grpc-Web", "1")
	case "http":
		req, err = http.NewRequest("GET", base+"/web/headers", nil)
	default:
		t.Fatalf("unknown protocol %q", protocol)
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req.WithContext(testContext(t)))
	if err != nil {
		t.Fatalf("%s: %v", protocol, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", protocol, resp.StatusCode, body)
	}
	out := obsResult{seen: map[string][]string{}, header: resp.Header}
	if protocol == "grpc_web" {
		// The first frame is the answer; a trailer frame follows.
		if len(body) < 5 || body[0] != 0 {
			t.Fatalf("grpc-web: no message frame: %q", body)
		}
		n := binary.BigEndian.Uint32(body[1:5])
		var m testingv1.MetadataResponse
		if err := proto.Unmarshal(body[5:5+n], &m); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body[5+n:]), "grpc-status: 0") {
			t.Fatalf("grpc-web: trailer %q; want grpc-status: 0", body[5+n:])
		}
		for k, v := range m.GetIncoming() {
			out.seen[k] = v.GetValues()
		}
		return out
	}
	var mb metadataBody
	if err := json.Unmarshal(body, &mb); err != nil || mb.Incoming == nil {
		t.Fatalf("%s: not a metadata answer: %v: %s", protocol, err, body)
	}
	out.seen = mb.seen()
	return out
}

// traceparent formats a W3C traceparent.
func traceparent(tid trace.TraceID, sid trace.SpanID, sampled bool) string {
	flags := "00"
	if sampled {
		flags = "01"
	}
	return "00-" + tid.String() + "-" + sid.String() + "-" + flags
}

// parseTraceparent splits a W3C traceparent.
func parseTraceparent(t *testing.T, v string) (trace.TraceID, trace.SpanID, string) {
	t.Helper()
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("malformed traceparent %q", v)
	}
	tid, err1 := trace.TraceIDFromHex(parts[1])
	sid, err2 := trace.SpanIDFromHex(parts[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("malformed traceparent %q: %v %v", v, err1, err2)
	}
	return tid, sid, parts[3]
}

// newTraceIDs returns a random trace ID and span ID, for a client's
// traceparent.
func newTraceIDs(t *testing.T) (trace.TraceID, trace.SpanID) {
	t.Helper()
	var tid trace.TraceID
	var sid trace.SpanID
	if _, err := rand.Read(tid[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(sid[:]); err != nil {
		t.Fatal(err)
	}
	return tid, sid
}

// spansOf returns the ended spans of trace tid.
func spansOf(exp *tracetest.InMemoryExporter, tid trace.TraceID) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == tid {
			out = append(out, s)
		}
	}
	return out
}

// attrs returns a span's attributes by key.
func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		out[kv.Key] = kv.Value
	}
	return out
}

// TestTracingParentAndPropagation: on every protocol and both gRPC
// paths, a call whose client sent a traceparent and tracestate gets one
// server span, child of the client's span, with the route, protocol,
// status and request ID; the upstream receives a traceparent of the same
// trace whose parent is the gateway's span (gRPC metadata, or an HTTP
// header on a uri route), and the client's tracestate.
func TestTracingParentAndPropagation(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		o := newObsGateway(t, observeConfig, nil)
		tr, exp := memoryTracing(1)
		o.SetTracing(tr)
		o.start(t, path)
		for _, proto := range obsProtocols {
			t.Run(proto, func(t *testing.T) {
				tid, parent := newTraceIDs(t)
				hdr := http.Header{"Traceparent": {traceparent(tid, parent, true)}, "Tracestate": {"vendor=abc"}}
				res := callMetadata(t, proto, o.url, hdr)
				var spans tracetest.SpanStubs
				waitUntil(t, func() bool { spans = spansOf(exp, tid); return len(spans) > 0 }, "the call's span")
				if len(spans) != 1 {
					t.Fatalf("%d spans of the trace; want 1: %+v", len(spans), spans)
				}
				s := spans[0]
				if s.SpanKind != trace.SpanKindServer {
					t.Errorf("span kind %v; want server", s.SpanKind)
				}
				if s.Parent.TraceID() != tid || s.Parent.SpanID() != parent || !s.Parent.IsRemote() {
					t.Errorf("parent %s/%s remote %v; want the client's %s/%s", s.Parent.TraceID(), s.Parent.SpanID(), s.Parent.IsRemote(), tid, parent)
				}
				if !s.SpanContext.IsSampled() {
					t.Error("span not sampled; the client's flag says sampled")
				}
				a := attrs(s)
				wantRoute, wantName := echoRoute, "rosetta.testing.v1.EchoService/Metadata"
				if proto == "http" {
					wantRoute, wantName = "/web/*", "GET /web/*"
				}
				if s.Name != wantName {
					t.Errorf("span name %q; want %q", s.Name, wantName)
				}
				if got := a["rosetta.protocol"].AsString(); got != proto {
					t.Errorf("rosetta.protocol %q; want %q", got, proto)
				}
				if got := a["rosetta.route"].AsString(); got != wantRoute {
					t.Errorf("rosetta.route %q; want %q", got, wantRoute)
				}
				wantHTTP := int64(200)
				if proto == "websocket" {
					wantHTTP = 101 // HTTP/1.1's upgrade
				}
				if got := a["http.response.status_code"].AsInt64(); got != wantHTTP {
					t.Errorf("http.response.status_code %d; want %d", got, wantHTTP)
				}
				if proto != "http" {
					if v, ok := a["rpc.grpc.status_code"]; !ok || v.AsInt64() != 0 {
						t.Errorf("rpc.grpc.status_code %v (set %v); want 0", v.AsInt64(), ok)
					}
					if a["rpc.method"].AsString() != "Metadata" || a["rpc.service"].AsString() != "rosetta.testing.v1.EchoService" {
						t.Errorf("rpc.service %q rpc.method %q", a["rpc.service"].AsString(), a["rpc.method"].AsString())
					}
				}
				if got, want := a["rosetta.upstream"].AsString(), map[bool]string{true: "web", false: "test"}[proto == "http"]; got != want {
					t.Errorf("rosetta.upstream %q; want %q", got, want)
				}
				id := res.header.Get(observe.RequestIDHeader)
				if got := a["rosetta.request_id"].AsString(); got == "" || got != id {
					t.Errorf("rosetta.request_id %q; want the response's %q", got, id)
				}
				if s.Status.Code == otelcodes.Error {
					t.Errorf("span status %v", s.Status)
				}
				// The upstream's parent is the gateway's span.
				tp := res.seen["traceparent"]
				if len(tp) != 1 {
					t.Fatalf("upstream received traceparent %q; want one", tp)
				}
				gotTID, gotParent, flags := parseTraceparent(t, tp[0])
				if gotTID != tid || gotParent != s.SpanContext.SpanID() || flags != "01" {
					t.Errorf("upstream traceparent %q; want trace %s, parent %s (the gateway's span), flags 01", tp[0], tid, s.SpanContext.SpanID())
				}
				if ts := res.seen["tracestate"]; len(ts) != 1 || ts[0] != "vendor=abc" {
					t.Errorf("upstream tracestate %q; want [vendor=abc]", ts)
				}
			})
		}

		// No traceparent from the client: a new trace, the span a root.
		res := callMetadata(t, "rest", o.url, nil)
		tp := res.seen["traceparent"]
		if len(tp) != 1 {
			t.Fatalf("new trace: upstream received traceparent %q; want one", tp)
		}
		tid, sid, flags := parseTraceparent(t, tp[0])
		var spans tracetest.SpanStubs
		waitUntil(t, func() bool { spans = spansOf(exp, tid); return len(spans) > 0 }, "the new trace's span")
		if len(spans) != 1 || spans[0].Parent.IsValid() || spans[0].SpanContext.SpanID() != sid || flags != "01" {
			t.Errorf("new trace: spans %+v, upstream traceparent %q; want one root span, the upstream's parent", spans, tp[0])
		}
	})
}

// TestTracingStatus: a failed call's span has the error status, the HTTP
// status and the gRPC code.
func TestTracingStatus(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		o := newObsGateway(t, observeConfig, nil)
		tr, exp := memoryTracing(1)
		o.SetTracing(tr)
		o.start(t, path)
		tid, parent := newTraceIDs(t)
		expect(t, do(t, "POST", o.url+"/v1/fail", `{"code": 13, "message": "boom"}`, "Traceparent: "+traceparent(tid, parent, true)), 500, "")
		tid2, parent2 := newTraceIDs(t)
		ctx := metadata.AppendToOutgoingContext(testContext(t), "traceparent", traceparent(tid2, parent2, true))
		_, err := testingv1.NewEchoServiceClient(dialGateway(t, o.url)).Fail(ctx, &testingv1.FailRequest{Code: 14, Message: "down"})
		if err == nil {
			t.Fatal("Fail succeeded")
		}
		for _, c := range []struct {
			tid          trace.TraceID
			proto        string
			status, code int64
		}{{tid, "rest", 500, 13}, {tid2, "grpc", 200, 14}} {
			var spans tracetest.SpanStubs
			waitUntil(t, func() bool { spans = spansOf(exp, c.tid); return len(spans) > 0 }, "the call's span")
			s := spans[0]
			a := attrs(s)
			if s.Status.Code != otelcodes.Error || a["rosetta.protocol"].AsString() != c.proto ||
				a["http.response.status_code"].AsInt64() != c.status || a["rpc.grpc.status_code"].AsInt64() != c.code {
				t.Errorf("%s: status %v, attributes %v; want Error, HTTP %d, code %d", c.proto, s.Status, s.Attributes, c.status, c.code)
			}
		}
	})
}

// TestTracingSampleRatioZero: with sample_ratio 0 no span is recorded for
// new traces nor for a client's unsampled one, yet the upstream receives
// a traceparent of the same trace, unsampled (W3C trace context is
// propagated whatever the sampling); a client's sampled trace is still
// recorded (the sampler is parent-based).
func TestTracingSampleRatioZero(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		o := newObsGateway(t, observeConfig, nil)
		tr, exp := memoryTracing(0)
		o.SetTracing(tr)
		o.start(t, path)
		for _, proto := range obsProtocols {
			t.Run(proto, func(t *testing.T) {
				// No traceparent: a new trace, not sampled.
				res := callMetadata(t, proto, o.url, nil)
				tp := res.seen["traceparent"]
				if len(tp) != 1 {
					t.Fatalf("upstream received traceparent %q; want one", tp)
				}
				if tid, _, flags := parseTraceparent(t, tp[0]); !tid.IsValid() || flags != "00" {
					t.Errorf("new trace: upstream traceparent %q; want a valid, unsampled one", tp[0])
				}
				// The client's unsampled trace: followed, not recorded.
				tid, parent := newTraceIDs(t)
				res = callMetadata(t, proto, o.url, http.Header{"Traceparent": {traceparent(tid, parent, false)}, "Tracestate": {"k=v"}})
				tp = res.seen["traceparent"]
				if len(tp) != 1 {
					t.Fatalf("upstream received traceparent %q; want one", tp)
				}
				if gotTID, _, flags := parseTraceparent(t, tp[0]); gotTID != tid || flags != "00" {
					t.Errorf("unsampled trace: upstream traceparent %q; want trace %s, flags 00", tp[0], tid)
				}
				if ts := res.seen["tracestate"]; len(ts) != 1 || ts[0] != "k=v" {
					t.Errorf("upstream tracestate %q; want [k=v]", ts)
				}
				// The client's sampled trace: recorded.
				tid2, parent2 := newTraceIDs(t)
				res = callMetadata(t, proto, o.url, http.Header{"Traceparent": {traceparent(tid2, parent2, true)}})
				var spans tracetest.SpanStubs
				waitUntil(t, func() bool { spans = spansOf(exp, tid2); return len(spans) > 0 }, "the sampled trace's span")
				if gotTID, gotParent, flags := parseTraceparent(t, res.seen["traceparent"][0]); gotTID != tid2 || gotParent != spans[0].SpanContext.SpanID() || flags != "01" {
					t.Errorf("sampled trace: upstream traceparent %q; want trace %s, parent %s", res.seen["traceparent"][0], tid2, spans[0].SpanContext.SpanID())
				}
				if n := len(spansOf(exp, tid)); n != 0 {
					t.Errorf("%d spans of the unsampled trace; want 0", n)
				}
			})
		}
		// Only the sampled traces' spans were exported.
		waitUntil(t, func() bool { return len(exp.GetSpans()) >= len(obsProtocols) }, "spans")
		if n := len(exp.GetSpans()); n != len(obsProtocols) {
			t.Errorf("%d spans exported; want %d (the client-sampled calls)", n, len(obsProtocols))
		}
	})
}

// otlpCollector is a minimal OTLP/gRPC trace collector.
type otlpCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	reqs  []*coltracepb.ExportTraceServiceRequest
	paths []string // OTLP/HTTP: the request paths
}

func (c *otlpCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// serveHTTP is the OTLP/HTTP endpoint: protobuf bodies on /v1/traces.
func (c *otlpCollector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, fmt.Sprintf("bad export: %v (%s)", err, r.Header.Get("Content-Type")), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, &req)
	c.paths = append(c.paths, r.URL.Path)
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// span returns the exported span of trace tid and the service.name of
// its resource (nil when none was received).
func (c *otlpCollector) span(tid trace.TraceID) (*tracepb.Span, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, req := range c.reqs {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					if bytes.Equal(s.GetTraceId(), tid[:]) {
						return s, service
					}
				}
			}
		}
	}
	return nil, ""
}

// TestTracingOTLP: with the config's tracing block the gateway exports
// its spans over OTLP/gRPC and OTLP/HTTP to a collector (flushed at
// shutdown), with the client as the parent.
func TestTracingOTLP(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			col := &otlpCollector{}
			var endpoint string
			if protocol == "grpc" {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(srv, col)
				go func() { _ = srv.Serve(lis) }()
				t.Cleanup(srv.Stop)
				endpoint = lis.Addr().String()
			} else {
				srv := httptest.NewServer(http.HandlerFunc(col.serveHTTP))
				t.Cleanup(srv.Close)
				endpoint = srv.Listener.Addr().String()
			}
			yaml := observeConfig + fmt.Sprintf("tracing: { otlp_endpoint: %q, protocol: %s, sample_ratio: 1.0, service_name: edge }\n", endpoint, protocol)
			o := newObsGateway(t, yaml, nil).start(t, "")
			tid, parent := newTraceIDs(t)
			callMetadata(t, "rest", o.url, http.Header{"Traceparent": {traceparent(tid, parent, true)}})
			// Shutdown flushes the batch.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := o.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			s, service := col.span(tid)
			if s == nil {
				t.Fatal("the collector received no span of the call")
			}
			if !bytes.Equal(s.GetParentSpanId(), parent[:]) || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER || service != "edge" {
				t.Errorf("span %v, service %q; want a server span, child of %s, of service edge", s, service, parent)
			}
			found := false
			for _, kv := range s.GetAttributes() {
				if kv.GetKey() == "rosetta.protocol" && kv.GetValue().GetStringValue() == "rest" {
					found = true
				}
			}
			if !found {
				t.Errorf("span attributes %v lack rosetta.protocol=rest", s.GetAttributes())
			}
			if protocol == "http" {
				col.mu.Lock()
				paths := col.paths
				col.mu.Unlock()
				if len(paths) == 0 || paths[0] != "/v1/traces" {
					t.Errorf("OTLP/HTTP paths %q; want /v1/traces", paths)
				}
			}
		})
	}
}
