package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/ratelimit"
)

// Name is the plugin's name, [policy.PlanPlugin] ("plan"): what a
// refusal's call.Error.Plugin says and what its log lines carry.
const Name = policy.PlanPlugin

// DefaultTimeout bounds each Redis round trip of a plan (its quota's
// and its rate's) when the redis block sets no timeout, unless the
// call's context has a shorter deadline.
const DefaultTimeout = redisclient.DefaultTimeout

func init() {
	policy.RegisterPlan(func(env policy.Env) (policy.Plugin, error) { return New(env) })
}

// Plugin enforces the plans of one config snapshot. It is immutable and
// safe for concurrent use; its counters live in [policy.Shared] (memory)
// or in Redis, so they outlive the snapshot.
type Plugin struct {
	consumers map[string]*plan // by consumer name, those with a plan
	plans     []*plan          // sorted by name
	now       func() time.Time
	memory    *memoryStore        // without a redis block
	remote    *redisclient.Server // with one
	timeout   time.Duration
}

// plan is one configured plan.
type plan struct {
	name  string
	rate  *ratelimit.Limiter // nil without rate
	quota *quotaSpec         // nil without quota
	// rateRefusal starts a refusal by the rate: `plan "free": `.
	rateRefusal string
}

// quotaSpec is a plan's quota, parsed.
type quotaSpec struct {
	limit  int64
	period period
	loc    *time.Location
	// refusal is the start of every refusal's message, up to the reset
	// time: `quota exhausted: plan "free" allows 10000 calls per month;
	// resets at `.
	refusal string
	// keyPrefix starts the quota's Redis keys:
	// "rosetta:quota:<plan>:<period>:".
	keyPrefix string
}

