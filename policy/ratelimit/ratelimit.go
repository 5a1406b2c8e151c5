package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/policy"
)

// Name is the plugin's config name.
const Name = "rate-limiting"

// DefaultTimeout bounds one Redis decision when neither the redis
// block's timeout nor a [WithTimeout] option is set.
const DefaultTimeout = redisclient.DefaultTimeout

func init() {
	policy.Register(Name, func(env policy.Env, spec config.Plugin) (policy.Plugin, error) {
		if spec.RateLimiting == nil {
			return nil, errors.New("rate-limiting: no settings")
		}
		return New(env, *spec.RateLimiting)
	})
}

// Limiter is one configured rate-limiting plugin: at most Limit calls per
// Period for each key, smoothly (GCRA). It is immutable and safe for
// concurrent use; its counters live in a store in [policy.Shared] (local)
// or in Redis, so they outlive the config snapshot it was built for.
type Limiter struct {
	route    string
	limit    int64
	interval time.Duration // period / limit
	key      keySpec
	trusted  []netip.Prefix
	now      func() time.Time
	local    *localStore
	remote   *redisclient.Server
	failOpen bool
	timeout  time.Duration
	// refusal is the start of every refusal's message, e.g. "rate limit
	// exceeded: 1000 calls per 1h0m0s; retry in ".
	refusal string
}

// MessageLimiter is a [Limiter] with per_message set: it also counts each
// WebSocket message against the call's bucket ([policy.MessageChecker]).
type MessageLimiter struct {
	*Limiter
}

// Option tunes [New] beyond the config.
type Option func(*options)

type options struct {
	now     func() time.Time
	timeout time.Duration
	maxKeys int
}

// WithClock makes the limiter read the time from now instead of
// [time.Now] (tests advance a fake clock). For policy: redis the
// buckets use the Redis server's clock whatever now says; now then only
// times the pause between connection attempts while Redis is down.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithTimeout bounds each Redis decision (default [DefaultTimeout]; a
// shorter deadline of the call's context wins).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithMaxKeys bounds the keys a local store remembers (default
// [DefaultMaxKeys]). It applies when the store is created, not to a store
// an earlier snapshot created.
func WithMaxKeys(n int) Option { return func(o *options) { o.maxKeys = n } }

// New builds a rate limiter from cfg for the route env.Route. With
// cfg.PerMessage the plugin is a [*MessageLimiter], otherwise a
// [*Limiter]. State is looked up in env.Shared (a nil Shared gives the
// limiter private state): local buckets under a key made of the route,
// limit, period and key kind, so a reload with the same settings keeps
// its counts; Redis clients per distinct redis block.
func New(env policy.Env, cfg config.RateLimiting, opts ...Option) (policy.Plugin, error) {
	l, err := newLimiter(env, cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("rate-limiting: %w", err)
	}
	if cfg.PerMessage {
		return &MessageLimiter{l}, nil
	}
	return l, nil
}

func newLimiter(env policy.Env, cfg config.RateLimiting, opts []Option) (*Limiter, error) {
	o := options{now: time.Now, timeout: DefaultTimeout, maxKeys: DefaultMaxKeys}
	if env.Config != nil {
		o.timeout = redisclient.Timeout(env.Config.Redis)
	}
	for _, opt := range opts {
		opt(&o)
	}
	period := time.Duration(cfg.Period)
	if cfg.Limit <= 0 {
		return nil, fmt.Errorf("limit must be greater than 0, got %d", cfg.Limit)
	}
	if period <= 0 {
		return nil, fmt.Errorf("period must be greater than 0, got %s", period)
	}
	key, err := parseKey(cfg.Key)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		route:    env.Route,
		limit:    cfg.Limit,
		interval: period / time.Duration(cfg.Limit),
		key:      key,
		now:      o.now,
		timeout:  o.timeout,
		refusal:  fmt.Sprintf("rate limit exceeded: %d calls per %s; retry in ", cfg.Limit, period),
	}
	if l.interval <= 0 {
		return nil, fmt.Errorf("limit %d per %s is more than one call per nanosecond", cfg.Limit, period)
	}
	if env.Config != nil {
		if l.trusted, err = parseTrusted(env.Config.TrustedProxies); err != nil {
			return nil, err
		}
	}
	shared := env.Shared
	if shared == nil {
		shared = &policy.Shared{}
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch cfg.Policy {
	case "", "local":
		skey := fmt.Sprintf("rate-limiting/local|%s|%d|%d|%s", env.Route, cfg.Limit, period, key)
		v, err := shared.Get(skey, func() (any, error) {
			return newLocalStore(o.now(), period, o.maxKeys), nil
		})
		if err != nil {
			return nil, err
		}
		l.local = v.(*localStore)
	case "redis":
		if l.interval < time.Microsecond {
			return nil, fmt.Errorf("limit %d per %s is more than one call per microsecond, finer than Redis's clock", cfg.Limit, period)
		}
		switch cfg.Fail {
		case "", "open":
			l.failOpen = true
		case "closed":
		default:
			return nil, fmt.Errorf("unknown fail mode %q (known: closed, open)", cfg.Fail)
		}
		if env.Config == nil || env.Config.Redis == nil {
			return nil, errors.New("policy redis needs the top-level redis block")
		}
		if l.remote, err = redisclient.Shared(shared.Get, "rate-limiting/redis", env.Config.Redis, "rate limit store", o.now, logger); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown policy %q (known: local, redis)", cfg.Policy)
	}
	return l, nil
}

