//go:build !unix

package gateway

import "time"

// processCPU is not measured here: benchmarks then report cpu-ns/op 0.
func processCPU() time.Duration { return 0 }
