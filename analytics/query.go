package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Query selects calls for [Aggregator.Query].
type Query struct {
	// From and To bound the range [From, To). From is truncated and To
	// rounded up to the minute (to the hour when hour roll-ups answer;
	// see Step). [Result.From] and [Result.To] report the range used.
	From, To time.Time
	// Step is the width of one point. 0 chooses from the range: 1m up to
	// 1h, 5m up to 6h, 15m up to 25h, 1h up to 8d, else 1d. Steps round
	// up to whole minutes. A range that starts more than 25h ago, or a
	// whole-hour range with a whole-hour step, reads hour roll-ups: then
	// From, To and Step round to whole hours.
	Step time.Duration
	// GroupBy lists the dimensions that split the result into series:
	// any of "api", "route", "method", "protocol", "consumer",
	// "status_class". Empty gives one total series.
	GroupBy []string
	// Filter keeps only calls whose dimension (a key as in GroupBy)
	// equals the value exactly, e.g. {"consumer": "alice"}.
	Filter map[string]string
}

// Result is the answer to a [Query]. It encodes to JSON as
// {"from", "to" (RFC 3339), "step_seconds", "series"}.
type Result struct {
	From, To time.Time
	Step     time.Duration
	// Series are sorted by total calls, most first (ties by labels).
	Series []Series
}

// Series is the time series of one group-by combination.
type Series struct {
	// Labels maps each group-by dimension to its value; empty without
	// GroupBy.
	Labels map[string]string `json:"labels"`
	// Points has one point per step from Result.From, empty steps
	// included.
	Points []Point `json:"points"`
	// Totals are the metrics over the whole range; the percentiles come
	// from the merged histogram, not from averaging points.
	Totals Metrics `json:"totals"`
}

// Point is one step of a [Series].
type Point struct {
	// T is the step's start, in unix seconds.
	T int64 `json:"t"`
	Metrics
}

// Metrics are the call metrics of a point or of a whole series.
// Percentiles are in milliseconds, interpolated linearly within 26% wide
// log-spaced latency buckets, so they are within −21%/+26% of the true
// value (exact merges across minutes and instances); 0 without calls.
type Metrics struct {
	Calls    int64   `json:"calls"`
	Errors   int64   `json:"errors"` // 4xx and 5xx
	BytesIn  int64   `json:"bytes_in"`
	BytesOut int64   `json:"bytes_out"`
	P50      float64 `json:"p50_ms"`
	P95      float64 `json:"p95_ms"`
	P99      float64 `json:"p99_ms"`
}

type resultJSON struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	StepSeconds int64     `json:"step_seconds"`
	Series      []Series  `json:"series"`
}

// MarshalJSON encodes r with snake_case keys and the step in seconds.
func (r *Result) MarshalJSON() ([]byte, error) {
	s := r.Series
	if s == nil {
		s = []Series{}
	}
	return json.Marshal(resultJSON{r.From.UTC(), r.To.UTC(), int64(r.Step / time.Second), s})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{From: j.From, To: j.To, Step: time.Duration(j.StepSeconds) * time.Second, Series: j.Series}
	return nil
}

// Window returns the range and step of a named window ending now: "1h",
// "6h", "24h" (or "1d"), "7d" or "30d". The range ends at the end of the
// step that contains now, so points stay aligned as time passes (for
// "30d", days start at 00:00 UTC), and the step is the one Query would
// choose for the range.
func Window(name string, now time.Time) (from, to time.Time, step time.Duration, err error) {
	var d time.Duration
	switch name {
	case "1h":
		d = time.Hour
	case "6h":
		d = 6 * time.Hour
	case "24h", "1d":
		d = 24 * time.Hour
	case "7d":
		d = 7 * 24 * time.Hour
	case "30d":
		d = 30 * 24 * time.Hour
	default:
		return time.Time{}, time.Time{}, 0, fmt.Errorf("unknown window %q (known: 1h, 6h, 24h, 1d, 7d, 30d)", name)
	}
	step = autoStep(d)
	to = now.UTC().Truncate(step).Add(step)
	return to.Add(-d), to, step, nil
}

