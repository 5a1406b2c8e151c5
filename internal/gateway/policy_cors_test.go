package gateway

import (
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
)

const corsOrigin = "https://app.example.com"

// policyCORSConfig opens the gateway to corsOrigin, with or without
// credentials (cookies), in front of a cookie jwt-auth and a rate limit of
// one call per bucket.
func policyCORSConfig(env *policyEnv, credentials bool) string {
	cred := "false"
	if credentials {
		cred = "true"
	}
	return policyGatewayConfig(env.leaf, env.web, `
cors:
  allowed_origins: ["`+corsOrigin+`"]
  allow_credentials: `+cred, matrixRoutes(`
      - jwt-auth: { secret: `+matrixSecret+`, cookie: session }
      - rate-limiting: { limit: 1, period: 3600, key: "header:x-bucket" }`))
}

// exposed reports whether a browser script may read the response header
// name, by the answer's Access-Control-Expose-Headers ("*" counts only
// without credentials, as browsers read it).
func exposed(h http.Header, name string) bool {
	for _, v := range h.Values("Access-Control-Expose-Headers") {
		for _, n := range strings.Split(v, ",") {
			n = strings.TrimSpace(n)
			if strings.EqualFold(n, name) || (n == "*" && h.Get("Access-Control-Allow-Credentials") != "true") {
				return true
			}
		}
	}
	return false
}

// policyFields are the response fields the policy seam adds.
var policyFields = []string{"WWW-Authenticate", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}

// TestPolicyCORS: browser calls from an allowed origin. Preflights pass
// without credentials (the policy chain never sees them); refusals and
// allowed answers carry the CORS headers, and every policy field they
// carry (WWW-Authenticate, Retry-After, RateLimit-*) is one a browser
// script may read, with and without allow_credentials.
func TestPolicyCORS(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	for _, credentials := range []bool{false, true} {
		name := "without-credentials"
		if credentials {
			name = "with-credentials"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := env.start(t, policyCORSConfig(env, credentials))
			tok := hsSign(t, matrixSecret, userClaims("alice-sub"))
			browser := func(bucket, cookie string) http.Header {
				h := http.Header{"Origin": {corsOrigin}, "X-Bucket": {bucket}}
				if cookie != "" {
					h.Set("Cookie", "session="+cookie)
				}
				return h
			}
			checkCORS := func(t *testing.T, a answer) {
				t.Helper()
				if got := a.header.Get("Access-Control-Allow-Origin"); got != corsOrigin {
					t.Errorf("Access-Control-Allow-Origin: got %q; want %s", got, corsOrigin)
				}
				for _, f := range policyFields {
					if a.header.Get(f) != "" && !exposed(a.header, f) {
						t.Errorf("the answer has %s but Access-Control-Expose-Headers %q does not let a browser read it", f, a.header.Get("Access-Control-Expose-Headers"))
					}
				}
			}
			t.Run("preflight", func(t *testing.T) {
				for _, path := range []string{"/v1/metadata", echoService + "Metadata", "/web/echo"} {
					req, _ := http.NewRequestWithContext(testContext(t), "OPTIONS", p.plain+path, nil)
					req.Header = http.Header{"Origin": {corsOrigin}, "Access-Control-Request-Method": {"POST"},
						"Access-Control-Request-Headers": {"authorization, x-bucket, content-type"}}
					resp, err := p.h1.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != corsOrigin {
						t.Errorf("preflight of %s: got %d %v; want 204 for the origin, no credentials needed", path, resp.StatusCode, resp.Header)
					}
				}
			})
			for _, proto := range []matrixProto{restProto("http1"), restProto("h2c"), uriProto("h2c"),
				rpcClientProto("connect", "h2c", kindConnectUnary), rpcClientProto("grpc-web", "http1", kindGRPCWeb, connect.WithGRPCWeb())} {
				t.Run(proto.name, func(t *testing.T) {
					b := name + "/" + proto.name
					a := proto.call(t, p, browser(b, ""))
					want{code: codes.Unauthenticated, reason: "missing bearer token"}.check(t, proto, a)
					checkCORS(t, a)
					a = proto.call(t, p, browser(b, tok))
					want{}.check(t, proto, a)
					checkCORS(t, a)
					a = proto.call(t, p, browser(b, tok))
					want{code: codes.ResourceExhausted, reason: "rate limit exceeded"}.check(t, proto, a)
					checkCORS(t, a)
				})
			}
		})
	}
}
