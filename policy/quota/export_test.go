package quota

import "time"

// Bounds exposes period bounds to the tests.
func Bounds(periodName string, t time.Time, loc *time.Location) (start, end time.Time, err error) {
	p, err := parsePeriod(periodName)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	start, end = p.bounds(t, loc)
	return start, end, nil
}
