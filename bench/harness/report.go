package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// cell is one scenario × peer over the rounds.
type cell struct {
	supported bool
	smokeErr  string
	rounds    []*sample
}

type results struct {
	scens []scenario
	peers []string
	cells map[string]*cell // scenario key + "/" + peer
	// base is the -baseline report's Rosetta column, nil without one.
	base *baseline
}

func newResults(scens []scenario, peers []string, rounds int) *results {
	r := &results{scens: scens, peers: peers, cells: map[string]*cell{}}
	for _, s := range scens {
		for _, k := range s.peers {
			r.cells[s.key+"/"+k] = &cell{rounds: make([]*sample, rounds)}
		}
	}
	return r
}

func (r *results) cell(scen, peer string) *cell { return r.cells[scen+"/"+peer] }

// median returns the round whose CPU per request is the median one.
func (c *cell) median() *sample {
	var got []*sample
	for _, s := range c.rounds {
		if s != nil && s.requests > 0 {
			got = append(got, s)
		}
	}
	if len(got) == 0 {
		return nil
	}
	slices.SortFunc(got, func(a, b *sample) int { return int(a.cpuPerReq() - b.cpuPerReq()) })
	return got[(len(got)-1)/2]
}

// ratio is the median over rounds of Rosetta's CPU per request divided by
// the peer's in the same round (< 1: Rosetta is cheaper).
func (r *results) ratio(scen, peer string) (float64, bool) {
	return r.ratioOf(scen, peerRosetta, scen, peer)
}

// ratioOf is the median over rounds of cell a's CPU per request divided
// by cell b's in the same round: a and b may be different scenarios (the
// policy rows against the plain ones).
func (r *results) ratioOf(scenA, peerA, scenB, peerB string) (float64, bool) {
	rs := r.roundRatios(scenA, peerA, scenB, peerB)
	if len(rs) == 0 {
		return 0, false
	}
	sorted := slices.Sorted(slices.Values(rs))
	return sorted[(len(sorted)-1)/2], true
}

