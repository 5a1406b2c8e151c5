package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs tracks every long-running process the harness starts, so that all
// of them are stopped, by PID, however the harness ends.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

// proc is one started server process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // file holding its stderr (and stdout when not read)
	done chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// start runs path with args, its output in dir/name.log. When readAddr is
// set it waits for the first stdout line (the address the program listens
// on) and returns it.
func (ps *procs) start(dir, name string, readAddr bool, path string, args ...string) (*proc, string, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	defer logf.Close()
	cmd := exec.Command(path, args...)
	cmd.Stderr = logf
	var out *bufio.Reader
	if readAddr {
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			return nil, "", err
		}
		out = bufio.NewReader(pipe)
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	if !readAddr {
		go func() { _ = cmd.Wait(); close(p.done) }()
		return p, "", nil
	}
	type line struct {
		s   string
		err error
	}
	got := make(chan line, 1)
	go func() {
		s, err := out.ReadString('\n')
		got <- line{strings.TrimSpace(s), err}
		// Keep draining so that the program never blocks on stdout.
		drain := logf2(logPath)
		_, _ = out.WriteTo(drain)
		_ = drain.Close()
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case l := <-got:
		if l.err != nil {
			return p, "", fmt.Errorf("%s exited before printing its address (see %s):\n%s", name, logPath, tail(logPath))
		}
		return p, l.s, nil
	case <-time.After(30 * time.Second):
		return p, "", fmt.Errorf("%s printed no address within 30s (see %s)", name, logPath)
	}
}

// logf2 opens a log file for appending (the drain of a read stdout).
func logf2(path string) *os.File {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		f, _ = os.Open(os.DevNull)
	}
	return f
}

// stopAll sends SIGTERM to each process by PID, waits up to 5s, then
// SIGKILLs what is left. Safe to call more than once.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		select {
		case <-p.done:
			continue
		default:
		}
		_ = syscall.Kill(p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(p.pid(), syscall.SIGKILL)
			<-p.done
		}
	}
}

// exited reports whether p has ended (a crashed peer).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freePort returns a port free on 127.0.0.1 for both TCP and UDP (HTTP/3
// listens on the same port number over UDP).
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = u.Close()
		return port, nil
	}
	return 0, errors.New("no free port on 127.0.0.1")
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, p *proc, addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited (see %s):\n%s", p.name, p.log, tail(p.log))
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s does not accept connections on %s after 20s (see %s)", p.name, addr, p.log)
}

// tree is a process and its descendants (nginx's master and workers).
func tree(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(pid)
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statFields returns /proc/pid/stat's fields after the command name: [0]
// is the state (field 3), [1] the ppid, [11] utime, [12] stime.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// clockTick is USER_HZ, the unit of utime and stime: 100 on Linux.
const clockTick = 100

// cpuTime sums utime+stime over pids.
func cpuTime(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		f := statFields(pid)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clockTick
}

// resetPeakRSS resets VmHWM of pids (clear_refs 5; needs the same user or
// root). It reports whether it worked for all of them.
func resetPeakRSS(pids []int) bool {
	ok := true
	for _, pid := range pids {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			ok = false
		}
	}
	return ok
}

// peakRSSKB sums VmHWM over pids.
func peakRSSKB(pids []int) int64 {
	var kb int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				kb += n
			}
		}
	}
	return kb
}
