package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	grpcdialect "github.com/rosetta-gateway/rosetta/transcoder/grpc"
	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// interceptGRPC hands gRPC calls that arrive over HTTP/2 to the frame
// relay (grpcdialect.Proxy.Relay), which forwards them without a
// goroutine per call. Everything else, and gRPC calls the relay cannot
// take (local services, CORS requests from a browser, unknown methods,
// upstreams still connecting), goes to the one handler.
func (g *Gateway) interceptGRPC(s *h2.Stream, head *h2.RequestHead) h2.Events {
	if g.noRelay || !transcoder.IsGRPC(head.Get("content-type")) || g.local.owns(head.Path) {
		return nil
	}
	st := g.state.Load()
	if st == nil || st.grpc.Caches(head.Path) {
		return nil // the relay cannot answer from a response cache
	}
	if st.gen.cors != nil && head.Get("origin") != "" {
		return nil // CORS headers are added by the handler
	}
	var done func(*grpcdialect.RelayResult)
	if g.access.Enabled(head.Context, slog.LevelInfo) {
		start := time.Now()
		done = func(res *grpcdialect.RelayResult) { g.logRelayed(head, start, res) }
	}
	return st.grpc.Relay(s, head, done)
}

// logRelayed writes the access line of a relayed call, with the keys and
// meanings of withAccessLog's.
func (g *Gateway) logRelayed(head *h2.RequestHead, start time.Time, res *grpcdialect.RelayResult) {
	status := 200
	if !res.HasCode {
		status = 499 // the client went away before an answer
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("inbound", call.GRPC.String()),
		slog.String("http", "2"),
		slog.String("method", head.Method),
		slog.String("procedure", head.Path),
		slog.Int("status", status))
	if res.HasCode {
		attrs = append(attrs, slog.Int("code", int(res.Code)))
	}
	attrs = append(attrs,
		slog.Duration("duration", time.Since(start)),
		slog.Int64("bytes_in", res.BytesIn),
		slog.Int64("bytes_out", res.BytesOut))
	if res.ErrorID != "" {
		attrs = append(attrs, slog.String("error_id", res.ErrorID))
	}
	if res.Consumer != "" {
		attrs = append(attrs, slog.String("consumer", res.Consumer))
	}
	g.access.LogAttrs(context.WithoutCancel(head.Context), slog.LevelInfo, "access", attrs...)
}
