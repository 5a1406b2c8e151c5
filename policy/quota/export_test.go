package quota

import "time"

// SetRedisTimeout replaces the Redis timeout of plugins built after it;
// TestMain calls it before any test runs.
func SetRedisTimeout(d time.Duration) { redisTimeout = d }

// Bounds exposes period bounds to the tests.
func Bounds(periodName string, t time.Time, loc *time.Location) (start, end time.Time, err error) {
	p, err := parsePeriod(periodName)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	start, end = p.bounds(t, loc)
	return start, end, nil
}
