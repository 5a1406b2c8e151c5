// Package keystore keeps the API keys that consumers create for
// themselves in the developer portal (portal: { self_service: true }):
// in memory on a single instance, in Redis when the config has a redis
// block, so that every instance of a fleet accepts a key as soon as it is
// created. key-auth asks it for keys the config does not list.
//
// Only a key's SHA-256 hash is stored; the secret is shown once, when the
// key is created.
package keystore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/policy"
)

// Key describes a stored key, without its secret.
type Key struct {
	// ID identifies the key for revocation (16 hex digits).
	ID string `json:"id"`
	// Consumer is the key's owner.
	Consumer string `json:"consumer"`
	// Masked shows the secret's first and last characters.
	Masked string `json:"masked"`
	// Created is when the key was created.
	Created time.Time `json:"created"`
	// Hash is the hex SHA-256 of the secret.
	Hash string `json:"hash"`
}

// ErrNotFound is returned by [Store.Revoke] for an id that is not one of
// the consumer's keys.
var ErrNotFound = errors.New("no such key")

// MaxKeysPerConsumer bounds the keys one consumer may hold.
const MaxKeysPerConsumer = 20

// Caching of Redis answers by key-auth (Lookup): an accepted key is
// believed this long (a revocation reaches the other instances within
// it; the instance that revoked forgets the key at once), an unknown one
// this long (so a flood of bad keys does not become a flood of Redis
// reads).
const (
	positiveTTL = 30 * time.Second
	negativeTTL = 5 * time.Second
	cacheSize   = 10_000
)

// Store holds self-service keys. It is safe for concurrent use.
type Store struct {
	rdb    *redis.Client // nil: memory
	prefix string
	now    func() time.Time

	mu  sync.Mutex
	mem map[string]Key // by hash (memory store)

	cache *lru.Cache[string, cached] // by hash (Redis store)
}

// cached is a Redis answer kept by Lookup.
type cached struct {
	consumer string // "" unknown
	until    time.Time
}

// sharedKey is the Store's key in policy.Shared.
const sharedKey = "keystore"

// Shared returns the store of cfg kept in shared (made on first use), so
// that key-auth and the portal see the same keys across reloads: Redis
// when cfg has a redis block, else memory.
func Shared(shared *policy.Shared, cfg *config.Config) (*Store, error) {
	v, err := shared.Get(sharedKey, func() (any, error) { return New(cfg.Redis) })
	if err != nil {
		return nil, err
	}
	return v.(*Store), nil
}

// New returns a store in Redis (r not nil) or in memory.
func New(r *config.Redis) (*Store, error) {
	s := &Store{prefix: "rosetta:keys", now: time.Now, mem: map[string]Key{}}
	if r != nil {
		rdb, err := redisclient.New(r)
		if err != nil {
			return nil, err
		}
		s.rdb = rdb
		s.cache, _ = lru.New[string, cached](cacheSize)
	}
	return s, nil
}

// Close closes the Redis client.
func (s *Store) Close() error {
	if s.rdb != nil {
		return s.rdb.Close()
	}
	return nil
}

// Hash returns the hex SHA-256 of a secret, as the store keys it.
func Hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Create makes a new key for consumer and returns it with its secret
// ("rk_" and 32 base64url characters), which is not stored.
func (s *Store) Create(ctx context.Context, consumer string) (Key, string, error) {
	keys, err := s.List(ctx, consumer)
	if err != nil {
		return Key{}, "", err
	}
	if len(keys) >= MaxKeysPerConsumer {
		return Key{}, "", fmt.Errorf("a consumer holds at most %d self-service keys: revoke one first", MaxKeysPerConsumer)
	}
	var raw [24]byte
	var id [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Key{}, "", err
	}
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, "", err
	}
	secret := "rk_" + base64.RawURLEncoding.EncodeToString(raw[:])
	k := Key{
		ID:       hex.EncodeToString(id[:]),
		Consumer: consumer,
		Masked:   secret[:7] + "…" + secret[len(secret)-2:],
		Created:  s.now().UTC().Truncate(time.Second),
		Hash:     Hash(secret),
	}
	if s.rdb == nil {
		s.mu.Lock()
		s.mem[k.Hash] = k
		s.mu.Unlock()
		return k, secret, nil
	}
	b, _ := json.Marshal(k)
	if err := s.rdb.HSet(ctx, s.prefix, k.Hash, b).Err(); err != nil {
		return Key{}, "", fmt.Errorf("key store: %w", err)
	}
	s.cache.Remove(k.Hash) // a cached "unknown" must not hide it here
	return k, secret, nil
}

// List returns consumer's keys, oldest first.
func (s *Store) List(ctx context.Context, consumer string) ([]Key, error) {
	all, err := s.all(ctx)
	if err != nil {
		return nil, err
	}
	var out []Key
	for _, k := range all {
		if k.Consumer == consumer {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// all returns every stored key.
func (s *Store) all(ctx context.Context) ([]Key, error) {
	if s.rdb == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := make([]Key, 0, len(s.mem))
		for _, k := range s.mem {
			out = append(out, k)
		}
		return out, nil
	}
	m, err := s.rdb.HGetAll(ctx, s.prefix).Result()
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	out := make([]Key, 0, len(m))
	for _, v := range m {
		var k Key
		if json.Unmarshal([]byte(v), &k) == nil {
			out = append(out, k)
		}
	}
	return out, nil
}

// Revoke deletes consumer's key id; [ErrNotFound] when consumer has no
// such key.
func (s *Store) Revoke(ctx context.Context, consumer, id string) error {
	keys, err := s.List(ctx, consumer)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.ID != id {
			continue
		}
		if s.rdb == nil {
			s.mu.Lock()
			delete(s.mem, k.Hash)
			s.mu.Unlock()
			return nil
		}
		if err := s.rdb.HDel(ctx, s.prefix, k.Hash).Err(); err != nil {
			return fmt.Errorf("key store: %w", err)
		}
		s.cache.Remove(k.Hash)
		return nil
	}
	return ErrNotFound
}

// LookupLocal answers without I/O: the consumer of the key whose hash
// is hash, whether it is known, and pending when only Redis can tell
// (then call [Store.Lookup]).
func (s *Store) LookupLocal(hash string) (consumer string, ok, pending bool) {
	if s.rdb == nil {
		s.mu.Lock()
		k, ok := s.mem[hash]
		s.mu.Unlock()
		return k.Consumer, ok, false
	}
	if c, hit := s.cache.Get(hash); hit && s.now().Before(c.until) {
		return c.consumer, c.consumer != "", false
	}
	return "", false, true
}

// Lookup returns the consumer of the key whose hash is hash, reading
// Redis when the answer is not cached.
func (s *Store) Lookup(ctx context.Context, hash string) (consumer string, ok bool, err error) {
	if c, ok, pending := s.LookupLocal(hash); !pending {
		return c, ok, nil
	}
	v, err := s.rdb.HGet(ctx, s.prefix, hash).Result()
	switch {
	case errors.Is(err, redis.Nil):
		s.cache.Add(hash, cached{until: s.now().Add(negativeTTL)})
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("key store: %w", err)
	}
	var k Key
	if err := json.Unmarshal([]byte(v), &k); err != nil || k.Consumer == "" {
		return "", false, fmt.Errorf("key store: malformed entry for a key: %v", err)
	}
	s.cache.Add(hash, cached{consumer: k.Consumer, until: s.now().Add(positiveTTL)})
	return k.Consumer, true, nil
}
