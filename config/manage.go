package config

// This file holds the API-management settings: plans and quotas, the
// developer portal, analytics and API lifecycle (deprecation,
// retirement). Their defaults are in manage_defaults.go, their checks in
// manage_validate.go.

import (
	"sync"
	"time"
)

// Plan is what a consumer's subscription allows: a long-period quota and
// a short-period rate, both counted per consumer on every route and
// protocol. Example:
//
//	plans:
//	  free:  { quota: { limit: 10000, period: month }, rate: { limit: 10, period: 1 } }
//	  gold:  { quota: { limit: 10000000, period: month } }
//	consumers:
//	  - { name: alice, keys: ["${ALICE_KEY}"], plan: gold }
//
// Quotas and rates are counted in Redis when the top-level redis block is
// set (shared by every instance), else in memory.
type Plan struct {
	// Description is shown in the developer portal.
	Description string `yaml:"description"`
	// Quota caps the consumer's calls per calendar period. Optional.
	Quota *Quota `yaml:"quota"`
	// Rate caps the consumer's calls per short period, as a
	// rate-limiting plugin keyed by consumer. Optional.
	Rate *PlanRate `yaml:"rate"`

	// Name is the plan's key in plans (set by Parse).
	Name string `yaml:"-"`
	// Pos is where this plan is in the config file.
	Pos Pos `yaml:"-"`
}

// Quota is a long-period limit: Limit calls per calendar Period, reset
// on the period's boundary in TimeZone. Over it → 429 /
// RESOURCE_EXHAUSTED naming the quota and when it resets.
type Quota struct {
	// Limit is the number of calls allowed per period. Required.
	Limit int64 `yaml:"limit"`
	// Period is the calendar period: minute, hour, day, week (starting
	// Monday), month or year. Required.
	Period string `yaml:"period"`
	// TimeZone is the IANA time zone whose calendar resets the quota,
	// e.g. "Europe/Berlin". Default "UTC".
	TimeZone string `yaml:"time_zone"`
}

// PlanRate is a plan's short-period rate limit.
type PlanRate struct {
	// Limit is the number of calls allowed per Period. Required.
	Limit int64 `yaml:"limit"`
	// Period is seconds as an integer (1) or a duration ("1m"). Required.
	Period Period `yaml:"period"`
}

// QuotaPeriods are the calendar periods a quota may reset on.
var QuotaPeriods = []string{"minute", "hour", "day", "week", "month", "year"}

// Portal serves the developer portal: a catalog of the APIs with their
// live docs, try-it and streaming consoles, consumer sign-in with usage
// and quota, and the operator's analytics. Example:
//
//	portal: { address: "127.0.0.1:8082", title: Library APIs }
//
// or mounted on every listener: portal: { path: /portal }.
type Portal struct {
	// Address is host:port of a listener of its own. The portal's
	// listener serves the portal under Path and the gateway's APIs beside
	// it, so the consoles call the APIs from the same origin.
	Address string `yaml:"address"`
	// Path is where the portal is served. Default "/portal". Without
	// Address, the portal is served under Path on every listener.
	Path string `yaml:"path"`
	// Title is the portal's title. Default "API portal".
	Title string `yaml:"title"`
	// SelfService lets a signed-in consumer create and revoke API keys of
	// their own, kept in the shared store (Redis when configured, else
	// memory). Default false.
	SelfService bool `yaml:"self_service"`
}

// Analytics tunes the per-minute call analytics that the admin API and
// the portal show. Analytics run when the config has an admin, portal
// or analytics block.
type Analytics struct {
	// FlushInterval is how often the gateway's in-memory per-minute
	// buckets are written to Redis (when the top-level redis block is
	// set). Default 10s.
	FlushInterval Duration `yaml:"flush_interval"`
}

// Deprecation marks a route as deprecated: its answers carry the
// Deprecation (RFC 9745), Sunset (RFC 8594) and Link headers on HTTP,
// and the same as response metadata on gRPC. Example:
//
//	deprecated: { sunset: 2027-06-30, link: https://example.com/v2 }
type Deprecation struct {
	// Since is when the route was deprecated, a date (2026-12-01) or an
	// RFC 3339 time. Default: the moment the config was loaded.
	Since string `yaml:"since"`
	// Sunset is when the route stops answering, a date (2027-06-30, the
	// start of that day in UTC) or an RFC 3339 time.
	Sunset string `yaml:"sunset"`
	// Link is the successor's URL, sent as Link: <url>; rel="successor-version".
	Link string `yaml:"link"`
}

// Retirement marks a route as retired: every call gets 410 Gone on HTTP
// (REST, plain HTTP) and UNIMPLEMENTED on gRPC, gRPC-Web, Connect and
// WebSocket, naming the successor. Example:
//
//	retired: { link: https://example.com/v2 }
type Retirement struct {
	// Link is the successor's URL.
	Link string `yaml:"link"`
	// Message replaces the default message ("<route> is retired; use
	// <link>").
	Message string `yaml:"message"`
}

// Location returns the time zone whose calendar resets q: TimeZone
// loaded with [time.LoadLocation] ("" is UTC). A zone that does not load
// (which a config from [Parse] never has) gives UTC. Locations are
// loaded once per name and cached, so calling it per call is cheap. It
// is safe for concurrent use.
func (q *Quota) Location() *time.Location {
	if q == nil || q.TimeZone == "" || q.TimeZone == "UTC" {
		return time.UTC
	}
	if loc, ok := zones.Load(q.TimeZone); ok {
		return loc.(*time.Location)
	}
	loc, err := time.LoadLocation(q.TimeZone)
	if err != nil {
		return time.UTC
	}
	zones.Store(q.TimeZone, loc)
	return loc
}

// zones caches the locations [Quota.Location] loaded, by name.
var zones sync.Map

// SinceTime returns when the route was deprecated: Since parsed as a
// date (the start of that day in UTC) or an RFC 3339 time. ok is false
// when Since is unset (or, in a config that did not come from [Parse],
// unparsable); the gateway then uses the moment it loaded the config.
func (d *Deprecation) SinceTime() (t time.Time, ok bool) {
	if d == nil {
		return time.Time{}, false
	}
	return parseWhen(d.Since)
}

// SunsetTime returns when the route stops answering: Sunset parsed as a
// date (the start of that day in UTC) or an RFC 3339 time. ok is false
// when Sunset is unset (or, in a config that did not come from [Parse],
// unparsable).
func (d *Deprecation) SunsetTime() (t time.Time, ok bool) {
	if d == nil {
		return time.Time{}, false
	}
	return parseWhen(d.Sunset)
}

// dateLayout is the date form of Deprecation.Since and Sunset.
const dateLayout = "2006-01-02"

// parseWhen parses a date (YYYY-MM-DD, the start of that day in UTC) or
// an RFC 3339 time. ok is false for "" and for anything else.
func parseWhen(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(dateLayout, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}
