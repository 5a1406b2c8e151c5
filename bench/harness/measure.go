package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one measured run of one scenario on one peer.
type sample struct {
	requests   int64
	errors     int64
	rps        float64
	p50, p99   time.Duration
	cpu        time.Duration // the peer's processes
	backendCPU time.Duration // the backends' (the same as cpu for the direct peer)
	// backends is each backend process's share of backendCPU, in the
	// order of peer.backends (lb3: the three backends).
	backends   []procCPU
	peakKB     int64
	firstError string
}

func (s sample) cpuPerReq() time.Duration {
	if s.requests == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.requests)
}

func (s sample) backendPerReq() time.Duration {
	if s.requests == 0 {
		return 0
	}
	return s.backendCPU / time.Duration(s.requests)
}

// procCPU is one process's CPU time during a run.
type procCPU struct {
	name string
	cpu  time.Duration
}

// loadResult is what a load tool reports.
type loadResult struct {
	requests, errors int64
	rps              float64
	p50, p99         time.Duration
	firstError       string
}

// measure runs a warm-up, then the measured run, reading the CPU time of
// the peer and of the backends behind it (p.backends, else the backend)
// and the peer's peak RSS around it.
func (e *env) measure(ctx context.Context, s scenario, p *peer, warmup, dur time.Duration) (sample, error) {
	if warmup > 0 {
		if _, err := e.runLoad(ctx, s, p, warmup); err != nil {
			return sample{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	backends := p.backends
	if backends == nil {
		backends = []*proc{e.backendProc}
	}
	pids := tree(p.proc.pid())
	resetPeakRSS(pids)
	cpu0 := cpuTime(pids)
	be0 := make([]time.Duration, len(backends))
	for i, b := range backends {
		be0[i] = cpuTime([]int{b.pid()})
	}
	r, err := e.runLoad(ctx, s, p, dur)
	if err != nil {
		return sample{}, err
	}
	pids = tree(p.proc.pid())
	out := sample{
		requests: r.requests, errors: r.errors, rps: r.rps, p50: r.p50, p99: r.p99,
		cpu:        cpuTime(pids) - cpu0,
		peakKB:     peakRSSKB(pids),
		firstError: r.firstError,
	}
	for i, b := range backends {
		d := cpuTime([]int{b.pid()}) - be0[i]
		out.backendCPU += d
		out.backends = append(out.backends, procCPU{b.name, d})
	}
	if p.proc.exited() {
		return out, fmt.Errorf("%s exited during the run (see %s):\n%s", p.key, p.proc.log, tail(p.proc.log))
	}
	for _, b := range backends {
		if b.exited() {
			return out, fmt.Errorf("%s exited during the run (see %s):\n%s", b.name, b.log, tail(b.log))
		}
	}
	return out, nil
}

func (e *env) runLoad(ctx context.Context, s scenario, p *peer, dur time.Duration) (loadResult, error) {
	switch s.load {
	case "h2load":
		return e.runH2load(ctx, s, p, dur)
	case "ghz":
		return e.runGhz(ctx, s, p, dur)
	case "load":
		return e.runGoLoad(ctx, s, p, dur)
	}
	return loadResult{}, fmt.Errorf("unknown load tool %q", s.load)
}

// Concurrency: 64 in flight. HTTP/1.1 needs 64 connections; HTTP/2 runs 16
// streams on each of 4 connections.
const (
	inFlight = 64
	h2Conns  = 4
)

var (
	reFinished = regexp.MustCompile(`finished in ([\d.]+)(\w+), ([\d.]+) req/s`)
	reRequests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	reStatus   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	reData     = regexp.MustCompile(`\((\d+)\) data`)
)

func (e *env) runH2load(ctx context.Context, s scenario, p *peer, dur time.Duration) (loadResult, error) {
	logFile := filepath.Join(e.dir, "h2load-latency.tsv")
	_ = os.Remove(logFile)
	args := []string{"-t", "1", "-D", strconv.FormatFloat(dur.Seconds(), 'f', -1, 64), "--log-file", logFile}
	if s.h1 {
		args = append(args, "--h1", "-c", strconv.Itoa(inFlight))
	} else {
		args = append(args, "-c", strconv.Itoa(h2Conns), "-m", strconv.Itoa(inFlight/h2Conns))
	}
	if s.body != "" {
		args = append(args, "-d", filepath.Join(e.dir, s.body))
	}
	for _, h := range s.headers {
		args = append(args, "-H", h)
	}
	args = append(args, "http://"+p.addr+s.path)
	out, err := exec.CommandContext(ctx, "h2load", args...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("h2load %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	text := string(out)
	f, rq, st := reFinished.FindStringSubmatch(text), reRequests.FindStringSubmatch(text), reStatus.FindStringSubmatch(text)
	if f == nil || rq == nil || st == nil {
		return loadResult{}, fmt.Errorf("cannot read h2load's output:\n%s", text)
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	// "failed" counts resets and timeouts; "succeeded" may include non-2xx
	// answers, which are errors here too.
	succeeded, failed, ok2xx := n(rq[4]), n(rq[5]), n(st[1])
	r := loadResult{requests: min(succeeded, ok2xx), rps: mustFloat(f[3])}
	r.errors = failed + max(0, succeeded-ok2xx)
	if r.errors > 0 {
		r.firstError = fmt.Sprintf("h2load: %s; %s", rq[0], st[0])
	}
	if s.echo && r.requests > 0 {
		fi, err := os.Stat(filepath.Join(e.dir, s.body))
		d := reData.FindStringSubmatch(text)
		if err != nil || d == nil {
			return loadResult{}, fmt.Errorf("cannot read h2load's data bytes or the body size (%v):\n%s", err, text)
		}
		if echoed := n(d[1]) / fi.Size(); echoed < r.requests {
			short := r.requests - echoed
			r.requests, r.errors = echoed, r.errors+short
			if r.firstError == "" {
				r.firstError = fmt.Sprintf("h2load: %d answers carried no message (%s; %d bytes each expected)", short, d[0], fi.Size())
			}
		}
	}
	lat, err := readH2loadLatencies(logFile)
	if err != nil {
		return loadResult{}, err
	}
	r.p50, r.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return r, nil
}

// readH2loadLatencies reads --log-file: start µs, status, duration µs.
func readH2loadLatencies(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("h2load latency log: %w", err)
	}
	defer f.Close()
	var lat []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) < 3 {
			continue
		}
		if code, _ := strconv.Atoi(fs[1]); code < 200 || code > 299 {
			continue
		}
		us, err := strconv.ParseInt(fs[2], 10, 64)
		if err == nil {
			lat = append(lat, time.Duration(us)*time.Microsecond)
		}
	}
	return lat, sc.Err()
}

func percentile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[int(q*float64(len(lat)-1))]
}

func mustFloat(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// ghzReport is the part of ghz's --format json that the harness reads.
type ghzReport struct {
	Count   int64   `json:"count"`
	RPS     float64 `json:"rps"`
	Latency []struct {
		Percentage int   `json:"percentage"`
		Latency    int64 `json:"latency"` // ns
	} `json:"latencyDistribution"`
	StatusCodes map[string]int64 `json:"statusCodeDistribution"`
	Errors      map[string]int64 `json:"errorDistribution"`
}

func (e *env) runGhz(ctx context.Context, s scenario, p *peer, dur time.Duration) (loadResult, error) {
	args := []string{"--insecure", "--protoset", filepath.Join(e.dir, "bench.protoset"), "--call", s.call, "-d", s.data,
		"-c", strconv.Itoa(inFlight), "--connections", strconv.Itoa(h2Conns), "-z", dur.String(), "--duration-stop", "wait",
		"--timeout", "10s", "--format", "json", p.addr}
	cmd := exec.CommandContext(ctx, e.bins["ghz"], args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("ghz %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var rep ghzReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return loadResult{}, fmt.Errorf("read ghz's report: %w: %.300s", err, out)
	}
	r := loadResult{requests: rep.StatusCodes["OK"], rps: rep.RPS}
	// --duration-stop wait: calls in flight when -z ends finish, so every
	// error is the server's.
	for msg, n := range rep.Errors {
		r.errors += n
		if r.firstError == "" {
			r.firstError = fmt.Sprintf("%d× %s", n, msg)
		}
	}
	for _, l := range rep.Latency {
		switch l.Percentage {
		case 50:
			r.p50 = time.Duration(l.Latency)
		case 99:
			r.p99 = time.Duration(l.Latency)
		}
	}
	if rep.RPS > 0 && rep.Count > 0 {
		r.rps = rep.RPS * float64(r.requests) / float64(rep.Count)
	}
	return r, nil
}

// goLoadReport is bench/load's JSON line.
type goLoadReport struct {
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	RPS        float64 `json:"rps"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	FirstError string  `json:"first_error"`
}

func (e *env) runGoLoad(ctx context.Context, s scenario, p *peer, dur time.Duration) (loadResult, error) {
	url := wsURL(p)
	if s.mode == "h3" {
		url = h3URL(p)
	}
	args := []string{"-mode", s.mode, "-url", url, "-concurrency", strconv.Itoa(inFlight), "-conns", strconv.Itoa(h2Conns), "-duration", dur.String()}
	cmd := exec.CommandContext(ctx, e.bins["load"], args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("load %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var rep goLoadReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return loadResult{}, fmt.Errorf("read bench/load's report: %w: %.300s", err, out)
	}
	return loadResult{
		requests: rep.Requests, errors: rep.Errors, rps: rep.RPS,
		p50: time.Duration(rep.P50us) * time.Microsecond, p99: time.Duration(rep.P99us) * time.Microsecond,
		firstError: rep.FirstError,
	}, nil
}
