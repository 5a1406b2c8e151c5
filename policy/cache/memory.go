package cache

import (
	"context"
	"crypto/sha256"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Memory is an in-process [Store]: least-recently-used entries are
// dropped to keep the whole under a byte budget. It is split into shards
// (by key) so that calls on different keys rarely wait for each other;
// each shard keeps an equal part of the budget, and at least the largest
// entry.
type Memory struct {
	shards []memShard
	mask   uint8
}

type memShard struct {
	mu    sync.Mutex
	lru   *simplelru.LRU[[sha256.Size]byte, *memEntry]
	bytes int64
	max   int64
	_     [40]byte // keep shards on their own cache lines
}

// memEntry is an entry with the route and resource purges match on.
type memEntry struct {
	e               *Entry
	route, resource string
}

// maxShards bounds the shards of a Memory store (a power of two).
const maxShards = 16

// NewMemory returns a store of at most maxBytes, whose largest entry is
// maxEntryBytes.
func NewMemory(maxBytes, maxEntryBytes int64) *Memory {
	n := 1
	for n < maxShards && maxBytes/int64(n*2) >= maxEntryBytes+entryOverhead {
		n *= 2
	}
	m := &Memory{shards: make([]memShard, n), mask: uint8(n - 1)}
	for i := range m.shards {
		s := &m.shards[i]
		s.max = maxBytes / int64(n)
		// The LRU's own count bound is never the one that binds: the
		// byte budget is.
		s.lru, _ = simplelru.NewLRU[[sha256.Size]byte, *memEntry](math.MaxInt, func(_ [sha256.Size]byte, v *memEntry) {
			s.bytes -= v.e.size
		})
	}
	return m
}

func (m *Memory) shard(k *Key) *memShard { return &m.shards[k.Sum[0]&m.mask] }

// Get returns the entry under k. It does not allocate.
func (m *Memory) Get(_ context.Context, k *Key) (*Entry, error) {
	s := m.shard(k)
	s.mu.Lock()
	v, ok := s.lru.Get(k.Sum)
	s.mu.Unlock()
	if !ok {
		return nil, nil
	}
	return v.e, nil
}

// Set stores e under k, dropping the least recently used entries of its
// shard while the shard is over its budget. An entry larger than a shard
// is not stored. ttl is not used: the cache checks times itself, and
// expired entries go as the LRU drops them or as calls meet them.
func (m *Memory) Set(_ context.Context, k *Key, e *Entry, _ time.Duration) error {
	s := m.shard(k)
	if e.size > s.max {
		return nil
	}
	v := &memEntry{e: e, route: k.Route, resource: k.Resource}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.lru.Peek(k.Sum); ok {
		s.bytes -= old.e.size // Add replaces without the eviction callback
	}
	s.lru.Add(k.Sum, v)
	s.bytes += e.size
	for s.bytes > s.max {
		if _, _, ok := s.lru.RemoveOldest(); !ok {
			break
		}
	}
	return nil
}

// Delete drops the entry under k.
func (m *Memory) Delete(_ context.Context, k *Key) error {
	s := m.shard(k)
	s.mu.Lock()
	s.lru.Remove(k.Sum)
	s.mu.Unlock()
	return nil
}

// Purge drops the matching entries (see [Store.Purge]).
func (m *Memory) Purge(_ context.Context, route string, allRoutes bool, resource string) (int, error) {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for _, k := range s.lru.Keys() {
			v, _ := s.lru.Peek(k)
			if (allRoutes || v.route == route) && (resource == "" || v.resource == resource) {
				s.lru.Remove(k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n, nil
}

// Bytes returns what the store's entries count for, in bytes.
func (m *Memory) Bytes() int64 {
	var n int64
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += s.bytes
		s.mu.Unlock()
	}
	return n
}

// Close drops every entry.
func (m *Memory) Close() error {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		s.lru.Purge()
		s.mu.Unlock()
	}
	return nil
}

var _ Store = (*Memory)(nil)
