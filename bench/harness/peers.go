package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// Instance variants. A scenario with a variant runs on a second instance
// of each peer configured for it: a second process (Rosetta), or a second
// server block or frontend of the same process (nginx, HAProxy).
const (
	// variantPolicy: jwt-auth + rate-limiting on the bench service
	// (issue 10, policy.go).
	variantPolicy = "policy"
	// variantLB3: an upstream of three backends, least-request balancing
	// (issue 11, lb.go).
	variantLB3 = "lb3"
	// variantCache: a response cache in front of GetItem (issue 11,
	// cache.go).
	variantCache = "cache"
	// variantMetrics: the plain config plus an admin listener, which
	// turns on Prometheus metrics (issue 12, report_issue12.go).
	variantMetrics = "metrics"
)

// peer is one running server under test.
type peer struct {
	key    string
	proc   *proc
	addr   string // host:port: HTTP/1.1 + h2c, or h2c only for the gRPC proxies
	h3Addr string // Rosetta only: TLS + HTTP/3 listener
	// variants are the instances that serve the scenarios with a
	// variant, by variant; only those some selected scenario needs.
	variants map[string]*peer
	// backends are the processes behind this instance whose CPU the
	// report shows as the backend's; nil means env.backendProc.
	backends []*proc
}

// env is what starting the peers needs.
type env struct {
	dir         string // temp dir: binaries, configs, logs
	bins        map[string]string
	backend     string // the backend's address
	backendProc *proc
	// lb are the three named backends of the lb3 variant (nil when no
	// selected scenario needs them), lbAddrs their addresses.
	lb      []*proc
	lbAddrs []string
	procs   *procs
}

// startPeer starts the peer key and its instances for variants.
func (e *env) startPeer(ctx context.Context, key string, variants []string) (*peer, error) {
	switch key {
	case peerDirect:
		return &peer{key: key, proc: e.backendProc, addr: e.backend}, nil
	case peerGRPCGateway, peerVanguard:
		bin := e.bins[key]
		p, addr, err := e.procs.start(e.dir, key, true, bin, "-listen", "127.0.0.1:0", "-backend", e.backend)
		if err != nil {
			return nil, err
		}
		return &peer{key: key, proc: p, addr: addr}, nil
	case peerRosetta:
		p, err := e.startRosetta(ctx)
		if err != nil {
			return nil, err
		}
		p.variants = map[string]*peer{}
		for _, v := range variants {
			if p.variants[v], err = e.startRosettaVariant(ctx, v); err != nil {
				return nil, fmt.Errorf("%s instance: %w", v, err)
			}
		}
		return p, nil
	case peerNginx:
		return e.startNginx(ctx, variants)
	case peerHAProxy:
		return e.startHAProxy(ctx, variants)
	}
	return nil, fmt.Errorf("unknown peer %q", key)
}

