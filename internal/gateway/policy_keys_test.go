package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// TestPolicyRateLimitKeys: what rate-limiting counts by, on every
// protocol. key: ip behind a trusted proxy counts by the right-most
// X-Forwarded-For address that is not a trusted proxy (the entries a
// client wrote to the left of it do not choose its bucket); key:
// claim:<name> counts by a verified token's claim, whoever its subject.
func TestPolicyRateLimitKeys(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	protos := matrixProtos()
	over := want{code: codes.ResourceExhausted, reason: "rate limit exceeded: 1 calls per 1h0m0s"}
	t.Run("ip", func(t *testing.T) {
		t.Parallel()
		p := env.start(t, policyGatewayConfig(env.leaf, env.web, `trusted_proxies: ["127.0.0.1"]`, matrixRoutes(`
      - rate-limiting: { limit: 1, period: 3600, key: ip }`)))
		for i, proto := range protos {
			t.Run(proto.name, func(t *testing.T) {
				t.Parallel()
				xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
				client := fmt.Sprintf("10.%d.0.", i)
				want{}.check(t, proto, proto.call(t, p, xff(client+"1")))
				over.check(t, proto, proto.call(t, p, xff(client+"1")))
				// A client that writes another address first still counts
				// as the address the trusted proxy saw.
				over.check(t, proto, proto.call(t, p, xff("192.0.2.77, "+client+"1")))
				want{}.check(t, proto, proto.call(t, p, xff("192.0.2.77, "+client+"2")))
				over.check(t, proto, proto.call(t, p, xff(client+"2")))
			})
		}
	})
	t.Run("ip-untrusted-peer", func(t *testing.T) {
		t.Parallel()
		// Without trusted_proxies the peer is the client: X-Forwarded-For
		// cannot buy a fresh bucket.
		p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(`
      - rate-limiting: { limit: 1, period: 3600, key: ip }`)))
		for _, proto := range []matrixProto{restProto("http1"), grpcProto("relay")} {
			p := p
			if proto.name == "grpc/relay" {
				// Its own gateway instance: the REST call used the peer's bucket.
				p = env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(`
      - rate-limiting: { limit: 1, period: 3600, key: ip }`)))
			}
			want{}.check(t, proto, proto.call(t, p, http.Header{"X-Forwarded-For": {"10.1.1.1"}}))
			over.check(t, proto, proto.call(t, p, http.Header{"X-Forwarded-For": {"10.2.2.2"}}))
		}
	})
	t.Run("claim", func(t *testing.T) {
		t.Parallel()
		p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(`
      - jwt-auth: { secret: `+matrixSecret+` }
      - rate-limiting: { limit: 1, period: 3600, key: "claim:org" }`)))
		for i, proto := range protos {
			t.Run(proto.name, func(t *testing.T) {
				t.Parallel()
				tok := func(sub, org string) http.Header {
					c := userClaims(sub)
					c["org"] = org
					return bearer(hsSign(t, matrixSecret, c))
				}
				org := fmt.Sprintf("org-%d", i)
				want{}.check(t, proto, proto.call(t, p, tok("u1", org)))
				over.check(t, proto, proto.call(t, p, tok("u2", org)))
				want{}.check(t, proto, proto.call(t, p, tok("u1", org+"-b")))
			})
		}
	})
}

