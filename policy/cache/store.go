package cache

import (
	"context"
	"time"
)

// Store keeps entries. Implementations are safe for concurrent use.
type Store interface {
	// Get returns the entry stored under k, or nil. It may return an
	// entry past its time; the cache checks. An error (Redis
	// unreachable) is a miss to the caller.
	Get(ctx context.Context, k *Key) (*Entry, error)
	// Set stores e under k for ttl (after which the store may drop it).
	// A store may refuse an entry (too large) without error.
	Set(ctx context.Context, k *Key, e *Entry, ttl time.Duration) error
	// Delete drops the entry under k.
	Delete(ctx context.Context, k *Key) error
	// Purge drops the entries of route (all routes when allRoutes) whose
	// resource is resource (any when ""), and returns how many it
	// dropped.
	Purge(ctx context.Context, route string, allRoutes bool, resource string) (int, error)
	// Close releases the store's resources.
	Close() error
}
