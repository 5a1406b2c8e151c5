package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEffectiveRetry(t *testing.T) {
	t.Parallel()
	doc := `listeners: [{address: ":8080"}]
upstreams:
  library:
    targets: ["library:9000"]
    retry: {attempts: 4, on: [unavailable, reset], per_try_timeout: 2s, backoff: {base: 50ms}, budget: {percent: 10}}
  bare:
    targets: ["bare:9000"]
  web:
    kind: http
    targets: ["web:80"]
routes:
  - selector: library.v1.Library.GetBook
    retry: {attempts: 2, per_try_timeout: 0s, backoff: {max: 1s}}
  - selector: library.v1.Library.ListBooks
    retry: {on: []}
  - selector: library.v1.Library.*
  - uri: /web/*
    service: web
    retry: {attempts: 5}
`
	c, err := Parse("r.yaml", []byte(doc), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	lib, bare := c.Upstreams["library"].Retry, c.Upstreams["bare"].Retry
	if bare != nil {
		t.Fatalf("bare upstream: Retry = %+v; want nil (no retry block)", bare)
	}
	dur := func(d time.Duration) *Duration { return ptr(Duration(d)) }
	budget := &RetryBudget{Percent: ptr(10), MinPerSecond: ptr(3)}
	defBudget := &RetryBudget{Percent: ptr(20), MinPerSecond: ptr(3)}
	cases := []struct {
		name  string
		route *Route
		up    *Retry
		want  Retry
	}{
		{"no route, no upstream retry", nil, nil, Retry{Attempts: 1}},
		{"route without retry, no upstream retry", &c.Routes[2], bare, Retry{Attempts: 1}},
		{"no route", nil, lib, *lib},
		{"route without retry", &c.Routes[2], lib, *lib},
		{"override field by field", &c.Routes[0], lib, Retry{
			Attempts: 2, On: []string{"unavailable", "reset"}, PerTryTimeout: dur(0),
			Backoff: &Backoff{Base: Duration(50 * time.Millisecond), Max: Duration(time.Second)}, Budget: budget,
		}},
		{"empty on replaces", &c.Routes[1], lib, Retry{
			Attempts: 4, On: []string{}, PerTryTimeout: dur(2 * time.Second),
			Backoff: &Backoff{Base: Duration(50 * time.Millisecond), Max: Duration(250 * time.Millisecond)}, Budget: budget,
		}},
		{"selector route over the defaults", &c.Routes[0], nil, Retry{
			Attempts: 2, On: []string{"connect-failure", "refused-stream", "unavailable"}, PerTryTimeout: dur(0),
			Backoff: &Backoff{Base: Duration(25 * time.Millisecond), Max: Duration(time.Second)}, Budget: defBudget,
		}},
		{"uri route over the defaults", &c.Routes[3], c.Upstreams["web"].Retry, Retry{
			Attempts: 5, On: []string{"connect-failure", "refused-stream", "unavailable"},
			Backoff: &Backoff{Base: Duration(25 * time.Millisecond), Max: Duration(250 * time.Millisecond)}, Budget: defBudget,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.route.EffectiveRetry(tc.up)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("EffectiveRetry (-want +got):\n%s", diff)
			}
		})
	}
	// Merging must not write through the upstream's pointers.
	if got, want := *lib.Backoff, (Backoff{Base: Duration(50 * time.Millisecond), Max: Duration(250 * time.Millisecond)}); got != want {
		t.Errorf("upstream backoff after EffectiveRetry: got %+v; want %+v", got, want)
	}
}