// TestPolicyJWTCookie: jwt-auth with cookie: reads the token from that
// cookie on every protocol, also when HTTP/2 or HTTP/3 split the Cookie
// field (RFC 9113 §8.2.3) and when gRPC metadata carries several cookie
// entries.
func TestPolicyJWTCookie(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(`
      - jwt-auth: { secret: `+matrixSecret+`, cookie: session }`)))
	ok := hsSign(t, matrixSecret, userClaims("alice-sub"))
	expired := hsSign(t, matrixSecret, jwt.MapClaims{"sub": "alice-sub", "exp": time.Now().Add(-time.Hour).Unix()})
	for _, proto := range matrixProtos() {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			cookie := func(tok string) http.Header {
				if proto.kind == kindGRPC {
					return http.Header{"Cookie": {"theme=dark", "session=" + tok, "lang=en"}}
				}
				return http.Header{"Cookie": {"theme=dark; session=" + tok + "; lang=en"}}
			}
			want{seen: map[string][]string{"x-consumer": {"alice"}}}.check(t, proto, proto.call(t, p, cookie(ok)))
			want{code: codes.Unauthenticated, reason: "token expired", hide: expired,
				challenge: `Bearer realm="rosetta", error="invalid_token"`}.check(t, proto, proto.call(t, p, cookie(expired)))
			want{code: codes.Unauthenticated, reason: "missing bearer token",
				challenge: `Bearer realm="rosetta"`}.check(t, proto, proto.call(t, p, http.Header{"Cookie": {"theme=dark; other=" + ok}}))
		})
	}
}

// TestPolicyTopLevelConcurrency: a top-level concurrency-limit applies to
// each route as if the route listed it: every route, and the calls no
// route selects, have max calls in flight of their own.
func TestPolicyTopLevelConcurrency(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, `
plugins:
  - concurrency-limit: { max: 1 }`, `
  - selector: rosetta.testing.v1.EchoService.Sleep
    timeout: 2m
  - selector: rosetta.testing.v1.EchoService.Metadata
    timeout: 2m
`))
	sleepRoute := "rosetta.testing.v1.EchoService.Sleep"
	for _, tc := range []struct {
		name  string
		route string // "" for the calls no route selects
		hold  func(ctx context.Context)
		call  func(t *testing.T) answer
	}{
		{
			name: "route", route: sleepRoute,
			hold: func(ctx context.Context) {
				_, _ = testingv1.NewEchoServiceClient(p.relayCC).Sleep(ctx, &testingv1.SleepRequest{Duration: durationpb.New(time.Minute)})
			},
			call: func(t *testing.T) answer {
				return sendHTTP(t, p.h1, "GET", p.plain+"/v1/sleep", "", nil)
			},
		},
		{
			name: "no-route", route: "",
			hold: func(ctx context.Context) {
				c := connect.NewClient[testingv1.StreamRequest, testingv1.StreamItem](p.h2c, p.plain+echoService+"ServerStream")
				st, err := c.CallServerStream(ctx, connect.NewRequest(&testingv1.StreamRequest{Count: 2, Interval: durationpb.New(time.Minute)}))
				if err == nil {
					for st.Receive() {
					}
					_ = st.Close()
				}
			},
			call: func(t *testing.T) answer {
				return sendHTTP(t, p.h1, "GET", p.plain+"/v1/stream?count=1", "", nil)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inFlight := slotsOf(t, p.g, tc.route).InFlight
			release := holdCall(tc.hold)
			waitUntil(t, func() bool { return inFlight() == 1 }, "the held call takes its slot")
			reason := "concurrency limit of 1 calls in flight reached"
			if tc.route != "" {
				reason += " on route " + tc.route
			}
			want{code: codes.Unavailable, reason: reason}.check(t, matrixProto{kind: kindHTTP}, tc.call(t))
			// Another route has a slot of its own.
			want{}.check(t, restProto("h2c"), restProto("h2c").call(t, p, nil))
			release()
			waitUntil(t, func() bool { return inFlight() == 0 }, "the slot is released")
			want{}.check(t, matrixProto{kind: kindHTTP}, tc.call(t))
		})
	}
}

