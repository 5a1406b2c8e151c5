// Command checkfiles fails when git tracks a compiled executable or a
// file larger than 4 MiB, so build output committed by mistake is caught
// by `make lint` instead of growing the repository's history.
//
// It reads the working-tree copy of every path `git ls-files` lists (run
// it from the repository root) and recognizes ELF, Mach-O (32- and 64-bit,
// either byte order, and fat/universal binaries) and PE (Windows)
// executables by their magic numbers. It prints one line per offending
// file and exits 1; it exits 0 silently when every file passes.
//
// Usage:
//
//	go run ./internal/cmd/checkfiles
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

// maxBytes is the largest file git may track (4 MiB).
const maxBytes = 4 << 20

func main() { os.Exit(run(os.Stdout, os.Stderr)) }

// run checks the files tracked by the git repository in the current
// directory, reports problems to stdout and errors to stderr, and returns
// the exit code: 0 when all pass, 1 when some do not, 2 on error.
func run(stdout, stderr io.Writer) int {
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		fmt.Fprintf(stderr, "checkfiles: git ls-files: %v\n", err)
		return 2
	}
	bad := 0
	for _, path := range strings.Split(string(out), "\x00") {
		if path == "" {
			continue
		}
		problem, err := check(path)
		if err != nil {
			fmt.Fprintf(stderr, "checkfiles: %v\n", err)
			return 2
		}
		if problem != "" {
			fmt.Fprintf(stdout, "%s: %s\n", path, problem)
			bad++
		}
	}
	if bad > 0 {
		fmt.Fprintf(stdout, "checkfiles: %d tracked file(s) must not be committed: git rm them and write build output under an ignored folder (bin/, .tmp/)\n", bad)
		return 1
	}
	return 0
}

// check returns why the file at path must not be tracked, or "" when it
// may be. Paths missing from the working tree (deleted, not yet staged),
// symlinks and submodules are skipped.
func check(path string) (string, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if kind, err := executableKind(f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	} else if kind != "" {
		return "compiled executable (" + kind + ")", nil
	}
	if info.Size() > maxBytes {
		return fmt.Sprintf("%d bytes, over the 4 MiB limit", info.Size()), nil
	}
	return "", nil
}

// executableKind names the executable format of r's content by its magic
// number, or returns "" when it is not one.
func executableKind(r io.ReaderAt) (string, error) {
	var head [64]byte
	n, err := r.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return "", err
	}
	b := head[:n]
	if len(b) >= 4 {
		switch binary.BigEndian.Uint32(b) {
		case 0x7f454c46: // "\x7fELF"
			return "ELF", nil
		case 0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe:
			return "Mach-O", nil
		case 0xcafebabe: // also a Java class file, compiled output as well
			return "Mach-O universal", nil
		}
	}
	// PE: an MS-DOS stub ("MZ") whose e_lfanew field (0x3c) points to
	// the "PE\0\0" signature.
	if len(b) == len(head) && b[0] == 'M' && b[1] == 'Z' {
		var sig [4]byte
		off := int64(binary.LittleEndian.Uint32(b[0x3c:]))
		if _, err := r.ReadAt(sig[:], off); err == nil && bytes.Equal(sig[:], []byte("PE\x00\x00")) {
			return "PE", nil
		}
	}
	return "", nil
}
