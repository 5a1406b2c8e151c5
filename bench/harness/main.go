// Command harness is Rosetta's load benchmark (`make bench`): it builds and
// starts the bench backend, Rosetta and its peers (grpc-gateway's generated
// handlers, vanguard-go fed by reflection, nginx grpc_pass, HAProxy, and
// the backend called directly), drives each scenario on each peer that can
// serve it with h2load, ghz or bench/load (64 in flight, on 127.0.0.1),
// and writes a markdown table of requests/s, p50/p99, server CPU time per
// request and peak RSS to -out, and prints it.
//
// Peers alternate over -rounds rounds (the order rotates each round);
// ratios to Rosetta are taken within a round and the median round is
// reported. Every process it starts is stopped by PID when it ends.
//
//	cd bench && go run ./harness -rounds 3 -duration 4s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

type options struct {
	rounds           int
	duration, warmup time.Duration
	out, root, label string
	baseline         string
	scenarios, peers string
	keep             bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; the peers alternate in each and the median round is reported")
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	flag.StringVar(&o.out, "out", "results/latest.md", "markdown file to write the results to")
	flag.StringVar(&o.root, "root", "..", "the Rosetta repository (to build cmd/rosetta)")
	flag.StringVar(&o.label, "command", "", "the command to print in the report (default: this one)")
	flag.StringVar(&o.scenarios, "scenarios", "", "comma-separated scenario keys to run (default: all)")
	flag.StringVar(&o.peers, "peers", "", "comma-separated peers to run (default: all)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs)")
	flag.StringVar(&o.baseline, "baseline", "", "an earlier report: print Rosetta's CPU per request beside its Rosetta column")
	flag.Parse()
	if o.label == "" {
		o.label = "go run ./harness " + strings.Join(os.Args[1:], " ")
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	load := loadAvg()
	scens, peers, err := selection(o)
	if err != nil {
		return err
	}
	var base *baseline
	if o.baseline != "" {
		// Read now: -out may be the same file.
		if base, err = readBaseline(o.baseline); err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
	}
	e := &env{bins: map[string]string{}, procs: &procs{}}
	if e.dir, err = os.MkdirTemp("", "rosetta-bench-"); err != nil {
		return err
	}
	defer func() {
		e.procs.stopAll()
		if o.keep || err != nil {
			fmt.Fprintln(os.Stderr, "bench: configs and logs kept in", e.dir)
		} else {
			_ = os.RemoveAll(e.dir)
		}
	}()
	if err := e.checkTools(peers, scens); err != nil {
		return err
	}
	if err := e.build(ctx, o.root); err != nil {
		return err
	}
	if err := e.writeFiles(); err != nil {
		return err
	}
	versions := e.versions(peers)

	logf("starting the backend and %d peers", len(peers))
	backend, addr, err := e.procs.start(e.dir, "backend", true, e.bins["backend"], "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	e.backend, e.backendProc = addr, backend
	if slices.ContainsFunc(scens, func(s scenario) bool { return s.variant == variantLB3 && len(s.peers) > 0 }) {
		if err := e.startLB3Backends(); err != nil {
			return err
		}
	}
	running := map[string]*peer{}
	for _, k := range peers {
		var variants []string
		for _, s := range scens {
			if s.variant != "" && slices.Contains(s.peers, k) && !slices.Contains(variants, s.variant) {
				variants = append(variants, s.variant)
			}
		}
		p, err := e.startPeer(ctx, k, variants)
		if err != nil {
			return fmt.Errorf("start %s: %w", k, err)
		}
		running[k] = p
	}

	// Check each cell once; a cell that answers wrongly is reported, not
	// measured.
	res := newResults(scens, peers, o.rounds)
	res.base = base
	for _, s := range scens {
		for _, k := range s.peers {
			p := target(running, s, k)
			if p == nil {
				continue
			}
			if err := smokeRetry(ctx, s, p); err != nil {
				res.cell(s.key, k).smokeErr = err.Error()
				logf("%s on %s: check failed, not measured: %v", s.key, k, err)
			} else {
				res.cell(s.key, k).supported = true
			}
		}
	}

	start := time.Now()
	for r := range o.rounds {
		for _, s := range scens {
			order := rotate(s.peers, r)
			for _, k := range order {
				c := res.cell(s.key, k)
				if c == nil || !c.supported {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				smp, err := e.measure(ctx, s, target(running, s, k), o.warmup, o.duration)
				if ctx.Err() != nil {
					return errors.New("interrupted")
				}
				if err != nil {
					return fmt.Errorf("round %d, %s on %s: %w", r+1, s.key, k, err)
				}
				c.rounds[r] = &smp
				logf("round %d/%d %-17s %-13s %8.0f %s/s  p50 %-8s p99 %-8s cpu %6.1f µs/%s  errors %d",
					r+1, o.rounds, s.key, k, smp.rps, s.unit, smp.p50.Round(time.Microsecond), smp.p99.Round(time.Microsecond),
					us(smp.cpuPerReq()), s.unit, smp.errors)
			}
		}
	}
	logf("measured in %s", time.Since(start).Round(time.Second))

	md := res.markdown(o, machine(load), versions)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	logf("written to %s", o.out)
	return nil
}

// target is the running instance of peer k that serves s: its instance
// of s's variant, if s has one. Nil when there is none.
func target(running map[string]*peer, s scenario, k string) *peer {
	p := running[k]
	if p != nil && s.variant != "" {
		return p.variants[s.variant]
	}
	return p
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func selection(o options) ([]scenario, []string, error) {
	all := scenarios()
	scens := all
	if o.scenarios != "" {
		scens = nil
		for _, k := range strings.Split(o.scenarios, ",") {
			i := slices.IndexFunc(all, func(s scenario) bool { return s.key == k })
			if i < 0 {
				var keys []string
				for _, s := range all {
					keys = append(keys, s.key)
				}
				return nil, nil, fmt.Errorf("unknown scenario %q (known: %s)", k, strings.Join(keys, ", "))
			}
			scens = append(scens, all[i])
		}
	}
	want := peerOrder
	if o.peers != "" {
		want = strings.Split(o.peers, ",")
		for _, k := range want {
			if !slices.Contains(peerOrder, k) {
				return nil, nil, fmt.Errorf("unknown peer %q (known: %s)", k, strings.Join(peerOrder, ", "))
			}
		}
		if !slices.Contains(want, peerRosetta) {
			want = append([]string{peerRosetta}, want...)
		}
	}
	// Only peers that some selected scenario uses.
	var peers []string
	for _, k := range peerOrder {
		if !slices.Contains(want, k) {
			continue
		}
		for _, s := range scens {
			if slices.Contains(s.peers, k) {
				peers = append(peers, k)
				break
			}
		}
	}
	for i := range scens {
		scens[i].peers = slices.DeleteFunc(slices.Clone(scens[i].peers), func(k string) bool { return !slices.Contains(peers, k) })
	}
	return scens, peers, nil
}

// rotate returns peers rotated by n, so that each round runs them in
// another order.
func rotate(peers []string, n int) []string {
	if len(peers) == 0 {
		return nil
	}
	n %= len(peers)
	return append(slices.Clone(peers[n:]), peers[:n]...)
}

// checkTools fails with a clear message when a tool is missing;
// `make bench-deps` installs them.
func (e *env) checkTools(peers []string, scens []scenario) error {
	need := map[string]string{"go": "Go 1.26 (https://go.dev/dl)"}
	for _, s := range scens {
		if s.load == "h2load" {
			need["h2load"] = "Debian package nghttp2-client"
		}
	}
	if slices.Contains(peers, peerNginx) {
		need["nginx"] = "Debian package nginx"
	}
	if slices.Contains(peers, peerHAProxy) {
		need["haproxy"] = "Debian package haproxy"
	}
	var missing []string
	for tool, from := range need {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", tool, from))
		}
	}
	for _, s := range scens {
		if s.load != "ghz" {
			continue
		}
		// bench/.tmp/bin (make bench-deps) first, then PATH.
		ghz, err := filepath.Abs(".tmp/bin/ghz")
		if _, serr := os.Stat(ghz); err != nil || serr != nil {
			ghz, err = exec.LookPath("ghz")
		}
		if err != nil {
			missing = append(missing, "ghz (GOBIN=bench/.tmp/bin go install github.com/bojand/ghz/cmd/ghz@"+ghzVersion+")")
		}
		e.bins["ghz"] = ghz
		break
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("missing tools, install them with `make bench-deps` (as root, from Debian's packages and the Go module proxy):\n  %s",
			strings.Join(missing, "\n  "))
	}
	return nil
}

// ghzVersion is the ghz release `make bench-deps` installs.
const ghzVersion = "v0.93.0"

// build compiles the backend, the Go peers, bench/load and cmd/rosetta
// into the temp dir.
func (e *env) build(ctx context.Context, root string) error {
	logf("building the backend, peers, load client and rosetta")
	for name, pkg := range map[string]string{
		"backend": "./backend", peerGRPCGateway: "./peers/grpcgateway", peerVanguard: "./peers/vanguard", "load": "./load",
	} {
		e.bins[name] = filepath.Join(e.dir, "bin", name)
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", e.bins[name], pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	e.bins[peerRosetta] = filepath.Join(e.dir, "bin", "rosetta")
	if out, err := exec.CommandContext(ctx, "go", "build", "-C", root, "-o", e.bins[peerRosetta], "./cmd/rosetta").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/rosetta in %s: %w\n%s", root, err, out)
	}
	return nil
}

// writeFiles writes the request bodies and ghz's descriptor set.
func (e *env) writeFiles() error {
	order := benchOrder()
	js, err := protojson.Marshal(order)
	if err != nil {
		return err
	}
	fds := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		fds.File = append(fds.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(benchv1.File_rosetta_bench_v1_bench_proto)
	set, err := proto.Marshal(fds)
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"order.json": js, "order.grpc": grpcFrame(order), "bench.protoset": set} {
		if err := os.WriteFile(filepath.Join(e.dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// versions names the peers' and tools' versions for the report.
func (e *env) versions(peers []string) []string {
	first := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return l
	}
	v := []string{"h2load: " + first("h2load", "--version")}
	if e.bins["ghz"] != "" {
		v = append(v, "ghz "+ghzVersion)
	}
	if slices.Contains(peers, peerNginx) {
		v = append(v, "nginx: "+first("nginx", "-v"))
	}
	if slices.Contains(peers, peerHAProxy) {
		v = append(v, "haproxy: "+first("haproxy", "-v"))
	}
	if out, err := exec.Command("go", "list", "-m", "-f", "{{.Path}} {{.Version}}",
		"connectrpc.com/vanguard", "github.com/grpc-ecosystem/grpc-gateway/v2", "google.golang.org/grpc").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			v = append(v, l)
		}
	}
	return v
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute load averages, "?" when
// unreadable. Read before the harness starts anything, it says how busy
// the machine was with other work.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// machine describes where the benchmark ran; load is loadAvg from before
// the run.
func machine(load string) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	gover := runtime.Version()
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		gover = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d × %s, Linux %s, %s, %s, load average before the run %s", nproc(), model, strings.TrimSpace(string(kernel)), gover,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), load)
}

func nproc() int { return runtime.NumCPU() }
