package cache

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
)

// Cache is one proxy-cache plugins entry: its settings, its store, the
// calls in flight to fill it and its counters. It is safe for concurrent
// use.
//
// What it stores: a successful answer (gRPC OK; HTTP 200, 203 or 204
// without Set-Cookie) of at most max_entry_bytes, unless the backend's
// Cache-Control says no-store or no-cache. An answer marked private is
// stored only under a key that holds the caller's consumer (key:
// includes consumer and the call was authenticated): that entry can
// reach no one else. The backend's s-maxage, else max-age, shortens the
// ttl (never lengthens it); its stale-while-revalidate lengthens the
// stale window when longer than the configured one; must-revalidate
// turns the stale window off.
type Cache struct {
	ttl, swr      time.Duration
	maxEntry      int64
	noSideEffects bool
	vary          []string // lower-case
	parts         []keyPart
	trusted       []netip.Prefix
	store         Store
	now           func() time.Time
	fetchTimeout  time.Duration

	flight singleflight.Group

	refreshMu  sync.Mutex
	refreshing map[[32]byte]struct{}
	wg         sync.WaitGroup
	closed     atomic.Bool

	hits, misses, stale, waiting atomic.Int64
}

// Option configures [New].
type Option func(*Cache)

// WithClock makes the cache read time from now (tests, simulations).
// Default time.Now.
func WithClock(now func() time.Time) Option { return func(c *Cache) { c.now = now } }

// WithTrustedProxies sets the trusted_proxies that key: ip believes
// X-Forwarded-For from.
func WithTrustedProxies(list []string) Option {
	return func(c *Cache) { c.trusted = parseTrusted(list) }
}

// defaultFetchTimeout bounds a fetch whose call has no deadline the
// gateway may announce (it goes on when its first caller gives up, for
// the others waiting on it and for the store).
const defaultFetchTimeout = time.Minute

