package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/analytics"
	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/portal"
	"github.com/rosetta-gateway/rosetta/transcoder"
)

// This file wires call analytics: every finished call, on both paths, is
// recorded into per-minute buckets (package analytics), which the admin
// API (/analytics, /usage) and the portal query. Analytics run when the
// config has an admin, portal or analytics block; they are fixed at New
// (a reload changes neither the store nor the flush interval).

// newAnalytics sets up the aggregator of cfg (nil when off).
func (g *Gateway) newAnalytics(cfg *config.Config) error {
	if cfg.Admin == nil && cfg.Portal == nil && cfg.Analytics == nil {
		return nil
	}
	o := analytics.Options{Logger: g.logger.With("component", "analytics")}
	if cfg.Analytics != nil {
		o.FlushInterval = cfg.Analytics.FlushInterval.Std()
	}
	if cfg.Redis != nil {
		rdb, err := redisclient.New(cfg.Redis)
		if err != nil {
			return fmt.Errorf("analytics: %w", err)
		}
		g.analyticsRedis = rdb
		o.Redis = rdb
	}
	g.analytics = analytics.New(o)
	return nil
}

// Analytics returns the gateway's call analytics, nil when off.
func (g *Gateway) Analytics() *analytics.Aggregator { return g.analytics }

// closeAnalytics writes what is not flushed yet (Redis) and stops the
// flusher.
func (g *Gateway) closeAnalytics(ctx context.Context) error {
	if g.analytics == nil {
		return nil
	}
	err := g.analytics.Close(ctx)
	if g.analyticsRedis != nil {
		err = errors.Join(err, g.analyticsRedis.Close())
	}
	return err
}

// recordCall records one finished call in the analytics: calls that no
// dialect routed (unknown paths, the portal's own pages) are left out.
func (g *Gateway) recordCall(p call.Protocol, md protoreflect.MethodDescriptor, route, upstream, consumer string,
	status int, code codes.Code, hasCode bool, end time.Time, d time.Duration, in, out int64) {
	a := g.analytics
	if a == nil || (md == nil && upstream == "") {
		return
	}
	r := analytics.Record{
		Time: end, Route: route, Protocol: p.String(), Consumer: consumer,
		StatusClass: statusClass(status, code, hasCode), Duration: d, BytesIn: in, BytesOut: out,
	}
	if md != nil {
		n := g.cur.Load().methodNames(md)
		r.API, r.Method = string(md.Parent().FullName()), n.procedure
		if r.Route == "" {
			r.Route = n.route
		}
	} else {
		r.API, r.Method = upstream, route
	}
	a.Record(&r)
}

// statusClass is a call's answer as an HTTP status class: from its gRPC
// code when it has one (NOT_FOUND is 4xx whatever the HTTP status of a
// gRPC answer), else from its HTTP status (101 Switching Protocols of a
// WebSocket counts as 2xx).
func statusClass(status int, code codes.Code, hasCode bool) string {
	if hasCode {
		if code == codes.OK {
			return "2xx"
		}
		status = transcoder.HTTPStatus(code)
	}
	switch {
	case status < 300:
		return "2xx"
	case status < 400:
		return "3xx"
	case status < 500:
		return "4xx"
	}
	return "5xx"
}

// errAnalyticsOff answers analytics and usage queries of a gateway that
// started without analytics (a reload that adds a portal does not start
// them).
var errAnalyticsOff = tagged(portal.ErrForbidden, errors.New("analytics are off: they start with the gateway when its config has an admin, portal or analytics block (restart it to turn them on)"))

// analyticsDims are the dimensions a query may group or filter by.
var analyticsDims = []string{"api", "route", "method", "protocol", "consumer", "status_class"}

