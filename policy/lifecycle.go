package policy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
)

// RetiredPlugin is the plugin name a retired route's refusals carry
// (call.Error.Plugin), for metrics and logs.
const RetiredPlugin = "retired"

// lifecycle is what a route's deprecated or retired setting adds to its
// chain: response fields on every answer, or a refusal of every call.
type lifecycle struct {
	// notice are the Deprecation, Sunset and Link fields of a deprecated
	// route, added to every answer, refused or not.
	notice []Field
	// retired, when set, refuses every call (before any plugin runs).
	retired *config.Retirement
}

// newLifecycle returns the lifecycle of route r, nil when it is neither
// deprecated nor retired. loaded stands in for a deprecation's missing
// since.
func newLifecycle(r *config.Route, loaded time.Time) *lifecycle {
	switch {
	case r.Retired != nil:
		return &lifecycle{retired: r.Retired}
	case r.Deprecated != nil:
		return &lifecycle{notice: DeprecationFields(r.Deprecated, loaded)}
	}
	return nil
}

// DeprecationFields returns the response fields that announce d, in
// lower case (gRPC metadata; HTTP header names are case-insensitive):
// deprecation (RFC 9745: "@" and the Unix time of since, or of loaded
// when d has none), sunset (RFC 8594: an HTTP date) when d has one, and
// link with rel="successor-version" when d names a successor.
func DeprecationFields(d *config.Deprecation, loaded time.Time) []Field {
	since, ok := parseLifecycleTime(d.Since)
	if !ok {
		since = loaded
	}
	f := []Field{{Name: "deprecation", Value: "@" + strconv.FormatInt(since.Unix(), 10)}}
	if t, ok := parseLifecycleTime(d.Sunset); ok {
		f = append(f, Field{Name: "sunset", Value: t.UTC().Format(http.TimeFormat)})
	}
	if d.Link != "" {
		f = append(f, Field{Name: "link", Value: "<" + d.Link + `>; rel="successor-version"`})
	}
	return f
}

// parseLifecycleTime reads a date (2027-06-30: the start of that day in
// UTC) or an RFC 3339 time; "" or a malformed value (which validation
// refuses) reports false.
func parseLifecycleTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// refusal is a retired route's answer to cl: UNIMPLEMENTED (410 Gone on
// HTTP), naming the successor.
func (l *lifecycle) refusal(cl *call.Call) *call.Error {
	msg := l.retired.Message
	if msg == "" {
		msg = cl.Procedure + " is retired"
		if cl.Procedure == "" {
			msg = "this API is retired"
		}
		if l.retired.Link != "" {
			msg += "; use " + l.retired.Link
		}
	}
	return &call.Error{Code: codes.Unimplemented, Msg: msg, HTTPStatus: http.StatusGone, Refusal: true, Plugin: RetiredPlugin}
}

// apply runs the lifecycle on a call: it adds the notice fields to
// st.Response and returns the refusal of a retired route.
func (l *lifecycle) apply(cl *call.Call, st *State) *call.Error {
	if l == nil {
		return nil
	}
	if l.retired != nil {
		if l.retired.Link != "" {
			st.Response = append(st.Response, Field{Name: "link", Value: "<" + l.retired.Link + `>; rel="successor-version"`})
		}
		return l.refusal(cl)
	}
	st.Response = append(st.Response, l.notice...)
	return nil
}

// withLifecycle returns a copy of c that applies l before its plugins
// (c unchanged; nil l returns c).
func (c *Chain) withLifecycle(l *lifecycle) *Chain {
	if l == nil {
		return c
	}
	cp := &Chain{local: true}
	if c != nil {
		cp2 := *c
		cp = &cp2
	}
	cp.life = l
	return cp
}

// Lifecycle reports a deprecated route's notice fields (nil otherwise)
// and whether the route is retired.
func (c *Chain) Lifecycle() (notice []Field, retired bool) {
	if c == nil || c.life == nil {
		return nil, false
	}
	return c.life.notice, c.life.retired != nil
}
