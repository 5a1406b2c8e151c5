package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// dnsName is the name the test DNS server answers.
const dnsName = "echo.rosetta.test."

// dnsServer is a DNS server on 127.0.0.1 (UDP) that answers A queries for
// dnsName with the addresses set by set, AAAA queries for it with no
// address, and every other name NXDOMAIN.
type dnsServer struct {
	conn    net.PacketConn
	mu      sync.Mutex
	answers []netip.Addr
}

func startDNS(t *testing.T, addrs ...string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: pc}
	s.set(addrs...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := s.answer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	return s
}

// set replaces the A answers of dnsName.
func (s *dnsServer) set(addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = s.answers[:0]
	for _, a := range addrs {
		s.answers = append(s.answers, netip.MustParseAddr(a))
	}
}

func (s *dnsServer) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	known := strings.EqualFold(q.Name.String(), dnsName)
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	if known && q.Type == dnsmessage.TypeA {
		for _, a := range s.answers {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: a.As4()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// resolver returns a Go resolver that asks only s.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.conn.LocalAddr().String())
	}}
}

// addrs returns the endpoint addresses of c's balancer, sorted.
func addrs(c *Cluster) []string {
	var out []string
	for _, e := range c.Balancer().Snapshot() {
		out = append(out, e.Addr)
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond every 5ms until it holds, failing after 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting: %s", what)
}

// TestClusterDNSFollowsAnswers: a target given by name becomes one
// endpoint per address it resolves to (each with the name's weight and
// the name as TLS server name); when the answers change, the next
// re-resolution (dns_refresh) replaces the endpoints and reports the
// removed one (OnRemove closes its connections).
func TestClusterDNSFollowsAnswers(t *testing.T) {
	dns := startDNS(t, "127.0.0.2", "127.0.0.3")
	var mu sync.Mutex
	var removed []string
	c, err := NewCluster(&config.Upstream{
		Name:       "dns",
		Targets:    []config.Target{{Address: "echo.rosetta.test:7001", Weight: 2}, {Address: "127.0.0.9:7001", Weight: 1}},
		DNSRefresh: config.Duration(100 * time.Millisecond),
	}, ClusterOptions{Resolver: dns.resolver(), OnRemove: func(addr string) {
		mu.Lock()
		defer mu.Unlock()
		removed = append(removed, addr)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := addrs(c), []string{"127.0.0.2:7001", "127.0.0.3:7001", "127.0.0.9:7001"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints: got %v; want %v", got, want)
	}
	for _, e := range c.Balancer().Snapshot() {
		wantW, wantName := uint32(2), "echo.rosetta.test"
		if e.Addr == "127.0.0.9:7001" {
			wantW, wantName = 1, ""
		}
		if e.Weight != wantW || c.ServerName(e.Addr) != wantName {
			t.Errorf("%s: got weight %d, server name %q; want %d, %q", e.Addr, e.Weight, c.ServerName(e.Addr), wantW, wantName)
		}
	}
	dns.set("127.0.0.3", "127.0.0.4")
	want := []string{"127.0.0.3:7001", "127.0.0.4:7001", "127.0.0.9:7001"}
	waitFor(t, "endpoints after the answers changed", func() bool { return slices.Equal(addrs(c), want) })
	// OnRemove runs just after the balancer is updated, on the refresh
	// goroutine, so it is waited for too rather than read at once.
	gotRemoved := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(removed)
	}
	waitFor(t, "OnRemove of the dropped address", func() bool { return len(gotRemoved()) > 0 })
	if got := gotRemoved(); !slices.Equal(got, []string{"127.0.0.2:7001"}) {
		t.Errorf("removed: got %v; want [127.0.0.2:7001]", got)
	}
}

// TestClusterDNSUnresolvable: a name that does not resolve is kept as it
// is (dialed by name) rather than leaving the upstream without targets.
func TestClusterDNSUnresolvable(t *testing.T) {
	dns := startDNS(t)
	c, err := NewCluster(&config.Upstream{Name: "dns", Targets: config.TargetsOf("nowhere.rosetta.test:7001")}, ClusterOptions{Resolver: dns.resolver()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := addrs(c); !slices.Equal(got, []string{"nowhere.rosetta.test:7001"}) {
		t.Errorf("endpoints: got %v; want the name itself", got)
	}
}

// taggedBackend starts an EchoService backend on addr (host:0 or
// host:port) whose answers carry "x-backend: <name>".
func taggedBackend(t *testing.T, name, addr string) *testkit.Backend {
	t.Helper()
	tag := metadata.Pairs("x-backend", name)
	return testkit.StartBackend(t, testkit.WithAddress(addr), testkit.WithServerOptions(grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			_ = grpc.SetHeader(ctx, tag)
			return h(ctx, req)
		})))
}

// dnsBackends starts a backend on 127.0.0.2, .3 and .4, all on one port
// (as the addresses of one name are), named by their last byte.
func dnsBackends(t *testing.T) (port string) {
	t.Helper()
	for range 10 {
		lis, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2 on this host: %v", err)
		}
		_, port, _ = net.SplitHostPort(lis.Addr().String())
		free := true
		for _, ip := range []string{"127.0.0.3", "127.0.0.4"} {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		_ = lis.Close()
		if free {
			for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
				taggedBackend(t, ip[len("127.0.0."):], net.JoinHostPort(ip, port))
			}
			return port
		}
	}
	t.Fatal("no port free on 127.0.0.2, .3 and .4")
	return ""
}

// newResolvedUpstream is New with a resolver: the Upstream newUpstream
// builds, its cluster given r (the hook the gateway does not have yet).
func newResolvedUpstream(t *testing.T, cfg *config.Upstream, r *net.Resolver) *Upstream {
	t.Helper()
	u := &Upstream{Name: cfg.Name, Config: cfg}
	var err error
	u.Cluster, err = NewCluster(cfg, ClusterOptions{Resolver: r, Check: u.checkHealth, OnRemove: u.closeTarget})
	if err != nil {
		t.Fatal(err)
	}
	u.calls = newCallConn(u)
	t.Cleanup(func() { _ = u.Close() })
	return u
}

// echoFrom calls Echo over u.CallConn with key as the x-user-id header
// (for ring_hash) and returns the backend that answered.
func echoFrom(ctx context.Context, u *Upstream, key string) (string, error) {
	ci := &CallInfo{Call: &call.Call{Header: call.HTTPHeader(http.Header{"X-User-Id": {key}})}}
	var md metadata.MD
	_, err := testingv1.NewEchoServiceClient(u.CallConn()).Echo(WithCallInfo(ctx, ci), &testingv1.Everything{}, grpc.Header(&md))
	if err != nil {
		return "", err
	}
	if v := md.Get("x-backend"); len(v) > 0 {
		return v[0], nil
	}
	return "", nil
}

// TestUpstreamDNSCalls: calls over CallConn follow a name whose answers
// change: while it resolves to .2 and .3 they reach only those, once it
// resolves to .3 and .4 only those (no call fails meanwhile).
func TestUpstreamDNSCalls(t *testing.T) {
	port := dnsBackends(t)
	dns := startDNS(t, "127.0.0.2", "127.0.0.3")
	u := newResolvedUpstream(t, &config.Upstream{
		Name: "dns", Targets: config.TargetsOf("echo.rosetta.test:" + port), DNSRefresh: config.Duration(100 * time.Millisecond),
	}, dns.resolver())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	count := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for i := range n {
			b, err := echoFrom(ctx, u, fmt.Sprint(i))
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			got[b]++
		}
		return got
	}
	if got := count(60); got["2"] != 30 || got["3"] != 30 {
		t.Errorf("answers .2 .3: calls per backend %v; want 30 on 2 and 3", got)
	}
	dns.set("127.0.0.3", "127.0.0.4")
	waitFor(t, "re-resolution", func() bool {
		return slices.Equal(addrs(u.Cluster), []string{"127.0.0.3:" + port, "127.0.0.4:" + port})
	})
	if got := count(60); got["3"] != 30 || got["4"] != 30 {
		t.Errorf("answers .3 .4: calls per backend %v; want 30 on 3 and 4", got)
	}
}

// TestUpstreamDNSRingHashStable: with ring_hash on header:x-user-id over
// a name resolving to three addresses, when one address leaves the
// answers only its keys move (about a third), and when it comes back
// every key is where it was.
func TestUpstreamDNSRingHashStable(t *testing.T) {
	port := dnsBackends(t)
	dns := startDNS(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	u := newResolvedUpstream(t, &config.Upstream{
		Name: "dns", Targets: config.TargetsOf("echo.rosetta.test:" + port), DNSRefresh: config.Duration(100 * time.Millisecond),
		Balance: config.BalanceRingHash, HashOn: "header:x-user-id",
	}, dns.resolver())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const keys = 150
	keyMap := func() map[string]string {
		t.Helper()
		m := map[string]string{}
		for i := range keys {
			k := fmt.Sprintf("user-%d", i)
			b, err := echoFrom(ctx, u, k)
			if err != nil {
				t.Fatalf("key %s: %v", k, err)
			}
			m[k] = b
		}
		return m
	}
	before := keyMap()
	dns.set("127.0.0.2", "127.0.0.4")
	waitFor(t, ".3 gone", func() bool { return len(addrs(u.Cluster)) == 2 })
	during := keyMap()
	dns.set("127.0.0.2", "127.0.0.3", "127.0.0.4")
	waitFor(t, ".3 back", func() bool { return len(addrs(u.Cluster)) == 3 })
	after := keyMap()
	moved := 0
	for k, was := range before {
		switch now := during[k]; {
		case was != "3" && now != was:
			t.Errorf("key %s moved from %s to %s when only .3 left", k, was, now)
		case now == "3":
			t.Errorf("key %s reached .3 after it left the answers", k)
		case was == "3":
			moved++
		}
		if after[k] != was {
			t.Errorf("key %s: on %s before, on %s after .3 came back", k, was, after[k])
		}
	}
	t.Logf("%d of %d keys moved when .3 left", moved, keys)
	if moved*100 < keys*15 || moved*100 > keys*55 {
		t.Errorf("%d of %d keys moved; want about a third", moved, keys)
	}
}
