package quota

import (
	"fmt"
	"time"
)

// period is a calendar period a quota resets on.
type period uint8

const (
	minute period = iota + 1
	hour
	day
	week
	month
	year
)

var periodNames = [...]string{minute: "minute", hour: "hour", day: "day", week: "week", month: "month", year: "year"}

// String returns the period's config name, such as "month".
func (p period) String() string {
	if int(p) < len(periodNames) && periodNames[p] != "" {
		return periodNames[p]
	}
	return fmt.Sprintf("period(%d)", uint8(p))
}

// parsePeriod parses a config.Quota period.
func parsePeriod(s string) (period, error) {
	for p, name := range periodNames {
		if name != "" && name == s {
			return period(p), nil
		}
	}
	return 0, fmt.Errorf("unknown quota period %q (known: minute, hour, day, week, month, year)", s)
}

// bounds returns the period of p that contains t, in loc: [start, end).
// Day, week, month and year boundaries are local midnights computed with
// time.Date, so that they follow DST changes (a local day may last 23 or
// 25 hours). Minute and hour periods strip the local clock's minutes and
// seconds from t, which keeps the two hours that share a wall-clock time
// on the night DST ends apart.
func (p period) bounds(t time.Time, loc *time.Location) (start, end time.Time) {
	t = t.In(loc)
	sub := time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond())
	switch p {
	case minute:
		start = t.Add(-sub)
		return start, start.Add(time.Minute)
	case hour:
		start = t.Add(-(sub + time.Duration(t.Minute())*time.Minute))
		return start, start.Add(time.Hour)
	}
	y, m, d := t.Date()
	switch p {
	case day:
		return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	case week:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, m, d-back, 0, 0, 0, 0, loc), time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)
	case month:
		return time.Date(y, m, 1, 0, 0, 0, 0, loc), time.Date(y, m+1, 1, 0, 0, 0, 0, loc)
	default: // year
		return time.Date(y, 1, 1, 0, 0, 0, 0, loc), time.Date(y+1, 1, 1, 0, 0, 0, 0, loc)
	}
}
