package observe

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy"
)

// DefaultMaxConsumers is how many distinct consumers get a label value
// of their own in rosetta_consumer_requests_total; the others share
// [OtherConsumer].
const DefaultMaxConsumers = 100

// OtherConsumer is the consumer label of the consumers past the cap.
const OtherConsumer = "_other"

// DurationBuckets are the buckets of the duration histograms, in
// seconds: a gateway's own latency is sub-millisecond, a backend's
// milliseconds to seconds, a stream's minutes.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Options tune [NewMetrics]. The zero value means the defaults.
type Options struct {
	// MaxConsumers caps the consumer label values (default
	// [DefaultMaxConsumers]; negative: no consumer metric).
	MaxConsumers int
	// NoRuntime leaves out the Go runtime and process collectors (tests).
	NoRuntime bool
}

// Metrics are the gateway's Prometheus metrics. Calls are counted with
// [Metrics.Observe], once per call, by the edge of every path (the
// handler path and the gRPC frame relay); the state of upstreams,
// caches, descriptors and reloads is read at scrape time from the
// [StateFunc] given to [Metrics.SetState]. It is safe for concurrent
// use; Observe does not allocate once a call's label set has been seen.
type Metrics struct {
	reg *prometheus.Registry

	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	errors           *prometheus.CounterVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	consumerRequests *prometheus.CounterVec
	refusals         *prometheus.CounterVec
	inFlight         prometheus.Gauge
	openStreams      [protocolCount]prometheus.Gauge

	// calls and targets cache the series of each label set seen.
	calls   sync.Map // callKey → *callSeries
	ncalls  atomic.Int64
	targets sync.Map // targetKey → *targetSeries

	// routeOf names the config route of a method (nil: none).
	routeOf atomic.Pointer[func(protoreflect.MethodDescriptor) string]

	consumerMu   sync.Mutex
	consumers    map[string]string // name → label value
	maxConsumers int

	state atomic.Pointer[StateFunc]
}

// protocolCount bounds call.Protocol values.
const protocolCount = int(call.HTTP) + 1

// maxCachedSeries bounds the series cache; past it the cache is cleared
// (the series stay registered).
const maxCachedSeries = 50_000

