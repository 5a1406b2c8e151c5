package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/observe"
	"github.com/rosetta-gateway/rosetta/transcoder"
	grpcdialect "github.com/rosetta-gateway/rosetta/transcoder/grpc"
	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// observability is what the gateway tells operators besides the access
// log: metrics (collected when the config has an admin block, which
// serves them at /metrics) and traces (when it has a tracing block).
// Both are fixed at New: a reload changes neither.
type observability struct {
	metrics *observe.Metrics // nil: off
	tracing *observe.Tracing // nil: off
}

// newObservability sets up metrics and tracing for cfg.
func (g *Gateway) newObservability(cfg *config.Config) error {
	if cfg.Admin != nil {
		m := observe.NewMetrics(observe.Options{})
		m.SetState(g.metricsState)
		g.obs.metrics = m // route labels: setRouteOf, as each generation becomes current
	}
	t, err := observe.NewTracing(context.Background(), cfg.Tracing)
	if err != nil {
		return err
	}
	g.obs.tracing = t
	return nil
}

// SetTracing replaces the tracing the config set up (nil: off), for
// tests that export spans in memory ([observe.NewTracingWith]). Call it
// before Start; the previous tracing is not shut down.
func (g *Gateway) SetTracing(t *observe.Tracing) { g.obs.tracing = t }

// shutdownTracing flushes the spans not exported yet (within ctx and
// observe.ShutdownTimeout). A collector that does not take them loses
// them: that is logged, and is not a failed shutdown.
func (g *Gateway) shutdownTracing(ctx context.Context) {
	if err := g.obs.tracing.Shutdown(ctx); err != nil {
		g.logger.Warn("tracing: spans not exported at shutdown", "error", err)
	}
}

// Metrics returns the gateway's metrics, nil when the config has no admin
// block. Their handler is served at /metrics on the admin listener.
func (g *Gateway) Metrics() *observe.Metrics { return g.obs.metrics }

// MetricsHandler serves the gateway's metrics (404 without an admin
// block), for /metrics on the admin listener.
func (g *Gateway) MetricsHandler() http.Handler {
	if g.obs.metrics == nil {
		return http.NotFoundHandler()
	}
	return g.obs.metrics.Handler()
}

// setRouteOf gives the metrics the config routes of gen, which name the
// route label of RPC calls: called when gen becomes current (New,
// ReloadConfig), not per call.
func (g *Gateway) setRouteOf(gen *generation) {
	if g.obs.metrics == nil {
		return
	}
	g.obs.metrics.SetRouteOf(func(md protoreflect.MethodDescriptor) string {
		return gen.methodNames(md).route
	})
}

// observeCall counts one finished call.
func (g *Gateway) observeCall(c *observe.Call) { g.obs.metrics.Observe(c) }

// streaming reports whether a routed call is a stream (an open-streams
// gauge counts it while it lasts).
func streaming(p call.Protocol, md protoreflect.MethodDescriptor) bool {
	switch p {
	case call.WebSocket, call.SSE:
		return true
	}
	return md != nil && (md.IsStreamingClient() || md.IsStreamingServer())
}

// edgeCall is one call at the edge of the handler path: its response
// recorder, report, request body counter and what the access log, the
// metrics and the span need, in one allocation.
type edgeCall struct {
	accessRecorder
	body  countingBody
	rep   call.Report
	g     *Gateway
	proto call.Protocol // detected
	start time.Time
	// idv is the request ID as a header value (shared with the request's
	// header map; never modified).
	idv []string
	// open is the protocol of the open-streams gauge the call counts in
	// (ProtocolUnknown: none).
	open     call.Protocol
	informed bool // a 1xx (101 Switching Protocols) was sent
}

// Routed implements call.ReportObserver: a stream is counted open from
// the moment its dialect routed it.
func (e *edgeCall) Routed(r *call.Report) {
	if m := e.g.obs.metrics; m != nil && e.open == call.ProtocolUnknown && streaming(r.Protocol, r.Method) {
		e.open = r.Protocol
		m.StreamOpened(e.open)
	}
}