// New returns the cache of cfg (a validated proxy-cache entry) on store.
func New(cfg *config.ProxyCache, store Store, opts ...Option) *Cache {
	c := &Cache{
		ttl:           cfg.TTL.Std(),
		swr:           cfg.StaleWhileRevalidate.Std(),
		maxEntry:      cfg.MaxEntryBytes.Bytes(),
		noSideEffects: cfg.NoSideEffects,
		store:         store,
		now:           time.Now,
		fetchTimeout:  defaultFetchTimeout,
		refreshing:    map[[32]byte]struct{}{},
	}
	if c.maxEntry <= 0 {
		c.maxEntry = int64(config.MiB)
	}
	for _, h := range cfg.Vary {
		c.vary = append(c.vary, strings.ToLower(h))
	}
	for _, k := range cfg.Key {
		switch {
		case k == "consumer":
			c.parts = append(c.parts, keyPart{kind: partConsumer})
		case k == "ip":
			c.parts = append(c.parts, keyPart{kind: partIP})
		case strings.HasPrefix(k, "header:"):
			c.parts = append(c.parts, keyPart{kind: partHeader, name: strings.ToLower(k[len("header:"):])})
		}
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// SetClock replaces the cache's clock; call it before the cache is used
// (tests that build the cache through the gateway).
func (c *Cache) SetClock(now func() time.Time) { c.now = now }

// Now returns the cache's time in Unix nanoseconds, for [Entry.AgeAt].
func (c *Cache) Now() int64 { return c.now().UnixNano() }

// MaxEntryBytes is the largest body stored.
func (c *Cache) MaxEntryBytes() int64 { return c.maxEntry }

// Vary returns the configured vary header names, lower case.
func (c *Cache) Vary() []string { return c.vary }

// Admits reports whether the cache may answer cl: a GET (REST GET
// bindings, Connect GET, plain HTTP GET), or, with no_side_effects, a
// call of a method whose idempotency_level is NO_SIDE_EFFECTS
// (noSideEffects) on any protocol; and not a call that carries
// credentials (Authorization, Cookie, a WebSocket bearer token) that no
// plugin authenticated: the backend may judge those itself, so such an
// answer is the caller's alone. It does not allocate.
func (c *Cache) Admits(cl *call.Call, noSideEffects bool) bool {
	if cl.HTTPMethod != "GET" && (!c.noSideEffects || !noSideEffects) {
		return false
	}
	if cl.Consumer == "" && (cl.Bearer != "" || cl.Header != nil &&
		(cl.Header.Get("authorization") != "" || cl.Header.Get("cookie") != "")) {
		return false
	}
	return true
}

// Fetcher asks the backend for the answer of a key.
type Fetcher interface {
	// Fetch returns the answer and whether it is a success the cache may
	// keep (the cache then applies the size bound and e.Control). ctx is
	// not the caller's own: a fetch outlives the call that started it
	// when others wait for it, and a background refresh runs after its
	// call ended, so a Fetcher must not hold on to the call's reusable
	// buffers.
	Fetch(ctx context.Context) (e *Entry, ok bool, err error)
}

// FetchFunc is a function as a [Fetcher].
type FetchFunc func(ctx context.Context) (*Entry, bool, error)

// Fetch calls f.
func (f FetchFunc) Fetch(ctx context.Context) (*Entry, bool, error) { return f(ctx) }

// NoSideEffects reports whether no_side_effects is set: calls of
// side-effect-free methods are cached on every protocol, not only GETs.
func (c *Cache) NoSideEffects() bool { return c.noSideEffects }

// Result is how a call was answered.
type Result struct {
	// Entry is the answer (stored, or fresh from the backend).
	Entry *Entry
	// Status says where it came from.
	Status call.CacheStatus
	// Age is the answer's age in seconds (HIT and STALE).
	Age int64
}

// Do answers the call of key k: from the store while the entry is fresh
// (HIT), or stale within its window while one background call refreshes
// it (STALE), else from fetch (MISS), which concurrent callers of the
// same key share: one backend call for all of them. A fetch's error is
// every waiter's. A caller whose ctx ends stops waiting (the fetch goes
// on for the others). Answers the cache may not keep are not shared
// either: waiters on one call their backend themselves.
//
// k and fetch are not used once Do returns (a fetch that outlives it
// works on copies: see [Detacher]). A hit allocates nothing.
func (c *Cache) Do(ctx context.Context, k *Key, fetch Fetcher) (Result, error) {
	now := c.now().UnixNano()
	e, _ := c.store.Get(ctx, k)
	if e != nil {
		switch {
		case now < e.fresh:
			c.hits.Add(1)
			return Result{Entry: e, Status: call.CacheHit, Age: e.AgeAt(now)}, nil
		case now < e.stale:
			c.stale.Add(1)
			c.refresh(ctx, k, fetch)
			return Result{Entry: e, Status: call.CacheStale, Age: e.AgeAt(now)}, nil
		}
		_ = c.store.Delete(ctx, k)
	}
	c.misses.Add(1)
	kc, own := *k, detach(fetch)
	leader := false
	ch := c.flight.DoChan(string(k.Sum[:]), func() (any, error) {
		leader = true
		return c.fill(ctx, &kc, own)
	})
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	select {
	case res := <-ch:
		if res.Err != nil {
			return Result{Status: call.CacheMiss}, res.Err
		}
		e := res.Val.(*Entry)
		if !leader && !e.shared {
			e, _, err := fetch.Fetch(ctx)
			return Result{Entry: e, Status: call.CacheMiss}, err
		}
		return Result{Entry: e, Status: call.CacheMiss}, nil
	case <-ctx.Done():
		return Result{Status: call.CacheMiss}, status.FromContextError(ctx.Err()).Err()
	}
}

// Lookup answers the call of key k when the store holds a fresh entry
// for it (a HIT, counted as one), and reports false otherwise without
// counting anything: the caller then calls [Cache.Do], which counts the
// miss or the stale answer. It lets a dialect skip building the upstream
// call on a hit. It allocates nothing (with the memory store).
func (c *Cache) Lookup(ctx context.Context, k *Key) (Result, bool) {
	now := c.now().UnixNano()
	e, _ := c.store.Get(ctx, k)
	if e == nil || now >= e.fresh {
		return Result{}, false
	}
	c.hits.Add(1)
	return Result{Entry: e, Status: call.CacheHit, Age: e.AgeAt(now)}, true
}

// Detacher is implemented by fetchers that refer to memory of their call
// (pooled buffers): Detach returns a fetcher that works on copies, for a
// fetch that may outlive the call (a coalesced miss whose first caller
// gave up, a background refresh).
type Detacher interface {
	Detach() Fetcher
}

func detach(f Fetcher) Fetcher {
	if d, ok := f.(Detacher); ok {
		return d.Detach()
	}
	return f
}

// fill runs fetch on a context of its own and stores what it may.
func (c *Cache) fill(ctx context.Context, k *Key, fetch Fetcher) (*Entry, error) {
	fctx, cancel := c.detach(ctx)
	defer cancel()
	e, ok, err := fetch.Fetch(fctx)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, status.Error(codes.Internal, "cache: fetch returned no answer")
	}
	now := c.now().UnixNano()
	e.stored = now - int64(e.Age)
	if !ok || int64(len(e.Body)) > c.maxEntry {
		return e, nil
	}
	fresh, stale, ok := e.Control.Lifetime(c.ttl, c.swr, e.Age, k.private)
	if !ok {
		return e, nil
	}
	e.fresh = now + int64(fresh)
	e.stale = e.fresh + int64(stale)
	e.shared = true
	fullSlices(e.Header)
	fullSlices(e.Trailer)
	e.computeSize()
	_ = c.store.Set(fctx, k, e, fresh+stale)
	return e, nil
}

// fullSlices makes every value slice of m full (len == cap), so that
// appending to a shared one copies it.
func fullSlices(m map[string][]string) {
	for k, vs := range m {
		m[k] = vs[:len(vs):len(vs)]
	}
}

// refresh fetches k again in the background, unless a refresh of it is
// already running or the cache is closed.
func (c *Cache) refresh(ctx context.Context, k *Key, fetch Fetcher) {
	c.refreshMu.Lock()
	if _, busy := c.refreshing[k.Sum]; busy || c.closed.Load() {
		c.refreshMu.Unlock()
		return
	}
	c.refreshing[k.Sum] = struct{}{}
	c.wg.Add(1)
	c.refreshMu.Unlock()
	kc, fetch := *k, detach(fetch)
	// The refresh is no call's: the report of the call that started it
	// (call.Report: its target, for metrics and traces) is not written
	// by it, which would race with the call's end.
	ctx = call.WithReport(ctx, nil)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.refreshMu.Lock()
			delete(c.refreshing, kc.Sum)
			c.refreshMu.Unlock()
		}()
		_, _, _ = c.flight.Do(string(kc.Sum[:]), func() (any, error) {
			return c.fill(context.WithoutCancel(ctx), &kc, fetch)
		})
	}()
}

