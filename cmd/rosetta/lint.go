package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/rosetta-gateway/rosetta/governance"
	"github.com/rosetta-gateway/rosetta/policy"
)

// lintCommand checks the live APIs against the governance rules (see
// package governance): it loads the config and the descriptors of every
// gRPC upstream as `rosetta openapi` does, builds the policy set as the
// gateway does, and prints one finding per line to stdout, then a
// summary line:
//
//	rosetta.yaml:12:5: require-auth: plain.v1.Plain: none of its 2 methods authenticates callers: ... (fix: ...)
//	rosetta.testing.v1.EchoService.Unannotated: http-binding: no HTTP binding: ... (fix: ...)
//	lint: 26 methods of 2 services checked, 2 findings
//
// With --format json it prints one JSON document instead:
// {"services": M, "methods": N, "errors": E, "warnings": W, "findings":
// [...]}, each finding as [governance.Finding.MarshalJSON] writes it.
//
// Exit codes: 0 when no finding is an error (warnings alone pass); 1
// when some finding is an error, when an upstream yields no descriptors
// (after its problems: its methods would go unchecked) or when the
// gateway cannot be built; 2 for bad flags or an invalid config (printed
// as `rosetta validate` prints it), before anything is dialled.
func lintCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf configFlags
	cf.register(fs, false)
	format := fs.String("format", "text", "output format: text (one finding per line) or json")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for descriptors")
	if !parseFlags(fs, args) {
		return 2
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "rosetta lint: --format %q: want text or json\n", *format)
		return 2
	}
	cfg, err := cf.load()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	snap, done, code := loadDescriptors(cfg, loadParams{
		cmd:     "lint",
		scope:   grpcUpstreams(cfg),
		timeout: *timeout,
		without: "not linting without their methods",
	}, stderr)
	if code != 0 {
		return code
	}
	defer done()
	// The gateway built this set too, but does not share it; building
	// it again opens nothing (a jwks_uri fetch starts in the background
	// and Close stops it).
	pols, err := policy.Build(cfg, nil, nil)
	if err != nil {
		fmt.Fprintln(stderr, "rosetta lint:", err)
		return 1
	}
	defer func() { _ = pols.Close() }()
	findings := governance.Check(governance.Input{Config: cfg, Snapshot: snap, Policies: pols, Now: time.Now()})

	var sum lintSummary
	for _, s := range snap.Services() {
		sum.Services++
		sum.Methods += s.Desc.Methods().Len()
	}
	for _, f := range findings {
		if f.Severity == governance.Warning {
			sum.Warnings++
		} else {
			sum.Errors++
		}
	}
	if *format == "json" {
		sum.Findings = findings
		if sum.Findings == nil {
			sum.Findings = []governance.Finding{}
		}
		b, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			fmt.Fprintln(stderr, "rosetta lint:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		for _, f := range findings {
			fmt.Fprintln(stdout, f.String())
		}
		fmt.Fprintln(stdout, sum.String())
	}
	if sum.Errors > 0 {
		return 1
	}
	return 0
}

// lintSummary is what `rosetta lint` checked and found; its JSON form is
// the --format json document.
type lintSummary struct {
	Services int                  `json:"services"`
	Methods  int                  `json:"methods"`
	Errors   int                  `json:"errors"`
	Warnings int                  `json:"warnings"`
	Findings []governance.Finding `json:"findings"`
}

// String is the summary line: "lint: 26 methods of 2 services checked,
// no findings", or "…, 3 findings" with "(1 warning)" when some are
// warnings.
func (s lintSummary) String() string {
	line := fmt.Sprintf("lint: %s of %s checked, ", lintCount(s.Methods, "method"), lintCount(s.Services, "service"))
	switch n := s.Errors + s.Warnings; {
	case n == 0:
		line += "no findings"
	case s.Warnings > 0:
		line += fmt.Sprintf("%s (%s)", lintCount(n, "finding"), lintCount(s.Warnings, "warning"))
	default:
		line += lintCount(n, "finding")
	}
	return line
}

// lintCount returns "1 method" or "n methods".
func lintCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