// WriteHeader sends the response head with the call's X-Request-Id (in
// place of any the upstream's answer carried).
func (e *edgeCall) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		e.informed = true
	}
	if e.status == 0 {
		e.Header()[observe.RequestIDHeader] = e.idv
	}
	e.accessRecorder.WriteHeader(code)
}

// Write writes body bytes, sending the head first when not sent yet.
func (e *edgeCall) Write(b []byte) (int, error) {
	if e.status == 0 {
		e.Header()[observe.RequestIDHeader] = e.idv
	}
	return e.accessRecorder.Write(b)
}

// Flush flushes, sending the head first when not sent yet.
func (e *edgeCall) Flush() {
	if e.status == 0 {
		e.Header()[observe.RequestIDHeader] = e.idv
	}
	e.accessRecorder.Flush()
}

// edge is the one handler behind every listener, around serve: it
// detects the protocol, gives the call its request ID (the client's
// X-Request-Id when valid, else a new one; sent upstream and returned),
// starts its span (tracing on), and when the call ends writes its access
// line, counts its metrics and ends its span, all from one report
// ([call.Report]) that the dialects fill.
func (g *Gateway) edge(serve func(http.ResponseWriter, *http.Request, call.Protocol)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := &edgeCall{g: g, proto: transcoder.Detect(r), start: time.Now()}
		e.ResponseWriter = w
		sent := r.Header[observe.RequestIDHeader]
		if len(sent) == 1 && observe.ValidRequestID(sent[0]) {
			e.idv = sent
		} else {
			e.idv = []string{observe.NewRequestID()}
			if r.Header == nil {
				r.Header = http.Header{}
			}
			r.Header[observe.RequestIDHeader] = e.idv // forwarded upstream
		}
		e.rep.RequestID = e.idv[0]
		w.Header()[observe.RequestIDHeader] = e.idv
		if g.obs.metrics != nil {
			e.rep.Observer = e
			g.obs.metrics.CallStarted()
		}
		// The report rides in the request's own context when the
		// transport offers room for it (the HTTP/1.1 lane, whose request
		// is then the edge's to change); else in a derived context, on a
		// copy of the request.
		var span trace.Span
		if t := g.obs.tracing; t != nil {
			ctx, sp := t.Start(call.WithReport(r.Context(), &e.rep), propagation.HeaderCarrier(r.Header), r.Method)
			t.Inject(ctx, propagation.HeaderCarrier(r.Header)) // the upstream's parent is our span
			r, span = r.WithContext(ctx), sp
		} else if !call.AttachReport(r.Context(), &e.rep) {
			r = r.WithContext(call.WithReport(r.Context(), &e.rep))
		}
		if r.Body != nil && r.Body != http.NoBody {
			e.body.ReadCloser = r.Body
			r.Body = &e.body
		}
		defer e.finish(r, span)
		serve(e, r, e.proto)
	})
}