// detach returns a context for a fetch: ctx's values, its deadline if
// it announces one (else defaultFetchTimeout, enforced without being
// announced), and not its cancellation.
func (c *Cache) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(base, dl)
	}
	fctx, cancel := context.WithCancel(base)
	t := time.AfterFunc(c.fetchTimeout, cancel)
	return fctx, func() {
		t.Stop()
		cancel()
	}
}

// Stats are a cache's counters since it was built.
type Stats struct {
	// Hits, Misses and Stale count the calls answered HIT, MISS and
	// STALE.
	Hits, Misses, Stale int64
	// Waiting is the number of calls waiting now for a backend answer
	// (each miss, whether it made the backend call or shares another's).
	Waiting int64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(), Waiting: c.waiting.Load()}
}

// Purge drops the entries of route (every route when allRoutes) whose
// resource (a procedure, or a uri route's request path) is resource
// (any when ""), and returns how many it dropped.
func (c *Cache) Purge(ctx context.Context, route string, allRoutes bool, resource string) (int, error) {
	return c.store.Purge(ctx, route, allRoutes, resource)
}

// Close waits for background refreshes and closes the store.
func (c *Cache) Close() error {
	c.refreshMu.Lock()
	c.closed.Store(true)
	c.refreshMu.Unlock()
	c.wg.Wait()
	return c.store.Close()
}
