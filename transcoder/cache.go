package transcoder

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy/cache"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// Caches finds the response cache (the proxy-cache plugin) of RPC
// methods.
type Caches interface {
	// CacheForMethod returns the cache of the method fullName
	// ("pkg.Service.Method") and the config route it applies for; nil
	// when none applies.
	CacheForMethod(fullName string) (*cache.Cache, string)
}

// CacheConn returns conn with a response cache in front of its unary
// calls: a call of a method that has a cache, which the cache admits
// ([cache.Cache.Admits]: a GET, or a side-effect-free method with
// no_side_effects, without credentials no plugin checked), is answered
// from the cache or fills it; every other call, and every stream, goes to
// conn as it is. What it needs of the call comes from the call's
// [upstream.CallInfo] (the dialect's [WithUpstreamInfo]), and it reports
// there what it did, for [SetCacheHeaders].
//
// Entries hold the response message's wire bytes and its header and
// trailer metadata, keyed by the method and the request message's wire
// bytes, whatever the protocol: a REST GET, a Connect GET, a gRPC-Web
// call and a gRPC call of the same request share one. A caller passing
// *[]byte (the raw codec) gets the entry's bytes without a copy and must
// not modify them; a caller passing a proto.Message gets them decoded.
// Header and trailer metadata given back are the entry's, read-only.
func CacheConn(conn grpc.ClientConnInterface, caches Caches) grpc.ClientConnInterface {
	return &cacheConn{next: conn, caches: caches}
}

// cacheConn is [CacheConn]'s connection.
type cacheConn struct {
	next   grpc.ClientConnInterface
	caches Caches
	paths  sync.Map // "/pkg.Service/Method" → *methodCache
}

// methodCache is what a method path resolves to.
type methodCache struct {
	c     *cache.Cache // nil: none
	route string
}

// lookup resolves a method path, once per path.
func (cc *cacheConn) lookup(path string) *methodCache {
	if v, ok := cc.paths.Load(path); ok {
		return v.(*methodCache)
	}
	mc := &methodCache{}
	if svc, m, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/"); ok {
		mc.c, mc.route = cc.caches.CacheForMethod(svc + "." + m)
	}
	v, _ := cc.paths.LoadOrStore(path, mc)
	return v.(*methodCache)
}

// CacheFor returns the cache that conn (from [CacheConn]) keeps for the
// unary method path, nil when there is none.
func CacheFor(conn grpc.ClientConnInterface, path string) *cache.Cache {
	cc, ok := conn.(*cacheConn)
	if !ok {
		return nil
	}
	return cc.lookup(path).c
}

// CacheRoute returns the cache that conn (from [CacheConn]) keeps for
// the unary method path and the config route it applies for; nil when
// there is none.
func CacheRoute(conn grpc.ClientConnInterface, path string) (*cache.Cache, string) {
	cc, ok := conn.(*cacheConn)
	if !ok {
		return nil, ""
	}
	mc := cc.lookup(path)
	return mc.c, mc.route
}

// Cacheable reports whether conn (from [CacheConn]) would answer a unary
// call of method path made with ctx (which carries the call's
// [upstream.CallInfo]) from its cache: the dialects that stream unary
// calls (gRPC-Web, the gRPC handler path) make such calls with Invoke.
func Cacheable(ctx context.Context, conn grpc.ClientConnInterface, path string) bool {
	c := CacheFor(conn, path)
	if c == nil {
		return false
	}
	ci := upstream.CallInfoFrom(ctx)
	return ci != nil && ci.Call != nil && c.Admits(ci.Call, NoSideEffects(ci.Call.Method))
}

