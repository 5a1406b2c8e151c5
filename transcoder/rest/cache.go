package rest

import (
	"net/http"
	"sync"

	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy/cache"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
)

// keys holds cache keys for hit lookups.
var keys = sync.Pool{New: func() any { return new(cache.Key) }}

// jsonContentType is the Content-Type of JSON answers, shared (never
// modified; full, so appending copies).
var jsonContentType = []string{"application/json"}

// serveCacheHit answers a unary call on the wire-level fast path from
// the response cache of the route's backend connection
// (transcoder.CacheConn) when it holds a fresh answer, before the
// upstream call's context is built: a hit costs neither that nor a
// second JSON conversion of an answer this route already converted (the
// entry keeps the route's last rendering). It reports false, having
// written nothing, when the call goes the usual way: no cache, a call
// the cache does not take, or no fresh entry (the caching connection
// then counts the miss or serves the stale answer).
func (h *Handler) serveCacheHit(w http.ResponseWriter, r *http.Request, p *binding.Plan, be transcoder.Backend, adm *transcoder.Admission, req any) bool {
	wire, _ := req.(*[]byte)
	if p.Fast == nil || wire == nil {
		return false
	}
	c, route := transcoder.CacheRoute(be.Conn, p.FullMethod)
	if c == nil {
		return false
	}
	md := p.Route.Method
	var own call.Call
	cl := &own
	if adm != nil {
		cl = &adm.Call
	} else {
		own = call.Call{Method: md, HTTPMethod: r.Method, Header: call.HTTPHeader(r.Header), Peer: call.ParsePeer(r.RemoteAddr)}
	}
	if !c.Admits(cl, transcoder.NoSideEffects(md)) {
		return false
	}
	k := keys.Get().(*cache.Key)
	defer keys.Put(k)
	c.RPCKey(k, route, p.FullMethod, *wire, cl)
	res, ok := c.Lookup(r.Context(), k)
	if !ok {
		return false
	}
	e := res.Entry
	int64s := p.Int64Numbers || binding.WantsInt64Numbers(r)
	variant := uint8(0)
	if int64s {
		variant = 1
	}
	ct, body, ok := e.Rendering(p, variant)
	if !ok {
		var err error
		if ct, body, err = p.EncodeAny(nil, &e.Body, int64s); err != nil {
			return false // the usual path answers the same error
		}
		e.SetRendering(p, variant, ct, body)
	}
	hdr := w.Header()
	transcoder.SetResponseMetadata(hdr, metadataHeaderPrefix, metadata.MD(e.Header))
	trl := metadata.MD(e.Trailer)
	if acceptsTrailers(r) {
		declareTrailers(hdr, trl)
		defer transcoder.SetResponseMetadata(hdr, metadataTrailerPrefix, trl)
	} else {
		transcoder.SetResponseMetadata(hdr, metadataTrailerPrefix, trl)
	}
	transcoder.WriteCacheStatus(hdr, res.Status, res.Age)
	if ct == "application/json" {
		hdr["Content-Type"] = jsonContentType
	} else {
		hdr.Set("Content-Type", ct)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return true
}
