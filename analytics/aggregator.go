package analytics

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	randv2 "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Record is one finished call, as the gateway reports it to
// [Aggregator.Record].
type Record struct {
	// Time is when the call ended; its minute is the call's bucket. The
	// zero Time means now (by [Options.Now]).
	Time time.Time
	// API is the gRPC service full name ("library.v1.LibraryService"),
	// or the upstream name for plain HTTP routes.
	API string
	// Route is the config route (selector or uri); "" when none.
	Route string
	// Method is "/pkg.Service/Method", or the route uri for plain HTTP
	// routes.
	Method string
	// Protocol is how the client spoke: "rest", "grpc", "grpc_web",
	// "connect", "websocket", "sse" or "http".
	Protocol string
	// Consumer is the authenticated consumer; "" when anonymous.
	Consumer string
	// StatusClass is "2xx", "3xx", "4xx" or "5xx" (gRPC codes mapped to
	// HTTP classes). 4xx and 5xx count as errors.
	StatusClass string
	// Duration is the call's latency.
	Duration time.Duration
	// BytesIn and BytesOut are the request and response sizes.
	BytesIn, BytesOut int64
}

// Options configure an [Aggregator]. The zero value is a memory-only
// aggregator with the defaults below.
type Options struct {
	// Redis, when set, makes the analytics fleet-wide: every instance
	// flushes its minutes into shared hashes and queries read them. nil
	// keeps everything in this process's memory. The Aggregator does not
	// close the client.
	Redis redis.UniversalClient
	// Prefix is the Redis key prefix; default "rosetta:analytics:".
	Prefix string
	// FlushInterval is how often the background flusher seals the calls
	// recorded so far and, with Redis, writes them out. Default 10s; a
	// negative value starts no flusher (call [Aggregator.Flush] yourself).
	FlushInterval time.Duration
	// Now is the clock; default time.Now. Tests inject a fake one.
	Now func() time.Time
	// MaxKeysPerMinute caps the distinct dimension tuples of one minute;
	// default 10000. Past it the api, route, method and consumer of new
	// tuples collapse to [Other]; the calls are still counted.
	MaxKeysPerMinute int
	// MaxPending caps the cells (one per minute and dimension tuple) kept
	// in memory while Redis is unreachable; default 50 × MaxKeysPerMinute.
	// Past it the oldest unflushed minutes are dropped, counted in
	// [Stats.Dropped] and logged. Memory mode ignores it (retention bounds
	// memory there).
	MaxPending int
	// Logger receives flush failures (once per outage), recoveries and
	// drops; nil discards.
	Logger *slog.Logger
}

const (
	defaultPrefix        = "rosetta:analytics:"
	defaultFlushInterval = 10 * time.Second
	defaultMaxKeys       = 10000

	// minuteRetention is how far back minute buckets are kept and
	// queried; longer ranges read hour roll-ups.
	minuteRetention = 25 * time.Hour
	// minuteGrace keeps minutes a little past minuteRetention (memory and
	// Redis) so the oldest minute a query may read has not expired yet.
	minuteGrace = 5 * time.Minute
	// hourRetention is how long memory keeps hour roll-ups.
	hourRetention = 31 * 24 * time.Hour
	// redisHourTTL is how long an hour hash lives in Redis after its hour
	// started.
	redisHourTTL = 32 * 24 * time.Hour
	// seenWindow is how many past minutes the cardinality cap tracks.
	seenWindow = 5
	// chunkFields is the most hash fields one flush script writes; larger
	// keys take several scripts so Redis never blocks long.
	chunkFields = 2000
)

// cellKey identifies an open cell: the minute (unix seconds / 60) and the
// dimension tuple.
type cellKey struct {
	minute int64
	d      dims
}

// shard holds open cells. Record picks a shard at random so that even a
// single hot tuple spreads its lock traffic over all shards.
type shard struct {
	mu    sync.Mutex
	cells map[cellKey]*openCell
	_     [40]byte // keep shards on separate cache lines
}