// startRosetta starts Rosetta with defaults.
func (e *env) startRosetta(ctx context.Context) (*peer, error) {
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
	file, err := e.rosettaConfigFile("rosetta.yaml")
	if err != nil {
		return nil, err
	}
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

// startRosettaVariant starts a second Rosetta for variant v: one h1/h2c
// listener, the upstream and routes of the variant, defaults otherwise.
func (e *env) startRosettaVariant(ctx context.Context, v string) (*peer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	targets, extra := []string{e.backend}, ""
	var backends []*proc
	switch v {
	case variantPolicy:
		extra = rosettaPolicyRoutes()
	case variantLB3:
		targets, extra, backends = e.lbAddrs, rosettaLB3Upstream(), e.lb
	case variantCache:
		extra = rosettaCacheRoutes()
	case variantMetrics:
		adminAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		extra = fmt.Sprintf("admin:\n  address: %q\n", adminAddr)
	default:
		return nil, fmt.Errorf("unknown variant %q", v)
	}
	cfg := fmt.Sprintf(`listeners:
  - address: %q
upstreams:
  bench:
    targets: %s
`, addr, yamlList(targets)) + extra
	file, err := e.rosettaConfigFile("rosetta-" + v + ".yaml")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, _, err := e.procs.start(e.dir, peerRosetta+"-"+v, false, e.bins[peerRosetta],
		"serve", "--config", file, "--log-level", "warn", "--drain-timeout", "1s")
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	return &peer{key: peerRosetta, proc: p, addr: addr, backends: backends}, nil
}

// rosettaConfigFile is the path of a Rosetta config file, in a directory
// of its own: Rosetta watches its config's directory for changes (hot
// reload), so the busy files of the run (h2load's latency log, the
// processes' logs) must not be written beside it, as no deployment would
// write them beside its config.
func (e *env) rosettaConfigFile(name string) (string, error) {
	dir := filepath.Join(e.dir, "rosetta-config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

// yamlList is a flow-style YAML list of quoted strings.
func yamlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// startNginx starts nginx (grpc_pass to the backend) with a server block
// per variant: lb3 (nginxLB3) and cache (nginxCache, which also starts the
// grpc-gateway it caches).
func (e *env) startNginx(ctx context.Context, variants []string) (*peer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(e.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o777); err != nil {
		return nil, err
	}
	np := &peer{key: peerNginx, addr: addr, variants: map[string]*peer{}}
	var blocks strings.Builder
	for _, v := range variants {
		vp := &peer{key: peerNginx}
		if vp.addr, err = freeAddr(); err != nil {
			return nil, err
		}
		switch v {
		case variantLB3:
			blocks.WriteString(nginxLB3(vp.addr, e.lbAddrs))
			vp.backends = e.lb
		case variantCache:
			// nginx's workers (nobody, when the harness runs as root)
			// open the cache files under the temp dir, which MkdirTemp
			// made 0700: let them traverse it (not list it).
			if err := os.Chmod(e.dir, 0o711); err != nil {
				return nil, err
			}
			gw, gwAddr, err := e.procs.start(e.dir, peerGRPCGateway+"-cache", true, e.bins[peerGRPCGateway],
				"-listen", "127.0.0.1:0", "-backend", e.backend)
			if err != nil {
				return nil, err
			}
			blocks.WriteString(nginxCache(vp.addr, gwAddr, prefix))
			vp.backends = []*proc{gw, e.backendProc}
		default:
			return nil, fmt.Errorf("nginx has no %s variant", v)
		}
		np.variants[v] = vp
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
%[4]s}
`, prefix, e.backend, addr, blocks.String())
	file := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, _, err := e.procs.start(e.dir, peerNginx, false, "nginx", "-p", prefix, "-c", file, "-e", filepath.Join(prefix, "error.log"))
	if err != nil {
		return nil, err
	}
	np.proc = p
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	for _, vp := range np.variants {
		vp.proc = p
		if err := waitTCP(ctx, p, vp.addr); err != nil {
			return nil, err
		}
	}
	return np, nil
}

// startHAProxy starts HAProxy (h2 to the backend) with a frontend per
// variant: policy (haproxyPolicyFrontend) and lb3 (haproxyLB3).
func (e *env) startHAProxy(ctx context.Context, variants []string) (*peer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	hp := &peer{key: peerHAProxy, addr: addr, variants: map[string]*peer{}}
	var blocks strings.Builder
	for _, v := range variants {
		vp := &peer{key: peerHAProxy}
		if vp.addr, err = freeAddr(); err != nil {
			return nil, err
		}
		switch v {
		case variantPolicy:
			blocks.WriteString(haproxyPolicyFrontend(vp.addr))
		case variantLB3:
			blocks.WriteString(haproxyLB3(vp.addr, e.lbAddrs))
			vp.backends = e.lb
		default:
			return nil, fmt.Errorf("HAProxy has no %s variant", v)
		}
		hp.variants[v] = vp
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
`, nproc(), addr, e.backend) + blocks.String()
	file := filepath.Join(e.dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, _, err := e.procs.start(e.dir, peerHAProxy, false, "haproxy", "-db", "-f", file)
	if err != nil {
		return nil, err
	}
	hp.proc = p
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	for _, vp := range hp.variants {
		vp.proc = p
		if err := waitTCP(ctx, p, vp.addr); err != nil {
			return nil, err
		}
	}
	return hp, nil
}

// freeAddr is 127.0.0.1 with a free port.
func freeAddr() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}
