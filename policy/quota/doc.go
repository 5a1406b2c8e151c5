// Package quota is the plan plugin: it enforces the config's plans
// (config.Plan) on every route and protocol, for the consumers that have
// one. The plugin is implicit: it has no plugins-list entry of its own.
// Importing this package registers it ([policy.RegisterPlan]), and when
// the config has plans [policy.Build] builds it once and adds it to every
// chain that authenticates, first of the Limit phase, so that the
// consumer is known when it runs. A binary that serves configs with
// plans must import it:
//
//	import _ "github.com/rosetta-gateway/rosetta/policy/quota"
//
// A call whose consumer has a plan is counted twice:
//
//   - against the plan's rate, a rate-limiting plugin (package
//     policy/ratelimit, key: consumer) built for the pseudo-route
//     "plan:<name>", so that one bucket per consumer counts the calls of
//     every route. Its Redis keys are "rosetta:rl:plan:<name>:consumer=<consumer>";
//   - against the plan's quota: calls per calendar period (minute, hour,
//     day, week from Monday, month or year) in the quota's time zone,
//     whose boundaries are computed with [time.Date] in that zone (a day
//     is 23 or 25 hours long across a DST change; a month starts at local
//     midnight of its first day). Exactly limit calls pass per period.
//
// A call refused by the rate does not count against the quota. An
// anonymous call, or a consumer without a plan, is counted by neither.
// The plan runs before a route's own limits (rate-limiting,
// concurrency-limit), so a call that one of those refuses has been
// counted by the plan: with a redis block the plan is always the
// pending plugin of its chain, and running it first means that a
// pending [policy.Chain.TryCheck] has counted nothing locally that the
// [policy.Chain.Check] after it would count again.
//
// Counts live in memory (per instance) unless the config has a redis
// block; then every instance shares them in Redis. A quota counter is
// one key per plan, consumer and period,
// "rosetta:quota:<plan>:<period>:<start>:<consumer>" (start in Unix
// seconds; ":" and "%" in the plan name percent-encoded), written by a
// Lua script that adds one only below the limit and expires the key a
// minute after the period ends. The period is read on each instance's
// clock ([policy.Env.Now], set by [policy.WithClock] in tests). While
// Redis is unreachable the plan fails open, as rate-limiting does by
// default: calls are allowed uncounted, the outage is logged once (and
// its end), and only one call per second tries Redis again. In-memory
// counters live in [policy.Shared], so a config reload keeps them.
//
// Over the quota a call is refused with ResourceExhausted, "quota
// exhausted: plan "free" allows 10000 calls per month; resets at
// 2027-01-01T00:00:00Z" (the reset in RFC 3339, in the quota's time
// zone), a retry-after field (seconds to the reset) and
// [policy.State].RateLimit set to the quota (limit, 0 remaining, the
// reset), which the adapters render as RateLimit-* fields. An allowed
// call's State.RateLimit is the plan's rate or its quota, whichever has
// fewer calls remaining.
//
// [Plugin.QuotaStatus] reads a consumer's quota without counting, for
// the developer portal; [Find] finds the plugin in a [policy.Set].
//
// It does not authenticate (key-auth and jwt-auth set the consumer) and
// does not bill.
package quota
