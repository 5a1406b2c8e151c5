package cache

import (
	"strconv"
	"strings"
	"time"
)

// Control is what a backend's Cache-Control response field (gRPC:
// cache-control header metadata) says to a shared cache. Durations are
// -1 when the directive is absent.
type Control struct {
	// NoStore (no-store), NoCache (no-cache: every use needs a
	// revalidation, which this cache does not do) and MustRevalidate
	// (must-revalidate, proxy-revalidate: never serve it stale).
	NoStore, NoCache, MustRevalidate bool
	// Private (private): meant for one user; see [Cache] for when it is
	// stored all the same.
	Private bool
	// MaxAge is max-age, SMaxAge s-maxage (which wins for shared caches),
	// StaleWhileRevalidate stale-while-revalidate.
	MaxAge, SMaxAge, StaleWhileRevalidate time.Duration
}

// ParseControl parses the Cache-Control field values vs (several lines
// combine). Unknown directives are ignored; a malformed delta-seconds
// value makes its directive count as absent, except for max-age and
// s-maxage, which then count as 0 (RFC 9111 §4.2.1: treat it as stale).
func ParseControl(vs []string) Control {
	c := Control{MaxAge: -1, SMaxAge: -1, StaleWhileRevalidate: -1}
	for _, v := range vs {
		for v != "" {
			var d string
			d, v, _ = strings.Cut(v, ",")
			d = strings.TrimSpace(d)
			name, arg, _ := strings.Cut(d, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			arg = strings.Trim(strings.TrimSpace(arg), `"`)
			switch name {
			case "no-store":
				c.NoStore = true
			case "no-cache":
				// no-cache="field" only forbids reusing those fields;
				// not storing at all is the safe reading of both forms.
				c.NoCache = true
			case "private":
				c.Private = true
			case "must-revalidate", "proxy-revalidate":
				c.MustRevalidate = true
			case "max-age":
				c.MaxAge = seconds(arg, 0)
			case "s-maxage":
				c.SMaxAge = seconds(arg, 0)
			case "stale-while-revalidate":
				c.StaleWhileRevalidate = seconds(arg, -1)
			}
		}
	}
	return c
}

// seconds parses delta-seconds; bad values give bad.
func seconds(s string, bad time.Duration) time.Duration {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return bad
	}
	if n > int64(100*365*24*time.Hour/time.Second) {
		n = int64(100 * 365 * 24 * time.Hour / time.Second)
	}
	return time.Duration(n) * time.Second
}

// Lifetime applies c to a cache whose configured ttl and swr bound an
// entry (age is how old the answer already was when it arrived, from
// the backend's Age): how long it is fresh, how long after that it may
// be served stale, and whether it may be stored at all. private tells
// whether the entry is one consumer's alone (see [Key]).
func (c Control) Lifetime(ttl, swr, age time.Duration, private bool) (fresh, stale time.Duration, ok bool) {
	if c.NoStore || c.NoCache || (c.Private && !private) {
		return 0, 0, false
	}
	fresh = ttl
	switch {
	case c.SMaxAge >= 0:
		fresh = min(fresh, c.SMaxAge)
	case c.MaxAge >= 0:
		fresh = min(fresh, c.MaxAge)
	}
	fresh -= max(age, 0)
	if fresh <= 0 {
		return 0, 0, false
	}
	stale = max(swr, c.StaleWhileRevalidate)
	if c.MustRevalidate {
		stale = 0
	}
	return fresh, stale, true
}
