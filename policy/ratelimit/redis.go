package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/policy"
)

// KeyPrefix starts every Redis key the limiter writes:
// "rosetta:rl:<route>:<key>", e.g. "rosetta:rl:/users/*:ip=192.0.2.1".
const KeyPrefix = "rosetta:rl:"

// probeEvery is how long calls skip Redis after it failed, before one
// call tries it again: an outage then costs one timeout per probeEvery,
// not one per call.
const probeEvery = time.Second

// gcraScript is gcra() run atomically in Redis, on the server's clock
// (TIME, in microseconds), so that gateways whose clocks disagree still
// share one limit. KEYS[1] holds the TAT in microseconds; ARGV are the
// emission interval (µs) and the limit. It expires with the TAT, so idle
// keys vanish. It returns {allowed, remaining, reset µs, retry µs}.
//
// Numbers are Lua doubles: microsecond timestamps (~2^51) stay exact,
// and the TAT is written with %d because Lua's default number format
// would round it.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local nxt = tat + interval
if nxt - now > window then
  return {0, 0, tat - now, nxt - now - window}
end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000))
return {1, math.floor((window - (nxt - now)) / interval), nxt - now, 0}
`)

// redisStore is one Redis client, shared by every limiter (of every
// snapshot) configured with the same redis block, and what is known about
// its health. It lives in policy.Shared, which closes it.
type redisStore struct {
	client *redis.Client
	log    *slog.Logger
	now    func() time.Time

	// down is set from the first failed decision until one succeeds;
	// while it is set only one call per probeEvery tries Redis (the one
	// that moves retryAt on), the others decide at once without it.
	down      atomic.Bool
	retryAt   atomic.Int64 // unix ns
	failOpens atomic.Uint64
	mu        sync.Mutex // orders the outage and recovery log lines
}

// Close closes the client.
func (s *redisStore) Close() error { return s.client.Close() }

// redisLoggerOnce routes go-redis's own log lines (one per failed dial,
// which would repeat through an outage) to the first store's logger at
// Debug. go-redis has one process-wide logger.
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
	key := fmt.Sprintf("rate-limiting/redis|%s|%s|%s|%d", cfg.Address, cfg.Username,
		hex.EncodeToString(sum[:8]), cfg.DB)
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
func (s *redisStore) failed(err error, failOpen bool) {
	s.retryAt.Store(s.now().UnixNano() + int64(probeEvery))
	if s.down.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.CompareAndSwap(false, true) {
		mode := "closed: calls are refused"
		if failOpen {
			mode = "open: calls are allowed uncounted"
		}
		s.log.Warn("rate limit store unreachable; limits fail "+mode+" until it answers again",
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
		s.log.Info("rate limit store reachable again; limits enforced", "redis", s.client.Options().Addr)
	}
}

// checkRedis decides one call in Redis.
func (l *Limiter) checkRedis(ctx context.Context, c *call.Call, st *policy.State) *call.Error {
	s := l.remote
	if !s.admit() {
		return l.unavailable(nil)
	}
	key := KeyPrefix + l.route + ":" + l.label(l.bucket(c, st))
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	res, err := gcraScript.Run(rctx, s.client, []string{key},
		int64(l.interval/time.Microsecond), l.limit).Int64Slice()
	cancel()
	if err == nil && len(res) != 4 {
		err = fmt.Errorf("rate limit script answered %d values, want 4", len(res))
	}
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up (or its deadline passed): not an outage.
			return call.FromError(ctx.Err())
		}
		s.failed(err, l.failOpen)
		return l.unavailable(err)
	}
	s.succeeded()
	us := int64(time.Microsecond)
	return l.apply(verdict{
		allowed:   res[0] == 1,
		remaining: res[1],
		reset:     res[2] * us,
		retry:     res[3] * us,
	}, st)
}

// unavailable answers a call Redis could not decide: allowed and counted
// as a fail-open, or refused with Unavailable.
func (l *Limiter) unavailable(cause error) *call.Error {
	if l.failOpen {
		l.remote.failOpens.Add(1)
		return nil
	}
	if cause == nil {
		cause = errors.New("redis unreachable (waiting before the next attempt)")
	}
	return &call.Error{Code: codes.Unavailable, Msg: "rate limit store unavailable", Cause: cause}
}
