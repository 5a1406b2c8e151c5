package grpcweb

import (
	"context"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/rpc"
)

// serveCached answers a unary call that the backend connection's
// response cache takes (transcoder.Cacheable): one Invoke, which the
// cache answers or fills, rendered as a gRPC-Web response with X-Cache
// and Age headers. Errors are trailers-only, as on the streaming path.
func (h *Handler) serveCached(ctx context.Context, out *webWriter, r *http.Request, t *rpc.Target, req []byte) {
	var resp []byte
	var hdr, trl metadata.MD
	err := t.Backend.Conn.Invoke(ctx, t.Path, &req, &resp, transcoder.RawCall, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		h.fail(out, r, h.CallError(ctx, err), trl)
		return
	}
	if out.codec == "json" {
		js, err := h.ProtoToJSON(t.Method.Output(), resp)
		if err != nil {
			h.fail(out, r, call.FromError(err), trl)
			return
		}
		resp = js
	}
	transcoder.SetCacheHeaders(out.w.Header(), ctx)
	out.start(hdr)
	if err := out.frame(0, resp); err != nil {
		return // the client went away
	}
	out.finish(nil, trl, "")
}
