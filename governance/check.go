package governance

import (
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/registry"
)

// Input is what [Check] lints: what a gateway built from Config would
// serve.
type Input struct {
	// Config is the validated config.
	Config *config.Config
	// Snapshot holds the services of the config's upstreams, as the
	// gateway loaded them. nil checks no method.
	Snapshot *registry.Snapshot
	// Policies is the policy set built from Config ([policy.Build]); the
	// require-auth rule asks its chains whether they authenticate. nil
	// stands for a set without plugins: nothing authenticates.
	Policies *policy.Set
	// Now is the moment sunsets are compared with. Zero means
	// [time.Now].
	Now time.Time
}

// Check applies every rule ([RuleHTTPBinding], [RuleRequireAuth],
// [RuleDeprecationSunset], [RuleSunsetPassed]) to in and returns the
// findings, sorted: those with a config position first, by position,
// then the others by subject. It does no I/O and does not modify in; it returns
// nil when there is nothing to report.
func Check(in Input) []Finding {
	if in.Config == nil {
		return nil
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	c := &checker{in: in}
	c.httpBindings()
	c.requireAuth()
	c.lifecycle()
	sortFindings(c.out)
	return c.out
}

// checker collects the findings of one Check.
type checker struct {
	in  Input
	out []Finding
}

func (c *checker) add(f Finding) {
	if f.Severity == "" {
		f.Severity = Error
	}
	c.out = append(c.out, f)
}

// services returns the snapshot's services, sorted by full name.
func (c *checker) services() []*registry.Service {
	if c.in.Snapshot == nil {
		return nil
	}
	return c.in.Snapshot.Services()
}

// route returns the config route whose policies and lifecycle apply to
// the method fullName, as the gateway picks it: the first route, in file
// order, whose selector selects it. It returns nil when none does.
func (c *checker) route(fullName protoreflect.FullName) *config.Route {
	return config.SelectorRoute(c.in.Config.Routes, string(fullName))
}

// retired reports whether the method fullName is on a retired route: it
// refuses every call, so no rule about serving it applies.
func (c *checker) retired(fullName protoreflect.FullName) bool {
	r := c.route(fullName)
	return r != nil && r.Retired != nil
}
