package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	// Quota time zones must load the same on every machine, including
	// minimal container images without /usr/share/zoneinfo: embed the
	// IANA database (about 450 KB) as the fallback time.LoadLocation
	// uses.
	_ "time/tzdata"
)

// manage checks the API-management settings: plans, the consumers'
// plans, the portal, analytics and the routes' lifecycle.
func (v *validator) manage() {
	v.plans()
	v.consumerPlans()
	v.portal()
	v.analytics()
	for i := range v.c.Routes {
		v.lifecycle(fmt.Sprintf("routes[%d]", i), &v.c.Routes[i])
	}
}

const (
	quotaHint = "e.g. quota: {limit: 10000, period: month}"
	rateHint  = "e.g. rate: {limit: 10, period: 1}"
)

// planNames returns the names of the plans, sorted.
func (c *Config) planNames() []string {
	names := make([]string, 0, len(c.Plans))
	for name := range c.Plans {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// plans checks every plan.
func (v *validator) plans() {
	for _, name := range v.c.planNames() {
		pl := v.c.Plans[name]
		p := joinKey("plans", name)
		switch {
		case name == "":
			v.report(p, Pos{}, true, "plan name is empty", `name the plan, e.g. plans: {free: {quota: {limit: 10000, period: month}}}`)
		case strings.TrimSpace(name) != name || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			v.report(p, Pos{}, true, fmt.Sprintf("invalid plan name %q", name),
				"plan names are shown to consumers: no control characters or surrounding spaces")
		}
		if pl == nil {
			pl = &Plan{}
		}
		if pl.Quota == nil && pl.Rate == nil {
			if !v.isBad(p+".quota") && !v.isBad(p+".rate") {
				v.report(p, Pos{}, true, fmt.Sprintf("plan %q has neither a quota nor a rate", name),
					"give it a quota ("+quotaHint+"), a rate ("+rateHint+") or both")
			}
			continue
		}
		if q := pl.Quota; q != nil {
			v.quota(p+".quota", q)
		}
		if r := pl.Rate; r != nil {
			rp := p + ".rate"
			if r.Limit <= 0 {
				v.report(rp+".limit", Pos{}, false, v.requiredMsg(rp+".limit", "limit"), "the number of calls allowed per period, e.g. limit: 10")
			}
			if r.Period <= 0 {
				v.report(rp+".period", Pos{}, false, v.requiredMsg(rp+".period", "period"), periodHint)
			}
			if r.Limit > 0 && r.Period > 0 {
				switch interval := r.Period.Std() / time.Duration(r.Limit); {
				case interval <= 0:
					v.report(rp+".limit", Pos{}, false, fmt.Sprintf("limit %d per %s is more than one call per nanosecond", r.Limit, r.Period),
						"use a longer period or a smaller limit")
				case interval < time.Microsecond && v.c.Redis != nil:
					v.report(rp+".limit", Pos{}, false, fmt.Sprintf("limit %d per %s is more than one call per microsecond, finer than Redis's clock", r.Limit, r.Period),
						"use a longer period or a smaller limit")
				}
			}
		}
	}
	if len(v.c.Plans) > 0 && !v.authenticates() {
		v.warn("plans", Pos{}, true, "plans count authenticated calls only, and no plugins list has key-auth or jwt-auth",
			"add key-auth or jwt-auth to plugins (top-level or a route's)")
	}
}

// quota checks one plan's quota.
func (v *validator) quota(p string, q *Quota) {
	if q.Limit <= 0 {
		v.report(p+".limit", Pos{}, false, v.requiredMsg(p+".limit", "limit"), "the number of calls allowed per period, e.g. limit: 10000")
	}
	switch {
	case q.Period == "":
		if !v.isBad(p + ".period") {
			v.report(p+".period", Pos{}, false, "period is required", "one of "+strings.Join(QuotaPeriods, ", ")+", e.g. period: month")
		}
	case !slices.Contains(QuotaPeriods, q.Period):
		v.unknown(p+".period", Pos{}, "period", q.Period, QuotaPeriods)
	}
	switch tz := q.TimeZone; tz {
	case "", "UTC":
	case "Local":
		v.report(p+".time_zone", Pos{}, false, `time zone "Local" depends on the machine`,
			`name an IANA time zone, e.g. "Europe/Berlin", so that every instance resets the quota at the same moment`)
	default:
		if _, err := time.LoadLocation(tz); err != nil {
			v.report(p+".time_zone", Pos{}, false, fmt.Sprintf("unknown time zone %q", tz),
				`name an IANA time zone, e.g. "Europe/Berlin", "America/New_York" or "UTC"`)
		}
	}
}

// authenticates reports whether any plugins list has an authentication
// plugin.
func (v *validator) authenticates() bool {
	found := false
	v.c.forEachPlugin(func(_ string, p *Plugin) {
		if p.KeyAuth != nil || p.JWTAuth != nil {
			found = true
		}
	})
	return found
}

// consumerPlans checks that every consumer's plan is defined.
func (v *validator) consumerPlans() {
	for i := range v.c.Consumers {
		c := &v.c.Consumers[i]
		if c.Plan == "" {
			continue
		}
		if _, ok := v.c.Plans[c.Plan]; ok {
			continue
		}
		p := fmt.Sprintf("consumers[%d].plan", i)
		if len(v.c.Plans) == 0 {
			v.report(p, c.Pos, false, fmt.Sprintf("unknown plan %q: no plans are defined", c.Plan),
				fmt.Sprintf("define it, e.g. plans: {%s: {quota: {limit: 10000, period: month}}}", c.Plan))
			continue
		}
		v.unknown(p, c.Pos, "plan", c.Plan, v.c.planNames())
	}
}

// portal checks the portal block.
func (v *validator) portal() {
	pt := v.c.Portal
	if pt == nil {
		return
	}
	if pt.Address != "" && v.address("portal.address", pt.Address, listenAddr) && !strings.HasSuffix(pt.Address, ":0") {
		for i, l := range v.c.Listeners {
			if l.Address == pt.Address {
				v.report("portal.address", Pos{}, false, fmt.Sprintf("address %q is also used by listeners[%d]", pt.Address, i),
					"give the portal its own port, or leave address out to serve the portal under path on every listener")
			}
		}
		if a := v.c.Admin; a != nil && a.Address == pt.Address {
			v.report("portal.address", Pos{}, false, fmt.Sprintf("address %q is also used by admin", pt.Address),
				"give the portal its own port")
		}
	}
	switch path := pt.Path; {
	case path == "/":
		v.report("portal.path", Pos{}, false, `portal path cannot be "/"`,
			`the portal shares its listeners with the APIs: use a path of its own, e.g. "/portal"`)
	case !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?#{}* ") || strings.HasSuffix(path, "/"):
		v.report("portal.path", Pos{}, false, fmt.Sprintf("portal path %q is not a plain absolute path", path),
			`use a path such as "/portal", without a trailing "/"`)
	case v.c.OpenAPI != nil && v.c.OpenAPI.Path == path:
		v.report("portal.path", Pos{}, false, fmt.Sprintf("portal path %q is also the openapi path", path),
			"give the portal and the OpenAPI document different paths")
	}
}

// analytics checks the analytics block.
func (v *validator) analytics() {
	a := v.c.Analytics
	if a == nil {
		return
	}
	if v.zero["analytics.flush_interval"] || a.FlushInterval.Std() < minFlushInterval {
		got := a.FlushInterval
		if v.zero["analytics.flush_interval"] {
			got = 0
		}
		v.report("analytics.flush_interval", Pos{}, false, fmt.Sprintf("flush_interval must be at least 1s, got %q", got.String()),
			"it is how often counts are written to Redis; the default is 10s")
	}
}

const whenHint = `write a date (2027-06-30) or an RFC 3339 time (2027-06-30T00:00:00Z)`

// lifecycle checks a route's deprecated and retired blocks.
func (v *validator) lifecycle(p string, r *Route) {
	if d := r.Deprecated; d != nil {
		dp := p + ".deprecated"
		since, sinceOK := v.when(dp+".since", r.Pos, "since", d.Since)
		sunset, sunsetOK := v.when(dp+".sunset", r.Pos, "sunset", d.Sunset)
		if sinceOK && sunsetOK && since.After(sunset) {
			v.report(dp+".sunset", r.Pos, false, fmt.Sprintf("sunset %s is before since %s", d.Sunset, d.Since),
				"a route is deprecated before it stops answering: make since earlier or sunset later")
		}
		if d.Link != "" {
			if u, err := url.Parse(d.Link); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.report(dp+".link", r.Pos, false, fmt.Sprintf("link %q is not an absolute http(s) URL", d.Link),
					`link the successor, e.g. "https://example.com/docs/v2"`)
			}
		}
	}
	if rt := r.Retired; rt != nil {
		if rt.Link != "" {
			if u, err := url.Parse(rt.Link); err != nil || u.Scheme == "" || u.Host == "" {
				v.report(p+".retired.link", r.Pos, false, fmt.Sprintf("link %q is not an absolute URL", rt.Link),
					`link the successor, e.g. "https://example.com/docs/v2"`)
			}
		}
		if r.Deprecated != nil {
			v.report(p+".retired", r.Pos, true, "a route cannot be both deprecated and retired",
				"a retired route refuses every call: remove deprecated")
		}
	}
}

// when checks an optional date or time and returns it.
func (v *validator) when(path string, at Pos, key, s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, ok := parseWhen(s)
	if !ok {
		v.report(path, at, false, fmt.Sprintf("invalid %s %q", key, s), whenHint)
	}
	return t, ok
}
