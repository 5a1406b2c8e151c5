package quota_test

import (
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/policy/quota"
)

func TestBounds(t *testing.T) {
	t.Parallel()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	utc := time.UTC
	// 2027-03-28 02:00 CET: clocks jump to 03:00 CEST in Berlin.
	// 2027-10-31 03:00 CEST: clocks fall back to 02:00 CET.
	fallFirst := time.Date(2027, 10, 31, 0, 30, 0, 0, utc) // 02:30 CEST
	fallSecond := fallFirst.Add(time.Hour)                 // 02:30 CET
	cases := []struct {
		name, period string
		t            time.Time
		loc          *time.Location
		start, end   time.Time
	}{
		{"minute", "minute", time.Date(2027, 5, 5, 10, 7, 33, 5, utc), utc,
			time.Date(2027, 5, 5, 10, 7, 0, 0, utc), time.Date(2027, 5, 5, 10, 8, 0, 0, utc)},
		{"hour/half-hour zone", "hour", time.Date(2027, 5, 5, 10, 7, 0, 0, utc), kolkata,
			// 15:37 IST is in the hour from 15:00 IST (09:30 UTC).
			time.Date(2027, 5, 5, 9, 30, 0, 0, utc), time.Date(2027, 5, 5, 10, 30, 0, 0, utc)},
		{"hour/DST end, first 02:30", "hour", fallFirst, berlin,
			time.Date(2027, 10, 31, 0, 0, 0, 0, utc), time.Date(2027, 10, 31, 1, 0, 0, 0, utc)},
		{"hour/DST end, second 02:30", "hour", fallSecond, berlin,
			time.Date(2027, 10, 31, 1, 0, 0, 0, utc), time.Date(2027, 10, 31, 2, 0, 0, 0, utc)},
		{"day/DST start lasts 23h", "day", time.Date(2027, 3, 28, 12, 0, 0, 0, berlin), berlin,
			time.Date(2027, 3, 27, 23, 0, 0, 0, utc), time.Date(2027, 3, 28, 22, 0, 0, 0, utc)},
		{"day/DST end lasts 25h", "day", fallSecond, berlin,
			time.Date(2027, 10, 30, 22, 0, 0, 0, utc), time.Date(2027, 10, 31, 23, 0, 0, 0, utc)},
		{"week/Monday", "week", time.Date(2027, 1, 4, 0, 0, 0, 0, utc), utc,
			time.Date(2027, 1, 4, 0, 0, 0, 0, utc), time.Date(2027, 1, 11, 0, 0, 0, 0, utc)},
		{"week/Sunday", "week", time.Date(2027, 1, 10, 23, 59, 0, 0, utc), utc,
			time.Date(2027, 1, 4, 0, 0, 0, 0, utc), time.Date(2027, 1, 11, 0, 0, 0, 0, utc)},
		// The week of the DST start (Sunday 2027-03-28) lasts 167 hours.
		{"week/DST start", "week", time.Date(2027, 3, 28, 12, 0, 0, 0, berlin), berlin,
			time.Date(2027, 3, 21, 23, 0, 0, 0, utc), time.Date(2027, 3, 28, 22, 0, 0, 0, utc)},
		{"month/zone ahead of UTC", "month", time.Date(2027, 3, 31, 22, 30, 0, 0, utc), berlin,
			time.Date(2027, 3, 31, 22, 0, 0, 0, utc), time.Date(2027, 4, 30, 22, 0, 0, 0, utc)},
		{"month/December", "month", time.Date(2027, 12, 31, 23, 0, 0, 0, utc), utc,
			time.Date(2027, 12, 1, 0, 0, 0, 0, utc), time.Date(2028, 1, 1, 0, 0, 0, 0, utc)},
		{"month/February leap", "month", time.Date(2028, 2, 29, 12, 0, 0, 0, utc), utc,
			time.Date(2028, 2, 1, 0, 0, 0, 0, utc), time.Date(2028, 3, 1, 0, 0, 0, 0, utc)},
		{"year", "year", time.Date(2027, 7, 1, 0, 0, 0, 0, utc), berlin,
			time.Date(2026, 12, 31, 23, 0, 0, 0, utc), time.Date(2027, 12, 31, 23, 0, 0, 0, utc)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start, end, err := quota.Bounds(tc.period, tc.t, tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			if !start.Equal(tc.start) || !end.Equal(tc.end) {
				t.Errorf("got [%v, %v); want [%v, %v)", start.UTC(), end.UTC(), tc.start.UTC(), tc.end.UTC())
			}
			if tc.t.Before(start) || !tc.t.Before(end) {
				t.Errorf("%v is not in [%v, %v)", tc.t, start, end)
			}
		})
	}
	if _, _, err := quota.Bounds("fortnight", time.Now(), time.UTC); err == nil {
		t.Error("fortnight: got no error")
	}
}
