package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite testdata/config/*.txt with the current output")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// goldenSep separates the YAML input of a golden file from its expected
// output.
const goldenSep = "----------\n"

// readGolden splits a golden file into input and expected output.
func readGolden(t testing.TB, path string) (input, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	input, want, ok := strings.Cut(string(data), goldenSep)
	if !ok {
		t.Fatalf("%s: no %q line", path, strings.TrimSpace(goldenSep))
	}
	return input, want
}

// goldenEnv is the environment every golden case sees, plus the
// "# env: NAME=value" comment lines of its input.
func goldenEnv(input string) func(string) (string, bool) {
	env := map[string]string{"HOME": "/home/rosetta"}
	for line := range strings.Lines(input) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "# env:"); ok {
			k, v, _ := strings.Cut(strings.TrimSpace(rest), "=")
			env[k] = v
		}
	}
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// newFixtureDir returns a temporary directory holding the files golden
// configs refer to.
func newFixtureDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"certs/ca.pem":                      "-----BEGIN CERTIFICATE-----\n",
		"certs/client.pem":                  "-----BEGIN CERTIFICATE-----\n",
		"certs/client.key":                  "-----BEGIN PRIVATE KEY-----\n",
		"descriptors/library.binpb":         "\n",
		"protos/library/v1/library.proto":   "syntax = \"proto3\";\n",
		"protos/library/v1/shelf.proto":     "syntax = \"proto3\";\n",
		"third_party/google/api/http.proto": "syntax = \"proto3\";\n",
	}
	for name, content := range keyFixtures(t) {
		files[name] = content
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// render returns what a golden file expects for Parse's result: the
// warnings one per line ("warning: ...") and the normalized JSON, or the
// diagnostics one per line, with the temporary directory replaced so that
// output is stable.
func render(t testing.TB, dir string, c *Config, err error) string {
	t.Helper()
	if err != nil {
		var diags Diagnostics
		if !errors.As(err, &diags) {
			t.Fatalf("Parse error is %T, want Diagnostics: %v", err, err)
		}
		return strings.ReplaceAll(diags.Error(), dir+string(filepath.Separator), "") + "\n"
	}
	out, err := c.Normalized()
	if err != nil {
		t.Fatalf("Normalized: %v", err)
	}
	var warnings strings.Builder
	for _, w := range c.Warnings {
		warnings.WriteString("warning: " + strings.ReplaceAll(w.String(), dir+string(filepath.Separator), "") + "\n")
	}
	return warnings.String() + strings.ReplaceAll(string(out), dir, "$DIR")
}

func TestGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/config/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 15 {
		t.Fatalf("got %d golden files; want at least 15", len(paths))
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".txt")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			input, want := readGolden(t, path)
			dir := newFixtureDir(t)
			file := filepath.Join(dir, "rosetta.yaml")
			if err := os.WriteFile(file, []byte(input), 0o644); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(file, data, goldenEnv(input))
			got := render(t, dir, c, err)
			if *update {
				if err := os.WriteFile(path, []byte(input+goldenSep+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: output mismatch (-want +got), rerun with -update if intended:\n%s", path, diff)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := newFixtureDir(t)
	file := filepath.Join(dir, "rosetta.yaml")
	yaml := `listeners: [{address: "127.0.0.1:0"}]
upstreams:
  library:
    targets: ["127.0.0.1:9000"]
    descriptors: {files: [descriptors/library.binpb]}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := c.File, file; got != want {
		t.Errorf("File: got %q; want %q", got, want)
	}
	u := c.Upstreams["library"]
	if got, want := u.Name, "library"; got != want {
		t.Errorf("Name: got %q; want %q", got, want)
	}
	if got, want := u.Descriptors.Files[0], filepath.Join(dir, "descriptors", "library.binpb"); got != want {
		t.Errorf("Files[0]: got %q; want %q", got, want)
	}
	if u.Descriptors.UseReflection() {
		t.Errorf("UseReflection: got true; want false with files listed")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Load: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(file)
	var diags Diagnostics
	if !errors.As(err, &diags) {
		t.Fatalf("got %T %v; want Diagnostics", err, err)
	}
	if got, want := err.Error(), file+": read config: no such file or directory"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

// TestParsePositions checks the fields Parse fills besides the schema.
func TestParsePositions(t *testing.T) {
	t.Parallel()
	dir := newFixtureDir(t)
	file := filepath.Join(dir, "rosetta.yaml")
	data := []byte(`listeners:
  - address: ":8080"
upstreams:
  library:
    targets: ["127.0.0.1:9000"]
    tls: {ca: certs/ca.pem}
    descriptors:
      protos: [library/v1/library.proto]
      import_paths: [protos, /usr/include]
http:
  rules:
    - selector: library.v1.Library.GetBook
      get: /v1/books/{id}
      additional_bindings:
        - get: /v1/shelves/{shelf}/books/{id}
routes:
  - selector: library.v1.Library.*
    timeout: 5s
`)
	c, err := Parse(file, data, nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"rule pos", c.HTTP.Rules[0].Pos, Pos{File: file, Line: 12, Col: 7}},
		{"binding pos", c.HTTP.Rules[0].AdditionalBindings[0].Pos, Pos{File: file, Line: 15, Col: 11}},
		{"route pos", c.Routes[0].Pos, Pos{File: file, Line: 17, Col: 5}},
		{"name", c.Upstreams["library"].Name, "library"},
		{"ca", c.Upstreams["library"].TLS.CA, filepath.Join(dir, "certs", "ca.pem")},
		{"import path", c.Upstreams["library"].Descriptors.ImportPaths[0], filepath.Join(dir, "protos")},
		{"absolute import path kept", c.Upstreams["library"].Descriptors.ImportPaths[1], "/usr/include"},
		{"route timeout", c.Routes[0].Timeout.Std().String(), "5s"},
	}
	for _, ch := range checks {
		if diff := cmp.Diff(ch.want, ch.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", ch.name, diff)
		}
	}
}

func TestDiagnosticString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    Diagnostic
		want string
	}{
		{
			name: "full",
			d:    Diagnostic{File: "rosetta.yaml", Line: 14, Col: 7, Path: "listeners[1].tls.cert", Msg: "open certs/api.pem: no such file", Hint: "paths are relative to the config file"},
			want: "rosetta.yaml:14:7: listeners[1].tls.cert: open certs/api.pem: no such file (hint: paths are relative to the config file)",
		},
		{
			name: "no hint",
			d:    Diagnostic{File: "rosetta.yaml", Line: 3, Col: 1, Path: "upstreams", Msg: "at least one upstream is required"},
			want: "rosetta.yaml:3:1: upstreams: at least one upstream is required",
		},
		{
			name: "no path",
			d:    Diagnostic{File: "rosetta.yaml", Line: 2, Col: 5, Msg: "more than one YAML document"},
			want: "rosetta.yaml:2:5: more than one YAML document",
		},
		{
			name: "line only",
			d:    Diagnostic{File: "rosetta.yaml", Line: 2, Msg: "invalid YAML: did not find expected key"},
			want: "rosetta.yaml:2: invalid YAML: did not find expected key",
		},
		{
			name: "no file",
			d:    Diagnostic{Line: 4, Col: 2, Path: "upstreams", Msg: "m"},
			want: "4:2: upstreams: m",
		},
		{
			name: "no position",
			d:    Diagnostic{Path: "--listen", Msg: "address is required", Hint: "h"},
			want: "--listen: address is required (hint: h)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.d.String(); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestDiagnosticsSorted(t *testing.T) {
	t.Parallel()
	ds := Diagnostics{
		{File: "b.yaml", Line: 1, Col: 1, Msg: "4"},
		{File: "a.yaml", Line: 9, Col: 1, Msg: "3"},
		{File: "a.yaml", Line: 2, Col: 8, Msg: "2"},
		{File: "a.yaml", Line: 2, Col: 3, Msg: "1"},
	}
	err := ds.err()
	want := "a.yaml:2:3: 1\na.yaml:2:8: 2\na.yaml:9:1: 3\nb.yaml:1:1: 4"
	if got := err.Error(); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got := Diagnostics(nil).err(); got != nil {
		t.Errorf("empty Diagnostics: got error %v; want nil", got)
	}
}

func TestExpandEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HOST": "db", "EMPTY": "", "PORT": "5432"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want string
		problems []string
	}{
		{in: "plain", want: "plain"},
		{in: "${HOST}:${PORT}", want: "db:5432"},
		{in: "${MISSING:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${EMPTY}", want: ""},
		{in: "${MISSING:-}", want: ""},
		{in: "${HOST:-x:-y}", want: "db"},
		{in: "${MISSING:-a:b}", want: "a:b"},
		{in: "$$", want: "$"},
		{in: "$${HOST}", want: "${HOST}"},
		{in: "$$$${HOST}", want: "$${HOST}"},
		{in: "$$${HOST}", want: "$db"},
		{in: "cost $5 and $HOME", want: "cost $5 and $HOME"},
		{in: "trailing $", want: "trailing $"},
		{in: "${MISSING}", want: "", problems: []string{`environment variable "MISSING" is not set`}},
		{in: "${A}${B}", want: "", problems: []string{`environment variable "A" is not set`, `environment variable "B" is not set`}},
		{in: "${}", want: "", problems: []string{`invalid environment variable name "" in ${}`}},
		{in: "${1X}", want: "", problems: []string{`invalid environment variable name "1X" in ${1X}`}},
		{in: "${HOST", want: "${HOST", problems: []string{`unterminated ${ in "${HOST"`}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, problems := expandEnv(tt.in, lookup)
			var msgs []string
			for _, p := range problems {
				msgs = append(msgs, p.msg)
			}
			if len(problems) == 0 && got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
			if diff := cmp.Diff(tt.problems, msgs); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJSONOptionsMerge(t *testing.T) {
	t.Parallel()
	base := JSONOptions{UseProtoNames: ptr(false), EmitUnpopulated: ptr(true)}
	override := JSONOptions{UseProtoNames: ptr(true), Int64AsNumbers: ptr(false)}
	got := base.Merge(override)
	want := JSONOptions{UseProtoNames: ptr(true), EmitUnpopulated: ptr(true), Int64AsNumbers: ptr(false)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Merge (-want +got):\n%s", diff)
	}
	if got := base.Merge(JSONOptions{}); !cmp.Equal(got, base) {
		t.Errorf("Merge(empty): got %+v; want base unchanged", got)
	}
}

func TestAccessors(t *testing.T) {
	t.Parallel()
	checks := []struct {
		name      string
		got, want any
	}{
		{"reflection by default", Descriptors{}.UseReflection(), true},
		{"files turn reflection off", Descriptors{Files: []string{"x"}}.UseReflection(), false},
		{"explicit reflection wins", Descriptors{Protos: []string{"x"}, Reflection: ptr(true)}.UseReflection(), true},
		{"refresh default", Descriptors{}.Refresh().String(), "1m0s"},
		{"refresh zero", Descriptors{RefreshInterval: ptr(Duration(0))}.Refresh().String(), "0s"},
		{"default bindings default", Transcoding{}.DefaultBindingsEnabled(), true},
		{"default bindings off", Transcoding{DefaultBindings: ptr(false)}.DefaultBindingsEnabled(), false},
		{"duration string", Duration(90e9).String(), "1m30s"},
		{"pos string", Pos{File: "r.yaml", Line: 3, Col: 4}.String(), "r.yaml:3:4"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v; want %v", ch.name, ch.got, ch.want)
		}
	}
}

// TestValidateInCode covers configs built in code: no file positions,
// defaults not applied.
func TestValidateInCode(t *testing.T) {
	t.Parallel()
	c := &Config{
		Listeners: []Listener{{Address: ":8080"}, {Address: ":8080", IdleTimeout: Duration(-1e9)}},
		Upstreams: map[string]*Upstream{
			"ok":  {Targets: TargetsOf("127.0.0.1:9000")},
			"bad": {Kind: "soap"},
			"nil": nil,
		},
		HTTP:   HTTPConfig{Rules: []HTTPRule{{Selector: "a.B.C", Get: "x", Pos: Pos{File: "gen.yaml", Line: 7, Col: 3}}}},
		Routes: []Route{{Selector: "library"}},
	}
	want := strings.Join([]string{
		`listeners[1].address: duplicate address ":8080" (first used by listeners[0])`,
		`listeners[1].idle_timeout: duration must not be negative, got "-1s"`,
		`upstreams.bad.kind: unknown kind "soap" (known: grpc, http)`,
		`upstreams.bad.targets: at least one target is required (hint: e.g. targets: ["127.0.0.1:9000"])`,
		`upstreams.nil: upstream is empty (hint: give it targets, e.g. targets: ["127.0.0.1:9000"])`,
		`routes[0].selector: invalid selector "library" (hint: write a full method name such as "library.v1.Library.GetBook", or end with ".*", e.g. "library.v1.Library.*")`,
		`gen.yaml:7:3: http.rules[0].get: path "x" must start with "/"`,
	}, "\n")
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate: got nil; want errors")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Validate (-want +got):\n%s", diff)
	}
}

func TestNormalizedDeterministic(t *testing.T) {
	t.Parallel()
	c, err := FromFlags(":8080", []string{"b=127.0.0.1:2", "a=127.0.0.1:1", "127.0.0.1:3"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := c.Normalized()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("Normalized changed between calls:\n%s\n---\n%s", first, again)
		}
	}
}