// analyticsQuery parses an analytics query string: window (1h, 6h, 24h,
// 7d, 30d; default 1h) or from and to (RFC 3339), step (a duration),
// group_by (comma-separated dimensions) and filters (dimension=value; a
// dimension repeated means any of its values, and must be grouped by).
// anyOf are the repeated filters, which the caller applies to the
// series.
func analyticsQuery(q url.Values, now time.Time) (out analytics.Query, anyOf map[string][]string, err error) {
	out, err = parseAnalyticsQuery(q, now)
	if err != nil {
		return out, nil, err
	}
	for d, v := range q {
		if len(v) < 2 || !slices.Contains(analyticsDims, d) {
			continue
		}
		if !slices.Contains(out.GroupBy, d) {
			return out, nil, fmt.Errorf("%s is given %d values: group_by=%s to filter by several", d, len(v), d)
		}
		delete(out.Filter, d)
		if anyOf == nil {
			anyOf = map[string][]string{}
		}
		anyOf[d] = v
	}
	return out, anyOf, nil
}

// parseAnalyticsQuery is analyticsQuery with every filter taken by its
// first value.
func parseAnalyticsQuery(q url.Values, now time.Time) (analytics.Query, error) {
	var out analytics.Query
	from, to := q.Get("from"), q.Get("to")
	if from != "" || to != "" {
		f, err := parseTime(from)
		if err != nil {
			return out, fmt.Errorf("from: %w", err)
		}
		t := now
		if to != "" {
			if t, err = parseTime(to); err != nil {
				return out, fmt.Errorf("to: %w", err)
			}
		}
		out.From, out.To = f, t
	} else {
		w := q.Get("window")
		if w == "" {
			w = "1h"
		}
		f, t, step, err := analytics.Window(w, now)
		if err != nil {
			return out, err
		}
		out.From, out.To, out.Step = f, t, step
	}
	if s := q.Get("step"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return out, fmt.Errorf("step %q is not a positive duration such as 5m", s)
		}
		out.Step = d
	}
	for _, g := range strings.Split(q.Get("group_by"), ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		if !slices.Contains(analyticsDims, g) {
			return out, fmt.Errorf("group_by %q is not a dimension (%s)", g, strings.Join(analyticsDims, ", "))
		}
		out.GroupBy = append(out.GroupBy, g)
	}
	for _, d := range analyticsDims {
		if v, ok := q[d]; ok && len(v) > 0 {
			if out.Filter == nil {
				out.Filter = map[string]string{}
			}
			out.Filter[d] = v[0]
		}
	}
	return out, nil
}

// parseTime reads an RFC 3339 time or a date (the start of that day in
// UTC).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a date (2026-12-01)", s)
}

// queryAnalytics answers an analytics query string; deprecated keeps the
// calls on deprecated routes only, grouped by route and consumer.
func (g *Gateway) queryAnalytics(ctx context.Context, q url.Values, deprecated bool) (*analytics.Result, error) {
	if g.analytics == nil {
		return nil, errAnalyticsOff
	}
	aq, anyOf, err := analyticsQuery(q, time.Now())
	if err != nil {
		return nil, tagged(portal.ErrInvalid, err)
	}
	if deprecated {
		aq.GroupBy = []string{"route", "consumer"}
		anyOf = nil
	}
	res, err := g.analytics.Query(ctx, aq)
	if err != nil {
		return nil, err
	}
	if len(anyOf) > 0 {
		kept := res.Series[:0]
		for _, s := range res.Series {
			in := true
			for d, vs := range anyOf {
				in = in && slices.Contains(vs, s.Labels[d])
			}
			if in {
				kept = append(kept, s)
			}
		}
		res.Series = kept
	}
	if !deprecated {
		return res, nil
	}
	routes := map[string]bool{}
	for _, r := range g.cur.Load().cfg.Routes {
		if r.Deprecated != nil {
			routes[r.Selector+r.URI] = true
		}
	}
	kept := res.Series[:0]
	for _, s := range res.Series {
		if routes[s.Labels["route"]] {
			kept = append(kept, s)
		}
	}
	res.Series = kept
	return res, nil
}

