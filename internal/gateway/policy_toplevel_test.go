package gateway

import (
	"net/http"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

const (
	topSecret   = "top-level-secret-0123456789abcdef01"
	routeSecret = "route-level-secret-0123456789abcdef0"
)

// topLevelPlugins: a top-level jwt-auth and rate-limiting; the Metadata
// route has its own jwt-auth (which wins over the top-level one), the Fail
// route its own rate-limiting; Echo's route and the uri route list no
// plugin; Sleep has no route at all.
const topLevelPlugins = `
plugins:
  - jwt-auth:
      secret: ` + topSecret + `
  - rate-limiting: { limit: 2, period: 3600, key: "header:x-bucket" }`

const topLevelRoutes = `
  - selector: rosetta.testing.v1.EchoService.Metadata
    plugins:
      - jwt-auth:
          secret: ` + routeSecret + `
          claims_to_headers: { sub: x-user-id }
  - selector: rosetta.testing.v1.EchoService.Fail
    plugins:
      - rate-limiting: { limit: 3, period: 3600, key: "header:x-bucket" }
  - selector: rosetta.testing.v1.EchoService.Echo
    timeout: 30s
  - uri: /web/*
    service: web
`

// TestPolicyTopLevel: top-level plugins apply to routes that do not list
// the same plugin (a route's own one wins), to plain HTTP routes and to
// methods no route selects; each route counts its own rate limit. The
// gateway's gRPC health service stays open; its reflection service needs
// the top-level token.
func TestPolicyTopLevel(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, topLevelPlugins, topLevelRoutes))
	top := hsSign(t, topSecret, userClaims("zoe"))
	route := hsSign(t, routeSecret, userClaims("alice-sub"))
	auth := func(tok, bucket string) http.Header {
		h := http.Header{"X-Bucket": {bucket}}
		if tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
		return h
	}
	invalid := func(tok string) want {
		return want{code: codes.Unauthenticated, reason: "invalid token signature",
			challenge: `Bearer realm="rosetta", error="invalid_token"`, hide: tok}
	}
	missing := want{code: codes.Unauthenticated, reason: "missing bearer token", challenge: `Bearer realm="rosetta"`}
	over := func(limit string) want {
		return want{code: codes.ResourceExhausted, reason: "rate limit exceeded: " + limit + " calls per 1h0m0s"}
	}

	// Metadata's route lists jwt-auth: its secret, not the top-level one;
	// it does not list rate-limiting: the top-level limit of 2 applies.
	metadataProtos := []matrixProto{restProto("http1"), grpcProto("relay"), grpcProto("handler"),
		rpcClientProto("connect", "h2c", kindConnectUnary), wsProto("http1"), sseProto("h2c")}
	for _, proto := range metadataProtos[:5] {
		t.Run("route-jwt-wins/"+proto.name, func(t *testing.T) {
			t.Parallel()
			b := "metadata/" + proto.name
			invalid(top).check(t, proto, proto.call(t, p, auth(top, b)))
			ok := want{seen: map[string][]string{"x-user-id": {"alice-sub"}, "x-consumer": {"alice"}}}
			ok.check(t, proto, proto.call(t, p, auth(route, b)))
			ok.check(t, proto, proto.call(t, p, auth(route, b)))
			over("2").check(t, proto, proto.call(t, p, auth(route, b)))
		})
	}
	// ServerStream has no route: the top-level plugins apply.
	t.Run("no-route/sse/h2c", func(t *testing.T) {
		t.Parallel()
		proto := metadataProtos[5]
		missing.check(t, proto, proto.call(t, p, auth("", "sse")))
		invalid(route).check(t, proto, proto.call(t, p, auth(route, "sse")))
		want{}.check(t, proto, proto.call(t, p, auth(top, "sse")))
		want{}.check(t, proto, proto.call(t, p, auth(top, "sse")))
		over("2").check(t, proto, proto.call(t, p, auth(top, "sse")))
	})

	// echo calls Echo (a route without plugins) over REST or a gRPC path.
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
	for _, via := range []string{"rest", "relay", "handler"} {
		t.Run("route-without-plugins/"+via, func(t *testing.T) {
			t.Parallel()
			kind := matrixProto{kind: kindGRPC}
			if via == "rest" {
				kind.kind = kindHTTP
			}
			ok := func(a answer) {
				t.Helper()
				if a.code != codes.OK || (via == "rest" && a.status != http.StatusOK) {
					t.Fatalf("got %d %s %q; want the call allowed", a.status, a.code, a.msg)
				}
			}
			b := "echo/" + via
			missing.check(t, kind, echo(t, via, auth("", b)))
			invalid(route).check(t, kind, echo(t, via, auth(route, b)))
			ok(echo(t, via, auth(top, b)))
			ok(echo(t, via, auth(top, b)))
			over("2").check(t, kind, echo(t, via, auth(top, b)))
			// The bucket is the Echo route's: Fail's route (its own limit)
			// and the uri route still allow this key.
			fail := testingv1.FailRequest{}
			if via == "rest" {
				ok(sendHTTP(t, p.h1, "POST", p.plain+"/v1/fail", `{}`, auth(top, b)))
			} else {
				cc := p.relayCC
				if via == "handler" {
					cc = p.handlerCC
				}
				_, err := testingv1.NewEchoServiceClient(cc).Fail(grpcOutgoing(testContext(t), auth(top, b)), &fail)
				s, _ := status.FromError(err)
				ok(answer{code: s.Code(), msg: s.Message()})
			}
		})
	}

	// Fail's route lists rate-limiting (3 per hour), not jwt-auth.
	for _, via := range []string{"rest", "relay", "handler"} {
		t.Run("route-rate-limit-wins/"+via, func(t *testing.T) {
			t.Parallel()
			call := func(tok string) answer {
				hdr := auth(tok, "fail/"+via)
				if via == "rest" {
					return sendHTTP(t, p.h1, "POST", p.plain+"/v1/fail", `{}`, hdr)
				}
				cc := p.relayCC
				if via == "handler" {
					cc = p.handlerCC
				}
				_, err := testingv1.NewEchoServiceClient(cc).Fail(grpcOutgoing(testContext(t), hdr), &testingv1.FailRequest{})
				s, _ := status.FromError(err)
				return answer{code: s.Code(), msg: s.Message()}
			}
			kind := matrixProto{kind: kindGRPC}
			if via == "rest" {
				kind.kind = kindHTTP
			}
			missing.check(t, kind, call(""))
			for i := 0; i < 3; i++ {
				if a := call(top); a.code != codes.OK {
					t.Fatalf("call %d: got %d %s %q; want OK", i+1, a.status, a.code, a.msg)
				} else if via == "rest" && a.header.Get("RateLimit-Limit") != "3" {
					t.Errorf("RateLimit-Limit: got %q; want the route's 3", a.header.Get("RateLimit-Limit"))
				}
			}
			over("3").check(t, kind, call(top))
		})
	}

	t.Run("uri-route-without-plugins", func(t *testing.T) {
		t.Parallel()
		for _, tr := range []string{"http1", "h2c", "h3"} {
			proto := uriProto(tr)
			missing.check(t, proto, proto.call(t, p, auth("", "uri/"+tr)))
			want{seen: map[string][]string{"x-consumer": {"zoe"}}}.check(t, proto, proto.call(t, p, withHeader(auth(top, "uri/"+tr), "X-Consumer", "forged")))
		}
	})

	for _, path := range []string{"relay", "handler"} {
		t.Run("health-stays-open/"+path, func(t *testing.T) {
			t.Parallel()
			cc := p.relayCC
			if path == "handler" {
				cc = p.handlerCC
			}
			resp, err := healthpb.NewHealthClient(cc).Check(testContext(t), &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health check without a token: got %v, %v; want SERVING", resp, err)
			}
		})
		t.Run("reflection-needs-token/"+path, func(t *testing.T) {
			t.Parallel()
			cc := p.relayCC
			if path == "handler" {
				cc = p.handlerCC
			}
			for _, tc := range []struct {
				name string
				tok  string
				code codes.Code
				msg  string
			}{
				{"missing", "", codes.Unauthenticated, "missing bearer token"},
				{"route-token", route, codes.Unauthenticated, "invalid token signature"},
				{"top-token", top, codes.OK, ""},
			} {
				services, err := listServices(t, cc, auth(tc.tok, "reflection/"+path+"/"+tc.name), false)
				if s, _ := status.FromError(err); s.Code() != tc.code || (tc.msg != "" && s.Message() != tc.msg) {
					t.Errorf("%s: got %s %q; want %s %q", tc.name, s.Code(), s.Message(), tc.code, tc.msg)
				}
				if tc.code == codes.OK && !slices.Contains(services, "rosetta.testing.v1.EchoService") {
					t.Errorf("%s: reflection lists %q; want rosetta.testing.v1.EchoService", tc.name, services)
				}
				// v1alpha is the same service.
				_, err = listServices(t, cc, auth(tc.tok, "reflection-alpha/"+path+"/"+tc.name), true)
				if s, _ := status.FromError(err); s.Code() != tc.code {
					t.Errorf("%s (v1alpha): got %s %q; want %s", tc.name, s.Code(), s.Message(), tc.code)
				}
			}
		})
	}
}

// listServices asks the gateway's reflection service for its services.
func listServices(t *testing.T, cc *grpc.ClientConn, hdr http.Header, alpha bool) ([]string, error) {
	t.Helper()
	ctx := grpcOutgoing(testContext(t), hdr)
	var names []string
	if alpha {
		st, err := reflectionv1alpha.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil {
			_, err = st.Recv()
			return nil, err
		}
		resp, err := st.Recv()
		if err != nil {
			return nil, err
		}
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, st.CloseSend()
	}
	st, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil {
		_, err = st.Recv()
		return nil, err
	}
	resp, err := st.Recv()
	if err != nil {
		return nil, err
	}
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, st.CloseSend()
}
