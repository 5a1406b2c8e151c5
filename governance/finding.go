package governance

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/rosetta-gateway/rosetta/config"
)

// The stable IDs of the rules [Check] applies.
const (
	// RuleHTTPBinding reports a method without an HTTP binding (no
	// google.api.http option, no http rule) that no
	// transcoding.default_bound selector covers.
	RuleHTTPBinding = "http-binding"
	// RuleRequireAuth reports, when the config sets require_auth, each
	// method and each uri route whose policy chain authenticates no
	// caller. Retired routes are exempt: they refuse every call.
	RuleRequireAuth = "require-auth"
	// RuleDeprecationSunset reports a deprecated route without a sunset.
	RuleDeprecationSunset = "deprecation-sunset"
	// RuleSunsetPassed warns about a deprecated route whose sunset has
	// passed while the route still answers (it is not retired).
	RuleSunsetPassed = "sunset-passed"
)

// Severity says whether a finding fails the lint.
type Severity string

const (
	// Error findings are violations: `rosetta lint` exits 1.
	Error Severity = "error"
	// Warning findings are printed but do not fail the lint.
	Warning Severity = "warning"
)

// What a finding is about ([Finding.Kind]).
const (
	// KindMethod is an RPC method; the subject is its full name.
	KindMethod = "method"
	// KindService is a whole service; the subject is its full name.
	KindService = "service"
	// KindRoute is a config route; the subject is its selector or uri.
	KindRoute = "route"
)

// Finding is one rule violation.
type Finding struct {
	// Rule is the ID of the rule, e.g. [RuleRequireAuth].
	Rule string
	// Severity is [Error] or [Warning].
	Severity Severity
	// Kind is what Subject names: [KindMethod], [KindService] or
	// [KindRoute].
	Kind string
	// Subject is the method's or service's full name, or the route's
	// selector or uri.
	Subject string
	// Message says what is wrong, starting lowercase, without naming
	// Subject.
	Message string
	// Fix says how to fix it.
	Fix string
	// Pos is the config entry the finding maps to (the route that
	// applies, the http rule), or zero when it maps to none (a method
	// that is only in the .proto).
	Pos config.Pos
}

// label is how the text form names the subject: `route "x"` or a full
// name.
func (f Finding) label() string {
	if f.Kind == KindRoute {
		return "route " + strconv.Quote(f.Subject)
	}
	return f.Subject
}

// String formats f as one line: "file:line:col: rule: subject: message
// (fix: fix)" when the position is known, else "subject: rule: message
// (fix: fix)". Warnings have "warning: " before the rule. The subject of
// a route reads `route "selector"`.
func (f Finding) String() string {
	var b strings.Builder
	rule := f.Rule
	if f.Severity == Warning {
		rule = "warning: " + rule
	}
	if pos := f.Pos.String(); pos != "" {
		b.WriteString(pos + ": " + rule + ": " + f.label() + ": ")
	} else {
		b.WriteString(f.label() + ": " + rule + ": ")
	}
	b.WriteString(f.Message)
	if f.Fix != "" {
		b.WriteString(" (fix: " + f.Fix + ")")
	}
	return b.String()
}

// findingJSON is the JSON form of a Finding.
type findingJSON struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Kind     string   `json:"kind"`
	Subject  string   `json:"subject"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
	Col      int      `json:"col,omitempty"`
}

// MarshalJSON writes f as an object with the keys rule, severity, kind,
// subject, message, fix, file, line and col (the last four left out when
// empty or zero), for tools.
func (f Finding) MarshalJSON() ([]byte, error) {
	return json.Marshal(findingJSON{
		Rule: f.Rule, Severity: f.Severity, Kind: f.Kind, Subject: f.Subject,
		Message: f.Message, Fix: f.Fix,
		File: f.Pos.File, Line: f.Pos.Line, Col: f.Pos.Col,
	})
}

// sortFindings orders findings with a position first, by file, line and
// column, then the others by subject; ties by rule, then message.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		ap, bp := a.Pos.Line > 0 || a.Pos.File != "", b.Pos.Line > 0 || b.Pos.File != ""
		if ap != bp {
			if ap {
				return -1
			}
			return 1
		}
		return cmp.Or(
			strings.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
			strings.Compare(a.Subject, b.Subject),
			strings.Compare(a.Rule, b.Rule),
			strings.Compare(a.Message, b.Message),
		)
	})
}
