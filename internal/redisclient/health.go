package redisclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rosetta-gateway/rosetta/config"
)

// ProbeEvery is how long a [Server] that failed lets calls skip Redis
// before one call tries it again: an outage then costs one timeout per
// ProbeEvery, not one per call.
const ProbeEvery = time.Second

// Key identifies a redis block (its password hashed), for stores shared
// by every plugin configured with the same block: prefix + "|" + Key.
func Key(cfg *config.Redis) string {
	sum := sha256.Sum256([]byte(cfg.Password))
	key := fmt.Sprintf("%s|%s|%s|%d", cfg.Address, cfg.Username, hex.EncodeToString(sum[:8]), cfg.DB)
	if cfg.TLS != nil {
		key = fmt.Sprintf("%s|%+v", key, *cfg.TLS)
	}
	return key
}

// Server is a client of one Redis server and what is known about its
// health, for stores that decide calls (rate limits, quotas): while it
// is down only one call per [ProbeEvery] tries it, and the first failure
// of an outage and the recovery after it are logged once each. It is safe
// for concurrent use.
type Server struct {
	// Client is the go-redis client (it connects lazily).
	Client *redis.Client

	what string // the store's name in log lines, e.g. "quota store"
	log  *slog.Logger
	now  func() time.Time

	// FailOpens counts the calls its users allowed uncounted because it
	// was unreachable.
	FailOpens atomic.Uint64

	// down is set from the first failed decision until one succeeds.
	down    atomic.Bool
	retryAt atomic.Int64 // unix ns
	mu      sync.Mutex   // orders the outage and recovery log lines
}

// NewServer returns a server for cfg named what in its log lines; now is
// its clock (time.Now when nil), log its logger (nil: discarded).
func NewServer(cfg *config.Redis, what string, now func() time.Time, log *slog.Logger) (*Server, error) {
	client, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	SetLogger(log)
	return &Server{Client: client, what: what, log: log, now: now}, nil
}

// Shared returns the server of cfg kept by get (a policy.Shared's Get)
// under prefix, creating it (its client connects lazily) on first use, so
// that every plugin of every snapshot configured with the same redis
// block shares one client and one health view.
func Shared(get func(string, func() (any, error)) (any, error), prefix string, cfg *config.Redis, what string, now func() time.Time, log *slog.Logger) (*Server, error) {
	v, err := get(prefix+"|"+Key(cfg), func() (any, error) { return NewServer(cfg, what, now, log) })
	if err != nil {
		return nil, err
	}
	return v.(*Server), nil
}

// DefaultTimeout bounds each round trip of a decision when the redis
// block sets no timeout (config's default is the same).
const DefaultTimeout = 100 * time.Millisecond

// Timeout is cfg's timeout, else DefaultTimeout.
func Timeout(cfg *config.Redis) time.Duration {
	if cfg != nil && cfg.Timeout > 0 {
		return cfg.Timeout.Std()
	}
	return DefaultTimeout
}

// Down reports whether the server is in an outage (its last decision
// failed).
func (s *Server) Down() bool { return s.down.Load() }

// Close closes the client.
func (s *Server) Close() error { return s.Client.Close() }

// Admit reports whether a decision may try Redis: always while it is up;
// while it is down, one caller per ProbeEvery (the one that moves the
// next try on).
func (s *Server) Admit() bool {
	if !s.down.Load() {
		return true
	}
	now := s.now().UnixNano()
	at := s.retryAt.Load()
	return now >= at && s.retryAt.CompareAndSwap(at, now+int64(ProbeEvery))
}

// Failed records a failed decision; the first of an outage logs
// "<what> unreachable; <consequence> until it answers again".
func (s *Server) Failed(err error, consequence string) {
	s.retryAt.Store(s.now().UnixNano() + int64(ProbeEvery))
	if s.down.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.CompareAndSwap(false, true) {
		s.log.Warn(s.what+" unreachable; "+consequence+" until it answers again",
			"redis", s.Client.Options().Addr, "error", err)
	}
}

// Succeeded records a decision Redis made; the first after an outage
// logs "<what> reachable again; <restored>".
func (s *Server) Succeeded(restored string) {
	if !s.down.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.CompareAndSwap(true, false) {
		s.log.Info(s.what+" reachable again; "+restored, "redis", s.Client.Options().Addr)
	}
}

// loggerOnce makes go-redis's own log lines (one per failed dial, which
// would repeat through an outage) go to the first store's logger at
// Debug: go-redis has one process-wide logger, which otherwise writes to
// stderr.
var loggerOnce sync.Once

// SetLogger routes go-redis's log lines to log at Debug, the first time
// it is called (nil log: discarded).
func SetLogger(log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loggerOnce.Do(func() { redis.SetLogger(goRedisLogger{log}) })
}

type goRedisLogger struct{ log *slog.Logger }

func (l goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
	}
}
