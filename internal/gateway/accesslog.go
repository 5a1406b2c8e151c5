package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
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

// withAccessLog writes one Info line per call, at the edge, with stable
// keys: inbound, http (the HTTP version), method, procedure, status, code
// (the gRPC code when the answer carries one), duration, bytes_in,
// bytes_out, error_id, consumer (when the policy chain identified one),
// cache (HIT, MISS or STALE, when a response cache handled it). It costs
// nothing when Info is disabled. Headers, tokens and bodies are never
// logged.
func withAccessLog(logger *slog.Logger, next func(http.ResponseWriter, *http.Request, call.Protocol)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto := transcoder.Detect(r)
		if !logger.Enabled(r.Context(), slog.LevelInfo) {
			next(w, r, proto)
			return
		}
		start := time.Now()
		rec := &accessRecorder{ResponseWriter: w}
		rep := &call.Report{}
		r = r.WithContext(call.WithReport(r.Context(), rep))
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		defer func() {
			status := rec.status
			if status == 0 {
				status = http.StatusOK
				if r.Context().Err() != nil {
					status = 499 // the client went away before an answer
				}
			}
			var in int64
			if body != nil {
				in = body.n.Load()
			}
			attrs := []slog.Attr{
				slog.String("inbound", proto.String()),
				slog.String("http", httpVersion(r.ProtoMajor)),
				slog.String("method", r.Method),
				slog.String("procedure", r.URL.Path),
				slog.Int("status", status),
			}
			h := rec.Header()
			code := h.Get("Grpc-Status")
			if code == "" {
				code = h.Get(http.TrailerPrefix + "Grpc-Status")
			}
			if code != "" {
				if n, err := strconv.Atoi(code); err == nil {
					attrs = append(attrs, slog.Int("code", n))
				}
			}
			attrs = append(attrs,
				slog.Duration("duration", time.Since(start)),
				slog.Int64("bytes_in", in),
				slog.Int64("bytes_out", rec.bytes))
			if id := h.Get(transcoder.ErrorIDHeader); id != "" {
				attrs = append(attrs, slog.String("error_id", id))
			}
			if rep.Consumer != "" {
				attrs = append(attrs, slog.String("consumer", rep.Consumer))
			}
			if c := h.Get("X-Cache"); c != "" {
				attrs = append(attrs, slog.String("cache", c))
			}
			logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelInfo, "access", attrs...)
		}()
		next(rec, r, proto)
	})
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