// NoSideEffects reports whether md's idempotency_level is
// NO_SIDE_EFFECTS.
func NoSideEffects(md protoreflect.MethodDescriptor) bool {
	if md == nil {
		return false
	}
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	return opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

// Invoke answers a cacheable unary call from the cache, else calls conn.
func (cc *cacheConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	mc := cc.lookup(method)
	if mc.c == nil {
		return cc.next.Invoke(ctx, method, args, reply, opts...)
	}
	ci := upstream.CallInfoFrom(ctx)
	if ci == nil || ci.Call == nil || !mc.c.Admits(ci.Call, NoSideEffects(ci.Call.Method)) {
		return cc.next.Invoke(ctx, method, args, reply, opts...)
	}
	f := rpcFetches.Get().(*rpcFetch)
	f.next, f.method, f.opts = cc.next, method, opts
	switch a := args.(type) {
	case *[]byte:
		f.req = *a
	case proto.Message:
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
		if err != nil {
			f.release()
			return cc.next.Invoke(ctx, method, args, reply, opts...)
		}
		f.req = b
	default:
		f.release()
		return cc.next.Invoke(ctx, method, args, reply, opts...)
	}
	mc.c.RPCKey(&f.key, mc.route, method, f.req, ci.Call)
	res, err := mc.c.Do(ctx, &f.key, f)
	f.release() // Do keeps neither (a fetch that outlives it uses a copy)
	if err != nil {
		return err
	}
	e := res.Entry
	switch r := reply.(type) {
	case *[]byte:
		*r = e.Body
	case proto.Message:
		if err := proto.Unmarshal(e.Body, r); err != nil {
			return err
		}
	}
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = metadata.MD(e.Header)
		case grpc.TrailerCallOption:
			*o.TrailerAddr = metadata.MD(e.Trailer)
		}
	}
	ci.Cache, ci.CacheAge = res.Status, res.Age
	return nil
}

// NewStream opens a stream on conn: streams are never cached.
func (cc *cacheConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return cc.next.NewStream(ctx, desc, method, opts...)
}

// rpcFetch is one cacheable call: its key and what a fetch of it sends.
// Pooled: a hit allocates nothing.
type rpcFetch struct {
	key    cache.Key
	next   grpc.ClientConnInterface
	method string
	req    []byte
	opts   []grpc.CallOption
}

var rpcFetches = sync.Pool{New: func() any { return new(rpcFetch) }}

func (f *rpcFetch) release() {
	*f = rpcFetch{}
	rpcFetches.Put(f)
}

// Detach returns a copy of f that owns its request bytes.
func (f *rpcFetch) Detach() cache.Fetcher {
	return &rpcFetch{next: f.next, method: f.method, req: append([]byte(nil), f.req...), opts: append([]grpc.CallOption(nil), f.opts...)}
}

// Fetch calls the upstream with the raw codec, keeping the caller's
// options but those that receive the answer.
func (f *rpcFetch) Fetch(ctx context.Context) (*cache.Entry, bool, error) {
	var resp []byte
	var hdr, trl metadata.MD
	opts := make([]grpc.CallOption, 0, len(f.opts)+3)
	for _, o := range f.opts {
		switch o.(type) {
		case grpc.HeaderCallOption, grpc.TrailerCallOption, grpc.ForceCodecV2CallOption, grpc.ForceCodecCallOption, grpc.ContentSubtypeCallOption:
			continue
		}
		opts = append(opts, o)
	}
	opts = append(opts, RawCall, grpc.Header(&hdr), grpc.Trailer(&trl))
	req := f.req
	if err := f.next.Invoke(ctx, f.method, &req, &resp, opts...); err != nil {
		return nil, false, err
	}
	return &cache.Entry{Header: hdr, Trailer: trl, Body: resp, Control: cache.ParseControl(hdr["cache-control"])}, true, nil
}

// SetCacheHeaders writes what the response cache did with the call made
// with ctx on the answer's header: X-Cache (HIT, MISS or STALE) and, for
// answers from the cache, Age in seconds. Nothing when no cache handled
// the call. Over gRPC these are the x-cache and age header metadata.
func SetCacheHeaders(h http.Header, ctx context.Context) {
	if ci := upstream.CallInfoFrom(ctx); ci != nil {
		WriteCacheStatus(h, ci.Cache, ci.CacheAge)
	}
}

// WriteCacheStatus writes X-Cache for s and, unless s is a miss, Age
// (age seconds) on h; nothing for CacheNone.
func WriteCacheStatus(h http.Header, s call.CacheStatus, age int64) {
	if s == call.CacheNone {
		return
	}
	h["X-Cache"] = cacheStatusValues[s]
	if s != call.CacheMiss {
		if age < int64(len(smallAges)) {
			h["Age"] = smallAges[age : age+1 : age+1]
		} else {
			h["Age"] = []string{strconv.FormatInt(age, 10)}
		}
	}
}

// smallAges are the Age values of the first minute, shared (never
// modified; each slice handed out is full, so appending copies).
var smallAges = func() []string {
	out := make([]string, 60)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}()

// cacheStatusValues are the X-Cache values, shared (never modified).
var cacheStatusValues = [...][]string{
	call.CacheMiss:  {"MISS"},
	call.CacheHit:   {"HIT"},
	call.CacheStale: {"STALE"},
}

var _ grpc.ClientConnInterface = (*cacheConn)(nil)
