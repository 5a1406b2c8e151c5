package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
)

// accessRecorder wraps a ResponseWriter to see what the access log needs:
// the status, the bytes written, and (through Header) the gRPC status and
// error ID. Unwrap lets http.ResponseController, httputil.ReverseProxy and
// coder/websocket reach the real writer for Flush, Hijack and full duplex.
type accessRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (a *accessRecorder) WriteHeader(code int) {
	if a.status == 0 && code >= 200 {
		a.status = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *accessRecorder) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	n, err := a.ResponseWriter.Write(b)
	a.bytes += int64(n)
	return n, err
}

// Flush flushes the wrapped writer; grpc-go's ServeHTTP (the gateway's own
// reflection and health) asserts http.Flusher instead of using Unwrap.
func (a *accessRecorder) Flush() {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	_ = http.NewResponseController(a.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer.
func (a *accessRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// countingBody counts the request bytes an adapter reads.
// The count is atomic: a proxied body may still be read by the upstream
// transport's goroutine after the handler returns.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// accessLine is one call's access line. The edge (observe.go) and the
// relay (relay.go) write one per call, with the same keys.
type accessLine struct {
	inbound           call.Protocol
	http              int // the HTTP major version
	method, procedure string
	status            int
	code              codes.Code
	hasCode           bool
	duration          time.Duration
	bytesIn, bytesOut int64
	errorID, consumer string
	cache, requestID  string
	upstream          string
}

// logAccess writes one Info line per call, at the edge, with stable
// keys: inbound (the protocol, as the metrics' protocol label: sse for a
// REST server stream as Server-Sent Events, http for a uri route), http
// (the HTTP version), method, procedure, status, code (the gRPC code when
// the answer carries one: in a grpc-status field, a REST error's
// google.rpc.Status, a gRPC-Web trailer frame, a Connect error or end of
// stream, a WebSocket status frame), duration, bytes_in, bytes_out,
// error_id, request_id, upstream (when the call was routed to one),
// consumer (when the policy chain identified one), cache (HIT, MISS or
// STALE, when a response cache handled it). Callers skip it when Info is
// disabled. Headers, tokens and bodies are never logged.
func (g *Gateway) logAccess(ctx context.Context, a *accessLine) {
	attrs := make([]slog.Attr, 0, 15)
	attrs = append(attrs,
		slog.String("inbound", a.inbound.String()),
		slog.String("http", httpVersion(a.http)),
		slog.String("method", a.method),
		slog.String("procedure", a.procedure),
		slog.Int("status", a.status))
	if a.hasCode {
		attrs = append(attrs, slog.Int("code", int(a.code)))
	}
	attrs = append(attrs,
		slog.Duration("duration", a.duration),
		slog.Int64("bytes_in", a.bytesIn),
		slog.Int64("bytes_out", a.bytesOut))
	if a.errorID != "" {
		attrs = append(attrs, slog.String("error_id", a.errorID))
	}
	attrs = append(attrs, slog.String("request_id", a.requestID))
	if a.upstream != "" {
		attrs = append(attrs, slog.String("upstream", a.upstream))
	}
	if a.consumer != "" {
		attrs = append(attrs, slog.String("consumer", a.consumer))
	}
	if a.cache != "" {
		attrs = append(attrs, slog.String("cache", a.cache))
	}
	g.access.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "access", attrs...)
}

// httpVersion names an HTTP major version as the access log shows it.
func httpVersion(major int) string {
	switch major {
	case 2:
		return "2"
	case 3:
		return "3"
	}
	return "1.1"
}
