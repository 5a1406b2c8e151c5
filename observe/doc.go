// Package observe is what the gateway tells operators about its calls,
// beside the access log: Prometheus metrics ([Metrics]), OpenTelemetry
// traces ([Tracing]) and request IDs ([RequestID]).
//
// It owns the metric names and labels, the tracer setup from the
// config's tracing block, and the request-ID rules. It does not see
// requests itself: internal/gateway calls it from the edge (where the
// access log is written) and from the gRPC frame relay, so that both
// paths count, trace and identify calls the same way. The admin listener
// serves [Metrics.Handler] at /metrics.
//
// # Metrics
//
// Every call is counted once, when the gateway's side of it ends:
//
//   - rosetta_requests_total (counter), rosetta_request_duration_seconds
//     (histogram, [DurationBuckets]) and rosetta_request_errors_total
//     (counter: 5xx answers and gRPC codes that mean a server-side
//     failure; policy refusals are not errors), labelled protocol (the
//     ingress protocol: rest, grpc, grpc_web, connect, websocket, sse,
//     http), http_version (1.1, 2, 3), route (the config route: a
//     selector or a uri; "" when none covers the call), method
//     (/pkg.Service/Method; "" on uri routes), upstream, status_class
//     (1xx..5xx) and grpc_code (OK, NotFound, ...; "" when the answer
//     carries none);
//   - rosetta_upstream_requests_total and
//     rosetta_upstream_request_duration_seconds, by upstream and target
//     (the calls that reached a target);
//   - rosetta_consumer_requests_total, by consumer (the identity the
//     policy chain established; past [Options.MaxConsumers] distinct
//     names, [OtherConsumer]), protocol, route, status_class and
//     grpc_code;
//   - rosetta_policy_refusals_total, by plugin, reason
//     (missing_credentials, or the code in snake case), protocol and
//     route;
//   - rosetta_requests_in_flight and rosetta_open_streams (by protocol:
//     streaming RPCs, SSE streams, WebSockets).
//
// The gateway's state is read at scrape time ([State]): upstream targets'
// health, ejection, availability, calls in flight and breaker refusals;
// retries and the retry budget's refusals; proxy-cache hits, misses and
// stale answers (rosetta_cache_requests_total{result}); rate-limiting's
// fail-opens; the descriptor snapshot version, refreshes, refresh errors
// and problems; the config generation, reloads by result
// (rosetta_config_reloads_total{result="success"|"failure"}), the last
// reload's outcome and the running config's load time.
//
// # Traces
//
// With a tracing block, every call is one server span, the child of the
// client's W3C trace context when it sent one, named
// "pkg.Service/Method" (RPCs) or "<HTTP method> <uri route>", with the
// attributes rosetta.protocol, rosetta.route, rosetta.upstream,
// rosetta.request_id, http.request.method, url.path,
// http.response.status_code, rpc.system/service/method and
// rpc.grpc.status_code. The upstream receives a traceparent (and the
// client's tracestate) whose parent is that span, sampled or not.
//
// # Request IDs
//
// A client's X-Request-Id (x-request-id metadata on gRPC) is kept when it
// is 1 to 128 characters of [A-Za-z0-9._:-]; otherwise, or when absent,
// the gateway makes one. Either way it is sent upstream, returned in the
// response head, written in the access line and set on the span.
//
// It is a top-level package rather than internal: its metric names,
// labels and span attributes are a contract with operators, and admin/
// mounts its handler.
package observe
