package testkit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis is a real redis-server process started by [StartRedis] for one
// test: in memory only (no RDB snapshots, no append-only file), on
// 127.0.0.1 and a free port.
type Redis struct {
	// Addr is the host:port the server listens on. It stays the same
	// across [Redis.Stop] and [Redis.Start].
	Addr string

	t    testing.TB
	path string
	dir  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
	out *lockedBuffer
}

// StartRedis starts redis-server on a free 127.0.0.1 port, waits until it
// answers PING, and stops it when the test ends (t.Cleanup). The test
// fails, never skips, when redis-server is not installed: `make test`
// installs Debian's redis-server, or run `apt-get install -y
// redis-server`.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH (%v): install it with `apt-get install -y redis-server` (make test installs it)", err)
	}
	r := &Redis{t: t, path: path, dir: t.TempDir()}
	t.Cleanup(r.Stop)
	// The port is free when chosen but may be taken before redis-server
	// binds it (by another test's outgoing connection, whose local ports
	// come from the same range): then a new port is tried.
	for attempt := 1; ; attempt++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		r.port = lis.Addr().(*net.TCPAddr).Port
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		_ = lis.Close()
		err = r.start()
		if err == nil {
			return r
		}
		if !errors.Is(err, errPortTaken) || attempt == 5 {
			t.Fatalf("%v", err)
		}
	}
}

// errPortTaken: redis-server could not bind its port.
var errPortTaken = errors.New("port taken")

// Start starts the server again on the same address after [Redis.Stop],
// with an empty data set (a restarted server has lost its keys). It does
// nothing when the server runs.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("%v", err)
	}
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	out := &lockedBuffer{}
	cmd := exec.Command(r.path,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--daemonize", "no",
	)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = redisProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.cmd, r.out = cmd, out
	// A fresh server takes a few milliseconds to listen; poll PING for up
	// to 10s (a readiness bound, not an assertion on timing).
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(r.Addr)
		if err == nil {
			return nil
		}
		if strings.Contains(out.String(), "Address already in use") {
			r.stopLocked()
			return fmt.Errorf("redis-server on %s: %w\n%s", r.Addr, errPortTaken, out.String())
		}
		if time.Now().After(deadline) {
			r.stopLocked()
			return fmt.Errorf("redis-server on %s did not answer PING: %w\n%s", r.Addr, err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server and waits for it to exit; clients then see
// connection errors until [Redis.Start]. It is idempotent.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *Redis) stopLocked() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	_ = r.cmd.Wait()
	r.cmd = nil
}

// ping sends one inline PING and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return &net.OpError{Op: "ping", Net: "tcp", Err: errUnexpected(line)}
	}
	return nil
}

type errUnexpected string

func (e errUnexpected) Error() string { return "unexpected reply " + strconv.Quote(string(e)) }

// lockedBuffer collects the server's output; exec's copying goroutine
// writes while a failing test may read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
