package observe

import (
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/call"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

func TestValidRequestID(t *testing.T) {
	for _, c := range []struct {
		v  string
		ok bool
	}{
		{"abc", true},
		{"A-Z.a:z-0.9", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"a b", false},
		{"a_b", true},
		{"a/b", false},
		{"a\"b", false},
		{"a\nb", false},
		{"é", false},
	} {
		if got := ValidRequestID(c.v); got != c.ok {
			t.Errorf("ValidRequestID(%q) = %v; want %v", c.v, got, c.ok)
		}
		got := RequestID(c.v)
		if c.ok && got != c.v || !c.ok && (got == c.v || !ValidRequestID(got) || len(got) != 32) {
			t.Errorf("RequestID(%q) = %q", c.v, got)
		}
	}
	if a, b := NewRequestID(), NewRequestID(); a == b {
		t.Errorf("two NewRequestID calls gave %s", a)
	}
}

// value returns the value (count, for histograms) of the series of name
// with exactly labels.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if w, ok := labels[l.GetName()]; ok && w != l.GetValue() {
					continue metrics
				}
			}
			return s.GetCounter().GetValue() + s.GetGauge().GetValue() + float64(s.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

func series(t *testing.T, m *Metrics, name string) []*dto.Metric {
	t.Helper()
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

// testMethod is some method descriptor.
func testMethod() protoreflect.MethodDescriptor {
	return testingv1.File_rosetta_testing_v1_echo_proto.Services().Get(0).Methods().Get(0)
}

func TestMetricsObserve(t *testing.T) {
	m := NewMetrics(Options{NoRuntime: true})
	c := &Call{Protocol: call.REST, HTTPVersion: 1, Route: "/x/*", Upstream: "u", Target: "10.0.0.1:80", Status: 503, Duration: time.Millisecond}
	m.Observe(c)
	m.Observe(c)
	m.Observe(&Call{Protocol: call.GRPC, HTTPVersion: 2, Upstream: "u", Status: 200, Code: codes.NotFound, HasCode: true})
	if got := value(t, m, "rosetta_requests_total", map[string]string{"protocol": "rest", "http_version": "1.1", "route": "/x/*", "status_class": "5xx", "grpc_code": ""}); got != 2 {
		t.Errorf("requests{rest} = %v; want 2", got)
	}
	if got := value(t, m, "rosetta_request_errors_total", map[string]string{"protocol": "rest"}); got != 2 {
		t.Errorf("errors{rest} = %v; want 2", got)
	}
	if got := value(t, m, "rosetta_requests_total", map[string]string{"protocol": "grpc", "grpc_code": "NotFound", "http_version": "2"}); got != 1 {
		t.Errorf("requests{grpc} = %v; want 1", got)
	}
	if n := len(series(t, m, "rosetta_request_errors_total")); n != 1 {
		t.Errorf("%d error series; NotFound is not an error", n)
	}
	if got := value(t, m, "rosetta_upstream_requests_total", map[string]string{"target": "10.0.0.1:80"}); got != 2 {
		t.Errorf("upstream requests = %v; want 2", got)
	}
	// Once a label set has been seen, a call is counted without
	// allocating.
	if n := testing.AllocsPerRun(100, func() { m.Observe(c) }); n != 0 {
		t.Errorf("Observe allocates %v times per call", n)
	}
}

func TestMetricsRouteOf(t *testing.T) {
	m := NewMetrics(Options{NoRuntime: true})
	md := testMethod()
	m.SetRouteOf(func(protoreflect.MethodDescriptor) string { return "first.*" })
	m.Observe(&Call{Protocol: call.GRPC, Method: md, Status: 200})
	m.SetRouteOf(func(protoreflect.MethodDescriptor) string { return "second.*" })
	m.Observe(&Call{Protocol: call.GRPC, Method: md, Status: 200})
	for _, route := range []string{"first.*", "second.*"} {
		if got := value(t, m, "rosetta_requests_total", map[string]string{"route": route}); got != 1 {
			t.Errorf("requests{route=%s} = %v; want 1", route, got)
		}
	}
}

func TestMetricsConsumerCap(t *testing.T) {
	m := NewMetrics(Options{NoRuntime: true, MaxConsumers: 2})
	for _, name := range []string{"a", "b", "c", "a", "d"} {
		m.Observe(&Call{Protocol: call.REST, Status: 200, Consumer: name})
	}
	want := map[string]float64{"a": 2, "b": 1, OtherConsumer: 2}
	got := map[string]float64{}
	for _, s := range series(t, m, "rosetta_consumer_requests_total") {
		for _, l := range s.GetLabel() {
			if l.GetName() == "consumer" {
				got[l.GetValue()] += s.GetCounter().GetValue()
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("consumer series %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("consumer %s: %v; want %v", k, got[k], v)
		}
	}
	off := NewMetrics(Options{NoRuntime: true, MaxConsumers: -1})
	off.Observe(&Call{Protocol: call.REST, Status: 200, Consumer: "a"})
	if s := series(t, off, "rosetta_consumer_requests_total"); s != nil {
		t.Errorf("MaxConsumers -1: consumer series %v", s)
	}
}

func TestRefusalReason(t *testing.T) {
	for _, c := range []struct {
		err  *call.Error
		want string
	}{
		{call.Errorf(codes.Unauthenticated, "bad key"), "unauthenticated"},
		{call.Errorf(codes.ResourceExhausted, "slow down"), "resource_exhausted"},
		{call.Errorf(codes.PermissionDenied, "no"), "permission_denied"},
	} {
		if got := RefusalReason(c.err); got != c.want {
			t.Errorf("RefusalReason(%v) = %q; want %q", c.err, got, c.want)
		}
	}
	m := NewMetrics(Options{NoRuntime: true})
	m.Observe(&Call{Protocol: call.Connect, Status: 429, Refusal: &call.Error{Code: codes.ResourceExhausted, Plugin: "rate-limiting"}})
	if got := value(t, m, "rosetta_policy_refusals_total", map[string]string{"plugin": "rate-limiting", "reason": "resource_exhausted", "protocol": "connect"}); got != 1 {
		t.Errorf("refusals = %v; want 1", got)
	}
}

func TestMetricsGauges(t *testing.T) {
	m := NewMetrics(Options{NoRuntime: true})
	m.CallStarted()
	m.StreamOpened(call.WebSocket)
	m.StreamOpened(call.ProtocolUnknown) // ignored
	if got := value(t, m, "rosetta_requests_in_flight", nil); got != 1 {
		t.Errorf("in flight %v; want 1", got)
	}
	if got := value(t, m, "rosetta_open_streams", map[string]string{"protocol": "websocket"}); got != 1 {
		t.Errorf("open websockets %v; want 1", got)
	}
	m.StreamClosed(call.WebSocket)
	m.CallEnded()
	if got := value(t, m, "rosetta_requests_in_flight", nil) + value(t, m, "rosetta_open_streams", map[string]string{"protocol": "websocket"}); got != 0 {
		t.Errorf("after the end: %v; want 0", got)
	}
}

func TestMetricsState(t *testing.T) {
	m := NewMetrics(Options{NoRuntime: true})
	loaded := time.Unix(1_800_000_000, 0)
	m.SetState(func(s *State) {
		s.Targets = []TargetState{{Upstream: "u", Target: "t1", Healthy: true, Available: true, InFlight: 3, BreakerRejected: 2}}
		s.Upstreams = []UpstreamState{{Upstream: "u", Retries: 4, RetriesDenied: 1, BreakerRejected: 5}}
		s.Cache = CacheState{Hits: 7, Misses: 8, Stale: 1}
		s.SnapshotVersion = 9
		s.Descriptors = DescriptorState{Refreshes: 3, RefreshErrors: 2}
		s.Config = ConfigState{Generation: 2, Reloads: 1, Failures: 1, LoadedAt: loaded, LastOK: false}
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"rosetta_upstream_target_healthy", map[string]string{"target": "t1"}, 1},
		{"rosetta_upstream_target_ejected", map[string]string{"target": "t1"}, 0},
		{"rosetta_upstream_target_in_flight", map[string]string{"target": "t1"}, 3},
		{"rosetta_upstream_breaker_rejections_total", map[string]string{"target": "t1"}, 2},
		{"rosetta_upstream_breaker_rejections_total", map[string]string{"target": ""}, 5},
		{"rosetta_upstream_retries_total", nil, 4},
		{"rosetta_upstream_retries_denied_total", nil, 1},
		{"rosetta_cache_requests_total", map[string]string{"result": "hit"}, 7},
		{"rosetta_cache_requests_total", map[string]string{"result": "miss"}, 8},
		{"rosetta_descriptor_snapshot_version", nil, 9},
		{"rosetta_descriptor_refresh_errors_total", nil, 2},
		{"rosetta_config_generation", nil, 2},
		{"rosetta_config_reloads_total", map[string]string{"result": "success"}, 1},
		{"rosetta_config_reloads_total", map[string]string{"result": "failure"}, 1},
		{"rosetta_config_last_reload_successful", nil, 0},
		{"rosetta_config_last_reload_success_timestamp_seconds", nil, 1_800_000_000},
	} {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v; want %v", c.name, c.labels, got, c.want)
		}
	}
}

// BenchmarkObserve is the cost of counting one call whose label set has
// been seen.
func BenchmarkObserve(b *testing.B) {
	m := NewMetrics(Options{NoRuntime: true})
	c := &Call{Protocol: call.GRPC, HTTPVersion: 2, Method: testMethod(), Upstream: "test", Target: "127.0.0.1:9000", Status: 200, HasCode: true, Duration: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.CallStarted()
			m.Observe(c)
			m.CallEnded()
		}
	})
}