// roundRatios returns the ratio of CPU per request of (scenA, peerA) to
// (scenB, peerB) in each round that measured both, in round order.
func (r *results) roundRatios(scenA, peerA, scenB, peerB string) []float64 {
	ro, pc := r.cell(scenA, peerA), r.cell(scenB, peerB)
	if ro == nil || pc == nil {
		return nil
	}
	var rs []float64
	for i := range ro.rounds {
		a, b := ro.rounds[i], pc.rounds[i]
		if a == nil || b == nil || a.requests == 0 || b.requests == 0 || b.cpuPerReq() == 0 {
			continue
		}
		rs = append(rs, float64(a.cpuPerReq())/float64(b.cpuPerReq()))
	}
	return rs
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func fmtDur(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	if d >= time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}

const dash = "—"

func (r *results) markdown(o options, machine string, versions []string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Rosetta load benchmark\n\n")
	w("- Command: `%s`\n", o.label)
	w("- Machine: %s\n", machine)
	w("- Runs: %d round(s); in each, every scenario runs on every peer that serves it (order rotated per round), "+
		"%s warm-up then %s measured, %d in flight (HTTP/1.1: %d connections; h2c, gRPC: %d connections × %d streams), all on 127.0.0.1\n",
		o.rounds, o.warmup, o.duration, inFlight, inFlight, h2Conns, inFlight/h2Conns)
	w("- Tools and peers: %s\n\n", strings.Join(versions, "; "))

	w("## Server CPU time per request\n\n")
	w("µs of CPU (utime+stime from /proc, all of the peer's processes) per request, median round. ")
	w("The figure after `·` is Rosetta's CPU per request ÷ the peer's, taken within each round, median of rounds (< 1: Rosetta is cheaper). ")
	w("Rows marked jwt-auth + rate-limiting run each gateway with the same two policies (HS256 token, a limit that never refuses), " +
		"and their ratio is Rosetta with policies ÷ the peer with policies; the targets below compare them with the plain rows. ")
	w("The 3-backend row calls three backend processes, each gateway balancing on calls in flight (Rosetta least_request, nginx least_conn, HAProxy leastconn). " +
		"The cache-hit row answers from each gateway's cache (Rosetta proxy-cache; in the nginx column, nginx proxy_cache in front of grpc-gateway, which cannot transcode itself). ")
	w("%s: the peer does not serve that scenario.\n\n", dash)
	w("| scenario |")
	for _, k := range r.peers {
		w(" %s |", peerTitles[k])
	}
	w("\n|---|")
	for range r.peers {
		w("---:|")
	}
	w("\n")
	for _, s := range r.scens {
		w("| %s |", s.title)
		for _, k := range r.peers {
			c := r.cell(s.key, k)
			switch {
			case c == nil:
				w(" %s |", dash)
			case !c.supported:
				w(" failed check |")
			case c.median() == nil:
				w(" no data |")
			default:
				m := c.median()
				if ratio, ok := r.ratio(s.key, k); ok && k != peerRosetta {
					w(" %.1f · %.2f |", us(m.cpuPerReq()), ratio)
				} else {
					w(" %.1f |", us(m.cpuPerReq()))
				}
			}
		}
		w("\n")
	}

	w("\n## Targets (issue 5)\n\n")
	targetOf := func(name, scenA, peerA, scenB, peerB string, limit float64, below bool) {
		r.target(w, name, scenA, peerA, scenB, peerB, limit, below)
	}
	target := func(name, scen, peer string, limit float64) {
		targetOf(name, scen, peerRosetta, scen, peer, limit, false)
	}
	target("REST POST (HTTP/1.1), Rosetta CPU/request ÷ grpc-gateway generated", "rest-post-h1", peerGRPCGateway, 0.7)
	target("REST POST (HTTP/1.1), Rosetta CPU/request ÷ vanguard-go (reflection)", "rest-post-h1", peerVanguard, 0.5)
	target("gRPC unary pass-through, Rosetta CPU/request ÷ nginx grpc_pass", "grpc-unary", peerNginx, 1.0)
	var errs int64
	for _, s := range r.scens {
		if c := r.cell(s.key, peerRosetta); c != nil {
			for _, smp := range c.rounds {
				if smp != nil {
					errs += smp.errors
				}
			}
		}
	}
	w("- Errors under load through Rosetta, all rounds: %d\n", errs)
	if ro, di := r.cell("grpc-unary", peerRosetta), r.cell("grpc-unary", peerDirect); ro != nil && di != nil && ro.median() != nil && di.median() != nil {
		w("- gRPC unary p99: Rosetta %s vs backend direct %s (target: within 1 ms)\n", fmtDur(ro.median().p99), fmtDur(di.median().p99))
	}

	if r.cell("grpc-unary-policy", peerRosetta) != nil || r.cell("rest-post-policy", peerRosetta) != nil {
		w("\n## Targets (issue 10: jwt-auth + rate-limiting)\n\n")
		w("Each ratio is taken within a round (median of rounds), policy row ÷ plain row of the same run.\n\n")
		targetOf("gRPC unary pass-through with both plugins, Rosetta CPU/call ÷ Rosetta plain pass-through",
			"grpc-unary-policy", peerRosetta, "grpc-unary", peerRosetta, 1.15, false)
		targetOf("gRPC unary pass-through with both plugins, Rosetta CPU/call ÷ HAProxy with the same policies (jwt_verify + stick table)",
			"grpc-unary-policy", peerRosetta, "grpc-unary-policy", peerHAProxy, 1.0, true)
		targetOf("REST POST (HTTP/1.1) with both plugins, Rosetta CPU/request ÷ grpc-gateway generated, plain",
			"rest-post-policy", peerRosetta, "rest-post-h1", peerGRPCGateway, 0.7, false)
		if ratio, ok := r.ratioOf("grpc-unary-policy", peerHAProxy, "grpc-unary", peerHAProxy); ok {
			w("- For reference, HAProxy with the policies ÷ HAProxy plain: %.2f×\n", ratio)
		}
		// The gRPC policy row's cost in two parts: carrying the token
		// (h2load sends authorization as a never-indexed HPACK literal,
		// decoded in full on every call) and the plugins' decisions.
		for _, k := range []string{peerRosetta, peerHAProxy} {
			carry, ok1 := r.ratioOf("grpc-unary-token", k, "grpc-unary", k)
			plugins, ok2 := r.ratioOf("grpc-unary-policy", k, "grpc-unary-token", k)
			if ok1 && ok2 {
				w("- %s, gRPC unary split: bearer token without plugins ÷ plain %.2f×; with the plugins ÷ token without plugins %.2f×\n",
					peerTitles[k], carry, plugins)
			}
		}
		if ratio, ok := r.ratioOf("rest-post-policy", peerRosetta, "rest-post-h1", peerRosetta); ok {
			w("- For reference, Rosetta REST POST with both plugins ÷ Rosetta plain REST POST: %.2f×\n", ratio)
		}
	}

	r.issue11(w)
	r.issue12(w)
	r.baselineSection(w)

	w("\n## Details (median round)\n\n")
	w("Requests/s and latency are the load tool's; \"unit\" is what one request is. Backend CPU is the backend's own CPU per request in the same run " +
		"(grpc-unary-lb3: the three backends'; rest-get-cached on nginx: grpc-gateway's and the backend's, behind the cache). ")
	w("Peak RSS is VmHWM (summed over nginx's processes), reset before each run. Errors: non-2xx, resets and timeouts ")
	w("(h2load cannot see grpc-status; every cell's answer is checked once with a real client before the load, and ghz counts non-OK statuses).\n\n")
	w("| scenario | peer | unit | req/s | p50 | p99 | CPU µs/req | backend CPU µs/req | peak RSS MiB | errors |\n")
	w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.scens {
		for _, k := range s.peers {
			c := r.cell(s.key, k)
			if !c.supported {
				w("| %s | %s | %s | failed check: %s | | | | | | |\n", s.key, s.peerTitle(k), s.unit, oneLine(c.smokeErr))
				continue
			}
			m := c.median()
			if m == nil {
				w("| %s | %s | %s | no data | | | | | | |\n", s.key, s.peerTitle(k), s.unit)
				continue
			}
			errs := fmt.Sprint(m.errors)
			if m.firstError != "" && m.errors > 0 {
				errs += " (" + oneLine(m.firstError) + ")"
			}
			w("| %s | %s | %s | %.0f | %s | %s | %.1f | %.1f | %.1f | %s |\n", s.key, s.peerTitle(k), s.unit, m.rps,
				fmtDur(m.p50), fmtDur(m.p99), us(m.cpuPerReq()), us(m.backendPerReq()), float64(m.peakKB)/1024, errs)
		}
	}
	w("\nNot measured: Envoy (not packaged here); peers in the scenarios they do not serve (%s).\n", dash)
	return b.String()
}

// target prints cell a ÷ cell b (ratioOf) against limit (below: the
// ratio must be strictly less).
func (r *results) target(w func(string, ...any), name, scenA, peerA, scenB, peerB string, limit float64, below bool) {
	ratio, ok := r.ratioOf(scenA, peerA, scenB, peerB)
	if !ok {
		w("- %s: not measured\n", name)
		return
	}
	verdict, op := "met", "≤"
	if below {
		op = "<"
	}
	if ratio > limit || (below && ratio >= limit) {
		verdict = "**not met**"
	}
	rounds := ""
	if rs := r.roundRatios(scenA, peerA, scenB, peerB); len(rs) > 1 {
		parts := make([]string, len(rs))
		for i, x := range rs {
			parts[i] = fmt.Sprintf("%.2f", x)
		}
		rounds = " (rounds " + strings.Join(parts, ", ") + ")"
	}
	w("- %s: %.2f×%s (target %s %.2f×) — %s\n", name, ratio, rounds, op, limit, verdict)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
