package quota

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rosetta-gateway/rosetta/call"
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

// redisGet reads a counter of s without counting.
func redisGet(ctx context.Context, s *redisclient.Server, key string) (int64, error) {
	n, err := s.Client.Get(ctx, key).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// checkRedis counts one call in Redis.
func (p *Plugin) checkRedis(ctx context.Context, pl *plan, consumer string, st *policy.State) *call.Error {
	s := p.remote
	if !s.Admit() {
		s.FailOpens.Add(1)
		return nil
	}
	q := pl.quota
	now := p.now()
	start, end := q.period.bounds(now, q.loc)
	rctx, cancel := context.WithTimeout(ctx, p.timeout)
	res, err := takeScript.Run(rctx, s.Client, []string{q.key(start, consumer)},
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
		s.Failed(err, "quotas fail open: calls are allowed uncounted")
		s.FailOpens.Add(1)
		return nil
	}
	s.Succeeded("quotas enforced")
	return q.apply(now, end, res[1], res[0] == 1, st)
}
