package analytics

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis layout. For every minute and every hour with calls:
//
//	<prefix>m:<unix minute>   hash, expires 25h (+5m grace) after the minute
//	<prefix>h:<unix hour>     hash, expires 32d after the hour
//
// A field is a dimension tuple (see appendDims) followed by the metric:
// "c" calls, "e" errors, "i" bytes in, "o" bytes out, "h<n>" calls in
// histogram bucket n. Only non-zero values are written. Values only grow,
// by HINCRBY.
//
// Exactly once. Every sealed call is in exactly one batch. Batches carry
// a sequence number, increasing per Aggregator, and are written strictly
// in order: batch n+1 is never sent before batch n was acknowledged. Each
// key of a batch is written by one script per chunk of at most
// chunkFields fields that, atomically, compares the position
// seq<<20|chunk with the field "~<instance id>" of the same hash, applies
// the increments and stores the position only when it is newer. So a
// retry after an ambiguous failure (the script ran but the reply was
// lost) is a no-op, and a failed batch is retried with exactly the same
// content: its plan (keys, chunks, fields) is built once, at its first
// attempt, and never rebuilt; new calls go to a later batch. Each script
// touches one key, so the layout works on Redis Cluster.
const flushSrc = `
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if last and last >= tonumber(ARGV[2]) then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i+1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
`

var flushScript = redis.NewScript(flushSrc)

// batch is sealed data awaiting a Redis flush. Until its first attempt
// new seals merge into it; from then on it is immutable.
type batch struct {
	seq       uint64
	minutes   map[int64]map[dims]*agg // the cells, until the first attempt
	cells     int64                   // cells counted in Aggregator.pendingCells
	attempted bool
	plan      []planKey // the writes, from the first attempt on
}

// planKey is the write of one hash in a batch.
type planKey struct {
	name     string
	hour     bool
	index    int64   // unix minute or unix hour
	expireAt int64   // unix seconds, by the Aggregator's clock
	chunks   [][]any // field, value, field, value…
}

func chunkPos(seq uint64, chunk int) int64 { return int64(seq<<20 | uint64(chunk)) }

func (b *batch) add(k cellKey, c *openCell) (isNew bool) {
	cells := b.minutes[k.minute]
	if cells == nil {
		cells = make(map[dims]*agg)
		b.minutes[k.minute] = cells
	}
	g := cells[k.d]
	if g == nil {
		g = new(agg)
		cells[k.d] = g
		b.cells++
		isNew = true
	}
	g.addOpen(c)
	return isNew
}

// tailBatch returns the batch new seals merge into.
func (a *Aggregator) tailBatch() *batch {
	if n := len(a.pending); n > 0 && !a.pending[n-1].attempted {
		return a.pending[n-1]
	}
	a.seq++
	b := &batch{seq: a.seq, minutes: make(map[int64]map[dims]*agg)}
	a.pending = append(a.pending, b)
	return b
}

// boundPending drops the oldest minutes of the tail batch while more
// cells than MaxPending wait. Only the tail is never attempted, so only
// it may change; pending memory stays below about 2 × MaxPending (the
// tail plus the batch being retried, itself bounded when it was a tail).
func (a *Aggregator) boundPending() {
	n := len(a.pending)
	if n == 0 || a.pending[n-1].attempted {
		return
	}
	b := a.pending[n-1]
	var calls int64
	for a.pendingCells.Load() > int64(a.maxPend) && len(b.minutes) > 0 {
		oldest := int64(0)
		first := true
		for m := range b.minutes {
			if first || m < oldest {
				oldest, first = m, false
			}
		}
		for _, g := range b.minutes[oldest] {
			calls += g.calls
		}
		k := int64(len(b.minutes[oldest]))
		b.cells -= k
		a.pendingCells.Add(-k)
		delete(b.minutes, oldest)
	}
	if calls > 0 {
		a.dropped.Add(calls)
		if !a.dropLog {
			a.dropLog = true
			a.log.Warn("analytics: unflushed data exceeds max_pending (redis unreachable?); dropping the oldest unflushed minutes",
				"max_pending_cells", a.maxPend, "dropped_calls", calls)
		}
	}
}

