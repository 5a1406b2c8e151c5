package rest

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

const (
	metadataHeaderPrefix  = "Grpc-Metadata-"
	metadataTrailerPrefix = "Grpc-Trailer-"
)

// unary calls a unary method and writes its response.
// req is a *dynamicpb.Message, or wire bytes (*[]byte) on the fast path.
func (h *Handler) unary(ctx context.Context, w http.ResponseWriter, r *http.Request, p *binding.Plan, be transcoder.Backend, req any) {
	resp := p.NewResponse()
	var hdr, trl metadata.MD
	var err error
	if p.Fast != nil {
		err = be.Conn.Invoke(ctx, p.FullMethod, req, resp, transcoder.RawCall, grpc.Header(&hdr), grpc.Trailer(&trl))
	} else {
		err = be.Conn.Invoke(ctx, p.FullMethod, req, resp, grpc.Header(&hdr), grpc.Trailer(&trl))
	}
	transcoder.SetCacheHeaders(w.Header(), ctx)
	transcoder.SetResponseMetadata(w.Header(), metadataHeaderPrefix, hdr)
	trailers := acceptsTrailers(r)
	if !trailers {
		// The response is complete before it is written, so trailers can
		// travel as headers for clients that do not accept trailers.
		transcoder.SetResponseMetadata(w.Header(), metadataTrailerPrefix, trl)
	}
	if trailers {
		// Declared trailers make net/http send the body chunked, so the
		// trailers can follow it.
		declareTrailers(w.Header(), trl)
		defer transcoder.SetResponseMetadata(w.Header(), metadataTrailerPrefix, trl)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeMessage(w, r, p, resp)
}

// writeMessage answers 200 with one whole response message (a unary
// call's, or a client stream's single answer) as the HTTP body.
func (h *Handler) writeMessage(w http.ResponseWriter, r *http.Request, p *binding.Plan, resp any) {
	buf := jsonBuffers.Get().(*[]byte)
	defer jsonBuffers.Put(buf)
	ct, body, err := p.EncodeAny((*buf)[:0], resp, p.Int64Numbers || binding.WantsInt64Numbers(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	if cap(body) <= maxPooledBuffer {
		*buf = body[:0]
	}
}

// maxPooledBuffer bounds the buffers kept for reuse.
const maxPooledBuffer = 64 << 10

// jsonBuffers holds response JSON buffers (*[]byte) for reuse.
var jsonBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// declareTrailers announces the Grpc-Trailer-* trailers of md in the
// Trailer header.
func declareTrailers(h http.Header, md metadata.MD) {
	tmp := http.Header{}
	transcoder.SetResponseMetadata(tmp, metadataTrailerPrefix, md)
	for k := range tmp {
		h.Add("Trailer", k)
	}
}

// acceptsTrailers reports whether the client sent "TE: trailers".
func acceptsTrailers(r *http.Request) bool {
	for _, v := range r.Header.Values("Te") {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]), "trailers") {
				return true
			}
		}
	}
	return false
}
