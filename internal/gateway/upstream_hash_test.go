package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// hashConsumerKey is the key-auth key of consumer name in the hash_on
// tests.
func hashConsumerKey(name string) string { return "hash-key-" + name + "-5f1e2d3c4b5a6978" }

// TestUpstreamRingHashOn: ring_hash over three equal targets with each
// hash_on source: ip (12 client addresses, 127.0.0.10 to .21), consumer
// (12 key-auth consumers), claim:tenant (12 tenants in HS256 tokens), and
// header:x-user-id on calls without the header (which, as documented,
// hash on the client's ip). On every protocol each key reaches one
// backend, the keys spread over more than one backend, and a key reaches
// the same backend on every protocol and gateway.
func TestUpstreamRingHashOn(t *testing.T) {
	t.Parallel()
	bes := upstreamTrio(t)
	targets := fmt.Sprintf(`["%s", "%s", "%s"]`, bes[0].Addr, bes[1].Addr, bes[2].Addr)
	const n = 12
	var consumers strings.Builder
	consumers.WriteString("consumers:\n")
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		fmt.Fprintf(&consumers, "  - name: %s\n    keys: [%q]\n", name, hashConsumerKey(name))
	}
	route := func(plugin string) string {
		return "routes:\n  - selector: rosetta.testing.v1.EchoService.*\n    plugins:\n      - " + plugin + "\n"
	}
	cases := []struct {
		name, hashOn, rest string
		// field is the header field of key i; nil: key i is the
		// client address 127.0.0.(10+i).
		field func(t *testing.T, i int) (string, string)
	}{
		{name: "ip", hashOn: "ip"},
		{name: "header-missing", hashOn: "header:x-user-id"},
		{name: "header-with-plugin", hashOn: "header:x-user-id", rest: route("concurrency-limit: { max: 1000 }"),
			field: func(_ *testing.T, i int) (string, string) { return "x-user-id", fmt.Sprintf("user-%d", i) }},
		{name: "consumer", hashOn: "consumer", rest: consumers.String() + route("key-auth: { header: apikey }"),
			field: func(_ *testing.T, i int) (string, string) { return "apikey", hashConsumerKey(fmt.Sprintf("c%d", i)) }},
		{name: "claim", hashOn: "claim:tenant", rest: route("jwt-auth: { secret: " + matrixSecret + " }"),
			field: func(t *testing.T, i int) (string, string) {
				c := userClaims(fmt.Sprintf("user-%d", i))
				c["tenant"] = fmt.Sprintf("tenant-%d", i)
				return "authorization", "Bearer " + hsSign(t, matrixSecret, c)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gws := startUpGateways(t, gatewayConfig(targets, "balance: ring_hash\nhash_on: "+tc.hashOn, tc.rest))
			var first map[string]string
			for _, c := range upCells {
				t.Run(c.proto, func(t *testing.T) {
					m := map[string]string{}
					for i := range n {
						key, gw, sent := fmt.Sprint(i), gws[c.path], ""
						if tc.field == nil {
							gw = gw.from(t, fmt.Sprintf("127.0.0.%d", 10+i))
						} else {
							name, value := tc.field(t, i)
							cp := *gw
							cp.keyField = func(string) (string, string) { return name, value }
							gw, sent = &cp, key
						}
						p := gw.protocol(c.proto)
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						b1, err1 := p.echo(ctx, sent)
						b2, err2 := p.echo(ctx, sent)
						cancel()
						if err1 != nil || err2 != nil {
							t.Fatalf("key %s: %v, %v", key, err1, err2)
						}
						if b1 != b2 {
							t.Errorf("key %s reached %s, then %s", key, b1, b2)
						}
						m[key] = b1
					}
					spreadOver := map[string]bool{}
					for _, b := range m {
						spreadOver[b] = true
					}
					t.Logf("key → backend: %v", m)
					if len(spreadOver) < 2 {
						t.Errorf("all %d keys reached %v; want them spread over the targets", n, spreadOver)
					}
					if first == nil {
						first = m
					} else if d := mapDiff(first, m); d != "" {
						t.Errorf("keys map to other backends than on the first protocol: %s", d)
					}
				})
			}
		})
	}
}
