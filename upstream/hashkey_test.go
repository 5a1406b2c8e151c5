package upstream

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
)

// TestClusterHashKey: ring_hash keys hash the hash_on value; a call that
// lacks it (no header or an empty one, no claim, no consumer) hashes on
// its client's address, as hash_on: ip would; other algorithms get 0.
func TestClusterHashKey(t *testing.T) {
	t.Parallel()
	cluster := func(balance, hashOn string) *Cluster {
		t.Helper()
		c, err := NewCluster(&config.Upstream{Name: "h", Targets: config.TargetsOf("127.0.0.1:1", "127.0.0.1:2"), Balance: balance, HashOn: hashOn}, ClusterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	peer1, peer2 := netip.MustParseAddrPort("10.0.0.1:1000"), netip.MustParseAddrPort("10.0.0.2:1000")
	byIP := cluster(config.BalanceRingHash, "ip")
	ip1 := byIP.HashKey(&call.Call{Peer: peer1}, nil)
	ip2 := byIP.HashKey(&call.Call{Peer: peer2}, nil)
	if ip1 == ip2 {
		t.Fatal("two addresses hash alike")
	}
	if k := byIP.HashKey(&call.Call{Peer: netip.MustParseAddrPort("10.0.0.1:2000")}, nil); k != ip1 {
		t.Error("ip: the port changes the key")
	}
	hdr := func(kv ...string) call.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return call.HTTPHeader(h)
	}
	cases := []struct {
		name, hashOn string
		call         call.Call
		claims       map[string]any
		want         uint64 // 0: the key of the call's peer (ip1 or ip2)
	}{
		{name: "header", hashOn: "header:x-user-id", call: call.Call{Header: hdr("X-User-Id", "u1")}, want: fnv("u1")},
		{name: "header missing", hashOn: "header:x-user-id", call: call.Call{Header: hdr("Other", "u1")}},
		{name: "header empty", hashOn: "header:x-user-id", call: call.Call{Header: hdr("X-User-Id", "")}},
		{name: "no header at all", hashOn: "header:x-user-id"},
		{name: "claim", hashOn: "claim:tenant", claims: map[string]any{"tenant": "t1"}, want: fnv("t1")},
		{name: "number claim", hashOn: "claim:n", claims: map[string]any{"n": float64(42)}, want: fnv("42")},
		{name: "claim missing", hashOn: "claim:tenant", claims: map[string]any{"sub": "x"}},
		{name: "no claims", hashOn: "claim:tenant"},
		{name: "empty claim", hashOn: "claim:tenant", claims: map[string]any{"tenant": ""}},
		{name: "consumer", hashOn: "consumer", call: call.Call{Consumer: "alice"}, want: fnv("alice")},
		{name: "anonymous", hashOn: "consumer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(config.BalanceRingHash, tc.hashOn)
			for i, peer := range []netip.AddrPort{peer1, peer2} {
				cl := tc.call
				cl.Peer = peer
				want := tc.want
				if want == 0 {
					want = []uint64{ip1, ip2}[i]
				}
				if got := c.HashKey(&cl, tc.claims); got != want {
					t.Errorf("peer %s: key %x; want %x", peer, got, want)
				}
			}
		})
	}
	if k := cluster(config.BalanceRoundRobin, "").HashKey(&call.Call{Peer: peer1, Consumer: "alice"}, nil); k != 0 {
		t.Errorf("round_robin: key %x; want 0", k)
	}
	if k := byIP.HashKey(nil, nil); k != 0 {
		t.Errorf("no call: key %x; want 0", k)
	}
	for hashOn, want := range map[string]bool{"ip": false, "header:x-a": false, "consumer": true, "claim:sub": true} {
		if got := cluster(config.BalanceRingHash, hashOn).HashOnCaller(); got != want {
			t.Errorf("hash_on %s: HashOnCaller %v; want %v", hashOn, got, want)
		}
	}
	if cluster(config.BalanceRoundRobin, "consumer").HashOnCaller() {
		t.Error("round_robin: HashOnCaller true; want false")
	}
}