// finish writes the call's access line, counts it and ends its span.
func (e *edgeCall) finish(r *http.Request, span trace.Span) {
	g := e.g
	rep := &e.rep
	status := e.status
	switch {
	case status != 0:
	case e.informed:
		status = http.StatusSwitchingProtocols // a WebSocket over HTTP/1.1
	case r.Context().Err() != nil:
		status = 499 // the client went away before an answer
	default:
		status = http.StatusOK
	}
	proto := e.proto
	if rep.Protocol != call.ProtocolUnknown {
		proto = rep.Protocol
	}
	h := e.Header()
	code, hasCode := codes.OK, false
	if v := grpcStatus(h); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			code, hasCode = codes.Code(n), true
		}
	} else if rep.HasCode {
		code, hasCode = rep.Code, true
	}
	end := time.Now()
	elapsed := end.Sub(e.start)
	in, out := int64(0), e.bytes
	if e.body.ReadCloser != nil {
		in = e.body.n.Load()
	}
	if mi, mo := rep.MessageBytesIn.Load(), rep.MessageBytesOut.Load(); mi+mo > 0 {
		in, out = mi, mo // a WebSocket's messages (an upgraded connection bypasses the recorder)
	}
	if g.access.Enabled(r.Context(), slog.LevelInfo) {
		g.logAccess(r.Context(), &accessLine{
			inbound: proto, http: r.ProtoMajor, method: r.Method, procedure: r.URL.Path,
			status: status, code: code, hasCode: hasCode, duration: elapsed,
			bytesIn: in, bytesOut: out, errorID: h.Get(transcoder.ErrorIDHeader),
			consumer: rep.Consumer, cache: h.Get("X-Cache"), requestID: rep.RequestID, upstream: rep.Upstream,
		})
	}
	if !hasCode && rep.Method != nil && status < 300 {
		code, hasCode = codes.OK, true // an RPC answered without a status field (REST, Connect unary)
	}
	if g.analytics != nil {
		g.recordCall(proto, rep.Method, rep.Route, rep.Upstream, rep.Consumer, status, code, hasCode, end, elapsed, in, out)
	}
	if m := g.obs.metrics; m != nil {
		g.observeCall(&observe.Call{
			Protocol: proto, HTTPVersion: r.ProtoMajor, Method: rep.Method, Route: rep.Route,
			Upstream: rep.Upstream, Target: rep.Target, Status: status, Code: code, HasCode: hasCode,
			Consumer: rep.Consumer, Refusal: rep.Refusal, Duration: elapsed,
		})
		if e.open != call.ProtocolUnknown {
			m.StreamClosed(e.open)
		}
		m.CallEnded()
	}
	if span != nil {
		g.obs.tracing.End(span, &observe.SpanEnd{
			Protocol: proto, HTTPMethod: r.Method, Path: r.URL.Path, Method: rep.Method, Route: g.spanRoute(rep.Route, rep.Method),
			Upstream: rep.Upstream, Target: rep.Target, Status: status, Code: code, HasCode: hasCode,
			Consumer: rep.Consumer, RequestID: rep.RequestID, Refused: rep.Refusal != nil,
		})
	}
}

// spanRoute is the config route a span names: route when the dialect
// named one (a uri route), else the first route whose selector covers md
// ("" when none does).
func (g *Gateway) spanRoute(route string, md protoreflect.MethodDescriptor) string {
	if route != "" || md == nil {
		return route
	}
	if gen := g.cur.Load(); gen != nil {
		return gen.methodNames(md).route
	}
	return ""
}

// grpcStatus returns the grpc-status an answer carries in its headers or
// trailers ("" when none).
func grpcStatus(h http.Header) string {
	if v := call.HTTPHeader(h).Get("Grpc-Status"); v != "" {
		return v
	}
	return call.HTTPHeader(h).Get(http.TrailerPrefix + "Grpc-Status")
}

// relayObs is one relayed call's observation: its request ID, span and
// start, and the fields the relay adds to it, in one allocation.
type relayObs struct {
	g     *Gateway
	gen   *generation // held until done
	head  *h2.RequestHead
	start time.Time
	span  trace.Span // nil: tracing off
	id    string
	open  bool // counted in the open-streams gauge
	// fields replace the client's in the upstream request (x-request-id
	// when the client's is missing or invalid, traceparent, tracestate);
	// resp is the x-request-id of the response head.
	fields [3]hpack.HeaderField
	resp   [1]hpack.HeaderField
}

