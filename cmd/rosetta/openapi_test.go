package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// TestOpenAPI prints the document of a real backend's services, found by
// reflection, and validates it with libopenapi-validator: as a whole and
// for one upstream.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	code, out, errs := runCLI("openapi", "--upstream", "test="+be.Addr)
	if code != 0 {
		t.Fatalf("openapi: exit %d: %s", code, errs)
	}
	if errs != "" {
		t.Errorf("stderr: %s", errs)
	}
	doc := validateOpenAPI(t, out)
	if doc.Info.Title != "Rosetta gateway" || len(doc.Servers) != 1 || doc.Servers[0].URL != "http://127.0.0.1:8080" {
		t.Errorf("info %+v, servers %+v", doc.Info, doc.Servers)
	}
	for _, path := range []string{
		"/v1/shelves/{shelf}/books/{book}:publish",
		"/v1/echo/things/{thing}/parts/{part}",
		"/rosetta.examples.library.v1.LibraryService/MoveBook",
	} {
		if doc.Paths[path] == nil {
			t.Errorf("no path %s", path)
		}
	}
	for path := range doc.Paths {
		if strings.ContainsAny(path, "=*") {
			t.Errorf("path %s: HttpRule syntax", path)
		}
	}

	// One upstream, another title and server.
	code, out, errs = runCLI("openapi", "--upstream", "test="+be.Addr, "--upstream-name", "test",
		"--title", "Library", "--server", "https://api.example.com")
	if code != 0 {
		t.Fatalf("openapi --upstream-name: exit %d: %s", code, errs)
	}
	doc = validateOpenAPI(t, out)
	if doc.Info.Title != "Library" || len(doc.Servers) != 1 || doc.Servers[0].URL != "https://api.example.com" {
		t.Errorf("info %+v, servers %+v", doc.Info, doc.Servers)
	}
}

// openAPIDoc is the part of a document TestOpenAPI looks at.
type openAPIDoc struct {
	Info struct {
		Title string `json:"title"`
	} `json:"info"`
	Servers []struct {
		URL string `json:"url"`
	} `json:"servers"`
	Paths map[string]json.RawMessage `json:"paths"`
}

// validateOpenAPI validates a printed document against the OpenAPI 3.1
// specification with libopenapi-validator and decodes it.
func validateOpenAPI(t *testing.T, out string) *openAPIDoc {
	t.Helper()
	d, err := libopenapi.NewDocument([]byte(out))
	if err != nil {
		t.Fatalf("libopenapi.NewDocument: %v", err)
	}
	v, errs := validator.NewValidator(d)
	if len(errs) > 0 {
		t.Fatalf("NewValidator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("invalid document: %s: %s", e.Message, e.Reason)
		}
		t.FailNow()
	}
	var doc openAPIDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}

// TestOpenAPIErrors: bad flags and configs exit 2 before dialling
// anything; an upstream that yields no descriptors exits 1 after its
// problems, printing no document. Each case names the exact line that
// ends stderr (or starts it: flag's own message, before the usage).
func TestOpenAPIErrors(t *testing.T) {
	t.Parallel()
	// An address that is no gRPC server: it closes every connection it
	// accepts. (A closed listener's port could be taken meanwhile by a
	// backend of a parallel test.)
	closed := testkit.ClosingAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "rosetta.yaml")
	if err := os.WriteFile(cfgFile, []byte("listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n  a:\n    targets: ["+closed+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkCLIErrors(t, "openapi", []cliError{
		{[]string{"--bogus"}, 2, "flag provided but not defined: -bogus", ""},
		{nil, 2, "no config: give --config FILE, or --upstream HOST:PORT for zero-config mode", ""},
		{[]string{"--upstream", "nope"}, 2, `--upstream: invalid address "nope": missing port in address (hint: write host:port, e.g. "10.0.0.5:9000")`, ""},
		{[]string{"--config", cfgFile, "--upstream", closed}, 2, "give either --config or --upstream, not both", ""},
		{[]string{"--upstream", "x=" + closed, "--upstream-name", "y"}, 2, `rosetta openapi: --upstream-name "y": no such gRPC upstream (have: x)`, ""},
		{[]string{"--upstream", "x=" + closed, "extra"}, 2, `rosetta openapi: unexpected argument "extra" (flags only: see rosetta openapi -h)`, ""},
		{[]string{"--upstream", "x=" + closed}, 1,
			`rosetta openapi: no services from upstream "x" (see the problems above); not printing a document without their routes`,
			"problem: upstream x: reflection from " + closed + ": rpc error: code = Unavailable"},
		{[]string{"--config", cfgFile}, 1,
			`rosetta openapi: no services from upstream "a" (see the problems above); not printing a document without their routes`,
			"problem: upstream a: reflection from " + closed + ": rpc error: code = Unavailable"},
	})
}

// cliError is one bad invocation of a command and what the user sees:
// the exit code, the last line of stderr (the first for a flag error),
// and optionally a line before it, by prefix; stdout stays empty.
type cliError struct {
	args    []string
	code    int
	last    string
	problem string
}

// checkCLIErrors runs each case of cmd and checks what it printed.
func checkCLIErrors(t *testing.T, cmd string, cases []cliError) {
	t.Helper()
	for _, c := range cases {
		args := append([]string{cmd}, c.args...)
		code, out, errs := runCLI(args...)
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		got := lines[len(lines)-1]
		if strings.HasPrefix(c.last, "flag ") {
			got = lines[0]
		}
		if code != c.code || got != c.last {
			t.Errorf("rosetta %s: exit %d, stderr %q; want exit %d, %q\n%s", strings.Join(args, " "), code, got, c.code, c.last, errs)
		}
		if out != "" {
			t.Errorf("rosetta %s: printed %.100q", strings.Join(args, " "), out)
		}
		if c.problem == "" {
			continue
		}
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, c.problem)
		}
		if !found {
			t.Errorf("rosetta %s: stderr has no line starting %q:\n%s", strings.Join(args, " "), c.problem, errs)
		}
	}
}
