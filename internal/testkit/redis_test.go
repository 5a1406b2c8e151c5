package testkit

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestStartRedisStopStart(t *testing.T) {
	r := StartRedis(t)
	if err := ping(r.Addr); err != nil {
		t.Fatalf("PING after start: %v", err)
	}
	r.Stop()
	if err := ping(r.Addr); err == nil {
		t.Fatal("PING after Stop: got an answer")
	}
	r.Start()
	if err := ping(r.Addr); err != nil {
		t.Fatalf("PING after a restart on %s: %v", r.Addr, err)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and
// ends the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Without redis-server the test fails, naming the fix; it never skips.
func TestStartRedisMissingFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartRedis(rec)
	}()
	<-done
	if !strings.Contains(rec.msg, "install it with `apt-get install -y redis-server` (make test installs it)") {
		t.Fatalf("got %q; want a message that says how to install redis-server", rec.msg)
	}
}

// TestRedisPortTaken: a port taken between its choice and redis-server's
// bind is reported as errPortTaken at once (StartRedis then tries another
// port) rather than after the 10 s PING wait. (make test failed once with
// "Address already in use" on a port chosen free.)
func TestRedisPortTaken(t *testing.T) {
	t.Parallel()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH (%v): make test installs it", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	port := lis.Addr().(*net.TCPAddr).Port
	r := &Redis{t: t, path: path, dir: t.TempDir(), port: port, Addr: lis.Addr().String()}
	defer r.Stop()
	if err := r.start(); !errors.Is(err, errPortTaken) {
		t.Fatalf("start on a taken port: %v; want errPortTaken", err)
	}
	// StartRedis goes on to a free port.
	if srv := StartRedis(t); ping(srv.Addr) != nil {
		t.Fatalf("StartRedis: %s does not answer PING", srv.Addr)
	}
}
