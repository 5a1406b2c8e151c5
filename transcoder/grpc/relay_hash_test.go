package grpc

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/internal/testkit/snapshot"
	"github.com/rosetta-gateway/rosetta/policy"
	_ "github.com/rosetta-gateway/rosetta/policy/keyauth"
	_ "github.com/rosetta-gateway/rosetta/policy/ratelimit"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// taggedBackend answers like cannedBackend, with "x-backend: <name>" in
// its response head.
type taggedBackend struct{ head []hpack.HeaderField }

func newTaggedBackend(name string) taggedBackend {
	return taggedBackend{head: append(append([]hpack.HeaderField(nil), cannedHead...), hpack.HeaderField{Name: "x-backend", Value: name})}
}

func (b taggedBackend) Headers(s *h2.Stream, _ []hpack.HeaderField, end bool) {
	if end {
		b.answer(s)
	}
}

func (b taggedBackend) Data(s *h2.Stream, p []byte, end bool) {
	s.Credit(len(p))
	if end {
		b.answer(s)
	}
}

func (taggedBackend) Reset(*h2.Stream, error) {}

func (b taggedBackend) answer(s *h2.Stream) {
	_ = s.WriteHeaders(b.head, false)
	_ = s.WriteData(benchMessage, false)
	_ = s.WriteHeaders(cannedTrailers, true)
}

// hashCaller makes one unary call and reports its grpc-status and the
// backend that answered. A refused call ends twice (trailers-only, then
// RST_STREAM NO_ERROR as the client was still sending): the first end
// counts.
type hashCaller struct {
	done            chan error
	status, backend string
}

func (c *hashCaller) Headers(_ *h2.Stream, fields []hpack.HeaderField, end bool) {
	for _, f := range fields {
		switch f.Name {
		case "grpc-status":
			c.status = f.Value
		case "x-backend":
			c.backend = f.Value
		}
	}
	if end {
		c.end(nil)
	}
}

func (c *hashCaller) Data(s *h2.Stream, p []byte, _ bool) { s.Credit(len(p)) }
func (c *hashCaller) Reset(_ *h2.Stream, err error)       { c.end(err) }

// end reports the call's end, once.
func (c *hashCaller) end(err error) {
	select {
	case c.done <- err:
	default:
	}
}

func hashCall(t *testing.T, cc *h2.ClientConn, apikey string) (status, backend string) {
	t.Helper()
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/rosetta.testing.v1.EchoService/Echo"},
		{Name: ":authority", Value: "127.0.0.1"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	}
	if apikey != "" {
		fields = append(fields, hpack.HeaderField{Name: "apikey", Value: apikey})
	}
	c := &hashCaller{done: make(chan error, 1)}
	s, err := cc.NewStream(fields, false, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A refused call may be over before its message is sent: its end
	// tells.
	_ = s.WriteData(benchMessage, true)
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call timed out")
	}
	return c.status, c.backend
}

// TestRelayRingHashConsumer: with ring_hash on hash_on consumer and
// key-auth plus a rate limit per consumer on the route, the relay takes
// the calls itself (none goes to the handler path), each consumer's calls
// reach one backend and the consumers spread over the three, a call
// with a wrong key is refused (UNAUTHENTICATED) and a consumer's calls
// are counted once each (the fourth of a limit of three is
// RESOURCE_EXHAUSTED).
func TestRelayRingHashConsumer(t *testing.T) {
	t.Parallel()
	var targets []string
	for _, name := range []string{"a", "b", "c"} {
		ln := testkit.ListenLocal(t)
		be := newTaggedBackend(name)
		serveH2(t, ln, &h2.Server{Intercept: func(*h2.Stream, *h2.RequestHead) h2.Events { return be }})
		targets = append(targets, `"`+ln.Addr().String()+`"`)
	}
	const n = 12
	key := func(i int) string { return fmt.Sprintf("relay-hash-key-%d-0123456789", i) }
	var b strings.Builder
	fmt.Fprintf(&b, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: [%s]
    balance: ring_hash
    hash_on: consumer
consumers:
`, strings.Join(targets, ", "))
	for i := range n {
		fmt.Fprintf(&b, "  - name: c%d\n    keys: [%q]\n", i, key(i))
	}
	b.WriteString(`routes:
  - selector: rosetta.testing.v1.EchoService.*
    plugins:
      - key-auth: { header: apikey }
      - rate-limiting: { limit: 3, period: 3600, key: consumer }
`)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "rosetta.yaml"), []byte(b.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	ups, err := upstream.NewSet(cfg.Upstreams)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ups.Close() })
	set, err := policy.Build(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = set.Close() })
	params := Params{Upstreams: ups.Get, Policies: set}
	params.Snapshot, _ = snapshot.EchoSnapshot(t)
	p := New(params)
	var handler atomic.Int64
	gwLn := testkit.ListenLocal(t)
	serveH2(t, gwLn, &h2.Server{Intercept: func(s *h2.Stream, head *h2.RequestHead) h2.Events {
		ev := p.Relay(s, head, nil)
		if ev == nil {
			handler.Add(1)
		}
		return ev
	}, Handler: notRelayed{}})
	up, _ := ups.Get("test")
	// The relay dials its connections in the background: poke each
	// target until all are ready.
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range up.Balancer().Endpoints() {
		for up.RelayConn(addr.Addr()) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("no relay connection to %s", addr.Addr())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cc := dialBench(t, gwLn.Addr().String())
	handler.Store(0)

	if st, _ := hashCall(t, cc, "wrong-key-0123456789"); st != "16" {
		t.Errorf("wrong key: grpc-status %s; want 16 (UNAUTHENTICATED)", st)
	}
	seen := map[string]bool{}
	for i := range n {
		var first string
		for j := range 3 {
			st, be := hashCall(t, cc, key(i))
			if st != "0" {
				t.Fatalf("consumer c%d, call %d: grpc-status %s; want 0", i, j+1, st)
			}
			if j == 0 {
				first = be
			} else if be != first {
				t.Errorf("consumer c%d reached %s, then %s", i, first, be)
			}
		}
		seen[first] = true
		if st, _ := hashCall(t, cc, key(i)); st != "8" {
			t.Errorf("consumer c%d, call 4 of a limit of 3: grpc-status %s; want 8 (RESOURCE_EXHAUSTED)", i, st)
		}
	}
	if len(seen) < 2 {
		t.Errorf("all %d consumers reached %v; want them spread over the targets", n, seen)
	}
	if h := handler.Load(); h != 0 {
		t.Errorf("%d calls went to the handler path; want every call relayed", h)
	}
}
