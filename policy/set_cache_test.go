package policy_test

import (
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

// TestSetCache checks how proxy-cache entries are looked up: they are
// not checking plugins (no chain gets them), a route's own entry wins,
// and a top-level entry applies, as one entry, to every other route.
func TestSetCache(t *testing.T) {
	t.Parallel()
	s := build(t, parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  library: {targets: ["127.0.0.1:9000"]}
  users: {kind: http, targets: ["127.0.0.1:9001"]}
plugins:
  - proxy-cache: {ttl: 30s}
routes:
  - selector: lib.v1.Library.GetBook
    plugins:
      - proxy-cache: {ttl: 5s, key: []}
  - selector: lib.v1.Library.*
    plugins:
      - key-auth: {}
  - uri: /users/*
    service: users
  - uri: /own/*
    service: users
    plugins:
      - proxy-cache: {ttl: 1s}
consumers:
  - {name: alice, keys: [alice-key]}
`))
	ttl := func(c *config.ProxyCache) time.Duration {
		if c == nil {
			return 0
		}
		return c.TTL.Std()
	}
	top, _ := s.CacheForMethod("other.Svc.M")
	cases := []struct {
		name      string
		got       *config.ProxyCache
		route     string
		wantTTL   time.Duration
		wantRoute string
	}{
		{"route's own", first(s.CacheForMethod("lib.v1.Library.GetBook")), second(s.CacheForMethod("lib.v1.Library.GetBook")), 5 * time.Second, "lib.v1.Library.GetBook"},
		{"top-level on a route", first(s.CacheForMethod("lib.v1.Library.ListBooks")), second(s.CacheForMethod("lib.v1.Library.ListBooks")), 30 * time.Second, "lib.v1.Library.*"},
		{"top-level, uncovered", top, "", 30 * time.Second, ""},
		{"uri route, top-level", s.CacheForURIRoute(2), "", 30 * time.Second, ""},
		{"uri route, own", s.CacheForURIRoute(3), "", time.Second, ""},
	}
	for _, tc := range cases {
		if got := ttl(tc.got); got != tc.wantTTL || tc.route != tc.wantRoute {
			t.Errorf("%s: got ttl %v route %q; want %v %q", tc.name, got, tc.route, tc.wantTTL, tc.wantRoute)
		}
	}
	if first(s.CacheForMethod("lib.v1.Library.ListBooks")) != top || s.CacheForURIRoute(2) != top {
		t.Error("a top-level proxy-cache must be one entry for every route it applies to")
	}
	if !s.Default().Empty() {
		t.Error("the default chain has a plugin; proxy-cache must not enter chains")
	}
	if chain, _ := s.ForMethod("lib.v1.Library.GetBook"); !chain.Empty() {
		t.Error("GetBook's chain has a plugin; proxy-cache must not enter chains")
	}
}

func first[A, B any](a A, _ B) A  { return a }
func second[A, B any](_ A, b B) B { return b }
