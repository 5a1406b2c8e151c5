package main

import (
	"fmt"
	"strings"
	"time"
)

// issue11 prints the targets of issue 11 (balancing over three backends,
// a response cache, the small REST GET) when any of their rows ran.
func (r *results) issue11(w func(string, ...any)) {
	if r.cell("grpc-unary-lb3", peerRosetta) == nil && r.cell("rest-get-cached", peerRosetta) == nil &&
		r.cell("rest-get", peerGRPCGateway) == nil {
		return
	}
	w("\n## Targets (issue 11: balancing, response cache, REST GET)\n\n")
	w("Each ratio is taken within a round, median of rounds.\n\n")
	title := func(scen, k string) string {
		for _, s := range r.scens {
			if s.key == scen {
				return s.peerTitle(k)
			}
		}
		return peerTitles[k]
	}
	if r.cell("grpc-unary-lb3", peerRosetta) != nil {
		r.target(w, "gRPC unary pass-through to 3 backends (balance: least_request), Rosetta CPU/call ÷ Rosetta single-target pass-through",
			"grpc-unary-lb3", peerRosetta, "grpc-unary", peerRosetta, 1.05, false)
		var ref []string
		for _, k := range []string{peerNginx, peerHAProxy} {
			if ratio, ok := r.ratioOf("grpc-unary-lb3", k, "grpc-unary", k); ok {
				ref = append(ref, fmt.Sprintf("%s %.2f×", title("grpc-unary-lb3", k), ratio))
			}
		}
		if len(ref) > 0 {
			w("- For reference, the same ratio (3 backends ÷ single target) for the peers balancing natively: %s\n", strings.Join(ref, ", "))
		}
		ref = ref[:0]
		for _, k := range []string{peerNginx, peerHAProxy} {
			if ratio, ok := r.ratio("grpc-unary-lb3", k); ok {
				ref = append(ref, fmt.Sprintf("÷ %s %.2f×", title("grpc-unary-lb3", k), ratio))
			}
		}
		if len(ref) > 0 {
			w("- gRPC unary to 3 backends, Rosetta CPU/call %s\n", strings.Join(ref, ", "))
		}
		var spread []string
		for _, k := range []string{peerRosetta, peerNginx, peerHAProxy} {
			if c := r.cell("grpc-unary-lb3", k); c != nil && c.median() != nil {
				spread = append(spread, title("grpc-unary-lb3", k)+" "+shares(c.median().backends))
			}
		}
		if len(spread) > 0 {
			w("- Calls spread over the 3 backends under load, as each backend's share of their CPU (median round): %s\n", strings.Join(spread, "; "))
		}
	}
	if r.cell("rest-get-cached", peerRosetta) != nil {
		r.target(w, "REST GET small (HTTP/1.1), cache hit, Rosetta proxy-cache CPU/request ÷ nginx proxy_cache (in front of grpc-gateway)",
			"rest-get-cached", peerRosetta, "rest-get-cached", peerNginx, 1.0, true)
		var behind []string
		for _, k := range []string{peerRosetta, peerNginx} {
			c := r.cell("rest-get-cached", k)
			if c == nil || c.median() == nil {
				continue
			}
			m := c.median()
			var parts []string
			for _, b := range m.backends {
				parts = append(parts, fmt.Sprintf("%s %.2f µs", b.name, us(perReq(b.cpu, m.requests))))
			}
			behind = append(behind, fmt.Sprintf("%s: %s", title("rest-get-cached", k), strings.Join(parts, " + ")))
		}
		if len(behind) > 0 {
			w("- Behind the caches, CPU per request in the cached runs (about 0 when every call hits): %s\n", strings.Join(behind, "; "))
		}
		if ratio, ok := r.ratioOf("rest-get-cached", peerRosetta, "rest-get", peerRosetta); ok {
			w("- For reference, Rosetta cache hit ÷ Rosetta uncached REST GET: %.2f×\n", ratio)
		}
	}
	if r.cell("rest-get", peerGRPCGateway) != nil {
		r.target(w, "REST GET small (HTTP/1.1), Rosetta CPU/request ÷ grpc-gateway generated",
			"rest-get", peerRosetta, "rest-get", peerGRPCGateway, 0.6, false)
	}
	if r.base == nil {
		w("- No other scenario slower than before: run with `-baseline <earlier report>` to compare Rosetta's column with it\n")
	}
}

// shares formats each process's share of the summed CPU, e.g.
// "b1 33% · b2 34% · b3 33%".
func shares(ps []procCPU) string {
	var total time.Duration
	for _, p := range ps {
		total += p.cpu
	}
	if total == 0 {
		return "no backend CPU"
	}
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", strings.TrimPrefix(p.name, "backend-"), 100*float64(p.cpu)/float64(total)))
	}
	return strings.Join(parts, " · ")
}

func perReq(d time.Duration, n int64) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}
