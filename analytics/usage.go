package analytics

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// UsageQuery selects the calls of a usage export.
type UsageQuery struct {
	// From and To bound the range [From, To), both truncated to the
	// minute. An edge older than 25h (where only hour roll-ups remain)
	// widens to the whole hour; [Usage.From] and [Usage.To] report the
	// range used.
	From, To time.Time
	// Consumer keeps one consumer's calls; "" keeps all.
	Consumer string
}

// Usage is a usage export for billing: calls and bytes per consumer, API,
// method and status class.
type Usage struct {
	From time.Time  `json:"from"`
	To   time.Time  `json:"to"`
	Rows []UsageRow `json:"rows"`
}

// UsageRow is the usage of one (consumer, api, method, status_class).
// Consumer is "" for anonymous calls and [Other] for calls the
// cardinality cap collapsed.
type UsageRow struct {
	Consumer    string `json:"consumer"`
	API         string `json:"api"`
	Method      string `json:"method"`
	StatusClass string `json:"status_class"`
	Calls       int64  `json:"calls"`
	BytesIn     int64  `json:"bytes_in"`
	BytesOut    int64  `json:"bytes_out"`
}

// usageSegments splits [from, to) (whole minutes) into minute data at the
// partial-hour edges and hour roll-ups for the whole hours between;
// edges older than oldest widen to whole hours. It returns the range it
// covers.
func usageSegments(from, to, oldest time.Time) ([]segment, time.Time, time.Time) {
	fh, th := ceilTime(from, time.Hour), to.Truncate(time.Hour)
	if !fh.Before(th) {
		// No whole hour inside.
		if !from.Before(oldest) {
			return []segment{{false, from.Unix() / 60, to.Unix() / 60}}, from, to
		}
		from, to = from.Truncate(time.Hour), ceilTime(to, time.Hour)
		return []segment{{true, from.Unix() / 3600, to.Unix() / 3600}}, from, to
	}
	var segs []segment
	if from.Before(fh) {
		if from.Before(oldest) {
			from = from.Truncate(time.Hour)
			fh = from
		} else {
			segs = append(segs, segment{false, from.Unix() / 60, fh.Unix() / 60})
		}
	}
	if th.Before(to) {
		if th.Before(oldest) {
			to = ceilTime(to, time.Hour)
			th = to
		} else {
			segs = append(segs, segment{false, th.Unix() / 60, to.Unix() / 60})
		}
	}
	segs = append(segs, segment{true, fh.Unix() / 3600, th.Unix() / 3600})
	return segs, from, to
}

type usageKey struct{ consumer, api, method, status string }

// Usage returns the calls and bytes per (consumer, api, method,
// status_class) in the range, from the same data as [Aggregator.Query].
// Rows are sorted by consumer, api, method and status class.
func (a *Aggregator) Usage(ctx context.Context, q UsageQuery) (*Usage, error) {
	from, to := q.From.UTC().Truncate(time.Minute), q.To.UTC().Truncate(time.Minute)
	if to.Before(from) {
		return nil, fmt.Errorf("%w: from %s is after to %s", ErrInvalidQuery, q.From, q.To)
	}
	if err := a.lock(ctx); err != nil {
		return nil, err
	}
	segs, from, to := usageSegments(from, to, minuteStart(a.now()))
	rows := make(map[usageKey]*UsageRow)
	err := a.collectLocked(ctx, segs, func(_ int64, d *dims, g *agg) {
		if q.Consumer != "" && d.consumer != q.Consumer {
			return
		}
		k := usageKey{d.consumer, d.api, d.method, d.status}
		r := rows[k]
		if r == nil {
			r = &UsageRow{Consumer: d.consumer, API: d.api, Method: d.method, StatusClass: d.status}
			rows[k] = r
		}
		r.Calls += g.calls
		r.BytesIn += g.bytesIn
		r.BytesOut += g.bytesOut
	})
	a.unlock()
	if err != nil {
		return nil, err
	}
	u := &Usage{From: from, To: to, Rows: make([]UsageRow, 0, len(rows))}
	for _, r := range rows {
		if r.Calls != 0 || r.BytesIn != 0 || r.BytesOut != 0 {
			u.Rows = append(u.Rows, *r)
		}
	}
	slices.SortFunc(u.Rows, func(x, y UsageRow) int {
		return cmp.Or(
			cmp.Compare(x.Consumer, y.Consumer),
			cmp.Compare(x.API, y.API),
			cmp.Compare(x.Method, y.Method),
			cmp.Compare(x.StatusClass, y.StatusClass),
		)
	})
	return u, nil
}

// WriteJSON writes u as one JSON object: {"from", "to" (RFC 3339, UTC),
// "rows": [{"consumer", "api", "method", "status_class", "calls",
// "bytes_in", "bytes_out"}]} and a newline.
func (u *Usage) WriteJSON(w io.Writer) error {
	v := *u
	v.From, v.To = v.From.UTC(), v.To.UTC()
	if v.Rows == nil {
		v.Rows = []UsageRow{}
	}
	return json.NewEncoder(w).Encode(v)
}

// csvHeader is the first line of [Usage.WriteCSV].
var csvHeader = []string{"consumer", "api", "method", "status_class", "calls", "bytes_in", "bytes_out"}

// WriteCSV writes u as RFC 4180 CSV: the header line
// consumer,api,method,status_class,calls,bytes_in,bytes_out and one line
// per row, quoted when needed; the range
// is not part of the CSV.
//
// A text cell that a spreadsheet would read as a formula (starting with
// =, +, -, @, tab or carriage return: a consumer named by a JWT's sub
// could be "=HYPERLINK(...)") is written with a leading apostrophe, as
// OWASP advises for CSV exports.
func (u *Usage) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range u.Rows {
		rec := []string{csvSafe(r.Consumer), csvSafe(r.API), csvSafe(r.Method), r.StatusClass,
			strconv.FormatInt(r.Calls, 10), strconv.FormatInt(r.BytesIn, 10), strconv.FormatInt(r.BytesOut, 10)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe returns s with a leading apostrophe when a spreadsheet would
// read it as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
