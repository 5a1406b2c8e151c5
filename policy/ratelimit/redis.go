package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy"
)

// KeyPrefix starts every Redis key the limiter writes:
// "rosetta:rl:<route>:<key>", e.g. "rosetta:rl:/users/*:ip=192.0.2.1".
const KeyPrefix = "rosetta:rl:"

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

// checkRedis decides one call in Redis.
func (l *Limiter) checkRedis(ctx context.Context, c *call.Call, st *policy.State) *call.Error {
	s := l.remote
	if !s.Admit() {
		return l.unavailable(nil)
	}
	key := KeyPrefix + l.route + ":" + l.label(l.bucket(c, st))
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	res, err := gcraScript.Run(rctx, s.Client, []string{key},
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
		s.Failed(err, failMode(l.failOpen))
		return l.unavailable(err)
	}
	s.Succeeded("limits enforced")
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
		l.remote.FailOpens.Add(1)
		return nil
	}
	if cause == nil {
		cause = errors.New("redis unreachable (waiting before the next attempt)")
	}
	return &call.Error{Code: codes.Unavailable, Msg: "rate limit store unavailable", Cause: cause}
}

// failMode is how the outage log line says a limit fails.
func failMode(open bool) string {
	if open {
		return "limits fail open: calls are allowed uncounted"
	}
	return "limits fail closed: calls are refused"
}
