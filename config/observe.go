package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Tracing protocols (Tracing.Protocol).
const (
	TracingGRPC = "grpc"
	TracingHTTP = "http"
)

// Tracing exports one OpenTelemetry server span per call over OTLP. Off
// without this block. Example:
//
//	tracing: { otlp_endpoint: "127.0.0.1:4317", protocol: grpc, sample_ratio: 1.0 }
//
// W3C trace context (traceparent, tracestate) from clients is accepted
// as the span's parent and sent to the upstream with the gateway's span
// as the parent, on every protocol, whether or not the call is sampled.
type Tracing struct {
	// OTLPEndpoint is the collector's host:port: OTLP/gRPC usually
	// listens on 4317, OTLP/HTTP on 4318. Required.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// Protocol is grpc (OTLP over gRPC, default) or http (OTLP/HTTP,
	// protobuf bodies to /v1/traces).
	Protocol string `yaml:"protocol"`
	// SampleRatio is the share of new traces sampled, from 0 to 1.
	// Default 1.0. A call whose client sent a trace context follows the
	// client's sampled flag.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name of the spans. Default "rosetta".
	ServiceName string `yaml:"service_name"`
	// TLS reaches the collector over TLS (system roots). Default false:
	// plaintext, as a collector beside the gateway usually listens.
	TLS bool `yaml:"tls"`
}

// tracingDefaults fills the tracing block's unset values.
func (c *Config) tracingDefaults() {
	t := c.Tracing
	if t == nil {
		return
	}
	if t.Protocol == "" {
		t.Protocol = TracingGRPC
	}
	if t.SampleRatio == nil {
		t.SampleRatio = ptr(1.0)
	}
	if t.ServiceName == "" {
		t.ServiceName = "rosetta"
	}
}

// tracing checks the tracing block.
func (v *validator) tracing() {
	t := v.c.Tracing
	if t == nil {
		return
	}
	if t.OTLPEndpoint == "" {
		v.report("tracing.otlp_endpoint", Pos{}, false, "tracing needs otlp_endpoint", `set the collector's host:port, e.g. "127.0.0.1:4317"`)
	} else {
		v.address("tracing.otlp_endpoint", t.OTLPEndpoint, targetAddr)
	}
	switch t.Protocol {
	case "", TracingGRPC, TracingHTTP:
	default:
		v.report("tracing.protocol", Pos{}, false, fmt.Sprintf("unknown tracing protocol %q", t.Protocol), "use grpc (OTLP/gRPC) or http (OTLP/HTTP)")
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		v.report("tracing.sample_ratio", Pos{}, false, "sample_ratio must be between 0 and 1, got "+strconv.FormatFloat(*r, 'g', -1, 64), "1.0 samples every new trace, 0.1 one in ten")
	}
}

// float decodes a number such as 0.25 or 1 (tracing.sample_ratio).
func (d *decoder) float(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a number")
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.report(n, path, fmt.Sprintf("expected a number, got %q", s), "")
		return
	}
	if f == 0 {
		d.zero[path] = true
	}
	v.SetFloat(f)
}
