package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// t0 is the fake clock's start: 10:58:30, so tests cross a minute and an
// hour boundary within minutes.
var t0 = time.Date(2025, 3, 10, 10, 58, 30, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock = testkit.Clock

func newFakeClock() *fakeClock { return testkit.NewClock(t0) }

// newAggregator returns an Aggregator without a background flusher (the
// tests flush explicitly) that is closed when the test ends.
func newAggregator(t *testing.T, o Options) *Aggregator {
	t.Helper()
	if o.FlushInterval == 0 {
		o.FlushInterval = -1
	}
	a := New(o)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

func newRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                     addr,
		Protocol:                 2,
		DisableIdentity:          true,
		DialTimeout:              2 * time.Second,
		ReadTimeout:              5 * time.Second,
		WriteTimeout:             5 * time.Second,
		MaxRetries:               -1,
		DialerRetries:            1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rec returns a Record at the clock's time.
func rec(c *fakeClock, api, method, consumer, status string, d time.Duration) *Record {
	return &Record{
		Time:        c.Now(),
		API:         api,
		Route:       "/" + api,
		Method:      method,
		Protocol:    "grpc",
		Consumer:    consumer,
		StatusClass: status,
		Duration:    d,
		BytesIn:     10,
		BytesOut:    100,
	}
}

func mustQuery(t *testing.T, a *Aggregator, q Query) *Result {
	t.Helper()
	r, err := a.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("Query(%+v): %v", q, err)
	}
	return r
}

func mustFlush(t *testing.T, a *Aggregator) {
	t.Helper()
	if err := a.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// lastHour queries the hour before the clock's minute, inclusive.
func lastHour(c *fakeClock) Query {
	from, to, step, _ := Window("1h", c.Now())
	return Query{From: from, To: to, Step: step}
}

// totals sums the series' totals (calls, errors, bytes).
func totals(r *Result) Metrics {
	var m Metrics
	for _, s := range r.Series {
		m.Calls += s.Totals.Calls
		m.Errors += s.Totals.Errors
		m.BytesIn += s.Totals.BytesIn
		m.BytesOut += s.Totals.BytesOut
	}
	return m
}

// byLabel returns the series whose label dim equals v.
func byLabel(t *testing.T, r *Result, dim, v string) Series {
	t.Helper()
	for _, s := range r.Series {
		if s.Labels[dim] == v {
			return s
		}
	}
	t.Fatalf("no series with %s=%q in %+v", dim, v, r.Series)
	return Series{}
}