// NewMetrics registers Rosetta's metrics in a registry of their own.
func NewMetrics(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), consumers: map[string]string{}, maxConsumers: o.MaxConsumers}
	if m.maxConsumers == 0 {
		m.maxConsumers = DefaultMaxConsumers
	}
	callLabels := []string{"protocol", "http_version", "route", "method", "upstream", "status_class", "grpc_code"}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_requests_total",
		Help: "Calls served, by ingress protocol (rest, grpc, grpc_web, connect, websocket, sse, http), HTTP version, config route, RPC method, upstream, HTTP status class and gRPC code.",
	}, callLabels)
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rosetta_request_duration_seconds",
		Help:    "Call duration from the request head to the end of the answer, with the labels of rosetta_requests_total.",
		Buckets: DurationBuckets,
	}, callLabels)
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_request_errors_total",
		Help: "Calls that failed on the gateway's or the upstream's side (HTTP 5xx, or gRPC UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), not counting policy refusals, with the labels of rosetta_requests_total.",
	}, callLabels)
	m.upstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_upstream_requests_total",
		Help: "Calls that reached an upstream target, by upstream, target, HTTP status class and gRPC code.",
	}, []string{"upstream", "target", "status_class", "grpc_code"})
	m.upstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rosetta_upstream_request_duration_seconds",
		Help:    "Duration of the calls that reached an upstream target, by upstream and target.",
		Buckets: DurationBuckets,
	}, []string{"upstream", "target"})
	m.consumerRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_consumer_requests_total",
		Help: "Calls of identified consumers, by consumer (the first " + strconv.Itoa(m.maxConsumers) + " seen; the others are " + OtherConsumer + "), ingress protocol, config route, HTTP status class and gRPC code.",
	}, []string{"consumer", "protocol", "route", "status_class", "grpc_code"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rosetta_policy_refusals_total",
		Help: "Calls the policy chain refused, by plugin, reason (missing_credentials, or the gRPC code in snake case), ingress protocol and config route.",
	}, []string{"plugin", "reason", "protocol", "route"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rosetta_requests_in_flight",
		Help: "Calls in progress, on every protocol.",
	})
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rosetta_open_streams",
		Help: "Streams in progress, by ingress protocol: streaming RPCs, SSE streams and WebSockets (the bridge's and those proxied on uri routes).",
	}, []string{"protocol"})
	for p := call.REST; int(p) < protocolCount; p++ {
		m.openStreams[p] = open.WithLabelValues(p.String())
	}
	m.reg.MustRegister(m.requests, m.duration, m.errors, m.upstreamRequests, m.upstreamDuration,
		m.refusals, m.inFlight, open, stateCollector{m})
	if m.maxConsumers > 0 {
		m.reg.MustRegister(m.consumerRequests)
	}
	if !o.NoRuntime {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Handler serves the metrics in the Prometheus text (or OpenMetrics)
// format, for /metrics on the admin listener.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Gatherer returns the registry the metrics are in.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Registerer returns the registry, for more collectors.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// SetRouteOf sets how a method's config route is named (the route label
// of calls whose dialect did not name one), and forgets the label sets
// resolved with the previous one: call it whenever the routes change (a
// config reload). nil: no route label.
func (m *Metrics) SetRouteOf(fn func(protoreflect.MethodDescriptor) string) {
	if fn == nil {
		m.routeOf.Store(nil)
	} else {
		m.routeOf.Store(&fn)
	}
	m.calls.Clear()
	m.ncalls.Store(0)
}

// Call is one finished call, as [Metrics.Observe] counts it.
type Call struct {
	// Protocol is the ingress protocol.
	Protocol call.Protocol
	// HTTPVersion is the request's HTTP major version (1, 2 or 3).
	HTTPVersion int
	// Method is the RPC method (nil: a uri route, or not routed).
	Method protoreflect.MethodDescriptor
	// Route is the config route ("": resolved from Method, else none).
	Route string
	// Upstream and Target are where the call went ("": nowhere).
	Upstream, Target string
	// Status is the HTTP status answered (499: the client went away
	// first).
	Status int
	// Code is the gRPC status, when HasCode.
	Code    codes.Code
	HasCode bool
	// Consumer is the identified caller ("": anonymous).
	Consumer string
	// Refusal is the policy chain's refusal (nil: none).
	Refusal *call.Error
	// Duration is how long the call took.
	Duration time.Duration
}

// callKey is the label set of a call's series.
type callKey struct {
	md       protoreflect.MethodDescriptor
	route    string
	upstream string
	proto    call.Protocol
	http     uint8
	class    uint8
	code     int8 // -1: none
}

// callSeries are the resolved series of one callKey.
type callSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
	errors   prometheus.Counter // nil: not an error
	route    string             // the route label
	labels   []string           // protocol, route, status_class, grpc_code (consumer and refusal series)
}

type targetKey struct {
	upstream, target string
	class            uint8
	code             int8
}

type targetSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// CallStarted counts a call in flight until [Metrics.CallEnded].
func (m *Metrics) CallStarted() { m.inFlight.Inc() }

// CallEnded ends what [Metrics.CallStarted] began.
func (m *Metrics) CallEnded() { m.inFlight.Dec() }

// StreamOpened counts a stream of protocol p open until
// [Metrics.StreamClosed].
func (m *Metrics) StreamOpened(p call.Protocol) {
	if int(p) < protocolCount && p != call.ProtocolUnknown {
		m.openStreams[p].Inc()
	}
}

// StreamClosed ends what [Metrics.StreamOpened] began.
func (m *Metrics) StreamClosed(p call.Protocol) {
	if int(p) < protocolCount && p != call.ProtocolUnknown {
		m.openStreams[p].Dec()
	}
}

// Observe counts one finished call: its request, duration, error,
// target, consumer and refusal series. It does not allocate once the
// call's label set has been seen.
func (m *Metrics) Observe(c *Call) {
	class := statusClass(c.Status)
	code := int8(-1)
	if c.HasCode && c.Code <= codes.Unauthenticated {
		code = int8(c.Code)
	}
	k := callKey{md: c.Method, route: c.Route, upstream: c.Upstream, proto: c.Protocol, http: uint8(c.HTTPVersion), class: class, code: code}
	var s *callSeries
	if v, ok := m.calls.Load(k); ok {
		s = v.(*callSeries)
	} else {
		s = m.resolveCall(k)
	}
	s.requests.Inc()
	secs := c.Duration.Seconds()
	s.duration.Observe(secs)
	if s.errors != nil {
		s.errors.Inc()
	}
	if c.Target != "" {
		tk := targetKey{upstream: c.Upstream, target: c.Target, class: class, code: code}
		var ts *targetSeries
		if v, ok := m.targets.Load(tk); ok {
			ts = v.(*targetSeries)
		} else {
			ts = m.resolveTarget(tk)
		}
		ts.requests.Inc()
		ts.duration.Observe(secs)
	}
	if c.Consumer != "" && m.maxConsumers > 0 {
		m.consumerRequests.WithLabelValues(m.consumerLabel(c.Consumer), s.labels[0], s.labels[1], s.labels[2], s.labels[3]).Inc()
	}
	if c.Refusal != nil {
		m.refusals.WithLabelValues(pluginLabel(c.Refusal.Plugin), RefusalReason(c.Refusal), s.labels[0], s.labels[1]).Inc()
	}
}