// TestEffectiveRetryInCode covers a config built in code, without
// defaults: the result is still complete.
func TestEffectiveRetryInCode(t *testing.T) {
	t.Parallel()
	up := &Retry{Backoff: &Backoff{Max: Duration(time.Second)}}
	r := &Route{Selector: "*", Retry: &Retry{Attempts: 2}}
	got := r.EffectiveRetry(up)
	want := Retry{
		Attempts: 2, On: []string{"connect-failure", "refused-stream", "unavailable"},
		Backoff: &Backoff{Base: Duration(25 * time.Millisecond), Max: Duration(time.Second)},
		Budget:  &RetryBudget{Percent: ptr(20), MinPerSecond: ptr(3)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EffectiveRetry (-want +got):\n%s", diff)
	}
	if up.Backoff.Base != 0 {
		t.Errorf("EffectiveRetry changed the upstream's backoff: %+v", up.Backoff)
	}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	u := &Upstream{Targets: TargetsOf("a:1", "b:2")}
	if diff := cmp.Diff([]Target{{"a:1", 1}, {"b:2", 1}}, u.Targets); diff != "" {
		t.Errorf("TargetsOf (-want +got):\n%s", diff)
	}
	u.Targets = append(u.Targets, Target{Address: "c:3", Weight: 7})
	if diff := cmp.Diff([]string{"a:1", "b:2", "c:3"}, u.Addresses()); diff != "" {
		t.Errorf("Addresses (-want +got):\n%s", diff)
	}
	// In code, weight 0 means the default, as every unset number does.
	c := &Config{
		Listeners: []Listener{{Address: ":8080"}},
		Upstreams: map[string]*Upstream{"u": {Targets: []Target{{Address: "a:1"}, {Address: "b:1", Weight: 1001}}}},
	}
	want := `upstreams.u.targets[1].weight: must be between 1 and 1000, got 1001 (hint: a target's share of calls relative to the others; the default is 1)`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate: got %v; want %s", err, want)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want int64
		msg  string
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"64MiB", 64 << 20, ""},
		{"512KiB", 512 << 10, ""},
		{"1GB", 1e9, ""},
		{"1 GiB", 1 << 30, ""},
		{"10kB", 10e3, ""},
		{"7B", 7, ""},
		{"64mib", 0, `invalid size "64mib": unknown unit "mib"`},
		{"1.5GiB", 0, `invalid size "1.5GiB": fractions are not supported`},
		{"-1", 0, `size must not be negative, got "-1"`},
		{"MiB", 0, `invalid size "MiB"`},
		{"10TiB", 0, `invalid size "10TiB": unknown unit "TiB"`},
		{"9223372036854775807GiB", 0, `size "9223372036854775807GiB" is too large`},
		{"99999999999999999999", 0, `size "99999999999999999999" is too large`},
	}
	for _, tc := range cases {
		got, msg, _ := parseSize(tc.in)
		if got != tc.want || msg != tc.msg {
			t.Errorf("parseSize(%q): got %d, %q; want %d, %q", tc.in, got, msg, tc.want, tc.msg)
		}
	}
	for size, want := range map[Size]string{64 * MiB: "64MiB", 1e6: "1MB", 1500: "1500B", 0: "0B", 3 * GiB: "3GiB"} {
		if got := size.String(); got != want {
			t.Errorf("Size(%d).String(): got %q; want %q", int64(size), got, want)
		}
	}
}

// TestNormalizedReparses checks that the normalized JSON of the valid
// resilience goldens, read back as a config, normalizes to itself: every
// default is written out, and empty lists that mean something (on: [],
// key: []) survive.
func TestNormalizedReparses(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"upstream_resilience_valid", "upstream_resilience_defaults"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			input, _ := readGolden(t, filepath.Join("testdata", "config", name+".txt"))
			dir := newFixtureDir(t)
			file := filepath.Join(dir, "rosetta.yaml")
			first, err := Parse(file, []byte(input), goldenEnv(input))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			out, err := first.Normalized()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, out, 0o644); err != nil {
				t.Fatal(err)
			}
			again, err := Parse(file, out, nil)
			if err != nil {
				t.Fatalf("Parse(Normalized): %v", err)
			}
			out2, err := again.Normalized()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(out), string(out2)); diff != "" {
				t.Errorf("normalized output changed when parsed again (-first +second):\n%s", diff)
			}
			if !strings.Contains(string(out), `"weight"`) {
				t.Errorf("normalized output shows no target weight:\n%s", out)
			}
		})
	}
}
