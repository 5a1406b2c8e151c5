package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

// The lb3 scenario (issue 11) runs gRPC unary pass-through to three
// backend processes, each gateway balancing natively on calls in flight:
// Rosetta's upstream with balance: least_request (power of two choices),
// nginx's least_conn over three grpc_pass servers (with keepalive), and
// HAProxy's balance leastconn over three h2 servers. The backends run with
// -name, so that the check can see which one answered each call.

// lbNames are the names of the lb3 backends, in the order of env.lb.
var lbNames = []string{"b1", "b2", "b3"}

// backendHeader is the metadata key that asks a named backend to name
// itself in a header of the same name (bench/backend -name).
const backendHeader = "x-bench-backend"

// startLB3Backends starts the three named backends of the lb3 variant.
func (e *env) startLB3Backends() error {
	for _, n := range lbNames {
		p, addr, err := e.procs.start(e.dir, "backend-"+n, true, e.bins["backend"], "-listen", "127.0.0.1:0", "-name", n)
		if err != nil {
			return err
		}
		e.lb, e.lbAddrs = append(e.lb, p), append(e.lbAddrs, addr)
	}
	return nil
}

// rosettaLB3Upstream is the rest of the bench upstream of Rosetta's lb3
// instance (its targets are the three backends).
func rosettaLB3Upstream() string {
	return "    balance: least_request\n"
}

// nginxLB3 is nginx's lb3 upstream and server block: least_conn over the
// three backends, with the keepalive settings of the single-target block.
func nginxLB3(addr string, backends []string) string {
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "        server %s;\n", b)
	}
	return fmt.Sprintf(`    upstream backend_lb3 {
        least_conn;
%s        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %s http2;
        http2_max_concurrent_streams 256;
        keepalive_requests 1000000;
        location / {
            grpc_pass grpc://backend_lb3;
        }
    }
`, servers.String(), addr)
}

// haproxyLB3 is HAProxy's lb3 frontend and backend: leastconn (HAProxy
// counts a server's streams in flight, not its connections) over the
// three backends, h2 on both sides.
func haproxyLB3(addr string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frontend fe_lb3\n    bind %s proto h2\n    default_backend be_lb3\nbackend be_lb3\n    balance leastconn\n", addr)
	for i, a := range backends {
		fmt.Fprintf(&b, "    server %s %s proto h2\n", lbNames[i], a)
	}
	return b.String()
}

// smokeLB3 sends 96 Echo calls, 16 at a time, each asking the backend to
// name itself; each answer must echo the order, and each of the three
// backends must have answered some.
func smokeLB3(ctx context.Context, p *peer) error {
	cc, err := grpcConn(p)
	if err != nil {
		return err
	}
	defer cc.Close()
	client := benchv1.NewBenchServiceClient(cc)
	want := benchOrder()
	ctx = metadata.AppendToOutgoingContext(ctx, backendHeader, "?")
	var (
		mu    sync.Mutex
		count = map[string]int{}
		first error
		wg    sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for range 6 {
				var hdr metadata.MD
				got, err := client.Echo(ctx, want, grpc.Header(&hdr))
				if err == nil && !proto.Equal(got, want) {
					err = errors.New("echo differs")
				}
				name := "(none)"
				if v := hdr.Get(backendHeader); len(v) > 0 {
					name = v[0]
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				count[name]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	var parts []string
	missing := false
	for _, n := range lbNames {
		parts = append(parts, fmt.Sprintf("%s %d", n, count[n]))
		missing = missing || count[n] == 0
	}
	if n := count["(none)"]; n > 0 {
		parts = append(parts, fmt.Sprintf("unnamed %d", n))
		missing = true
	}
	if missing {
		return fmt.Errorf("calls per backend: %s; want all three backends to answer", strings.Join(parts, ", "))
	}
	logf("grpc-unary-lb3 on %s: calls per backend in the check: %s", p.key, strings.Join(parts, ", "))
	return nil
}
