package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Peer keys, in the order of the report's columns.
const (
	peerRosetta     = "rosetta"
	peerDirect      = "direct"
	peerGRPCGateway = "grpc-gateway"
	peerVanguard    = "vanguard"
	peerNginx       = "nginx"
	peerHAProxy     = "haproxy"
)

var peerOrder = []string{peerRosetta, peerDirect, peerGRPCGateway, peerVanguard, peerNginx, peerHAProxy}

var peerTitles = map[string]string{
	peerRosetta:     "Rosetta",
	peerDirect:      "backend direct (ceiling)",
	peerGRPCGateway: "grpc-gateway (generated)",
	peerVanguard:    "vanguard-go (reflection)",
	peerNginx:       "nginx grpc_pass",
	peerHAProxy:     "HAProxy (h2)",
}

// peer is one running server under test.
type peer struct {
	key    string
	proc   *proc
	addr   string // host:port: HTTP/1.1 + h2c, or h2c only for the gRPC proxies
	h3Addr string // Rosetta only: TLS + HTTP/3 listener
	// policy serves the policy scenarios: the same gateway with jwt-auth
	// and a rate limit on the bench service (Rosetta: a second process;
	// HAProxy: a second frontend of the same process). Nil when no
	// selected scenario needs it.
	policy *peer
}

// env is what starting the peers needs.
type env struct {
	dir     string // temp dir: binaries, configs, logs
	bins    map[string]string
	backend string // the backend's address
	procs   *procs
}

// startPeer starts the peer key; with policy, also its policy instance
// (Rosetta and HAProxy only).
func (e *env) startPeer(ctx context.Context, key string, backendProc *proc, policy bool) (*peer, error) {
	switch key {
	case peerDirect:
		return &peer{key: key, proc: backendProc, addr: e.backend}, nil
	case peerGRPCGateway, peerVanguard:
		bin := e.bins[key]
		p, addr, err := e.procs.start(e.dir, key, true, bin, "-listen", "127.0.0.1:0", "-backend", e.backend)
		if err != nil {
			return nil, err
		}
		return &peer{key: key, proc: p, addr: addr}, nil
	case peerRosetta:
		p, err := e.startRosetta(ctx, false)
		if err != nil || !policy {
			return p, err
		}
		if p.policy, err = e.startRosetta(ctx, true); err != nil {
			return nil, fmt.Errorf("policy instance: %w", err)
		}
		return p, nil
	case peerNginx:
		return e.startNginx(ctx)
	case peerHAProxy:
		return e.startHAProxy(ctx, policy)
	}
	return nil, fmt.Errorf("unknown peer %q", key)
}

// startRosetta starts Rosetta with defaults; with policy, the policy
// instance instead: one h1/h2c listener and the plugins on the bench
// service.
func (e *env) startRosetta(ctx context.Context, policy bool) (*peer, error) {
	if policy {
		return e.startRosettaPolicy(ctx)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	h3, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	h3Addr := "127.0.0.1:" + strconv.Itoa(h3)
	// Defaults everywhere but the TLS listener HTTP/3 needs; the bridge's
	// idle timeout is off so that no socket closes during a run.
	cfg := fmt.Sprintf(`listeners:
  - address: %q
  - address: %q
    tls: { self_signed: true }
    http3: true
upstreams:
  bench:
    targets: [%q]
websocket:
  idle_timeout: 0s
`, addr, h3Addr, e.backend)
	file := filepath.Join(e.dir, "rosetta.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	// warn: no access log line per request (the peers write none either).
	p, _, err := e.procs.start(e.dir, peerRosetta, false, e.bins[peerRosetta],
		"serve", "--config", file, "--log-level", "warn", "--drain-timeout", "1s")
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	return &peer{key: peerRosetta, proc: p, addr: addr, h3Addr: h3Addr}, nil
}

func (e *env) startRosettaPolicy(ctx context.Context) (*peer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := fmt.Sprintf(`listeners:
  - address: %q
upstreams:
  bench:
    targets: [%q]
`, addr, e.backend) + rosettaPolicyRoutes()
	file := filepath.Join(e.dir, "rosetta-policy.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, _, err := e.procs.start(e.dir, peerRosetta+"-policy", false, e.bins[peerRosetta],
		"serve", "--config", file, "--log-level", "warn", "--drain-timeout", "1s")
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	return &peer{key: peerRosetta, proc: p, addr: addr}, nil
}

func (e *env) startNginx(ctx context.Context) (*peer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	prefix := filepath.Join(e.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o777); err != nil {
		return nil, err
	}
	// One worker per core, upstream keepalive so that calls reuse HTTP/2
	// connections to the backend, no access log, and no GOAWAY after 1000
	// requests on a connection (keepalive_requests, both sides).
	cfg := fmt.Sprintf(`worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    upstream backend {
        server %[2]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %[3]s http2;
        http2_max_concurrent_streams 256;
        keepalive_requests 1000000;
        location / {
            grpc_pass grpc://backend;
        }
    }
}
`, prefix, e.backend, addr)
	file := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, _, err := e.procs.start(e.dir, peerNginx, false, "nginx", "-p", prefix, "-c", file, "-e", filepath.Join(prefix, "error.log"))
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	return &peer{key: peerNginx, proc: p, addr: addr}, nil
}

// startHAProxy starts HAProxy; with policy, with a second frontend that
// runs the policies (haproxyPolicyFrontend).
func (e *env) startHAProxy(ctx context.Context, policy bool) (*peer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	policyAddr, policyCfg := "", ""
	if policy {
		pport, err := freePort()
		if err != nil {
			return nil, err
		}
		policyAddr = "127.0.0.1:" + strconv.Itoa(pport)
		policyCfg = haproxyPolicyFrontend(policyAddr)
	}
	// One thread per core, h2 with prior knowledge on both sides, and
	// connections to the backend reused across clients.
	cfg := fmt.Sprintf(`global
    nbthread %d
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    bind %s proto h2
    default_backend be
backend be
    server backend %s proto h2
`, nproc(), addr, e.backend) + policyCfg
	file := filepath.Join(e.dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, _, err := e.procs.start(e.dir, peerHAProxy, false, "haproxy", "-db", "-f", file)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	hp := &peer{key: peerHAProxy, proc: p, addr: addr}
	if policy {
		if err := waitTCP(ctx, p, policyAddr); err != nil {
			return nil, err
		}
		hp.policy = &peer{key: peerHAProxy, proc: p, addr: policyAddr}
	}
	return hp, nil
}
