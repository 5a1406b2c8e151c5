package ratelimit

// verdict is the outcome of one GCRA decision, in the time unit of the
// store that made it (nanoseconds in memory, microseconds in Redis).
type verdict struct {
	allowed bool
	// remaining is how many more calls would pass right now.
	remaining int64
	// reset is how long until the bucket is full again (Limit calls
	// available at once).
	reset int64
	// retry is how long until one call would pass; 0 when allowed.
	retry int64
}

// gcra decides one call with the generic cell rate algorithm. tat is the
// key's theoretical arrival time (0 or any past value for a fresh key),
// now the current time, interval the emission interval (Period/Limit)
// and limit the burst: a full bucket passes limit calls at once, then
// one per interval. It returns the key's new TAT (unchanged when the call
// is refused).
//
// The whole state is one number, so a decision is a read, a comparison
// and a write: in memory under a shard lock, in Redis inside one Lua
// script (gcraScript implements the same arithmetic).
func gcra(tat, now, interval, limit int64) (int64, verdict) {
	if tat < now {
		tat = now
	}
	window := interval * limit // the burst tolerance: ≤ Period
	next := tat + interval
	if next-now > window {
		return tat, verdict{reset: tat - now, retry: next - now - window}
	}
	return next, verdict{
		allowed:   true,
		remaining: (window - (next - now)) / interval,
		reset:     next - now,
	}
}