// Aggregator aggregates call [Record]s into per-minute cells and answers
// [Aggregator.Query] and [Aggregator.Usage]. All methods are safe for
// concurrent use. Record never blocks on I/O; Flush, Query and Usage
// serialize with each other.
type Aggregator struct {
	rdb      redis.UniversalClient
	prefix   string
	now      func() time.Time
	log      *slog.Logger
	maxKeys  int
	maxPend  int
	interval time.Duration
	// id names this instance in the Redis hashes' flush markers.
	id     string
	marker string // "~" + id
	chunk  int    // chunkFields; tests lower it

	shards []shard
	mask   uint32

	capMu sync.Mutex
	seen  map[int64]map[dims]struct{} // minute → admitted tuples

	// sem is the lock of everything below; a channel so waiting honors a
	// context.
	sem     chan struct{}
	minutes map[int64]map[dims]*agg // memory mode: minute → cells
	hours   map[int64]map[dims]*agg // memory mode: hour → cells
	pending []*batch                // Redis mode: unflushed batches, oldest first
	seq     uint64
	outage  bool
	dropLog bool

	pendingCells atomic.Int64
	collapsed    atomic.Int64
	dropped      atomic.Int64
	flushErrors  atomic.Int64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns an Aggregator and, unless o.FlushInterval is negative,
// starts its background flusher; call [Aggregator.Close] to stop it.
func New(o Options) *Aggregator {
	a := &Aggregator{
		rdb:      o.Redis,
		prefix:   o.Prefix,
		now:      o.Now,
		log:      o.Logger,
		maxKeys:  o.MaxKeysPerMinute,
		maxPend:  o.MaxPending,
		interval: o.FlushInterval,
		chunk:    chunkFields,
		seen:     make(map[int64]map[dims]struct{}),
		sem:      make(chan struct{}, 1),
		minutes:  make(map[int64]map[dims]*agg),
		hours:    make(map[int64]map[dims]*agg),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if a.prefix == "" {
		a.prefix = defaultPrefix
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.maxKeys <= 0 {
		a.maxKeys = defaultMaxKeys
	}
	if a.maxPend <= 0 {
		a.maxPend = 50 * a.maxKeys
	}
	if a.interval == 0 {
		a.interval = defaultFlushInterval
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	a.id = hex.EncodeToString(id[:])
	a.marker = "~" + a.id

	n := 1
	for n < 2*runtime.GOMAXPROCS(0) && n < 64 {
		n <<= 1
	}
	a.shards = make([]shard, n)
	a.mask = uint32(n - 1)
	for i := range a.shards {
		a.shards[i].cells = make(map[cellKey]*openCell)
	}
	if a.interval > 0 {
		go a.run()
	} else {
		close(a.done)
	}
	return a
}

// Record counts one finished call. It does no I/O, never waits on Redis,
// and allocates nothing for a tuple already seen in the current flush
// period. It may be called concurrently. r is not retained.
func (a *Aggregator) Record(r *Record) {
	if r == nil {
		return
	}
	t := r.Time
	if t.IsZero() {
		t = a.now()
	}
	k := cellKey{
		minute: floorDiv(t.Unix(), 60),
		d:      dims{r.API, r.Route, r.Method, r.Protocol, r.Consumer, r.StatusClass},
	}
	s := &a.shards[randv2.Uint32()&a.mask]
	s.mu.Lock()
	c := s.cells[k]
	if c == nil {
		s.mu.Unlock()
		k.d = a.admit(k)
		s.mu.Lock()
		if c = s.cells[k]; c == nil {
			c = new(openCell)
			s.cells[k] = c
		}
	}
	c.add(r)
	s.mu.Unlock()
}

// admit applies the cardinality cap to a tuple new to a shard and
// returns the tuple to count it under.
func (a *Aggregator) admit(k cellKey) dims {
	a.capMu.Lock()
	set := a.seen[k.minute]
	if set == nil {
		set = make(map[dims]struct{})
		a.seen[k.minute] = set
	}
	_, ok := set[k.d]
	if !ok && len(set) < a.maxKeys {
		set[k.d] = struct{}{}
		ok = true
	}
	a.capMu.Unlock()
	if ok {
		return k.d
	}
	o := collapse(k.d)
	if o != k.d {
		a.collapsed.Add(1)
	}
	return o
}

// Stats are the Aggregator's own counters, for the gateway's metrics.
type Stats struct {
	// PendingCells is the number of cells (minute × dimension tuple)
	// sealed but not yet written to Redis.
	PendingCells int64
	// Collapsed counts calls whose dimensions the cardinality cap turned
	// into [Other].
	Collapsed int64
	// Dropped counts calls lost because Redis stayed unreachable until
	// [Options.MaxPending] was exceeded.
	Dropped int64
	// FlushErrors counts failed Redis flush attempts.
	FlushErrors int64
}

// Stats returns a snapshot of the counters. It does not block.
func (a *Aggregator) Stats() Stats {
	return Stats{
		PendingCells: a.pendingCells.Load(),
		Collapsed:    a.collapsed.Load(),
		Dropped:      a.dropped.Load(),
		FlushErrors:  a.flushErrors.Load(),
	}
}

// Flush seals every call recorded so far, including the current partial
// minute, and with Redis writes all pending data now. On error the data
// stays pending and the next Flush retries it; nothing is counted twice.
// Without Redis it only seals (so it never fails but for ctx).
func (a *Aggregator) Flush(ctx context.Context) error {
	if err := a.lock(ctx); err != nil {
		return err
	}
	defer a.unlock()
	a.sealLocked()
	if a.rdb == nil {
		return nil
	}
	return a.flushLocked(ctx)
}

// Close stops the background flusher and flushes a last time. Records
// after Close are kept but only written by an explicit Flush. Close may
// be called more than once.
func (a *Aggregator) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		if a.interval > 0 {
			close(a.stop)
		}
	})
	select {
	case <-a.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return a.Flush(ctx)
}

func (a *Aggregator) run() {
	defer close(a.done)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	timeout := max(a.interval, 5*time.Second)
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			_ = a.Flush(ctx) // logged once per outage by flushLocked
			cancel()
		}
	}
}

