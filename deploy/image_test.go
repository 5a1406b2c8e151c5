package deploy

import (
	"bufio"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The build flags live in build.sh alone: the Dockerfile's build stage and
// `make build-static` both run it, and TestStaticBinary checks what it
// makes. These tests check that the Dockerfile and the Makefile call it,
// and that the Dockerfile's stages fit the manifests.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// stage is one FROM and the instructions after it.
type stage struct {
	image, name string
	instrs      []instruction
}

func (s stage) all(cmd string) []string {
	var args []string
	for _, in := range s.instrs {
		if in.cmd == cmd {
			args = append(args, in.args)
		}
	}
	return args
}

// readDockerfile parses Dockerfile into its stages. Comment lines (the
// parser directive too) and blank lines are dropped, as Docker does.
func readDockerfile(t *testing.T) []stage {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var (
		stages  []stage
		pending string
	)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			var fields []string
			for _, f := range strings.Fields(in.args) {
				if !strings.HasPrefix(f, "--") {
					fields = append(fields, f)
				}
			}
			st := stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", in.cmd)
			}
			continue
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if pending != "" {
		t.Fatal("Dockerfile ends in a continuation line")
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a build stage and a final stage, got %d stage(s)", len(stages))
	}
	return stages
}

// entrypoint returns the final stage's ENTRYPOINT, which must be in exec
// (JSON) form: no shell in the image runs the other form.
func entrypoint(t *testing.T, stages []stage) []string {
	t.Helper()
	eps := stages[len(stages)-1].all("ENTRYPOINT")
	if len(eps) != 1 {
		t.Fatalf("Dockerfile: want one ENTRYPOINT in the final stage, got %d", len(eps))
	}
	var argv []string
	if err := json.Unmarshal([]byte(eps[0]), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("Dockerfile: ENTRYPOINT %s is not in exec form (a JSON array): %v", eps[0], err)
	}
	return argv
}

// entrypointConfig returns the --config path of the ENTRYPOINT.
func entrypointConfig(t *testing.T, stages []stage) string {
	t.Helper()
	argv := entrypoint(t, stages)
	i := slices.Index(argv, "--config")
	if i < 0 || i+1 >= len(argv) || !filepath.IsAbs(argv[i+1]) {
		t.Fatalf("Dockerfile: ENTRYPOINT %q: want --config with an absolute path", argv)
	}
	return argv[i+1]
}

// exposedPorts returns the final stage's EXPOSE ports.
func exposedPorts(t *testing.T, stages []stage) map[int]bool {
	t.Helper()
	ports := map[int]bool{}
	for _, args := range stages[len(stages)-1].all("EXPOSE") {
		for _, f := range strings.Fields(args) {
			n, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
			if err != nil {
				t.Fatalf("Dockerfile: EXPOSE %s: want TCP port numbers", args)
			}
			ports[n] = true
		}
	}
	return ports
}

// buildScriptOutput returns the path a RUN of the build stage passes to
// deploy/build.sh.
func buildScriptOutput(t *testing.T, build stage) string {
	t.Helper()
	for _, run := range build.all("RUN") {
		fields := strings.Fields(run)
		if i := slices.Index(fields, "deploy/build.sh"); i >= 0 && i+1 < len(fields) {
			return fields[i+1]
		}
	}
	t.Fatalf("Dockerfile: the build stage (FROM %s) does not RUN deploy/build.sh OUTPUT", build.image)
	return ""
}

// goMinor returns go.mod's go version as MAJOR.MINOR, e.g. "1.26".
func goMinor(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	return string(m[1])
}

