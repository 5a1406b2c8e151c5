package call

// CacheStatus is what a response cache did with one call: the value of
// the X-Cache response header (x-cache metadata for gRPC clients).
type CacheStatus uint8

// The cache statuses. The zero value means no cache handled the call.
const (
	// CacheNone: no cache applied to the call (none configured, or the
	// call is not one a cache may answer).
	CacheNone CacheStatus = iota
	// CacheMiss: the answer came from the upstream (and may have been
	// stored).
	CacheMiss
	// CacheHit: the answer came from the cache, fresh.
	CacheHit
	// CacheStale: the answer came from the cache past its freshness,
	// while one call refreshes it (stale-while-revalidate).
	CacheStale
)

// String returns "MISS", "HIT", "STALE", or "" for CacheNone.
func (s CacheStatus) String() string {
	switch s {
	case CacheMiss:
		return "MISS"
	case CacheHit:
		return "HIT"
	case CacheStale:
		return "STALE"
	}
	return ""
}