func (a *Aggregator) lock(ctx context.Context) error {
	select {
	case a.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Aggregator) unlock() { <-a.sem }

// takeOpen swaps out every shard's open cells.
func (a *Aggregator) takeOpen() []map[cellKey]*openCell {
	var taken []map[cellKey]*openCell
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		if len(s.cells) > 0 {
			taken = append(taken, s.cells)
			s.cells = make(map[cellKey]*openCell, len(s.cells))
		}
		s.mu.Unlock()
	}
	return taken
}

// sealLocked moves the open cells into the memory store (no Redis) or
// into the tail pending batch (Redis), then prunes what retention and the
// pending bound no longer allow.
func (a *Aggregator) sealLocked() {
	now := a.now()
	nowMin := floorDiv(now.Unix(), 60)
	taken := a.takeOpen()
	if a.rdb == nil {
		for _, cells := range taken {
			for k, c := range cells {
				addCell(a.minutes, k.minute, k.d, c)
				addCell(a.hours, floorDiv(k.minute, 60), k.d, c)
			}
		}
		a.pruneStore(now)
	} else if len(taken) > 0 {
		b := a.tailBatch()
		for _, cells := range taken {
			for k, c := range cells {
				if b.add(k, c) {
					a.pendingCells.Add(1)
				}
			}
		}
		a.boundPending()
	}
	a.capMu.Lock()
	for m := range a.seen {
		if m < nowMin-seenWindow {
			delete(a.seen, m)
		}
	}
	a.capMu.Unlock()
}

func addCell(store map[int64]map[dims]*agg, i int64, d dims, c *openCell) {
	cells := store[i]
	if cells == nil {
		cells = make(map[dims]*agg)
		store[i] = cells
	}
	g := cells[d]
	if g == nil {
		g = new(agg)
		cells[d] = g
	}
	g.addOpen(c)
}

// pruneStore drops memory-mode minutes and hours past retention.
func (a *Aggregator) pruneStore(now time.Time) {
	oldMin := floorDiv(now.Add(-minuteRetention-minuteGrace).Unix(), 60)
	for m := range a.minutes {
		if m < oldMin {
			delete(a.minutes, m)
		}
	}
	oldHour := floorDiv(now.Add(-hourRetention).Unix(), 3600)
	for h := range a.hours {
		if h < oldHour {
			delete(a.hours, h)
		}
	}
}

// floorDiv is a / b rounded toward negative infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