// relay hands a gRPC call to the frame relay of st with the request ID,
// trace context and metrics of the handler path's edge; nil when the
// relay leaves the call to the handler.
func (g *Gateway) relay(st *state, s *h2.Stream, head *h2.RequestHead) h2.Events {
	o := &relayObs{g: g, gen: st.gen, head: head, start: time.Now()}
	n := 0
	// The client's x-request-id is kept when it sent exactly one, valid
	// (as the edge keeps X-Request-Id); any others are replaced.
	sent, count := "", 0
	for i := range head.Fields {
		if head.Fields[i].Name == observe.RequestIDMetadata {
			if count == 0 {
				sent = head.Fields[i].Value
			}
			count++
		}
	}
	o.id = sent
	if count != 1 || !observe.ValidRequestID(sent) {
		o.id = observe.NewRequestID()
		o.fields[n] = hpack.HeaderField{Name: observe.RequestIDMetadata, Value: o.id, Sensitive: true}
		n++
	}
	// A request ID is unique to its call: never-indexed literals (the
	// Sensitive flag) keep it out of the HPACK tables.
	o.resp[0] = hpack.HeaderField{Name: observe.RequestIDMetadata, Value: o.id, Sensitive: true}
	if t := g.obs.tracing; t != nil {
		ctx, span := t.Start(head.Context, observe.ReadOnly(head), head.Method)
		var out observe.Outgoing
		t.Inject(ctx, &out)
		o.span = span
		o.fields[n] = hpack.HeaderField{Name: "traceparent", Value: out.Traceparent, Sensitive: true}
		n++
		if out.Tracestate != "" {
			o.fields[n] = hpack.HeaderField{Name: "tracestate", Value: out.Tracestate}
			n++
		}
	}
	m := g.obs.metrics
	if m != nil {
		m.CallStarted()
		if streaming(call.GRPC, st.grpc.Method(head.Path)) {
			o.open = true
			m.StreamOpened(call.GRPC)
		}
	}
	ev := st.grpc.RelayWith(s, head, grpcdialect.RelayOptions{Fields: o.fields[:n], Response: o.resp[:], Done: o.done, Start: o.start})
	if ev == nil {
		st.gen.release() // the handler path holds its own
	}
	if ev == nil && m != nil {
		// The handler path takes the call, and counts it (a span started
		// here is dropped unended: the handler path starts its own).
		if o.open {
			m.StreamClosed(call.GRPC)
		}
		m.CallEnded()
	}
	return ev
}

// done writes a relayed call's access line, counts it and ends its span,
// as edgeCall.finish does for the handler path.
func (o *relayObs) done(res *grpcdialect.RelayResult) {
	g, head := o.g, o.head
	defer o.gen.release()
	status := http.StatusOK
	if !res.HasCode {
		status = 499 // the client went away before an answer
	}
	end := time.Now()
	elapsed := end.Sub(o.start)
	if g.access.Enabled(head.Context, slog.LevelInfo) {
		g.logAccess(head.Context, &accessLine{
			inbound: call.GRPC, http: 2, method: head.Method, procedure: head.Path,
			status: status, code: res.Code, hasCode: res.HasCode, duration: elapsed,
			bytesIn: res.BytesIn, bytesOut: res.BytesOut, errorID: res.ErrorID,
			consumer: res.Consumer, requestID: o.id, upstream: res.Upstream,
		})
	}
	if g.analytics != nil {
		g.recordCall(call.GRPC, res.Method, "", res.Upstream, res.Consumer, status, res.Code, res.HasCode, end, elapsed, res.BytesIn, res.BytesOut)
	}
	if m := g.obs.metrics; m != nil {
		g.observeCall(&observe.Call{
			Protocol: call.GRPC, HTTPVersion: 2, Method: res.Method, Upstream: res.Upstream, Target: res.Target,
			Status: status, Code: res.Code, HasCode: res.HasCode, Consumer: res.Consumer, Refusal: res.Refusal,
			Duration: elapsed,
		})
		if o.open {
			m.StreamClosed(call.GRPC)
		}
		m.CallEnded()
	}
	if o.span != nil {
		g.obs.tracing.End(o.span, &observe.SpanEnd{
			Protocol: call.GRPC, HTTPMethod: head.Method, Path: head.Path, Method: res.Method, Route: g.spanRoute("", res.Method),
			Upstream: res.Upstream, Target: res.Target, Status: status, Code: res.Code, HasCode: res.HasCode,
			Consumer: res.Consumer, RequestID: o.id, Refused: res.Refusal != nil,
		})
	}
}