func (m *Metrics) resolveCall(k callKey) *callSeries {
	route := k.route
	if route == "" && k.md != nil {
		if fn := m.routeOf.Load(); fn != nil {
			route = (*fn)(k.md)
		}
	}
	method := ""
	if k.md != nil {
		method = "/" + string(k.md.Parent().FullName()) + "/" + string(k.md.Name())
	}
	proto, class, code := k.proto.String(), classNames[k.class], codeLabel(k.code)
	labels := []string{proto, httpVersion(k.http), route, method, k.upstream, class, code}
	s := &callSeries{
		requests: m.requests.WithLabelValues(labels...),
		duration: m.duration.WithLabelValues(labels...),
		route:    route,
		labels:   []string{proto, route, class, code},
	}
	if k.class == 5 || k.code >= 0 && serverCode(codes.Code(k.code)) {
		s.errors = m.errors.WithLabelValues(labels...)
	}
	if m.ncalls.Add(1) > maxCachedSeries {
		m.calls.Clear()
		m.ncalls.Store(0)
	}
	v, _ := m.calls.LoadOrStore(k, s)
	return v.(*callSeries)
}

func (m *Metrics) resolveTarget(k targetKey) *targetSeries {
	class, code := classNames[k.class], codeLabel(k.code)
	s := &targetSeries{
		requests: m.upstreamRequests.WithLabelValues(k.upstream, k.target, class, code),
		duration: m.upstreamDuration.WithLabelValues(k.upstream, k.target),
	}
	v, _ := m.targets.LoadOrStore(k, s)
	return v.(*targetSeries)
}

// consumerLabel returns name's label value: itself for the first
// maxConsumers names seen, else OtherConsumer.
func (m *Metrics) consumerLabel(name string) string {
	m.consumerMu.Lock()
	defer m.consumerMu.Unlock()
	if v, ok := m.consumers[name]; ok {
		return v
	}
	if len(m.consumers) >= m.maxConsumers {
		return OtherConsumer
	}
	m.consumers[name] = name
	return name
}

// RefusalReason is the reason label of a policy refusal:
// missing_credentials when the call carried no credential, else its gRPC
// code in snake case (unauthenticated, permission_denied,
// resource_exhausted, unavailable).
func RefusalReason(e *call.Error) string {
	if policy.IsMissingCredentials(e) {
		return "missing_credentials"
	}
	if int(e.Code) < len(snakeCodes) {
		return snakeCodes[e.Code]
	}
	return "unknown"
}

func pluginLabel(p string) string {
	if p == "" {
		return "gateway"
	}
	return p
}

// serverCode reports whether a gRPC code says the call failed on the
// server's side.
func serverCode(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// statusClass maps an HTTP status to 1..5 (0: none).
func statusClass(status int) uint8 {
	if status >= 100 && status < 600 {
		return uint8(status / 100)
	}
	return 0
}

var classNames = [...]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

func httpVersion(major uint8) string {
	switch major {
	case 2:
		return "2"
	case 3:
		return "3"
	}
	return "1.1"
}

// codeLabels are the grpc_code label values: the codes' Go names, as
// grpc-ecosystem's interceptors write them ("OK", "NotFound").
var codeLabels = func() (t [17]string) {
	for i := range t {
		t[i] = codes.Code(i).String()
	}
	return t
}()

func codeLabel(c int8) string {
	if c < 0 || int(c) >= len(codeLabels) {
		return ""
	}
	return codeLabels[c]
}

var snakeCodes = [...]string{
	"ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
	"already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
	"aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
	"unauthenticated",
}
