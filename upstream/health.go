package upstream

import (
	"context"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthConns are the grpc-go connections active health checks use, one
// per target, apart from the call connections (as Envoy keeps its health
// checks apart): a check measures whether the target answers, not
// whether a call connection happens to be healthy. grpc-go earns its
// place here: its health client is the reference implementation.
type healthConns struct {
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	extra  []grpc.DialOption // tests
	closed bool
}

// checkHealth runs one grpc.health.v1 Check against target addr, for the
// health_check service name; anything but SERVING fails.
func (u *Upstream) checkHealth(ctx context.Context, addr string) error {
	cc, err := u.health.conn(u, addr)
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

func (h *healthConns) conn(u *Upstream, addr string) (*grpc.ClientConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("upstream closed")
	}
	if cc := h.conns[addr]; cc != nil {
		return cc, nil
	}
	opts, err := DialOptions(u.Config)
	if err != nil {
		return nil, err
	}
	if u.Config.TLS != nil && u.Config.TLS.ServerName == "" {
		// Check the certificate against the name the target was
		// resolved from, else the target's own host.
		tc, err := ClientTLSConfig(u.Config.TLS)
		if err != nil {
			return nil, err
		}
		tc.ServerName = u.ServerName(addr)
		if tc.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				tc.ServerName = host
			}
		}
		opts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, append(opts, h.extra...)...)
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