// Analytics answers the portal's operator view.
func (s portalSource) Analytics(ctx context.Context, q url.Values) (any, error) {
	if adminToken(s.g.cur.Load().cfg) == "" {
		return nil, errNoAdminToken
	}
	return s.g.queryAnalytics(ctx, q, q.Get("deprecated") == "true")
}

// Usage returns one consumer's usage between from and to.
func (s portalSource) Usage(ctx context.Context, consumer string, from, to time.Time) (any, error) {
	if s.g.analytics == nil {
		return nil, errAnalyticsOff
	}
	if !to.Equal(to.Truncate(time.Minute)) {
		to = to.Truncate(time.Minute).Add(time.Minute) // the current minute's calls are in
	}
	return s.g.analytics.Usage(ctx, analytics.UsageQuery{From: from, To: to, Consumer: consumer})
}

// analyticsHandler serves /analytics and /analytics/deprecated on the
// admin listener.
func (g *Gateway) analyticsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := g.queryAnalytics(r.Context(), r.URL.Query(), strings.HasSuffix(r.URL.Path, "/deprecated"))
		if err != nil {
			writeAdminError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
}

// usageHandler serves /usage on the admin listener: ?from=&to= (RFC 3339
// times or dates; to defaults to now), consumer (default all) and
// format=json|csv (default json, or csv when Accept asks for text/csv).
// Usage counts whole minutes: from and to are truncated to the minute.
func (g *Gateway) usageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.analytics == nil {
			writeAdminError(w, errAnalyticsOff)
			return
		}
		q := r.URL.Query()
		from, err := parseTime(q.Get("from"))
		if err != nil {
			writeAdminError(w, tagged(portal.ErrInvalid, fmt.Errorf("from: %w", err)))
			return
		}
		// to defaults to the end of the current minute: usage counts
		// whole minutes, and the current one's calls are in.
		to := time.Now().Truncate(time.Minute).Add(time.Minute)
		if s := q.Get("to"); s != "" {
			if to, err = parseTime(s); err != nil {
				writeAdminError(w, tagged(portal.ErrInvalid, fmt.Errorf("to: %w", err)))
				return
			}
		}
		if !to.After(from) {
			writeAdminError(w, tagged(portal.ErrInvalid, fmt.Errorf("to (%s) must be after from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))))
			return
		}
		u, err := g.analytics.Usage(r.Context(), analytics.UsageQuery{From: from, To: to, Consumer: q.Get("consumer")})
		if err != nil {
			writeAdminError(w, err)
			return
		}
		format := q.Get("format")
		if format == "" && strings.Contains(r.Header.Get("Accept"), "text/csv") {
			format = "csv"
		}
		switch format {
		case "", "json":
			w.Header().Set("Content-Type", "application/json")
			_ = u.WriteJSON(w)
		case "csv":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="usage.csv"`)
			_ = u.WriteCSV(w)
		default:
			writeAdminError(w, tagged(portal.ErrInvalid, fmt.Errorf("format %q: use json or csv", format)))
		}
	})
}

// writeAdminError answers an analytics or usage error as the admin API
// answers errors: {"error": ...}, 400 for a bad query, else 503.
func writeAdminError(w http.ResponseWriter, err error) {
	status := http.StatusServiceUnavailable
	if errors.Is(err, portal.ErrInvalid) {
		status = http.StatusBadRequest
	}
	msg := err.Error()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// analyticsOrNil returns h when analytics are on, else nil (the admin
// API then answers 404 for its paths).
func (g *Gateway) analyticsOrNil(h http.Handler) http.Handler {
	if g.analytics == nil {
		return nil
	}
	return h
}

// taggedError is an error that answers errors.Is for tag (a portal
// sentinel that picks the HTTP status) while its text is err's alone.
type taggedError struct{ tag, err error }

// tagged returns err marked with tag (see taggedError).
func tagged(tag, err error) error { return taggedError{tag, err} }

func (e taggedError) Error() string        { return e.err.Error() }
func (e taggedError) Is(target error) bool { return target == e.tag }
func (e taggedError) Unwrap() error        { return e.err }