// flushLocked writes the pending batches in order and stops at the first
// failure, which keeps its batch (and all later ones) for the next try.
func (a *Aggregator) flushLocked(ctx context.Context) error {
	for len(a.pending) > 0 {
		b := a.pending[0]
		if err := a.writeBatch(ctx, b); err != nil {
			a.flushErrors.Add(1)
			if !a.outage {
				a.outage = true
				a.log.Warn("analytics: flush to redis failed; keeping the data and retrying", "error", err)
			}
			return fmt.Errorf("flush analytics to redis: %w", err)
		}
		a.pending[0] = nil
		a.pending = a.pending[1:]
		a.pendingCells.Add(-b.cells)
	}
	if a.outage {
		a.outage = false
		a.log.Info("analytics: flush to redis recovered", "dropped_calls_total", a.dropped.Load())
	}
	a.dropLog = false
	return nil
}

// writeBatch sends every chunk of b's plan, building the plan at the
// first attempt. It may be repeated: the flush markers make it
// idempotent.
func (a *Aggregator) writeBatch(ctx context.Context, b *batch) error {
	if !b.attempted {
		b.attempted = true
		b.plan = a.buildPlan(b)
		b.minutes = nil // the plan is the batch from now on
	}
	err := a.execPlan(ctx, b, false)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The script cache was flushed (or the server restarted): NOSCRIPT
		// means nothing ran, so sending the source is safe.
		err = a.execPlan(ctx, b, true)
	}
	return err
}