// TestPolicyConcurrencyReleasedOnRefusal: concurrency-limit listed before
// rate-limiting takes its slot first; when rate-limiting then refuses the
// call, the slot is given back, on every protocol (no slot leaks, so a
// caller with budget left still gets in).
func TestPolicyConcurrencyReleasedOnRefusal(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(`
      - concurrency-limit: { max: 1 }
      - rate-limiting: { limit: 1, period: 3600, key: "header:x-bucket" }`)))
	// The protocols share the route's one slot, so they run in turn.
	for _, proto := range matrixProtos() {
		t.Run(proto.name, func(t *testing.T) {
			g, route := p.g, matrixSelector
			if proto.handler {
				g = p.gh
			}
			if proto.uri {
				route = matrixURI
			}
			inFlight := slotsOf(t, g, route).InFlight
			// A call holds its slot until its handler is done, which may be
			// just after the client has the answer: wait for that.
			idle := func() { waitUntil(t, func() bool { return inFlight() == 0 }, "the call gives its slot back") }
			hdr := http.Header{"X-Bucket": {"first/" + proto.name}}
			want{}.check(t, proto, proto.call(t, p, hdr))
			idle()
			for i := 0; i < 3; i++ {
				want{code: codes.ResourceExhausted, reason: "rate limit exceeded"}.check(t, proto, proto.call(t, p, hdr))
				idle()
			}
			want{}.check(t, proto, proto.call(t, p, http.Header{"X-Bucket": {"second/" + proto.name}}))
			idle()
		})
	}
}

// TestPolicyKeyAuthQuery: key-auth with query: reads the key from that
// query parameter on every protocol that has a query (REST, SSE,
// WebSocket, gRPC-Web, Connect, plain HTTP routes), also with
// transcoding.strict_query (the parameter is a credential, not an unknown
// field of the request message); a wrong key is refused without being
// echoed.
func TestPolicyKeyAuthQuery(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	for _, strict := range []bool{false, true} {
		name, top := "default", ""
		if strict {
			name, top = "strict_query", "transcoding: { strict_query: true }"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := env.start(t, policyGatewayConfig(env.leaf, env.web, top, matrixRoutes(matrixPlugins["key-auth"])))
			type call struct {
				name string
				do   func(t *testing.T, query string) answer
			}
			rest := func(tr, path string, hdr http.Header) func(t *testing.T, query string) answer {
				return func(t *testing.T, query string) answer {
					return sendHTTP(t, p.client(tr), "GET", p.base(tr)+path+query, "", hdr)
				}
			}
			rpc := func(tr string, opts ...connect.ClientOption) func(t *testing.T, query string) answer {
				return func(t *testing.T, query string) answer {
					c := connect.NewClient[testingv1.Everything, testingv1.Everything](p.client(tr), p.base(tr)+echoService+"Echo"+query, opts...)
					_, err := c.CallUnary(testContext(t), connect.NewRequest(&testingv1.Everything{}))
					var a answer
					connectAnswer(&a, err)
					return a
				}
			}
			ws := func(tr string) func(t *testing.T, query string) answer {
				return func(t *testing.T, query string) answer {
					c, a := dialPolicyWS(t, p, tr, "/v1/echo/x"+query, nil, nil)
					if c == nil {
						return a
					}
					wsSend(t, c, `{}`)
					assertJSON(t, string(wsRead(t, c, 1)), `{"id": "x"}`)
					wsExpectOK(t, c)
					a.status = http.StatusOK
					return a
				}
			}
			calls := []call{
				{"rest/http1", rest("http1", "/v1/echo/x", nil)},
				{"rest/h3", rest("h3", "/v1/echo/x", nil)},
				{"sse/h2c", rest("h2c", "/v1/stream", http.Header{"Accept": {"text/event-stream"}})},
				{"http/h2c", rest("h2c", "/web/echo", nil)},
				{"ws/http1", ws("http1")},
				{"ws/h2c", ws("h2c")},
				{"connect/h2c", rpc("h2c")},
				{"grpc-web/http1", rpc("http1", connect.WithGRPCWeb())},
			}
			const wrong = "wrong-key-3e4d5c6b7a8f"
			for _, c := range calls {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					kind := matrixProto{kind: kindHTTP}
					if strings.HasPrefix(c.name, "connect") || strings.HasPrefix(c.name, "grpc-web") {
						kind.kind = kindGRPC
					}
					want{}.check(t, kind, c.do(t, "?apikey="+aliceKey))
					want{code: codes.Unauthenticated, reason: "invalid API key", hide: wrong}.check(t, kind, c.do(t, "?apikey="+wrong))
				})
			}
		})
	}
}
