package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// writeLintConfig writes a config whose gRPC upstream test is addr,
// followed by rest, and returns its path.
func writeLintConfig(t *testing.T, addr, rest string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rosetta.yaml")
	head := "listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n  test:\n    targets: [" + addr + "]\n" +
		"  web: {kind: http, targets: [\"127.0.0.1:9001\"]}\nconsumers:\n  - {name: alice, keys: [alice-key]}\n"
	if err := os.WriteFile(path, []byte(head+rest), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lintViolations has a method without a binding in each service, a
// service and a uri route without authentication under require_auth,
// and a deprecation without a sunset. Its lines 9 and on.
const lintViolations = `require_auth: true
http:
  rules:
    - {selector: rosetta.testing.v1.EchoService.Configured, post: /v1/configured, body: "*"}
routes:
  - selector: rosetta.examples.library.v1.*
    plugins: [{key-auth: {}}]
    deprecated: {since: 2026-01-01}
  - uri: /health
    service: web
`

// lintClean binds or default-bounds every method, authenticates every
// route and gives its deprecation a sunset far ahead.
const lintClean = `require_auth: true
transcoding:
  default_bound: [rosetta.testing.v1.EchoService.Unannotated, rosetta.testing.v1.EchoService.Configured, rosetta.examples.library.v1.LibraryService.MoveBook]
plugins:
  - key-auth: {}
routes:
  - selector: rosetta.examples.library.v1.*
    deprecated: {since: 2026-01-01, sunset: 2999-12-31}
  - uri: /health
    service: web
`

// TestLint runs `rosetta lint` against a real backend found by
// reflection (EchoService and LibraryService: 26 methods) and checks
// every line it prints and its exit code.
func TestLint(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	bad := writeLintConfig(t, be.Addr, lintViolations)
	clean := writeLintConfig(t, be.Addr, lintClean)
	passed := writeLintConfig(t, be.Addr, strings.Replace(lintClean, "2999-12-31", "2026-02-01", 1))
	const (
		echoAuth = "rosetta.testing.v1.EchoService: require-auth: none of its 14 methods authenticates callers: no route selects them and the top-level plugins have no jwt-auth or key-auth" +
			" (fix: add jwt-auth or key-auth to the top-level plugins, or a route that selects them with one)"
		moveBook = "rosetta.examples.library.v1.LibraryService.MoveBook: http-binding: no HTTP binding: REST clients reach it only by its default binding POST /rosetta.examples.library.v1.LibraryService/MoveBook" +
			` (fix: add a google.api.http option to the method or an http rule for it, or add "rosetta.examples.library.v1.LibraryService.MoveBook" to transcoding.default_bound if the default binding is deliberate)`
		configured = "rosetta.testing.v1.EchoService.Configured: http-binding: no HTTP binding: REST clients reach it only by its default binding POST /rosetta.testing.v1.EchoService/Configured" +
			` (fix: add a google.api.http option to the method or an http rule for it, or add "rosetta.testing.v1.EchoService.Configured" to transcoding.default_bound if the default binding is deliberate)`
		unannotated = "rosetta.testing.v1.EchoService.Unannotated: http-binding: no HTTP binding: REST clients reach it only by its default binding POST /rosetta.testing.v1.EchoService/Unannotated" +
			` (fix: add a google.api.http option to the method or an http rule for it, or add "rosetta.testing.v1.EchoService.Unannotated" to transcoding.default_bound if the default binding is deliberate)`
	)
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string // stdout lines
	}{
		{"violations", []string{"--config", bad}, 1, []string{
			bad + `:14:5: deprecation-sunset: route "rosetta.examples.library.v1.*": deprecated without a sunset: clients are told to move, but not by when` +
				" (fix: add the date it stops answering, e.g. deprecated: {sunset: 2027-06-30})",
			bad + `:17:5: require-auth: route "/health": does not authenticate callers: neither its plugins nor the top-level plugins have jwt-auth or key-auth` +
				" (fix: add jwt-auth or key-auth to the route's plugins, or to the top-level plugins for every route)",
			moveBook,
			echoAuth,
			unannotated,
			"lint: 26 methods of 2 services checked, 5 findings",
		}},
		{"zero-config", []string{"--upstream", "test=" + be.Addr}, 1, []string{
			moveBook, configured, unannotated,
			"lint: 26 methods of 2 services checked, 3 findings",
		}},
		{"clean", []string{"--config", clean}, 0, []string{
			"lint: 26 methods of 2 services checked, no findings",
		}},
		{"sunset-passed", []string{"--config", passed}, 0, []string{
			passed + `:15:5: warning: sunset-passed: route "rosetta.examples.library.v1.*": sunset 2026-02-01 has passed, yet the route still answers` +
				" (fix: retire it (replace deprecated with retired: {link: ...}) or move the sunset later)",
			"lint: 26 methods of 2 services checked, 1 finding (1 warning)",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := runCLI(append([]string{"lint"}, c.args...)...)
			if code != c.code {
				t.Errorf("exit %d; want %d", code, c.code)
			}
			if errs != "" {
				t.Errorf("stderr: %s", errs)
			}
			if diff := cmp.Diff(c.want, strings.Split(strings.TrimSuffix(out, "\n"), "\n")); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLintJSON checks the --format json document: the counts, and each
// finding with its rule, subject and position.
func TestLintJSON(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	bad := writeLintConfig(t, be.Addr, lintViolations)
	clean := writeLintConfig(t, be.Addr, lintClean)

	type finding struct {
		Rule, Severity, Kind, Subject, Message, Fix, File string
		Line, Col                                         int
	}
	type doc struct {
		Services, Methods, Errors, Warnings int
		Findings                            []finding
	}
	decode := func(out string) doc {
		t.Helper()
		var d doc
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		return d
	}

	code, out, errs := runCLI("lint", "--config", bad, "--format", "json")
	if code != 1 || errs != "" {
		t.Errorf("violations: exit %d, stderr %q; want 1 and none", code, errs)
	}
	d := decode(out)
	if d.Services != 2 || d.Methods != 26 || d.Errors != 5 || d.Warnings != 0 || len(d.Findings) != 5 {
		t.Fatalf("violations: got %+v", d)
	}
	var got []string
	for _, f := range d.Findings {
		if f.Severity != "error" || f.Message == "" || f.Fix == "" {
			t.Errorf("finding %+v: want severity error, a message and a fix", f)
		}
		if (f.File == bad) != (f.Line > 0) {
			t.Errorf("finding %+v: want file %s with a line, or neither", f, bad)
		}
		got = append(got, fmt.Sprintf("%s %s %s %d:%d", f.Rule, f.Kind, f.Subject, f.Line, f.Col))
	}
	want := []string{
		"deprecation-sunset route rosetta.examples.library.v1.* 14:5",
		"require-auth route /health 17:5",
		"http-binding method rosetta.examples.library.v1.LibraryService.MoveBook 0:0",
		"require-auth service rosetta.testing.v1.EchoService 0:0",
		"http-binding method rosetta.testing.v1.EchoService.Unannotated 0:0",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}

	code, out, errs = runCLI("lint", "--config", clean, "--format", "json")
	if code != 0 || errs != "" {
		t.Errorf("clean: exit %d, stderr %q; want 0 and none", code, errs)
	}
	if !strings.Contains(out, `"findings": []`) {
		t.Errorf("clean: want an empty findings list:\n%s", out)
	}
}

// TestLintErrors: bad flags and configs exit 2 before dialling anything,
// with the config's diagnostics printed as `rosetta validate` prints
// them; an upstream that yields no descriptors exits 1 after its
// problems, printing nothing to stdout.
func TestLintErrors(t *testing.T) {
	t.Parallel()
	// An address that is no gRPC server: it closes every connection it
	// accepts (as in TestOpenAPIErrors).
	closed := testkit.ClosingAddr(t)
	good := writeLintConfig(t, closed, "")
	invalid := writeLintConfig(t, closed, "require_auth: yes please\n")
	checkCLIErrors(t, "lint", []cliError{
		{[]string{"--bogus"}, 2, "flag provided but not defined: -bogus", ""},
		{[]string{"--config", good, "--format", "xml"}, 2, `rosetta lint: --format "xml": want text or json`, ""},
		{[]string{"--config", good, "extra"}, 2, `rosetta lint: unexpected argument "extra" (flags only: see rosetta lint -h)`, ""},
		{nil, 2, "no config: give --config FILE, or --upstream HOST:PORT for zero-config mode", ""},
		{[]string{"--config", invalid}, 2, invalid + `:9:15: require_auth: expected true or false, got "yes please"`, ""},
		{[]string{"--config", good}, 1,
			`rosetta lint: no services from upstream "test" (see the problems above); not linting without their methods`,
			"problem: upstream test: reflection from " + closed + ": rpc error: code = Unavailable"},
	})
}
