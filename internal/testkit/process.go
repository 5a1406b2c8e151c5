package testkit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BackendProcess is a test backend running in its own process
// (cmd/echobackend), started by [StartBackendProcess]. Killing it with
// [BackendProcess.Kill] is SIGKILL: its connections end as when a backend
// crashes, without a GOAWAY or a graceful close.
type BackendProcess struct {
	// Name is the backend's name, answered in the x-backend header
	// metadata (gRPC) or X-Backend header (http).
	Name string
	// Addr is the host:port it listens on.
	Addr string

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	once   sync.Once
	waited chan struct{}
}

// ProcessOptions configure [StartBackendProcess].
type ProcessOptions struct {
	// Kind is "grpc" (default: EchoService, health, reflection) or
	// "http" (GET /healthz answers 200; other requests answer the name).
	Kind string
	// Addr is the address to listen on; default 127.0.0.1:0.
	Addr string
	// Delay is how long the backend waits before it answers each call,
	// so that calls are in flight when it is killed.
	Delay time.Duration
}

var echoBackend struct {
	once sync.Once
	path string
	err  error
}

// EchoBackendBinary builds cmd/echobackend once per test process and
// returns its path. The binary is written to one place per user under
// the temporary directory, so a later run finds it up to date and go
// build does not link it again (go build replaces it by renaming, so a
// process still running an older one is not disturbed).
func EchoBackendBinary(t testing.TB) string {
	t.Helper()
	echoBackend.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			echoBackend.err = fmt.Errorf("go is not in PATH: %w", err)
			return
		}
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("rosetta-testkit-%d", os.Getuid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			echoBackend.err = err
			return
		}
		path := filepath.Join(dir, "echobackend")
		cmd := exec.Command(gobin, "build", "-o", path, "github.com/rosetta-gateway/rosetta/internal/testkit/cmd/echobackend")
		out, err := cmd.CombinedOutput()
		if err != nil {
			echoBackend.err = fmt.Errorf("go build echobackend: %v\n%s", err, out)
			return
		}
		echoBackend.path = path
	})
	if echoBackend.err != nil {
		t.Fatal(echoBackend.err)
	}
	return echoBackend.path
}

// StartBackendProcess starts cmd/echobackend named name and waits until it
// listens. It is killed, if still running, when the test ends.
func StartBackendProcess(t testing.TB, name string, o ProcessOptions) *BackendProcess {
	t.Helper()
	bin := EchoBackendBinary(t)
	args := []string{"-name", name}
	if o.Kind != "" {
		args = append(args, "-kind", o.Kind)
	}
	if o.Addr != "" {
		args = append(args, "-addr", o.Addr)
	}
	if o.Delay > 0 {
		args = append(args, "-delay", o.Delay.String())
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start backend %s: %v", name, err)
	}
	p := &BackendProcess{Name: name, cmd: cmd, stdin: stdin, waited: make(chan struct{})}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		p.Kill()
		t.Fatalf("backend %s: got %q (%v); want \"listening on <addr>\"", name, line, err)
	}
	p.Addr = addr
	t.Cleanup(p.Kill)
	return p
}

// Kill sends SIGKILL to the backend and waits until it is gone. It is
// idempotent.
func (p *BackendProcess) Kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.stdin.Close()
		_ = p.cmd.Wait()
		close(p.waited)
	})
	<-p.waited
}
