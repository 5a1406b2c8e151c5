package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

const policySecret = "0123456789abcdef0123456789abcdef"

// policyConfig is the seed's plugin syntax on a selector route.
const policyConfig = `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
routes:
  - selector: rosetta.testing.v1.EchoService.*
    plugins:
      - rate-limiting:
          limit: 3
          period: 3600
      - jwt-auth:
          secret: ` + policySecret + `
          claims_to_headers: { sub: x-user-id }
`

// hsToken signs an HS256 token for sub, valid for an hour.
func hsToken(t *testing.T, sub string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(policySecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestPolicySeedREST(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	url, _ := startGateway(t, be.Addr, policyConfig)

	r := do(t, "GET", url+"/v1/echo/x", "")
	if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer realm="rosetta"` || !strings.Contains(r.body, `"code":16`) {
		t.Fatalf("no token: got %d %q %s; want 401 with a Bearer challenge and code 16", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	r = do(t, "GET", url+"/v1/echo/x", "", "Authorization: Bearer not.a.token")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("bad token: got %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	tok := hsToken(t, "alice")
	for i := 1; i <= 3; i++ {
		r = do(t, "POST", url+"/v1/metadata", `{}`, "Authorization: Bearer "+tok, "X-User-Id: forged")
		if r.status != 200 {
			t.Fatalf("call %d: got %d %s; want 200", i, r.status, r.body)
		}
		if got := r.header.Get("RateLimit-Remaining"); got != []string{"", "2", "1", "0"}[i] {
			t.Errorf("call %d: RateLimit-Remaining %q", i, got)
		}
		if !strings.Contains(r.body, `"x-user-id":{"values":["alice"]}`) || !strings.Contains(r.body, `"x-consumer":{"values":["alice"]}`) {
			t.Errorf("call %d: backend metadata %s; want x-user-id and x-consumer alice only", i, r.body)
		}
	}
	r = do(t, "POST", url+"/v1/metadata", `{}`, "Authorization: Bearer "+tok)
	if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, `"code":8`) {
		t.Fatalf("over the limit: got %d retry-after %q %s; want 429", r.status, r.header.Get("Retry-After"), r.body)
	}
}

func TestPolicySeedGRPC(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		url, _ := startGatewayOn(t, path, be.Addr, policyConfig)
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		ctx := testContext(t)

		_, err := client.Echo(ctx, &testingv1.Everything{})
		wantStatus(t, err, codes.Unauthenticated, "")
		tok := hsToken(t, "bob")
		authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok, "x-user-id", "forged")
		for i := 1; i <= 3; i++ {
			resp, err := client.Metadata(authed, &testingv1.MetadataRequest{})
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			if got := resp.GetIncoming()["x-user-id"].GetValues(); len(got) != 1 || got[0] != "bob" {
				t.Errorf("call %d: backend got x-user-id %q; want [bob]", i, got)
			}
		}
		_, err = client.Echo(authed, &testingv1.Everything{})
		wantStatus(t, err, codes.ResourceExhausted, "")
	})
}
