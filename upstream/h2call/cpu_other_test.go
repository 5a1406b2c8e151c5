//go:build !unix

package h2call_test

import (
	"testing"
	"time"
)

func reportCPU(*testing.B) func() { return func() {} }

// cpuTime is not measured here; BenchmarkUnaryCPU then reports zeros.
func cpuTime() time.Duration { return 0 }
