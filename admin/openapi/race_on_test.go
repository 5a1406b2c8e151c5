//go:build race

package openapi

// raceEnabled reports whether the test binary runs under the race
// detector, which makes libopenapi some ten times slower.
const raceEnabled = true