// TestDockerfile checks the image: built by deploy/build.sh on the Go
// release go.mod names, shipped alone on a static base, run as non-root.
func TestDockerfile(t *testing.T) {
	stages := readDockerfile(t)
	build, final := stages[0], stages[len(stages)-1]

	if want := "golang:" + goMinor(t); build.image != want {
		t.Errorf("Dockerfile: build stage FROM %s, want %s (go.mod's go version)", build.image, want)
	}
	if build.name == "" {
		t.Error("Dockerfile: name the build stage (FROM ... AS build)")
	}
	for _, s := range stages {
		for _, in := range s.instrs {
			if strings.Contains(in.args, "go build") {
				t.Errorf("Dockerfile: %s %s: build with deploy/build.sh, which holds the flags", in.cmd, in.args)
			}
		}
	}
	out := buildScriptOutput(t, build)

	// The final stage has no libc (which is why the binary must be
	// static) and no shell.
	if final.image != "scratch" && !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		t.Errorf("Dockerfile: final stage FROM %s, want gcr.io/distroless/static* or scratch", final.image)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Error("Dockerfile: the final stage sets no USER (it would run as root)")
	}
	for _, u := range users {
		name, _, _ := strings.Cut(u, ":")
		if name == "root" || name == "0" {
			t.Errorf("Dockerfile: USER %s is root", u)
		}
	}

	argv := entrypoint(t, stages)
	copied := false
	for _, c := range final.all("COPY") {
		f := strings.Fields(c)
		if len(f) == 3 && f[0] == "--from="+build.name && f[1] == out && f[2] == argv[0] {
			copied = true
		}
	}
	if !copied {
		t.Errorf("Dockerfile: the final stage must COPY --from=%s %s %s (the build output to the ENTRYPOINT's binary)", build.name, out, argv[0])
	}
	if len(argv) < 2 || argv[1] != "serve" {
		t.Errorf("Dockerfile: ENTRYPOINT %q: want %s serve ...", argv, argv[0])
	}
	entrypointConfig(t, stages)
	if i := slices.Index(argv, "--log-format"); i < 0 || i+1 >= len(argv) || argv[i+1] != "json" {
		t.Errorf("Dockerfile: ENTRYPOINT %q: want --log-format json", argv)
	}
	if len(exposedPorts(t, stages)) == 0 {
		t.Error("Dockerfile: EXPOSE the listener and admin ports")
	}
}

// rule is one Makefile rule: its prerequisites and recipe lines.
type rule struct {
	prereqs []string
	recipe  []string
}

// readMakefile returns the rules of ../Makefile with plain target names.
func readMakefile(t *testing.T) map[string]*rule {
	t.Helper()
	data, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	head := regexp.MustCompile(`^([A-Za-z0-9_.-]+)\s*:([^=].*)?$`)
	rules := map[string]*rule{}
	var cur *rule
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "\t") {
			if cur != nil {
				cur.recipe = append(cur.recipe, strings.TrimSpace(line))
			}
			continue
		}
		cur = nil
		m := head.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		deps, _, _ := strings.Cut(m[2], "##")
		cur = &rule{prereqs: strings.Fields(deps)}
		rules[m[1]] = cur
	}
	return rules
}

// reaches reports whether running target runs goal: as a prerequisite, or
// named in a recipe ($(MAKE) goal), transitively.
func reaches(rules map[string]*rule, target, goal string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(name string) bool {
		if name == goal {
			return true
		}
		r := rules[name]
		if r == nil || seen[name] {
			return false
		}
		seen[name] = true
		next := slices.Clone(r.prereqs)
		for _, line := range r.recipe {
			next = append(next, strings.Fields(line)...)
		}
		return slices.ContainsFunc(next, walk)
	}
	return walk(target)
}

// TestBuildFlagsShared checks that the image and `make build-static` build
// the same way: both run build.sh, which holds the flags, and make test
// runs build-static (where TestStaticBinary checks the binary).
func TestBuildFlagsShared(t *testing.T) {
	script, err := os.ReadFile("build.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`CGO_ENABLED=0 `, ` -trimpath `, `ldflags="-s -w"`, ` ./cmd/rosetta`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("build.sh does not contain %q", want)
		}
	}
	if fi, err := os.Stat("build.sh"); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("build.sh must be executable (%v)", err)
	}

	rules := readMakefile(t)
	r := rules["build-static"]
	if r == nil {
		t.Fatal("Makefile: no build-static rule")
	}
	if !slices.ContainsFunc(r.recipe, func(l string) bool { return strings.HasPrefix(l, "deploy/build.sh bin/rosetta-static") }) {
		t.Errorf("Makefile: build-static does not run deploy/build.sh bin/rosetta-static: %q", r.recipe)
	}
	if !slices.ContainsFunc(r.recipe, func(l string) bool { return strings.Contains(l, "TestStaticBinary") }) {
		t.Errorf("Makefile: build-static does not run TestStaticBinary on its output: %q", r.recipe)
	}
	if !reaches(rules, "test", "build-static") {
		t.Error("Makefile: make test does not run build-static")
	}
	stages := readDockerfile(t)
	buildScriptOutput(t, stages[0])
}

