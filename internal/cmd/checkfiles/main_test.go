package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// header returns a 64-byte file start beginning with magic.
func header(magic ...byte) []byte {
	b := make([]byte, 64)
	copy(b, magic)
	return b
}

// peHeader returns an MS-DOS stub whose e_lfanew points at sig.
func peHeader(sig string) []byte {
	b := header('M', 'Z')
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	b = append(b, make([]byte, 0x80-len(b))...)
	return append(b, sig...)
}

func TestCheck(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	selfBytes, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		content []byte
		want    string
	}{
		{"test-binary", selfBytes, "compiled executable"},
		{"elf", header(0x7f, 'E', 'L', 'F'), "compiled executable (ELF)"},
		{"macho-32-be", header(0xfe, 0xed, 0xfa, 0xce), "compiled executable (Mach-O)"},
		{"macho-64-be", header(0xfe, 0xed, 0xfa, 0xcf), "compiled executable (Mach-O)"},
		{"macho-32-le", header(0xce, 0xfa, 0xed, 0xfe), "compiled executable (Mach-O)"},
		{"macho-64-le", header(0xcf, 0xfa, 0xed, 0xfe), "compiled executable (Mach-O)"},
		{"macho-fat", header(0xca, 0xfe, 0xba, 0xbe), "compiled executable (Mach-O universal)"},
		{"pe", peHeader("PE\x00\x00"), "compiled executable (PE)"},
		{"mz-without-pe", peHeader("NE\x00\x00"), ""},
		{"mz-text", []byte("MZ is how this short text starts"), ""},
		{"short-elf-prefix", []byte("\x7fEL"), ""},
		{"empty", nil, ""},
		{"go-source", []byte("package main\n"), ""},
		{"script", []byte("#!/usr/bin/env bash\nmake test\n"), ""},
	}
	dir := t.TempDir()
	for _, c := range cases {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, c.content, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := check(path)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !strings.HasPrefix(got, c.want) || (c.want == "" && got != "") {
			t.Errorf("%s: got %q; want %q", c.name, got, c.want)
		}
	}
}

func TestCheckSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		size int64
		want string
	}{
		{maxBytes, ""},
		{maxBytes + 1, "4194305 bytes, over the 4 MiB limit"},
	} {
		path := filepath.Join(dir, "data")
		if err := os.WriteFile(path, []byte("text"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, c.size); err != nil { // sparse: cheap
			t.Fatal(err)
		}
		if got, err := check(path); err != nil || got != c.want {
			t.Errorf("%d bytes: got %q, %v; want %q", c.size, got, err, c.want)
		}
	}
}

// TestRun commits a real executable to a scratch git repository, then
// removes it: the check fails naming the file, then passes.
func TestRun(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q")
	if err := os.WriteFile("README.md", []byte("# scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("server", bin, 0o755); err != nil {
		t.Fatal(err)
	}
	git("add", "README.md", "server")
	git("commit", "-q", "-m", "binary by mistake")

	var stdout, stderr bytes.Buffer
	if code := run(&stdout, &stderr); code != 1 || !strings.HasPrefix(stdout.String(), "server: compiled executable") {
		t.Fatalf("with a committed binary: got exit %d, %q %q; want exit 1 naming server", code, stdout.String(), stderr.String())
	}

	git("rm", "-q", "server")
	git("commit", "-q", "-m", "remove binary")
	stdout.Reset()
	if code := run(&stdout, &stderr); code != 0 || stdout.Len() != 0 {
		t.Fatalf("after git rm: got exit %d, %q %q; want exit 0 and no output", code, stdout.String(), stderr.String())
	}
}
