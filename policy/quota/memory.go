package quota

import (
	"hash/maphash"
	"strings"
	"sync"

	"github.com/rosetta-gateway/rosetta/policy"
)

// memoryKey is the Shared key of the in-memory counters: one store for
// every plan of every snapshot, so that a reload keeps the counts.
const memoryKey = "quota/memory"

// numShards splits the memory store so that concurrent calls of
// different consumers rarely wait for the same lock. A power of two.
const numShards = 16

// memoryStore counts quota calls in memory: one counter per plan and
// consumer, holding the current period's count. It is safe for
// concurrent use. It holds at most one counter per plan and consumer
// that the configs named (only consumers with a plan are counted), so it
// needs no eviction.
type memoryStore struct {
	seed   maphash.Seed
	shards [numShards]memoryShard
}

type memoryShard struct {
	mu     sync.Mutex
	counts map[counterKey]counter
	_      [40]byte // keep hot shards on separate cache lines
}

// counterKey identifies one consumer's counter of one plan.
type counterKey struct{ plan, consumer string }

// counter is the count of the period that starts at start (Unix
// seconds); a call in another period starts it again.
type counter struct {
	period period
	start  int64
	n      int64
}

// sharedMemory returns the memory store of shared, creating it on first
// use.
func sharedMemory(shared *policy.Shared) (*memoryStore, error) {
	v, err := shared.Get(memoryKey, func() (any, error) {
		s := &memoryStore{seed: maphash.MakeSeed()}
		for i := range s.shards {
			s.shards[i].counts = map[counterKey]counter{}
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*memoryStore), nil
}

func (s *memoryStore) shard(consumer string) *memoryShard {
	return &s.shards[maphash.String(s.seed, consumer)&(numShards-1)]
}

// take counts one call of consumer on plan in the period of per that
// starts at start, when fewer than limit were counted in it. It returns
// the count after the decision and whether the call was counted. It
// allocates nothing for a counter it already holds.
func (s *memoryStore) take(plan, consumer string, per period, start, limit int64) (used int64, allowed bool) {
	sh := s.shard(consumer)
	k := counterKey{plan, consumer}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c, held := sh.counts[k]
	if c.period != per || c.start != start {
		c = counter{period: per, start: start}
	}
	if c.n >= limit {
		return c.n, false
	}
	c.n++
	if !held {
		// Keep copies: the names may point into larger buffers.
		k = counterKey{strings.Clone(plan), strings.Clone(consumer)}
	}
	sh.counts[k] = c
	return c.n, true
}

// get returns the count of consumer on plan in the period of per that
// starts at start, without counting.
func (s *memoryStore) get(plan, consumer string, per period, start int64) int64 {
	sh := s.shard(consumer)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.counts[counterKey{plan, consumer}]
	if c.period != per || c.start != start {
		return 0
	}
	return c.n
}
