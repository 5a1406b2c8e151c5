package balance

import "time"

// Clock is the balancer's source of time: the current instant, and
// timers that end outlier ejections. Tests inject a clock they move by
// hand; the default is the system clock.
//
// Implementations must be safe for concurrent use. AfterFunc must not
// call f synchronously: the balancer calls AfterFunc while holding its
// lock, and f takes that lock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, unless
	// the returned timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call of [Clock.AfterFunc]. *time.Timer implements it.
type Timer interface {
	// Stop prevents the call if it has not started yet, and reports
	// whether it did. It does not wait for a call that has started.
	Stop() bool
}

// SystemClock is the [Clock] backed by the time package.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc returns time.AfterFunc(d, f).
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

var _ Clock = SystemClock{}
