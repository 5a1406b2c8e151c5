// Package analytics aggregates the gateway's finished calls into
// per-minute cells and answers the API-management views: calls, errors,
// bytes and latency percentiles over the last hour, day or 30 days, split
// by api, route, method, protocol, consumer or status class, and usage
// exports per consumer for billing (JSON and CSV).
//
// [Aggregator.Record] is the hot path: it increments an in-memory cell
// keyed by (minute, dimension tuple) and never does I/O. A cell keeps
// counters and a fixed log-spaced latency histogram (70 buckets, 26%
// wide, 50µs to 333s) so cells merge exactly across minutes and
// instances; percentiles are interpolated within a bucket (within
// −21%/+26% of the true value).
//
// Without Redis everything stays in memory: minute cells for 25 hours and
// hour roll-ups for 31 days. With [Options.Redis] the background flusher
// writes each instance's new calls every [Options.FlushInterval] into
// shared per-minute and per-hour hashes, exactly once (see the flush
// markers in redis.go), and memory keeps only what is not flushed yet.
// Queries read the hashes plus the local unflushed calls, so every
// instance sees the fleet's sum. When Redis is down, Record still works;
// flushes retry, and past [Options.MaxPending] the oldest unflushed
// minutes are dropped and counted.
//
// A minute holds at most [Options.MaxKeysPerMinute] distinct tuples; the
// rest collapse to [Other]. In memory mode a closed cell costs about 350
// bytes (measured, hour roll-ups included), so 25 hours of minutes take
// about 1500 × (tuples per minute) × 350 bytes, 500 MB at 1000 tuples
// every minute; fleets and high cardinality belong in Redis, where memory
// holds only unflushed cells.
//
// Time granularity is the minute: a call belongs to the minute its
// [Record.Time] falls in; query ranges round to minutes (to hours past
// 25h, where only hour roll-ups remain).
//
// The package does not decide what a call's dimensions are (the gateway
// fills [Record]), does not serve HTTP (the admin API does) and does not
// export Prometheus metrics (see [Aggregator.Stats]).
package analytics