// New builds the plan plugin of env.Config's plans. Counters are looked
// up in env.Shared (nil gives the plugin private ones); env.Now, when
// set, is the clock of quota periods (and of in-memory rates). It fails
// when a plan is invalid, which a config from [config.Parse] never has.
func New(env policy.Env) (*Plugin, error) {
	cfg := env.Config
	if cfg == nil {
		return nil, errors.New("no config")
	}
	shared := env.Shared
	if shared == nil {
		shared = &policy.Shared{}
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Plugin{
		consumers: map[string]*plan{},
		now:       env.Clock(),
		timeout:   redisclient.Timeout(cfg.Redis),
	}
	names := make([]string, 0, len(cfg.Plans))
	for name := range cfg.Plans {
		names = append(names, name)
	}
	slices.Sort(names)
	byName := map[string]*plan{}
	for _, name := range names {
		pl, err := newPlan(env, name, cfg.Plans[name])
		if err != nil {
			return nil, fmt.Errorf("plans.%s: %w", name, err)
		}
		p.plans = append(p.plans, pl)
		byName[name] = pl
	}
	for _, c := range cfg.Consumers {
		if c.Plan == "" {
			continue
		}
		pl, ok := byName[c.Plan]
		if !ok {
			return nil, fmt.Errorf("consumer %q: unknown plan %q", c.Name, c.Plan)
		}
		p.consumers[c.Name] = pl
	}
	var err error
	if cfg.Redis != nil {
		p.remote, err = redisclient.Shared(shared.Get, "quota/redis", cfg.Redis, "quota store", p.now, logger)
	} else {
		p.memory, err = sharedMemory(shared)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// newPlan builds one plan: its rate limiter (shared by every route) and
// its quota.
func newPlan(env policy.Env, name string, cfg *config.Plan) (*plan, error) {
	if cfg == nil || cfg.Quota == nil && cfg.Rate == nil {
		return nil, errors.New("a plan needs a quota or a rate")
	}
	pl := &plan{name: name, rateRefusal: fmt.Sprintf("plan %q: ", name)}
	if r := cfg.Rate; r != nil {
		rl := config.RateLimiting{Limit: r.Limit, Period: r.Period, Key: "consumer", Policy: "local", Fail: "open"}
		if env.Config.Redis != nil {
			rl.Policy = "redis"
		}
		// One pseudo-route for the plan: its buckets (memory and Redis)
		// are the same on every route, so the rate counts across them.
		renv := env
		renv.Route = "plan:" + name
		var opts []ratelimit.Option // the redis block's timeout, as every limiter
		if env.Now != nil {
			opts = append(opts, ratelimit.WithClock(env.Now))
		}
		lp, err := ratelimit.New(renv, rl, opts...)
		if err != nil {
			return nil, fmt.Errorf("rate: %w", err)
		}
		l, ok := lp.(*ratelimit.Limiter)
		if !ok {
			return nil, fmt.Errorf("rate: rate-limiting built a %T", lp)
		}
		pl.rate = l
	}
	if q := cfg.Quota; q != nil {
		per, err := parsePeriod(q.Period)
		if err != nil {
			return nil, fmt.Errorf("quota: %w", err)
		}
		if q.Limit <= 0 {
			return nil, fmt.Errorf("quota: limit must be greater than 0, got %d", q.Limit)
		}
		loc := time.UTC
		if q.TimeZone != "" && q.TimeZone != "UTC" {
			if loc, err = time.LoadLocation(q.TimeZone); err != nil {
				return nil, fmt.Errorf("quota: %w", err)
			}
		}
		pl.quota = &quotaSpec{
			limit:     q.Limit,
			period:    per,
			loc:       loc,
			refusal:   fmt.Sprintf("quota exhausted: plan %q allows %d calls per %s; resets at ", name, q.Limit, per),
			keyPrefix: KeyPrefix + escapeKey(name) + ":" + per.String() + ":",
		}
	}
	return pl, nil
}

// Name returns "plan".
func (p *Plugin) Name() string { return Name }

// Phase returns [policy.Limit].
func (p *Plugin) Phase() policy.Phase { return policy.Limit }

// Check counts the call of a consumer with a plan against the plan's
// rate, then (when the rate allowed it) its quota; other calls pass
// uncounted. A refusal is ResourceExhausted with a retry-after field in
// st.Response; every decision fills st.RateLimit. With a redis block it
// waits for up to two Redis round trips, each bounded by ctx and
// [DefaultTimeout]; while Redis is unreachable it allows the call
// uncounted.
func (p *Plugin) Check(ctx context.Context, c *call.Call, st *policy.State) *call.Error {
	pl := p.consumers[c.Consumer]
	if pl == nil {
		return nil
	}
	if pl.rate != nil {
		if err := pl.rate.Check(ctx, c, st); err != nil {
			return pl.rateError(err)
		}
	}
	if pl.quota == nil {
		return nil
	}
	if p.remote != nil {
		return p.checkRedis(ctx, pl, c.Consumer, st)
	}
	return p.checkMemory(pl, c.Consumer, st)
}

// TryCheck decides as Check without blocking: at once for calls it does
// not count and for in-memory counters; pending, having counted
// nothing, for a consumer with a plan when counters are in Redis.
func (p *Plugin) TryCheck(c *call.Call, st *policy.State) (*call.Error, bool) {
	pl := p.consumers[c.Consumer]
	if pl == nil {
		return nil, false
	}
	if p.remote != nil {
		return nil, true
	}
	if pl.rate != nil {
		if err, pending := pl.rate.TryCheck(c, st); pending {
			return nil, true // not reached: a memory plan's rate is local
		} else if err != nil {
			return pl.rateError(err), false
		}
	}
	if pl.quota == nil {
		return nil, false
	}
	return p.checkMemory(pl, c.Consumer, st), false
}

// rateError names the plan in a refusal by its rate.
func (pl *plan) rateError(err *call.Error) *call.Error {
	if err.Code != codes.ResourceExhausted {
		return err
	}
	e := *err
	e.Msg = pl.rateRefusal + err.Msg
	return &e
}

// checkMemory counts one call in memory.
func (p *Plugin) checkMemory(pl *plan, consumer string, st *policy.State) *call.Error {
	q := pl.quota
	now := p.now()
	start, end := q.period.bounds(now, q.loc)
	used, allowed := p.memory.take(pl.name, consumer, q.period, start.Unix(), q.limit)
	return q.apply(now, end, used, allowed, st)
}

// apply records a decision in st (used is the count after it) and
// returns the refusal it means, if any.
func (q *quotaSpec) apply(now, end time.Time, used int64, allowed bool, st *policy.State) *call.Error {
	reset := ceilSeconds(end.Sub(now))
	rl := policy.RateLimit{Set: true, Limit: q.limit, Remaining: max(q.limit-used, 0), ResetSeconds: reset}
	if allowed {
		// Report the limit closer to refusing: the rate's, or the quota.
		if !st.RateLimit.Set || rl.Remaining < st.RateLimit.Remaining {
			st.RateLimit = rl
		}
		return nil
	}
	rl.Remaining = 0
	st.RateLimit = rl
	st.Response = append(st.Response, policy.Field{Name: "retry-after", Value: strconv.FormatInt(max(reset, 1), 10)})
	return &call.Error{
		Code: codes.ResourceExhausted,
		Msg:  q.refusal + end.In(q.loc).Format(time.RFC3339),
	}
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// QuotaStatus is a consumer's quota in the current period, as
// [Plugin.QuotaStatus] reads it.
type QuotaStatus struct {
	// Plan is the consumer's plan.
	Plan string
	// Limit is the number of calls the plan allows per period.
	Limit int64
	// Used is the number of calls counted in the current period (at most
	// Limit: refused calls are not counted).
	Used int64
	// Remaining is Limit − Used.
	Remaining int64
	// Period is the quota's calendar period: minute, hour, day, week,
	// month or year.
	Period string
	// ResetAt is when the current period ends, in the quota's time zone.
	ResetAt time.Time
}

// QuotaStatus reads consumer's quota without counting a call. ok is
// false when the consumer has no plan, or a plan without a quota (then
// the status names the plan, if any, and nothing else). With a redis
// block it makes one Redis round trip, bounded by ctx; an unreachable
// Redis is an error. It is safe for concurrent use.
func (p *Plugin) QuotaStatus(ctx context.Context, consumer string) (st QuotaStatus, ok bool, err error) {
	pl := p.consumers[consumer]
	if pl == nil {
		return QuotaStatus{}, false, nil
	}
	st.Plan = pl.name
	q := pl.quota
	if q == nil {
		return st, false, nil
	}
	start, end := q.period.bounds(p.now(), q.loc)
	var used int64
	if p.remote != nil {
		if used, err = redisGet(ctx, p.remote, q.key(start, consumer)); err != nil {
			return st, false, fmt.Errorf("read quota of consumer %q: %w", consumer, err)
		}
	} else {
		used = p.memory.get(pl.name, consumer, q.period, start.Unix())
	}
	used = min(used, q.limit)
	st.Limit, st.Used, st.Remaining = q.limit, used, q.limit-used
	st.Period = q.period.String()
	st.ResetAt = end.In(q.loc)
	return st, true, nil
}

// PlanOf returns the name of consumer's plan, "" when it has none.
func (p *Plugin) PlanOf(consumer string) string {
	if pl := p.consumers[consumer]; pl != nil {
		return pl.name
	}
	return ""
}

// FailOpens returns how many calls the quota allowed uncounted because
// Redis was unreachable, summed over every plan plugin that uses the
// same redis block since its client was created. It is 0 without a
// redis block. (The plans' rates count theirs in rate-limiting's
// [ratelimit.Limiter.FailOpens].)
func (p *Plugin) FailOpens() uint64 {
	if p.remote == nil {
		return 0
	}
	return p.remote.FailOpens.Load()
}

// Find returns the plan plugin of set, nil when set has none (its config
// has no plans).
func Find(set *policy.Set) *Plugin {
	for _, pl := range set.Plugins() {
		if p, ok := pl.(*Plugin); ok {
			return p
		}
	}
	return nil
}

var (
	_ policy.Plugin       = (*Plugin)(nil)
	_ policy.LocalChecker = (*Plugin)(nil)
)
