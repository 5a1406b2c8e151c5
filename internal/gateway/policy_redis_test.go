package gateway

import (
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// redisTop is the top-level redis block for a Redis server, with a
// timeout long enough that a loaded test machine does not fail open.
func redisTop(rd *testkit.Redis) string {
	return `redis: { address: "` + rd.Addr + `", timeout: 10s }`
}

// TestPolicyRedisSharedLimit: two gateway instances (each started twice,
// for the gRPC relay and handler paths) with policy: redis and the same
// redis block count one limit together: exactly limit calls pass in total,
// whatever instance and protocol they use, and the next is refused on all
// of them. gRPC calls on the relay path are decided in Redis too (the
// relay hands a decision that needs I/O to the handler path).
func TestPolicyRedisSharedLimit(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	rd := testkit.StartRedis(t)
	cfg := policyGatewayConfig(env.leaf, env.web, redisTop(rd), `
  - selector: `+matrixSelector+`
    plugins:
      - rate-limiting: { limit: 4, period: 3600, policy: redis, key: "header:x-bucket" }
`)
	a, b := env.start(t, cfg), env.start(t, cfg)
	hdr := http.Header{"X-Bucket": {"shared"}}
	steps := []struct {
		name      string
		gw        *policyGateway
		proto     matrixProto
		remaining string // RateLimit-Remaining of an HTTP-kind answer
	}{
		{"1/a/rest", a, restProto("http1"), "3"},
		{"2/b/rest", b, restProto("h2c"), "2"},
		{"3/a/grpc-relay", a, grpcProto("relay"), ""},
		{"4/b/grpc-relay", b, grpcProto("relay"), ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			ans := s.proto.call(t, s.gw, hdr)
			want{}.check(t, s.proto, ans)
			if s.remaining != "" && (ans.header.Get("RateLimit-Remaining") != s.remaining || ans.header.Get("RateLimit-Limit") != "4") {
				t.Errorf("RateLimit-Limit %q, -Remaining %q; want 4, %s", ans.header.Get("RateLimit-Limit"), ans.header.Get("RateLimit-Remaining"), s.remaining)
			}
		})
	}
	over := want{code: codes.ResourceExhausted, reason: "rate limit exceeded: 4 calls per 1h0m0s"}
	for _, s := range []struct {
		name  string
		gw    *policyGateway
		proto matrixProto
	}{
		{"5/a/rest", a, restProto("http1")},
		{"5/b/rest", b, restProto("h3")},
		{"5/a/grpc-relay", a, grpcProto("relay")},
		{"5/b/grpc-relay", b, grpcProto("relay")},
		{"5/b/grpc-handler", b, grpcProto("handler")},
		{"5/a/grpc-web", a, rpcClientProto("grpc-web", "h2c", kindGRPCWeb, connect.WithGRPCWeb())},
		{"5/b/ws", b, wsProto("http1")},
	} {
		t.Run(s.name, func(t *testing.T) { over.check(t, s.proto, s.proto.call(t, s.gw, hdr)) })
	}
	// Another key has a bucket of its own.
	t.Run("other-bucket", func(t *testing.T) {
		want{}.check(t, grpcProto("relay"), grpcProto("relay").call(t, b, http.Header{"X-Bucket": {"other"}}))
	})
}