func (a *Aggregator) execPlan(ctx context.Context, b *batch, eval bool) error {
	now := a.now().Unix()
	pipe := a.rdb.Pipeline()
	n := 0
	for i := range b.plan {
		k := &b.plan[i]
		ttl := k.expireAt - now
		if ttl <= 0 {
			// Past retention: Redis would drop the key at once. (A minute
			// skipped here is still in its hour roll-up.)
			continue
		}
		for ci, fields := range k.chunks {
			args := make([]any, 0, 3+len(fields))
			args = append(args, a.marker, chunkPos(b.seq, ci), ttl)
			args = append(args, fields...)
			keys := []string{k.name}
			if eval {
				pipe.Eval(ctx, flushSrc, keys, args...)
			} else {
				pipe.EvalSha(ctx, flushScript.Hash(), keys, args...)
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			return c.Err()
		}
	}
	return err
}

func (a *Aggregator) minuteKey(m int64) string { return a.prefix + "m:" + strconv.FormatInt(m, 10) }
func (a *Aggregator) hourKey(h int64) string   { return a.prefix + "h:" + strconv.FormatInt(h, 10) }

// buildPlan lays b out as hash writes: each minute's cells into its
// minute hash, and their sums per hour into the hour hashes.
func (a *Aggregator) buildPlan(b *batch) []planKey {
	hours := make(map[int64]map[dims]*agg)
	var plan []planKey
	for m, cells := range b.minutes {
		plan = append(plan, a.planKey(false, m, cells))
		h := floorDiv(m, 60)
		hc := hours[h]
		if hc == nil {
			hc = make(map[dims]*agg)
			hours[h] = hc
		}
		for d, g := range cells {
			x := hc[d]
			if x == nil {
				x = new(agg)
				hc[d] = x
			}
			x.addAgg(g)
		}
	}
	for h, cells := range hours {
		plan = append(plan, a.planKey(true, h, cells))
	}
	slices.SortFunc(plan, func(x, y planKey) int {
		if x.hour != y.hour {
			if x.hour {
				return 1
			}
			return -1
		}
		return cmp.Compare(x.index, y.index)
	})
	return plan
}

func (a *Aggregator) planKey(hour bool, i int64, cells map[dims]*agg) planKey {
	k := planKey{hour: hour, index: i}
	if hour {
		k.name = a.hourKey(i)
		k.expireAt = i*3600 + int64(redisHourTTL/time.Second)
	} else {
		k.name = a.minuteKey(i)
		k.expireAt = i*60 + int64((minuteRetention+minuteGrace)/time.Second)
	}
	var fields []any
	var buf []byte
	put := func(prefix []byte, metric string, v int64) {
		if v == 0 {
			return
		}
		if len(fields) == 2*a.chunk {
			k.chunks = append(k.chunks, fields)
			fields = nil
		}
		fields = append(fields, string(append(prefix, metric...)), v)
	}
	for d, g := range cells {
		buf = appendDims(buf[:0], &d)
		put(buf, "c", g.calls)
		put(buf, "e", g.errors)
		put(buf, "i", g.bytesIn)
		put(buf, "o", g.bytesOut)
		for _, x := range g.hist {
			put(buf, "h"+strconv.Itoa(x.index()), x.count())
		}
	}
	if len(fields) > 0 {
		k.chunks = append(k.chunks, fields)
	}
	return k
}

// hashParser sums hash fields, as read from Redis or from a plan, into
// cells keyed by the encoded tuple.
type hashParser struct {
	cells map[string]*parsedCell
}

type parsedCell struct {
	d dims
	g agg
}

func (p *hashParser) reset() { clear(p.cells) }

// add parses one field; it reports false for a field it cannot read.
func (p *hashParser) add(field string, v int64) bool {
	d, n, ok := parseDims(field)
	if !ok || n == len(field) {
		return false
	}
	enc, metric := field[:n], field[n:]
	c := p.cells[enc]
	if c == nil {
		c = &parsedCell{d: d}
		if p.cells == nil {
			p.cells = make(map[string]*parsedCell)
		}
		p.cells[enc] = c
	}
	switch metric {
	case "c":
		c.g.calls += v
	case "e":
		c.g.errors += v
	case "i":
		c.g.bytesIn += v
	case "o":
		c.g.bytesOut += v
	default:
		if metric[0] != 'h' {
			return false
		}
		i, err := strconv.Atoi(metric[1:])
		if err != nil || i < 0 || i >= numBuckets {
			return false
		}
		c.g.addBucket(i, v)
	}
	return true
}

// addPairs parses a plan chunk.
func (p *hashParser) addPairs(fields []any) {
	for i := 0; i+1 < len(fields); i += 2 {
		p.add(fields[i].(string), fields[i+1].(int64))
	}
}

func (p *hashParser) visit(start int64, visit visitFunc) {
	for _, c := range p.cells {
		visit(start, &c.d, &c.g)
	}
}

// readBatchSize bounds the HGETALLs of one pipeline.
const readBatchSize = 200

// collectRedis reads the segments' hashes from Redis and adds this
// instance's unflushed data, skipping any chunk whose flush marker shows
// it already applied, so no call is counted twice.
func (a *Aggregator) collectRedis(ctx context.Context, segs []segment, visit visitFunc) error {
	type keyRef struct {
		name  string
		start int64
	}
	var keys []keyRef
	for _, s := range segs {
		for i := s.from; i < s.to; i++ {
			if s.hour {
				keys = append(keys, keyRef{a.hourKey(i), i * 3600})
			} else {
				keys = append(keys, keyRef{a.minuteKey(i), i * 60})
			}
		}
	}
	markers := make(map[string]int64)
	var p hashParser
	for len(keys) > 0 {
		n := min(len(keys), readBatchSize)
		pipe := a.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, n)
		for i, k := range keys[:n] {
			cmds[i] = pipe.HGetAll(ctx, k.name)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("read analytics from redis: %w", err)
		}
		for i, k := range keys[:n] {
			p.reset()
			for f, s := range cmds[i].Val() {
				if len(f) > 0 && f[0] == '~' {
					if f == a.marker {
						v, _ := strconv.ParseInt(s, 10, 64)
						markers[k.name] = v
					}
					continue
				}
				v, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					continue
				}
				p.add(f, v)
			}
			p.visit(k.start, visit)
		}
		keys = keys[n:]
	}
	for _, b := range a.pending {
		if b.attempted {
			for i := range b.plan {
				k := &b.plan[i]
				if !segsHave(segs, k.hour, k.index) {
					continue
				}
				last, ok := markers[k.name]
				if !ok {
					last = -1
				}
				p.reset()
				for ci, fields := range k.chunks {
					if chunkPos(b.seq, ci) > last {
						p.addPairs(fields)
					}
				}
				start := k.index * 60
				if k.hour {
					start = k.index * 3600
				}
				p.visit(start, visit)
			}
			continue
		}
		// Never attempted: nothing of it can be in Redis.
		visitMinutes(b.minutes, segs, visit)
	}
	return nil
}
