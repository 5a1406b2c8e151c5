package testkit

import (
	"fmt"
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
