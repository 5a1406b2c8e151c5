package ratelimit

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// numShards splits a local store so that concurrent decisions on
// different keys rarely wait for the same lock. A power of two.
const numShards = 64

// DefaultMaxKeys bounds the keys one local store remembers (about 100
// bytes each) when no [WithMaxKeys] option is given.
const DefaultMaxKeys = 1 << 20

// capSweepEvery is the least time between two sweeps of a full shard.
const capSweepEvery = int64(100 * time.Millisecond)

// localStore holds the TATs of one limiter's keys in memory: the state of
// policy: local. It outlives config snapshots (it lives in policy.Shared)
// and is safe for concurrent use.
//
// Memory is bounded two ways. Idle keys (TAT in the past, so a fresh
// bucket would decide the same) are swept from a shard once per
// sweepEvery (the period, between 1s and 1m), by the decision that finds
// the sweep due; no goroutine runs for it. And a shard never holds more
// than maxPerShard keys: at the cap a new key sweeps the shard (at most
// every capSweepEvery) and then evicts one arbitrary key, which gets a
// full bucket back on its next call. An attacker who floods keys can at
// worst reset some other keys' counts; each of its own keys starts full
// anyway.
type localStore struct {
	base        time.Time // time zero of the TATs; monotonic with a real clock
	seed        maphash.Seed
	maxPerShard int
	sweepEvery  int64 // ns
	evicted     atomic.Uint64
	shards      [numShards]shard
}

type shard struct {
	mu        sync.Mutex
	tats      map[bucketKey]int64
	lastSweep int64
	_         [40]byte // keep hot shards on separate cache lines
}

func newLocalStore(base time.Time, period time.Duration, maxKeys int) *localStore {
	s := &localStore{
		base:        base,
		seed:        maphash.MakeSeed(),
		maxPerShard: max(1, (maxKeys+numShards-1)/numShards),
		sweepEvery:  int64(min(max(period, time.Second), time.Minute)),
	}
	for i := range s.shards {
		s.shards[i].tats = map[bucketKey]int64{}
	}
	return s
}

// shardOf picks k's shard from a seeded hash, so that crafted keys cannot
// pile onto one lock on purpose.
func (s *localStore) shardOf(k bucketKey) *shard {
	var h uint64
	if k.s != "" {
		h = maphash.String(s.seed, k.s)
	} else {
		a := k.addr.As16()
		h = maphash.Bytes(s.seed, a[:])
	}
	return &s.shards[h&(numShards-1)]
}

// take decides one call of key k at now (ns since s.base). It allocates
// nothing for a key it already holds.
func (s *localStore) take(k bucketKey, now, interval, limit int64) verdict {
	sh := s.shardOf(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now-sh.lastSweep >= s.sweepEvery {
		sh.sweep(now)
	}
	tat, held := sh.tats[k]
	next, v := gcra(tat, now, interval, limit)
	if !v.allowed {
		return v
	}
	if !held {
		if len(sh.tats) >= s.maxPerShard {
			// Sweeping a full shard costs a pass over it, so under a
			// flood of new keys do it at most every capSweepEvery.
			if now-sh.lastSweep >= capSweepEvery {
				sh.sweep(now)
			}
			if len(sh.tats) >= s.maxPerShard {
				for victim := range sh.tats {
					delete(sh.tats, victim)
					s.evicted.Add(1)
					break
				}
			}
		}
		// Keep a copy: a header value may point into a larger buffer.
		k.s = strings.Clone(k.s)
	}
	sh.tats[k] = next
	return v
}

// sweep drops the keys whose TAT is not in the future: their bucket is
// full, as a key never seen. The caller holds sh.mu.
func (sh *shard) sweep(now int64) {
	for k, tat := range sh.tats {
		if tat <= now {
			delete(sh.tats, k)
		}
	}
	sh.lastSweep = now
}

// len returns the number of keys held.
func (s *localStore) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.tats)
		sh.mu.Unlock()
	}
	return n
}
