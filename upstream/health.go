package upstream

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthConns are the grpc-go connections active health checks use, one
// per target, apart from the call connections (as Envoy keeps its health
// checks apart): a check measures whether the target answers, not
// whether a call connection happens to be healthy. grpc-go earns its
// place here: its health client is the reference implementation.
type healthConns struct {
	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn
	dialOpts []grpc.DialOption
	closed   bool
}

// checkHealth runs one grpc.health.v1 Check against target addr, for the
// health_check service name; anything but SERVING fails.
func (u *Upstream) checkHealth(ctx context.Context, addr string) error {
	cc, err := u.health.conn(addr)
	if err != nil {
		return err
	}
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: u.Config.HealthCheck.Service})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health check of %q answered %s", u.Config.HealthCheck.Service, s)
	}
	return nil
}

func (h *healthConns) conn(addr string) (*grpc.ClientConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("upstream closed")
	}
	if cc := h.conns[addr]; cc != nil {
		return cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, h.dialOpts...)
	if err != nil {
		return nil, err
	}
	if h.conns == nil {
		h.conns = map[string]*grpc.ClientConn{}
	}
	h.conns[addr] = cc
	return cc, nil
}

// drop closes the health connection of a removed target.
func (h *healthConns) drop(addr string) {
	h.mu.Lock()
	cc := h.conns[addr]
	delete(h.conns, addr)
	h.mu.Unlock()
	if cc != nil {
		_ = cc.Close()
	}
}

func (h *healthConns) close() {
	h.mu.Lock()
	h.closed = true
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for _, cc := range conns {
		_ = cc.Close()
	}
}

// closeTarget closes what the upstream holds for a target that left the
// set (DNS re-resolution): its relay and health connections.
func (u *Upstream) closeTarget(addr string) {
	u.health.drop(addr)
	u.dropRelay(addr)
}
