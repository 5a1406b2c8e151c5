package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
)

// policyWSRoutes: BidiStream counts every WebSocket message (per_message)
// on top of the upgrade; every other EchoService method and the uri route
// need a token (the jwt matrix plugin).
var policyWSRoutes = `
  - selector: rosetta.testing.v1.EchoService.BidiStream
    plugins:
      - rate-limiting: { limit: 3, period: 3600, key: "header:x-bucket", per_message: true }
` + matrixRoutes(matrixPlugins["jwt"])

// TestPolicyWebSocket: the bearer token of a WebSocket in the
// rosetta.bearer.<token> subprotocol or the access_token query parameter,
// refusals before the upgrade, a uri route's upgrade, and per-message
// limits that close the socket with 4008 — over HTTP/1.1, HTTP/2 (RFC 8441)
// and HTTP/3 (RFC 9220).
func TestPolicyWebSocket(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", policyWSRoutes))
	alice := hsSign(t, matrixSecret, matrixClaims(nil))
	expired := hsSign(t, matrixSecret, matrixClaims(func(c jwt.MapClaims) {
		c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	}))
	ok := want{seen: map[string][]string{"x-user-id": {"alice-sub"}, "x-tenant": {"t1"}, "x-consumer": {"alice"}, "access_token": nil}}
	invalid := `Bearer realm="rosetta", error="invalid_token"`
	wsProto := matrixProto{kind: kindHTTP}

	for _, tr := range []string{"http1", "h2c", "h3"} {
		t.Run("token/"+tr, func(t *testing.T) {
			t.Parallel()
			// metadata opens a socket to EchoService.Metadata and reports
			// the answer; selected is the subprotocol the gateway chose.
			metadata := func(t *testing.T, path string, subprotocols ...string) (a answer, selected string) {
				t.Helper()
				c, a := dialPolicyWS(t, p, tr, path, forged, &websocket.DialOptions{Subprotocols: subprotocols})
				if c == nil {
					return a, ""
				}
				wsSend(t, c, `{}`)
				var mb metadataBody
				if err := json.Unmarshal(wsRead(t, c, websocket.MessageText), &mb); err != nil {
					t.Fatal(err)
				}
				wsExpectOK(t, c)
				a.status, a.seen = http.StatusOK, mb.seen()
				return a, c.Subprotocol()
			}
			t.Run("subprotocol", func(t *testing.T) {
				a, selected := metadata(t, "/v1/metadata", "rosetta.json.v1", "rosetta.bearer."+alice)
				ok.check(t, wsProto, a)
				if selected != "rosetta.json.v1" {
					t.Errorf("selected subprotocol: got %q; want rosetta.json.v1 (never the bearer one)", selected)
				}
			})
			t.Run("subprotocol-alone", func(t *testing.T) {
				a, selected := metadata(t, "/v1/metadata", "rosetta.bearer."+alice)
				ok.check(t, wsProto, a)
				if selected != "" {
					t.Errorf("selected subprotocol: got %q; want none", selected)
				}
			})
			t.Run("access_token", func(t *testing.T) {
				a, _ := metadata(t, "/v1/metadata?access_token="+alice)
				ok.check(t, wsProto, a)
			})
			t.Run("missing", func(t *testing.T) {
				a, _ := metadata(t, "/v1/metadata", "rosetta.json.v1")
				want{code: codes.Unauthenticated, reason: "missing bearer token", challenge: `Bearer realm="rosetta"`}.check(t, wsProto, a)
			})
			t.Run("expired/subprotocol", func(t *testing.T) {
				a, _ := metadata(t, "/v1/metadata", "rosetta.json.v1", "rosetta.bearer."+expired)
				want{code: codes.Unauthenticated, reason: "token expired", challenge: invalid, hide: expired}.check(t, wsProto, a)
			})
			t.Run("expired/access_token", func(t *testing.T) {
				a, _ := metadata(t, "/v1/metadata?access_token="+expired)
				want{code: codes.Unauthenticated, reason: "token expired", challenge: invalid, hide: expired}.check(t, wsProto, a)
			})
			t.Run("scope", func(t *testing.T) {
				noScope := hsSign(t, matrixSecret, matrixClaims(func(c jwt.MapClaims) { c["scope"] = "write" }))
				a, _ := metadata(t, "/v1/metadata", "rosetta.bearer."+noScope)
				want{code: codes.PermissionDenied, reason: "missing scope: read", hide: noScope,
					challenge: `Bearer realm="rosetta", error="insufficient_scope", scope="read"`}.check(t, wsProto, a)
			})
			// A uri route's upgrade is admitted before it reaches the
			// upstream, which sees the consumer.
			t.Run("uri-route", func(t *testing.T) {
				_, a := dialPolicyWS(t, p, tr, "/web/ws", nil, nil)
				want{code: codes.Unauthenticated, reason: "missing bearer token", challenge: `Bearer realm="rosetta"`}.check(t, wsProto, a)
				c, a := dialPolicyWS(t, p, tr, "/web/ws", withHeader(forged, "Authorization", "Bearer "+alice), nil)
				if c == nil {
					t.Fatalf("upgrade refused: %d %s", a.status, a.body)
				}
				if got := string(wsRead(t, c, websocket.MessageText)); got != "x-consumer: alice" {
					t.Errorf("upstream got %q; want x-consumer: alice", got)
				}
				// The bridge's token sources work on uri routes too; the
				// upstream gets the verified token as Authorization, not
				// the query parameter or the subprotocol.
				for name, tc := range map[string]struct {
					path  string
					proto []string
				}{
					"access_token": {"/web/ws?a=1&access_token=" + alice + "&b=2", nil},
					"subprotocol":  {"/web/ws", []string{"chat", "rosetta.bearer." + alice}},
				} {
					c, a := dialPolicyWS(t, p, tr, tc.path, nil, &websocket.DialOptions{Subprotocols: tc.proto})
					if c == nil {
						t.Fatalf("%s: upgrade refused: %d %s", name, a.status, a.body)
					}
					if got := string(wsRead(t, c, websocket.MessageText)); got != "x-consumer: alice" {
						t.Errorf("%s: upstream got %q; want x-consumer: alice", name, got)
					}
					got := string(wsRead(t, c, websocket.MessageText))
					if strings.Contains(got, "access_token") || strings.Contains(got, "rosetta.bearer") || !strings.Contains(got, "authorization=Bearer "+alice) {
						t.Errorf("%s: upstream saw %q; want the token as Authorization only", name, got)
					}
					if name == "access_token" && !strings.Contains(got, "query=a=1&b=2") {
						t.Errorf("%s: upstream saw %q; want the rest of the query as sent", name, got)
					}
				}
			})
		})
		t.Run("per_message/"+tr, func(t *testing.T) {
			t.Parallel()
			hdr := http.Header{"X-Bucket": {"per-message/" + tr}}
			c, a := dialPolicyWS(t, p, tr, "/v1/stream:bidi", hdr, nil)
			if c == nil {
				t.Fatalf("upgrade refused: %d %s", a.status, a.body)
			}
			// The upgrade counted one call of 3.
			if a.header.Get("RateLimit-Limit") != "3" || a.header.Get("RateLimit-Remaining") != "2" {
				t.Errorf("upgrade: RateLimit-Limit %q, -Remaining %q; want 3, 2", a.header.Get("RateLimit-Limit"), a.header.Get("RateLimit-Remaining"))
			}
			for i := 1; i <= 2; i++ {
				item := `{"index": ` + string(rune('0'+i)) + `}`
				wsSend(t, c, item)
				assertJSON(t, string(wsRead(t, c, websocket.MessageText)), item)
			}
			// The third message is over the limit: a status frame, then
			// close 4008 (4000 + RESOURCE_EXHAUSTED).
			wsSend(t, c, `{"index": 3}`)
			st := wsReadStatus(t, c)
			if st.Status.Code != int(codes.ResourceExhausted) || !strings.Contains(st.Status.Message, "rate limit exceeded") {
				t.Errorf("status frame: got %+v; want RESOURCE_EXHAUSTED, rate limit exceeded", st.Status)
			}
			_, _, err := c.Read(wsContext(t))
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 4008 || !strings.Contains(ce.Reason, "rate limit exceeded") {
				t.Errorf("close: got %v; want 4008 saying rate limit exceeded", err)
			}
			// The bucket is empty: the next upgrade is refused before it.
			_, a = dialPolicyWS(t, p, tr, "/v1/stream:bidi", hdr, nil)
			want{code: codes.ResourceExhausted, reason: "rate limit exceeded: 3 calls per 1h0m0s"}.check(t, wsProto, a)
		})
	}
}
