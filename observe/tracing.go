package observe

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
)

// TracerName is the instrumentation scope of the gateway's spans.
const TracerName = "github.com/rosetta-gateway/rosetta"

// Tracing starts one server span per call and propagates W3C trace
// context (traceparent, tracestate) to the upstream with that span as
// the parent. A nil *Tracing is tracing off: callers check for nil and
// skip everything, so that it costs nothing.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TraceContext
}

// ExportTimeout bounds one export of a batch of spans to the collector.
const ExportTimeout = 5 * time.Second

// ShutdownTimeout bounds the flush of the spans not exported yet when
// tracing shuts down (a collector that does not answer delays the
// gateway's shutdown by no more).
const ShutdownTimeout = 5 * time.Second

// NewTracing sets up tracing from the config's tracing block: an OTLP
// exporter over gRPC or HTTP to cfg.OTLPEndpoint, batched, with
// parent-based sampling at cfg.SampleRatio. It returns nil (tracing off)
// for a nil cfg. The exporter connects lazily and does not retry: a
// collector that is down loses spans (reported to OpenTelemetry's error
// handler), never delays calls, and a shutdown does not wait for it.
func NewTracing(ctx context.Context, cfg *config.Tracing) (*Tracing, error) {
	if cfg == nil {
		return nil, nil
	}
	var exp *otlptrace.Exporter
	var err error
	switch cfg.Protocol {
	case "", config.TracingGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint),
			otlptracegrpc.WithTimeout(ExportTimeout), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false})}
		if !cfg.TLS {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case config.TracingHTTP:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.OTLPEndpoint),
			otlptracehttp.WithTimeout(ExportTimeout), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false})}
		if !cfg.TLS {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("tracing: unknown protocol %q (grpc or http)", cfg.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	ratio := 1.0
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	name := cfg.ServiceName
	if name == "" {
		name = "rosetta"
	}
	res := resource.NewSchemaless(attribute.String("service.name", name))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return NewTracingWith(tp), nil
}

// NewTracingWith makes a Tracing on a tracer provider of the caller's
// (tests give one with an in-memory exporter).
func NewTracingWith(tp *sdktrace.TracerProvider) *Tracing {
	return &Tracing{tp: tp, tracer: tp.Tracer(TracerName)}
}

// Shutdown flushes the spans not exported yet and stops the exporter,
// within ctx and at most [ShutdownTimeout]. It is nil-safe.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, ShutdownTimeout)
	defer cancel()
	return t.tp.Shutdown(ctx)
}

// Start starts the server span of a call whose request carries the
// client's trace context in carrier (the parent when present; a new
// trace otherwise). The span's name is set when it ends
// ([Tracing.End]).
func (t *Tracing) Start(ctx context.Context, carrier propagation.TextMapCarrier, httpMethod string) (context.Context, trace.Span) {
	ctx = t.prop.Extract(ctx, carrier)
	return t.tracer.Start(ctx, httpMethod, trace.WithSpanKind(trace.SpanKindServer))
}

// Inject writes the trace context of ctx's span (traceparent, and
// tracestate when not empty) into carrier, replacing the client's: the
// upstream sees the gateway's span as its parent.
func (t *Tracing) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	t.prop.Inject(ctx, carrier)
}

// SpanEnd is what [Tracing.End] writes on a call's span.
type SpanEnd struct {
	Protocol   call.Protocol
	HTTPMethod string
	// Path is the request path (the span name of an RPC is its method,
	// of a uri route its route; the path is only an attribute).
	Path     string
	Method   protoreflect.MethodDescriptor
	Route    string
	Upstream string
	Target   string
	Status   int
	Code     codes.Code
	HasCode  bool
	// Consumer is the identified caller ("": anonymous).
	Consumer  string
	RequestID string
	// Refused is true when the policy chain refused the call.
	Refused bool
}