// Name returns "rate-limiting".
func (l *Limiter) Name() string { return Name }

// Phase returns [policy.Limit].
func (l *Limiter) Phase() policy.Phase { return policy.Limit }

// Check counts the call against its bucket. It fills st.RateLimit on
// every decision it makes; a refusal is ResourceExhausted with a
// retry-after field in st.Response. With policy: redis it waits for one
// Redis round trip, bounded by the context and the limiter's timeout;
// while Redis is unreachable it allows (fail: open, st.RateLimit unset)
// or refuses with Unavailable (fail: closed).
func (l *Limiter) Check(ctx context.Context, c *call.Call, st *policy.State) *call.Error {
	if l.remote != nil {
		return l.checkRedis(ctx, c, st)
	}
	return l.checkLocal(c, st)
}

// TryCheck decides as Check without blocking. policy: local always
// decides (and allocates nothing when it allows a key it holds); policy:
// redis always answers pending, having counted nothing.
func (l *Limiter) TryCheck(c *call.Call, st *policy.State) (*call.Error, bool) {
	if l.remote != nil {
		return nil, true
	}
	return l.checkLocal(c, st), false
}

// CheckMessage counts one WebSocket message against the call's bucket,
// as Check counts the call; a refusal is ResourceExhausted (the
// WebSocket bridge closes the socket with 4008).
func (m *MessageLimiter) CheckMessage(ctx context.Context, c *call.Call, st *policy.State) *call.Error {
	return m.Check(ctx, c, st)
}

// FailOpens returns how many calls were allowed uncounted because Redis
// was unreachable (fail: open), summed over every limiter that uses the
// same redis block since its client was created. It is 0 for policy:
// local.
func (l *Limiter) FailOpens() uint64 {
	if l.remote == nil {
		return 0
	}
	return l.remote.FailOpens.Load()
}

func (l *Limiter) checkLocal(c *call.Call, st *policy.State) *call.Error {
	now := int64(l.now().Sub(l.local.base))
	v := l.local.take(l.bucket(c, st), now, int64(l.interval), l.limit)
	return l.apply(v, st)
}

// apply records v (in nanoseconds) in st and returns the refusal it
// means, if any.
func (l *Limiter) apply(v verdict, st *policy.State) *call.Error {
	st.RateLimit = policy.RateLimit{
		Set:          true,
		Limit:        l.limit,
		Remaining:    v.remaining,
		ResetSeconds: ceilSeconds(v.reset),
	}
	if v.allowed {
		return nil
	}
	retry := max(ceilSeconds(v.retry), 1)
	st.Response = append(st.Response, policy.Field{Name: "retry-after", Value: strconv.FormatInt(retry, 10)})
	return &call.Error{
		Code: codes.ResourceExhausted,
		Msg:  l.refusal + (time.Duration(retry) * time.Second).String(),
	}
}

// ceilSeconds rounds ns nanoseconds up to whole seconds.
func ceilSeconds(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns + int64(time.Second) - 1) / int64(time.Second)
}

var (
	_ policy.Plugin         = (*Limiter)(nil)
	_ policy.LocalChecker   = (*Limiter)(nil)
	_ policy.MessageChecker = (*MessageLimiter)(nil)
)
