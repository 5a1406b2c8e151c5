package grpc

import (
	"strings"
	"testing"
)

// TestDropped: the length filter in front of relayDropped answers as the
// map does.
func TestDropped(t *testing.T) {
	t.Parallel()
	names := []string{"", "te", "host", "user-agent", "content-type", "grpc-timeout", "authorization",
		"x-forwarded-for", "x-forwarded-host", strings.Repeat("x", 70)}
	for k := range relayDropped {
		names = append(names, k, strings.ToUpper(k), k+"x")
	}
	for _, name := range names {
		if got, want := dropped(name), relayDropped[name]; got != want {
			t.Errorf("dropped(%q) = %v; want %v", name, got, want)
		}
	}
}