// dockerignore is the build context's .dockerignore, as Docker reads it:
// the last pattern that matches a path, or one of its parent directories,
// decides; a "!" pattern keeps the path.
type dockerignore []struct {
	re     *regexp.Regexp
	negate bool
}

func readDockerignore(t *testing.T) dockerignore {
	t.Helper()
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var di dockerignore
	for _, line := range strings.Split(string(data), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		negate := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if strings.ContainsAny(p, `[\`) {
			t.Fatalf(".dockerignore: %q: the test's matcher takes *, ** and ? only", line)
		}
		p = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
		var b strings.Builder
		b.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				b.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				b.WriteString(".*")
				i++
			case p[i] == '*':
				b.WriteString("[^/]*")
			case p[i] == '?':
				b.WriteString("[^/]")
			default:
				b.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		b.WriteString("$")
		di = append(di, struct {
			re     *regexp.Regexp
			negate bool
		}{regexp.MustCompile(b.String()), negate})
	}
	return di
}

// excludes reports whether the path (relative to the context, with
// slashes) is left out of the build context.
func (di dockerignore) excludes(p string) bool {
	excluded := false
	for _, pat := range di {
		for q := p; q != "." && q != "/"; q = filepath.ToSlash(filepath.Dir(q)) {
			if pat.re.MatchString(q) {
				excluded = !pat.negate
				break
			}
		}
	}
	return excluded
}

// TestDockerignore checks that .dockerignore keeps every file the image
// build needs in the build context: go.mod, go.sum, build.sh and the
// sources of every package of the module that cmd/rosetta imports.
func TestDockerignore(t *testing.T) {
	di := readDockerignore(t)
	for p, want := range map[string]bool{".git/config": true, "bin/rosetta-static": true, "go.mod": false} {
		if di.excludes(p) != want {
			t.Errorf(".dockerignore: excludes(%s) = %v, want %v", p, !want, want)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .SFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/rosetta")
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum", "deploy/build.sh"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		needed = append(needed, filepath.ToSlash(rel))
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %q", needed)
	}
	for _, p := range needed {
		if di.excludes(p) {
			t.Errorf(".dockerignore leaves %s out of the build context; the image build needs it", p)
		}
	}
}

// TestStaticBinary checks the binary build.sh made, named by
// ROSETTA_STATIC_BINARY: `make build-static` (part of make test) builds
// bin/rosetta-static and runs this test on it.
func TestStaticBinary(t *testing.T) {
	bin := os.Getenv("ROSETTA_STATIC_BINARY")
	if bin == "" {
		t.Skip("ROSETTA_STATIC_BINARY is not set: make build-static runs this test on bin/rosetta-static")
	}
	if runtime.GOOS != "linux" {
		t.Skipf("the image is Linux; on %s build.sh makes a %s binary", runtime.GOOS, runtime.GOOS)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter (PT_INTERP): it is dynamically linked", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("%s needs shared libraries %q", bin, libs)
	}
	if f.Section(".dynamic") != nil {
		t.Errorf("%s has a .dynamic section: it is dynamically linked", bin)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table: built without -ldflags -s", bin)
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("%s has DWARF (%s): built without -ldflags -w", bin, s.Name)
			break
		}
	}

	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/rosetta-gateway/rosetta/cmd/rosetta"; bi.Path != want {
		t.Errorf("%s is %s, want %s", bin, bi.Path, want)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "-buildmode": "exe"} {
		if settings[k] != want {
			t.Errorf("%s was built with %s=%q, want %q", bin, k, settings[k], want)
		}
	}
}
