package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// TestServeReload runs `rosetta serve --config` and changes its config
// file: SIGHUP reloads it (a jwt-auth plugin starts refusing calls), an
// invalid file is refused with its diagnostics logged while the running
// config keeps serving, and a valid rewrite is picked up by the file
// watch alone.
func TestServeReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short")
	}
	t.Parallel()
	be := testkit.StartBackend(t)
	bin := buildBinary(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	file := filepath.Join(t.TempDir(), "rosetta.yaml")
	base := "listeners: [{address: \"" + addr + "\"}]\nupstreams:\n  test: {targets: [\"" + be.Addr + "\"]}\n"
	write := func(s string) {
		t.Helper()
		// Write a new file and rename it over the old one, as editors do.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(base)
	cmd := exec.Command(bin, "serve", "--config", file)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		for range logs {
		}
		_ = cmd.Wait()
	})
	waitFor(t, logs, "listening")
	status := func() int {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/v1/echo/hello")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != 200 {
		t.Fatalf("before reload: got %d; want 200", got)
	}

	// The watch would see this write too; SIGHUP reloads at once, and
	// whichever comes first logs "config reloaded".
	write(base + "plugins:\n  - jwt-auth:\n      secret: s3cret\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, logs, "config reloaded")
	if got := status(); got != 401 {
		t.Fatalf("after adding jwt-auth: got %d; want 401", got)
	}

	write(base + "plugins:\n  - jwt-auth:\n      secret: s3cret\n  - rate-limit: {}\n")
	line := waitFor(t, logs, "config reload refused")
	if want := file + `:7:5: plugins[1]: unknown plugin \"rate-limit\"`; !strings.Contains(line, want) {
		t.Errorf("refused reload's log line: %s\nwant it to contain %s", line, want)
	}
	if got := status(); got != 401 {
		t.Fatalf("after an invalid file: got %d; want 401 (the running config)", got)
	}

	write(base)
	waitFor(t, logs, "config reloaded")
	if got := status(); got != 200 {
		t.Fatalf("after removing jwt-auth: got %d; want 200", got)
	}
}