func autoStep(d time.Duration) time.Duration {
	switch {
	case d <= time.Hour:
		return time.Minute
	case d <= 6*time.Hour:
		return 5 * time.Minute
	case d <= 25*time.Hour:
		return 15 * time.Minute
	case d <= 8*24*time.Hour:
		return time.Hour
	default:
		return 24 * time.Hour
	}
}

// maxPoints bounds the points of one series.
const maxPoints = 10000

// segment is a range [from, to) of minute or hour indexes.
type segment struct {
	hour     bool
	from, to int64
}

func segsHave(segs []segment, hour bool, i int64) bool {
	for _, s := range segs {
		if s.hour == hour && s.from <= i && i < s.to {
			return true
		}
	}
	return false
}

// visitFunc receives one cell of data whose bucket starts at start (unix
// seconds). d and g are only valid during the call.
type visitFunc func(start int64, d *dims, g *agg)

// visitMinutes visits sealed minute cells that fall in segs; a minute
// counts in an hour segment through its hour.
func visitMinutes(minutes map[int64]map[dims]*agg, segs []segment, visit visitFunc) {
	for m, cells := range minutes {
		h := floorDiv(m, 60)
		var start int64
		switch {
		case segsHave(segs, false, m):
			start = m * 60
		case segsHave(segs, true, h):
			start = h * 3600
		default:
			continue
		}
		for d, g := range cells {
			visit(start, &d, g)
		}
	}
}

// collectLocked seals the open cells and visits all data in segs.
func (a *Aggregator) collectLocked(ctx context.Context, segs []segment, visit visitFunc) error {
	a.sealLocked()
	if a.rdb != nil {
		return a.collectRedis(ctx, segs, visit)
	}
	for _, s := range segs {
		src, unit := a.minutes, int64(60)
		if s.hour {
			src, unit = a.hours, 3600
		}
		for i, cells := range src {
			if i < s.from || i >= s.to {
				continue
			}
			for d, g := range cells {
				visit(i*unit, &d, g)
			}
		}
	}
	return nil
}

// minuteStart is the oldest minute that minute data still covers.
func minuteStart(now time.Time) time.Time {
	return now.Truncate(time.Minute).Add(-minuteRetention)
}

func ceilTime(t time.Time, d time.Duration) time.Time {
	if u := t.Truncate(d); !u.Equal(t) {
		return u.Add(d)
	}
	return t
}

func ceilDur(d, unit time.Duration) time.Duration {
	if d%unit != 0 {
		d += unit - d%unit
	}
	return max(d, unit)
}

type filterDim struct {
	i int
	v string
}

func parseDimsQuery(groupBy []string, filter map[string]string) ([]int, []filterDim, error) {
	var groups []int
	for _, g := range groupBy {
		i, err := dimIndex(g)
		if err != nil {
			return nil, nil, fmt.Errorf("group_by: %w", err)
		}
		if !slices.Contains(groups, i) {
			groups = append(groups, i)
		}
	}
	var filters []filterDim
	for k, v := range filter {
		i, err := dimIndex(k)
		if err != nil {
			return nil, nil, fmt.Errorf("filter: %w", err)
		}
		filters = append(filters, filterDim{i, v})
	}
	return groups, filters, nil
}

func matches(d *dims, filters []filterDim) bool {
	for _, f := range filters {
		if d.get(f.i) != f.v {
			return false
		}
	}
	return true
}

// ErrInvalidQuery is wrapped by the errors of malformed queries (bad
// range, unknown dimension, too many points).
var ErrInvalidQuery = errors.New("invalid analytics query")

type seriesAcc struct {
	key    string
	labels map[string]string
	points []*acc
}

