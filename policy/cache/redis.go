package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rosetta-gateway/rosetta/internal/redisclient"
)

// KeyPrefix starts every Redis key of the cache:
// "rosetta:cache:<route>:<resource>:<digest>", where route and resource
// are the first 16 hex digits of their SHA-256 (so that a purge can
// match them without escaping) and digest is the key's Sum in hex.
const KeyPrefix = "rosetta:cache:"

// Redis is a [Store] in Redis, shared by every gateway instance that
// uses the same server: entries are written with an expiry (TTL plus the
// stale window) and Redis's maxmemory policy bounds the whole. While
// Redis is unreachable every call is a miss (answered by the backend);
// the server logs the first failure of an outage and the recovery.
type Redis struct {
	srv *redisclient.Server
	own bool // Close closes srv
}

// StoreName is what a Redis store's server is called in log lines
// (redisclient.NewServer's what).
const StoreName = "cache store"

// NewRedis returns a store on srv. When own is set, Close closes srv.
func NewRedis(srv *redisclient.Server, own bool) *Redis {
	return &Redis{srv: srv, own: own}
}

// redisKey is the Redis key of k.
func redisKey(k *Key) string {
	b := make([]byte, 0, len(KeyPrefix)+16+1+16+1+2*sha256.Size)
	b = append(b, KeyPrefix...)
	b = appendNameHash(b, k.Route)
	b = append(b, ':')
	b = appendNameHash(b, k.Resource)
	b = append(b, ':')
	b = hex.AppendEncode(b, k.Sum[:])
	return string(b)
}

// appendNameHash appends the first 16 hex digits of name's SHA-256.
func appendNameHash(b []byte, name string) []byte {
	sum := sha256.Sum256([]byte(name))
	return hex.AppendEncode(b, sum[:8])
}

// Get reads the entry under k; a missing or unreadable one is nil.
func (s *Redis) Get(ctx context.Context, k *Key) (*Entry, error) {
	b, err := s.srv.Client.Get(ctx, redisKey(k)).Bytes()
	if errors.Is(err, redis.Nil) {
		s.up()
		return nil, nil
	}
	if err != nil {
		s.failed(err)
		return nil, err
	}
	s.up()
	e, err := decode(b)
	if err != nil {
		return nil, nil // another version's entry: a miss, overwritten
	}
	return e, nil
}

// Set writes e under k, expiring after ttl.
func (s *Redis) Set(ctx context.Context, k *Key, e *Entry, ttl time.Duration) error {
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	if err := s.srv.Client.Set(ctx, redisKey(k), e.encode(nil), ttl).Err(); err != nil {
		s.failed(err)
		return err
	}
	return nil
}

// Delete deletes the entry under k.
func (s *Redis) Delete(ctx context.Context, k *Key) error {
	return s.srv.Client.Del(ctx, redisKey(k)).Err()
}

// Purge deletes the matching entries (see [Store.Purge]), scanning the
// keyspace with SCAN (which does not block the server) and deleting
// with UNLINK.
func (s *Redis) Purge(ctx context.Context, route string, allRoutes bool, resource string) (int, error) {
	pattern := []byte(KeyPrefix)
	if allRoutes {
		pattern = append(pattern, '*')
	} else {
		pattern = appendNameHash(pattern, route)
	}
	pattern = append(pattern, ':')
	if resource == "" {
		pattern = append(pattern, '*')
	} else {
		pattern = appendNameHash(pattern, resource)
		pattern = append(pattern, ":*"...)
	}
	n := 0
	it := s.srv.Client.Scan(ctx, 0, string(pattern), 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		d, err := s.srv.Client.Unlink(ctx, batch...).Result()
		n += int(d)
		batch = batch[:0]
		return err
	}
	for it.Next(ctx) {
		batch = append(batch, it.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := it.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

// Close closes the client when the store owns it.
func (s *Redis) Close() error {
	if s.own {
		return s.srv.Close()
	}
	return nil
}

// failed records a failed command; a canceled caller is not an outage.
func (s *Redis) failed(err error) {
	if !errors.Is(err, context.Canceled) {
		s.srv.Failed(err, "calls go to the backend")
	}
}

// up records a command Redis answered.
func (s *Redis) up() { s.srv.Succeeded("answers are cached again") }

var _ Store = (*Redis)(nil)
