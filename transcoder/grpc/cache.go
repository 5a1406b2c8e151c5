package grpc

import (
	"encoding/binary"
	"io"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/rpc"
)

// Caches reports whether unary calls of the method path may be answered
// by a response cache (Params.Cache gave one): the frame relay cannot
// cache, so it leaves them to [Proxy.Serve].
func (p *Proxy) Caches(path string) bool {
	rt, ok := p.routes[path]
	return ok && rt.cache != nil
}

// serveCached serves a unary call through the route's caching
// connection when its cache takes the call (transcoder.Cacheable): the
// request message is read whole, the call made with Invoke (answered
// from the cache or filling it), and the answer written as a gRPC
// response with x-cache and age header metadata. It reports false, having
// read and written nothing, for calls the cache does not take (a
// compressed request, credentials no plugin checked), which the caller
// proxies as usual.
func (p *Proxy) serveCached(w http.ResponseWriter, r *http.Request, rt *Route, adm *transcoder.Admission) bool {
	if enc := r.Header.Get("Grpc-Encoding"); enc != "" && enc != "identity" {
		return false
	}
	md, ce := rpc.RequestMetadata(r)
	if ce != nil {
		return false
	}
	adm.Metadata(md)
	ctx := transcoder.WithUpstreamInfo(metadata.NewOutgoingContext(r.Context(), md), r, rt.md, nil, adm, false)
	if !transcoder.Cacheable(ctx, rt.cache, r.URL.Path) {
		return false
	}
	var client time.Duration
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		d, err := transcoder.ParseGRPCTimeout(v)
		if err != nil {
			p.WriteError(w, r, call.Errorf(codes.Internal, "malformed grpc-timeout header %q: %v", v, err))
			return true
		}
		client = d
	}
	ctx, cancel := transcoder.CallDeadline(ctx, rt.limit(), client)
	defer cancel()

	maxReq, _ := messageLimits(rt.Upstream)
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(maxReq)+6))
	if err != nil {
		p.WriteError(w, r, call.Errorf(codes.Canceled, "read request: %v", err))
		return true
	}
	if len(body) < 5 {
		p.WriteError(w, r, call.Errorf(codes.Internal, "the request has no message: method %s takes one", rt.md.FullName()))
		return true
	}
	size := binary.BigEndian.Uint32(body[1:5])
	switch {
	case size > maxReq:
		p.WriteError(w, r, tooBigError(size, maxReq, rt.Upstream.Name))
		return true
	case body[0]&1 != 0:
		p.WriteError(w, r, call.Errorf(codes.Internal, "compressed message without grpc-encoding"))
		return true
	case uint64(len(body)) != 5+uint64(size):
		p.WriteError(w, r, call.Errorf(codes.Internal, "method %s takes exactly one request message", rt.md.FullName()))
		return true
	}
	req := body[5:]
	var resp []byte
	var hdr, trl metadata.MD
	if err := rt.cache.Invoke(ctx, r.URL.Path, &req, &resp, transcoder.RawCall, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
		p.WriteError(w, r, err)
		return true
	}
	h := w.Header()
	transcoder.SetResponseMetadata(h, "", hdr)
	transcoder.SetCacheHeaders(h, ctx)
	h.Set("Content-Type", "application/grpc")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	var prefix [5]byte
	binary.BigEndian.PutUint32(prefix[1:], uint32(len(resp)))
	if _, err := w.Write(prefix[:]); err == nil {
		_, _ = w.Write(resp)
	}
	h[http.TrailerPrefix+"Grpc-Status"] = grpcStatusOK
	transcoder.SetResponseMetadata(h, http.TrailerPrefix, trl)
	return true
}

// grpcStatusOK is the grpc-status of a successful call; never modified.
var grpcStatusOK = []string{"0"}
