package quota

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/policy"
)

// KeyPrefix starts every Redis key of a quota counter:
// "rosetta:quota:<plan>:<period>:<start>:<consumer>", e.g.
// "rosetta:quota:free:month:1798761600:alice", where start is the
// period's first second (Unix time) and ":" and "%" in the plan name are
// percent-encoded. The consumer comes last, so that no name can make two
// counters share a key.
const KeyPrefix = "rosetta:quota:"

// expireGrace is how long a counter outlives its period in Redis, so
// that an instance whose clock lags a little does not recreate a key
// that already expired.
const expireGrace = time.Minute

// probeEvery is how long calls skip Redis after it failed, before one
// call tries it again.
const probeEvery = time.Second

// takeScript counts one call atomically when fewer than the limit were
// counted: KEYS[1] is the counter, ARGV the limit and the expiry (Unix
// ms). It returns {allowed (1 or 0), count after the decision}. A
// refused call does not add to the count, so every instance that shares
// the counter lets exactly limit calls through per period.
var takeScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if n >= tonumber(ARGV[1]) then
  return {0, n}
end
n = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return {1, n}
`)

// key returns the Redis key of consumer's counter in the period that
// starts at start.
func (q *quotaSpec) key(start time.Time, consumer string) string {
	return q.keyPrefix + strconv.FormatInt(start.Unix(), 10) + ":" + consumer
}

// escapeKey percent-encodes ":" and "%" in a plan name.
func escapeKey(s string) string {
	if !strings.ContainsAny(s, ":%") {
		return s
	}
	return strings.NewReplacer("%", "%25", ":", "%3A").Replace(s)
}

// redisStore is one Redis client, shared by the plan plugins (of every
// snapshot) configured with the same redis block, and what is known
// about its health. It lives in policy.Shared, which closes it.
type redisStore struct {
	client *redis.Client
	log    *slog.Logger
	now    func() time.Time

	// down is set from the first failed decision until one succeeds;
	// while it is set only one call per probeEvery tries Redis.
	down      atomic.Bool
	retryAt   atomic.Int64 // unix ns
	failOpens atomic.Uint64
	mu        sync.Mutex // orders the outage and recovery log lines
}

// Close closes the client.
func (s *redisStore) Close() error { return s.client.Close() }

// redisLoggerOnce routes go-redis's own log lines (one per failed dial,
// which would repeat through an outage) to the first store's logger at
// Debug, as rate-limiting and proxy-cache do. go-redis has one
// process-wide logger.
var redisLoggerOnce sync.Once

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
	}
}

// sharedRedis returns the store of cfg from shared, creating its client
// (which connects lazily) on first use.
func sharedRedis(shared *policy.Shared, cfg *config.Redis, now func() time.Time, log *slog.Logger) (*redisStore, error) {
	sum := sha256.Sum256([]byte(cfg.Password))
	key := fmt.Sprintf("quota/redis|%s|%s|%s|%d", cfg.Address, cfg.Username, hex.EncodeToString(sum[:8]), cfg.DB)
	if cfg.TLS != nil {
		key = fmt.Sprintf("%s|%+v", key, *cfg.TLS)
	}
	v, err := shared.Get(key, func() (any, error) {
		client, err := redisclient.New(cfg)
		if err != nil {
			return nil, err
		}
		redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{log}) })
		return &redisStore{client: client, log: log, now: now}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*redisStore), nil
}

// admit reports whether a decision may try Redis: always while it is up;
// while it is down, one caller per probeEvery.
func (s *redisStore) admit() bool {
	if !s.down.Load() {
		return true
	}
	now := s.now().UnixNano()
	at := s.retryAt.Load()
	return now >= at && s.retryAt.CompareAndSwap(at, now+int64(probeEvery))
}

// failed records a failed decision; the first of an outage logs it.
func (s *redisStore) failed(err error) {
	s.retryAt.Store(s.now().UnixNano() + int64(probeEvery))
	if s.down.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.CompareAndSwap(false, true) {
		s.log.Warn("quota store unreachable; quotas fail open: calls are allowed uncounted until it answers again",
			"redis", s.client.Options().Addr, "error", err)
	}
}

// succeeded records a decision Redis made; the first after an outage
// logs the recovery.
func (s *redisStore) succeeded() {
	if !s.down.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.CompareAndSwap(true, false) {
		s.log.Info("quota store reachable again; quotas enforced", "redis", s.client.Options().Addr)
	}
}

// get reads a counter without counting.
func (s *redisStore) get(ctx context.Context, key string) (int64, error) {
	n, err := s.client.Get(ctx, key).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// checkRedis counts one call in Redis.
func (p *Plugin) checkRedis(ctx context.Context, pl *plan, consumer string, st *policy.State) *call.Error {
	s := p.remote
	if !s.admit() {
		s.failOpens.Add(1)
		return nil
	}
	q := pl.quota
	now := p.now()
	start, end := q.period.bounds(now, q.loc)
	rctx, cancel := context.WithTimeout(ctx, p.timeout)
	res, err := takeScript.Run(rctx, s.client, []string{q.key(start, consumer)},
		q.limit, end.Add(expireGrace).UnixMilli()).Int64Slice()
	cancel()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("quota script answered %d values, want 2", len(res))
	}
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up (or its deadline passed): not an outage.
			return call.FromError(ctx.Err())
		}
		s.failed(err)
		s.failOpens.Add(1)
		return nil
	}
	s.succeeded()
	return q.apply(now, end, res[1], res[0] == 1, st)
}
