package gateway

import (
	"github.com/rosetta-gateway/rosetta/transcoder"
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
	st := g.acquire()
	if st == nil {
		return nil
	}
	if st.grpc.Caches(head.Path) || st.gen.cors != nil && head.Get("origin") != "" {
		// The relay cannot answer from a response cache; CORS headers
		// are added by the handler.
		st.gen.release()
		return nil
	}
	// observe.go: request ID, metrics, span, access log; the generation
	// is released when the call ends (or at once when the handler path
	// takes it).
	return g.relay(st, s, head)
}