// TestPolicyRedisOutage: while Redis is down, fail: open allows calls
// (uncounted, without RateLimit-* fields) and fail: closed refuses them
// with 503 / UNAVAILABLE "rate limit store unavailable", on REST and both
// gRPC paths; once Redis is back (empty), limits are enforced again.
func TestPolicyRedisOutage(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	rd := testkit.StartRedis(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, redisTop(rd), `
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - rate-limiting: { limit: 2, period: 3600, policy: redis, fail: open, key: "header:x-bucket" }
  - selector: rosetta.testing.v1.EchoService.Metadata
    plugins:
      - rate-limiting: { limit: 2, period: 3600, policy: redis, fail: closed, key: "header:x-bucket" }
`))
	bucket := func(name string) http.Header { return http.Header{"X-Bucket": {name}} }
	// echo calls EchoService.Echo (fail: open) over REST or a gRPC path.
	echo := func(t *testing.T, via string, hdr http.Header) answer {
		t.Helper()
		if via == "rest" {
			return sendHTTP(t, p.h1, "POST", p.plain+"/v1/echo", `{"stringValue": "e"}`, hdr)
		}
		cc := p.relayCC
		if via == "handler" {
			cc = p.handlerCC
		}
		_, err := testingv1.NewEchoServiceClient(cc).Echo(grpcOutgoing(testContext(t), hdr), &testingv1.Everything{})
		s, _ := status.FromError(err)
		return answer{code: s.Code(), msg: s.Message()}
	}
	closedProtos := []matrixProto{restProto("http1"), grpcProto("relay"), grpcProto("handler"),
		rpcClientProto("connect", "h2c", kindConnectUnary)}

	t.Run("before", func(t *testing.T) {
		for _, proto := range closedProtos {
			want{}.check(t, proto, proto.call(t, p, bucket("before/"+proto.name)))
		}
	})
	rd.Stop()
	t.Run("down/fail-open", func(t *testing.T) {
		// Twice the limit, on one bucket: nothing is counted.
		for i := 0; i < 4; i++ {
			for _, via := range []string{"rest", "relay", "handler"} {
				a := echo(t, via, bucket("open"))
				if a.code != codes.OK || (via == "rest" && a.status != http.StatusOK) {
					t.Errorf("%s: got %d %s %q; want the call allowed", via, a.status, a.code, a.msg)
				}
				if via == "rest" && a.header.Get("RateLimit-Limit") != "" {
					t.Errorf("an uncounted call has RateLimit-Limit %q", a.header.Get("RateLimit-Limit"))
				}
			}
		}
	})
	t.Run("down/fail-closed", func(t *testing.T) {
		for _, proto := range closedProtos {
			want{code: codes.Unavailable, reason: "rate limit store unavailable"}.check(t, proto, proto.call(t, p, bucket("closed")))
		}
	})
	rd.Start()
	t.Run("back", func(t *testing.T) {
		// Each instance (the relay and the handler gateways) refuses calls
		// until its own probe (one per second) finds Redis again; the
		// first allowed call is counted.
		waitBack := func(t *testing.T, proto matrixProto, hdr http.Header) answer {
			t.Helper()
			deadline := time.Now().Add(20 * time.Second)
			for {
				a := proto.call(t, p, hdr)
				if a.code == codes.OK {
					return a
				}
				if a.code != codes.Unavailable || time.Now().After(deadline) {
					t.Fatalf("%s after Redis restarted: got %d %s %q; want 503 / UNAVAILABLE until the call is allowed", proto.name, a.status, a.code, a.msg)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		a := waitBack(t, restProto("http1"), bucket("after"))
		if a.header.Get("RateLimit-Remaining") != "1" {
			t.Errorf("first call after the outage: RateLimit-Remaining %q; want 1", a.header.Get("RateLimit-Remaining"))
		}
		waitBack(t, grpcProto("handler"), bucket("after"))
		over := want{code: codes.ResourceExhausted, reason: "rate limit exceeded: 2 calls per 1h0m0s"}
		for _, proto := range closedProtos {
			over.check(t, proto, proto.call(t, p, bucket("after")))
		}
		// fail: open counts again too.
		for _, via := range []string{"rest", "relay"} {
			if a := echo(t, via, bucket("open-after")); a.code != codes.OK || (via == "rest" && a.status != http.StatusOK) {
				t.Errorf("%s: got %d %s %q; want OK", via, a.status, a.code, a.msg)
			}
		}
		for _, via := range []string{"rest", "relay", "handler"} {
			a := echo(t, via, bucket("open-after"))
			if a.code != codes.ResourceExhausted || (via == "rest" && a.status != http.StatusTooManyRequests) {
				t.Errorf("%s: got %d %s %q; want the limit enforced again", via, a.status, a.code, a.msg)
			}
		}
	})
}