// End names the span, sets its attributes and status, and ends it. The
// name is "pkg.Service/Method" for RPCs, "<HTTP method> <route>" for uri
// routes, else the HTTP method alone (never the path, which is
// unbounded). The attributes follow OpenTelemetry's HTTP and RPC
// conventions, plus rosetta.protocol, rosetta.route, rosetta.upstream
// and rosetta.request_id.
func (t *Tracing) End(span trace.Span, e *SpanEnd) {
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := make([]attribute.KeyValue, 0, 16)
	attrs = append(attrs,
		attribute.String("rosetta.protocol", e.Protocol.String()),
		attribute.String("http.request.method", e.HTTPMethod),
		attribute.String("url.path", e.Path),
		attribute.String("rosetta.request_id", e.RequestID))
	if e.Status > 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", e.Status))
	}
	switch {
	case e.Method != nil:
		svc, m := string(e.Method.Parent().FullName()), string(e.Method.Name())
		span.SetName(svc + "/" + m)
		attrs = append(attrs, attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", svc), attribute.String("rpc.method", m))
	case e.Route != "":
		span.SetName(e.HTTPMethod + " " + e.Route)
		attrs = append(attrs, attribute.String("http.route", e.Route))
	}
	if e.HasCode {
		attrs = append(attrs, attribute.Int("rpc.grpc.status_code", int(e.Code)))
	}
	if e.Route != "" {
		attrs = append(attrs, attribute.String("rosetta.route", e.Route))
	}
	if e.Upstream != "" {
		attrs = append(attrs, attribute.String("rosetta.upstream", e.Upstream))
	}
	if e.Target != "" {
		attrs = append(attrs, attribute.String("server.address", e.Target))
	}
	if e.Consumer != "" {
		attrs = append(attrs, attribute.String("rosetta.consumer", e.Consumer))
	}
	if e.Refused {
		attrs = append(attrs, attribute.Bool("rosetta.refused", true))
	}
	span.SetAttributes(attrs...)
	switch {
	case e.Status >= 500:
		span.SetStatus(otelcodes.Error, "HTTP "+strconv.Itoa(e.Status))
	case e.HasCode && serverCode(e.Code) && !e.Refused:
		span.SetStatus(otelcodes.Error, e.Code.String())
	}
	span.End()
}

// HeadCarrier adapts a list of lower-case header fields (an HTTP/2
// request head) to propagation.TextMapCarrier for extraction.
type HeadCarrier interface {
	Get(name string) string
}

// headCarrier is a read-only TextMapCarrier over a HeadCarrier.
type headCarrier struct{ h HeadCarrier }

func (c headCarrier) Get(key string) string { return c.h.Get(key) }
func (headCarrier) Set(string, string)      {}
func (headCarrier) Keys() []string          { return nil }

// ReadOnly returns a TextMapCarrier that reads h and ignores writes.
func ReadOnly(h HeadCarrier) propagation.TextMapCarrier { return headCarrier{h} }

// Outgoing collects the trace context [Tracing.Inject] writes, for a
// request head the caller builds itself (the gRPC relay's).
type Outgoing struct {
	Traceparent, Tracestate string
}

// Get implements propagation.TextMapCarrier.
func (o *Outgoing) Get(key string) string {
	switch key {
	case "traceparent":
		return o.Traceparent
	case "tracestate":
		return o.Tracestate
	}
	return ""
}

// Set implements propagation.TextMapCarrier.
func (o *Outgoing) Set(key, value string) {
	switch key {
	case "traceparent":
		o.Traceparent = value
	case "tracestate":
		o.Tracestate = value
	}
}

// Keys implements propagation.TextMapCarrier.
func (o *Outgoing) Keys() []string { return []string{"traceparent", "tracestate"} }

var (
	_ propagation.TextMapCarrier = (*Outgoing)(nil)
	_ propagation.TextMapCarrier = propagation.HeaderCarrier(http.Header(nil))
)