// Query answers q from this instance's memory, or with Redis from the
// shared hashes plus this instance's unflushed calls (each counted
// once). It seals the calls recorded so far, so a query right after
// Record sees them.
func (a *Aggregator) Query(ctx context.Context, q Query) (*Result, error) {
	groups, filters, err := parseDimsQuery(q.GroupBy, q.Filter)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	if !q.From.Before(q.To) {
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrInvalidQuery, q.From, q.To)
	}
	if q.Step < 0 {
		return nil, fmt.Errorf("%w: negative step %s", ErrInvalidQuery, q.Step)
	}
	from, to := q.From.UTC().Truncate(time.Minute), ceilTime(q.To.UTC(), time.Minute)
	step := q.Step
	if step == 0 {
		step = autoStep(to.Sub(from))
	}
	aligned := from.Truncate(time.Hour).Equal(from) && to.Truncate(time.Hour).Equal(to)
	hour := from.Before(minuteStart(a.now())) || (aligned && step%time.Hour == 0)
	unit := time.Minute
	if hour {
		unit = time.Hour
		from, to = from.Truncate(time.Hour), ceilTime(to, time.Hour)
	}
	step = ceilDur(step, unit)
	n := int64((to.Sub(from) + step - 1) / step)
	if n > maxPoints {
		return nil, fmt.Errorf("%w: %d points of %s exceed %d; use a larger step", ErrInvalidQuery, n, step, maxPoints)
	}
	u := int64(unit / time.Second)
	seg := segment{hour: hour, from: from.Unix() / u, to: to.Unix() / u}

	fromSec, stepSec := from.Unix(), int64(step/time.Second)
	series := make(map[string]*seriesAcc)
	var kb []byte
	visit := func(start int64, d *dims, g *agg) {
		if !matches(d, filters) {
			return
		}
		i := (start - fromSec) / stepSec
		if start < fromSec || i >= n {
			return
		}
		kb = kb[:0]
		for _, gi := range groups {
			v := d.get(gi)
			kb = strconv.AppendInt(kb, int64(len(v)), 10)
			kb = append(kb, ':')
			kb = append(kb, v...)
		}
		s := series[string(kb)]
		if s == nil {
			s = &seriesAcc{key: string(kb), labels: make(map[string]string, len(groups)), points: make([]*acc, n)}
			for _, gi := range groups {
				s.labels[dimNames[gi]] = d.get(gi)
			}
			series[s.key] = s
		}
		p := s.points[i]
		if p == nil {
			p = new(acc)
			s.points[i] = p
		}
		p.addAgg(g)
	}
	if err := a.lock(ctx); err != nil {
		return nil, err
	}
	err = a.collectLocked(ctx, []segment{seg}, visit)
	a.unlock()
	if err != nil {
		return nil, err
	}

	res := &Result{From: from, To: to, Step: step, Series: make([]Series, 0, len(series))}
	keys := make([]string, 0, len(series))
	for _, s := range series {
		var total acc
		out := Series{Labels: s.labels, Points: make([]Point, n)}
		for i, p := range s.points {
			out.Points[i].T = fromSec + int64(i)*stepSec
			if p != nil {
				out.Points[i].Metrics = p.metrics()
				total.add(p)
			}
		}
		out.Totals = total.metrics()
		res.Series = append(res.Series, out)
		keys = append(keys, s.key)
	}
	// Sort by calls desc, then by the encoded labels for a stable order.
	idx := make([]int, len(res.Series))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(x, y int) int {
		if c := res.Series[y].Totals.Calls - res.Series[x].Totals.Calls; c != 0 {
			if c > 0 {
				return 1
			}
			return -1
		}
		return strings.Compare(keys[x], keys[y])
	})
	sorted := make([]Series, len(idx))
	for i, j := range idx {
		sorted[i] = res.Series[j]
	}
	res.Series = sorted
	return res, nil
}
