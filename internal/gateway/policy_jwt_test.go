package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// rsaTestKey is one RSA key for every test of the package (generating one
// is slow, under the race detector above all).
var rsaTestKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publicPEM encodes a public key as a PEM PUBLIC KEY block.
func publicPEM(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// signWith signs claims with method and key, naming kid when not empty.
func signWith(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// userClaims are the claims of a token for sub, valid for an hour.
func userClaims(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
}

// indent indents every line of s by n spaces (a YAML block scalar).
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+pad)
}

// runCases runs each case over each protocol, in parallel.
func runCases(t *testing.T, p *policyGateway, protos []matrixProto, cases []authCase) {
	t.Helper()
	for _, c := range cases {
		for _, proto := range protos {
			t.Run(c.name+"/"+proto.name, func(t *testing.T) {
				t.Parallel()
				c.want.check(t, proto, proto.call(t, p, c.hdr))
			})
		}
	}
}

func bearer(tok string) http.Header { return withHeader(forged, "Authorization", "Bearer "+tok) }

// TestPolicyJWTPublicKeys: jwt-auth with public_key, an RSA key inline on
// the selector route and an ECDSA P-256 key from a file on the uri route:
// RS256/PS256 and ES256 tokens pass with claims_to_headers and x-consumer
// sent upstream (the client's copies replaced); other algorithms, the
// HS256-with-the-public-key confusion, alg none and a wrong key are
// refused, saying why.
func TestPolicyJWTPublicKeys(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	rsaKey, ecKey, otherEC := rsaTestKey(), newECKey(t), newECKey(t)
	otherRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := publicPEM(t, &rsaKey.PublicKey)
	ecFile := filepath.Join(t.TempDir(), "ec.pem")
	if err := os.WriteFile(ecFile, []byte(publicPEM(t, &ecKey.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", `
  - selector: `+matrixSelector+`
    plugins:
      - jwt-auth:
          public_key: |
`+indent(rsaPEM, 12)+`
          claims_to_headers: { sub: x-user-id }
  - uri: `+matrixURI+`
    service: web
    plugins:
      - jwt-auth:
          public_key: `+ecFile+`
          claims_to_headers: { sub: x-user-id }
`))
	invalid := `Bearer realm="rosetta", error="invalid_token"`
	okAlice := want{seen: map[string][]string{"x-user-id": {"alice-sub"}, "x-consumer": {"alice"}}}
	refused := func(reason, tok string) want {
		return want{code: codes.Unauthenticated, reason: reason, challenge: invalid, hide: tok}
	}
	rs := signWith(t, jwt.SigningMethodRS256, rsaKey, "", userClaims("alice-sub"))
	ps := signWith(t, jwt.SigningMethodPS256, rsaKey, "", userClaims("alice-sub"))
	es := signWith(t, jwt.SigningMethodES256, ecKey, "", userClaims("alice-sub"))
	// The classic confusion: HS256 keyed with the public key's text.
	confused := signWith(t, jwt.SigningMethodHS256, []byte(rsaPEM), "", userClaims("alice-sub"))
	none := signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", userClaims("alice-sub"))
	wrongRSA := signWith(t, jwt.SigningMethodRS256, otherRSA, "", userClaims("alice-sub"))
	wrongEC := signWith(t, jwt.SigningMethodES256, otherEC, "", userClaims("alice-sub"))

	selectorProtos := []matrixProto{restProto("http1"), grpcProto("relay"), grpcProto("handler"),
		rpcClientProto("grpc-web", "h2c", kindGRPCWeb, connect.WithGRPCWeb()), rpcClientProto("connect", "h3", kindConnectUnary), wsProto("h2c")}
	runCases(t, p, selectorProtos, []authCase{
		{"rsa/RS256", bearer(rs), okAlice},
		{"rsa/PS256", bearer(ps), okAlice},
		{"rsa/ES256", bearer(es), refused("signing algorithm ES256 not accepted", es)},
		{"rsa/HS256-with-public-key", bearer(confused),
			refused("signing algorithm HS256 not accepted: this route verifies tokens with public keys", confused)},
		{"rsa/none", bearer(none), refused("unsigned token (alg none) not accepted", none)},
		{"rsa/wrong-key", bearer(wrongRSA), refused("invalid token signature", wrongRSA)},
	})
	runCases(t, p, []matrixProto{uriProto("http1"), uriProto("h2c"), uriProto("h3")}, []authCase{
		{"ecdsa/ES256", bearer(es), okAlice},
		{"ecdsa/RS256", bearer(rs), refused("signing algorithm RS256 not accepted", rs)},
		{"ecdsa/wrong-key", bearer(wrongEC), refused("invalid token signature", wrongEC)},
	})
}

// jwksServer serves a JSON Web Key Set that a test changes.
type jwksServer struct {
	url     string
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int64
}

func startJWKS(t *testing.T) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, _ := json.Marshal(map[string]any{"keys": s.keys})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/.well-known/jwks.json"
	return s
}

// publish replaces the key set.
func (s *jwksServer) publish(keys ...map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf is the JWK of a public key (RSA for RS256, P-256 for ES256).
func jwkOf(t *testing.T, kid string, pub crypto.PublicKey) map[string]string {
	t.Helper()
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": b64url(k.N.Bytes()), "e": b64url(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		ek, err := k.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		b := ek.Bytes() // 0x04 || X || Y
		return map[string]string{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64url(b[1:33]), "y": b64url(b[33:])}
	}
	t.Fatalf("no JWK for %T", pub)
	return nil
}

// TestPolicyJWKS: jwt-auth with a jwks_uri served on 127.0.0.1. Keys
// rotate without a restart: a token naming a kid that appeared in the
// JWKS after the gateway fetched it is accepted — on the gRPC relay (which
// hands the call to the handler path for the fetch), the handler path,
// REST and a WebSocket's bearer subprotocol. A key removed from the JWKS
// stops verifying once the gateway refetched it (tokens it cached
// included); a kid the JWKS does not have is refused.
func TestPolicyJWKS(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	jwks := startJWKS(t)
	k1, k2, k3 := rsaTestKey(), newECKey(t), newECKey(t)
	jwks.publish(jwkOf(t, "k1", &k1.PublicKey))
	plugin := `
      - jwt-auth:
          jwks_uri: ` + jwks.url + `
          jwks_refresh: 1s
          jwks_refresh_min: 1s
          claims_to_headers: { sub: x-user-id }`
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(plugin)))
	tok := func(sub, kid string, method jwt.SigningMethod, key any) http.Header {
		return bearer(signWith(t, method, key, kid, userClaims(sub)))
	}
	ok := func(sub, consumer string) want {
		return want{seen: map[string][]string{"x-user-id": {sub}, "x-consumer": {consumer}}}
	}
	run := func(t *testing.T, proto matrixProto, hdr http.Header, w want) {
		t.Helper()
		w.check(t, proto, proto.call(t, p, hdr))
	}
	t.Run("first key", func(t *testing.T) {
		for _, proto := range []matrixProto{restProto("http1"), grpcProto("relay"), grpcProto("handler"), uriProto("h2c")} {
			run(t, proto, tok("alice-sub", "k1", jwt.SigningMethodRS256, k1), ok("alice-sub", "alice"))
		}
	})
	before := jwks.fetches.Load()
	// Rotation: two new keys appear; the gateways learn of them from the
	// first token that names one.
	jwks.publish(jwkOf(t, "k1", &k1.PublicKey), jwkOf(t, "k2", &k2.PublicKey), jwkOf(t, "k3", &k3.PublicKey))
	t.Run("rotated/relay", func(t *testing.T) {
		run(t, grpcProto("relay"), tok("carol", "k2", jwt.SigningMethodES256, k2), ok("carol", "carol"))
	})
	t.Run("rotated/rest", func(t *testing.T) {
		run(t, restProto("h2c"), tok("dave", "k3", jwt.SigningMethodES256, k3), ok("dave", "dave"))
	})
	t.Run("rotated/handler", func(t *testing.T) {
		run(t, grpcProto("handler"), tok("erin", "k3", jwt.SigningMethodES256, k3), ok("erin", "erin"))
	})
	t.Run("rotated/ws-subprotocol", func(t *testing.T) {
		_, a := dialPolicyWS(t, p, "http1", "/v1/metadata", nil, nil)
		want{code: codes.Unauthenticated, reason: "missing bearer token"}.check(t, matrixProto{kind: kindHTTP}, a)
		k2tok := signWith(t, jwt.SigningMethodES256, k2, "k2", userClaims("frank"))
		c, a := dialPolicyWS(t, p, "http1", "/v1/metadata", nil, &websocket.DialOptions{Subprotocols: []string{"rosetta.bearer." + k2tok}})
		if c == nil {
			t.Fatalf("upgrade refused: %d %s", a.status, a.body)
		}
		wsSend(t, c, `{}`)
		var mb metadataBody
		if err := json.Unmarshal(wsRead(t, c, websocket.MessageText), &mb); err != nil {
			t.Fatal(err)
		}
		wsExpectOK(t, c)
		a.status, a.seen = http.StatusOK, mb.seen()
		ok("frank", "frank").check(t, matrixProto{kind: kindHTTP}, a)
	})
	if jwks.fetches.Load() == before {
		t.Errorf("the rotated keys were accepted without a JWKS fetch")
	}
	// Revocation: k1 leaves the JWKS; once a gateway has refetched it
	// (jwks_refresh: 1s), k1's tokens are refused, even the ones it has
	// verified and cached before.
	t.Run("revoked", func(t *testing.T) {
		jwks.publish(jwkOf(t, "k2", &k2.PublicKey), jwkOf(t, "k3", &k3.PublicKey))
		k1tok := tok("alice-sub", "k1", jwt.SigningMethodRS256, k1)
		for _, proto := range []matrixProto{restProto("http1"), grpcProto("relay"), grpcProto("handler"), uriProto("h2c")} {
			var a answer
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if a = proto.call(t, p, k1tok); a.code != codes.OK || time.Now().After(deadline) {
					break
				}
			}
			want{code: codes.Unauthenticated, reason: "unknown signing key id", challenge: `Bearer realm="rosetta", error="invalid_token"`}.check(t, proto, a)
		}
		// The keys still published keep working.
		run(t, grpcProto("relay"), tok("carol", "k2", jwt.SigningMethodES256, k2), ok("carol", "carol"))
	})
	t.Run("unknown kid", func(t *testing.T) {
		k9 := newECKey(t)
		hdr := tok("mallory", "k9", jwt.SigningMethodES256, k9)
		for _, proto := range []matrixProto{restProto("http1"), grpcProto("relay"), uriProto("http1")} {
			run(t, proto, hdr, want{code: codes.Unauthenticated, reason: "unknown signing key id",
				challenge: `Bearer realm="rosetta", error="invalid_token"`, hide: hdr.Get("Authorization")[7:]})
		}
	})
}

// TestPolicyNonASCIIIdentity: an identity that is not ASCII (a token's
// sub and claims, a consumer's name) is a valid identity: the call is
// allowed on every protocol, and the upstream receives the same
// x-consumer and claims_to_headers values (percent-encoded UTF-8)
// whatever protocol the call came in by.
func TestPolicyNonASCIIIdentity(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	t.Run("jwt", func(t *testing.T) {
		t.Parallel()
		p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(matrixPlugins["jwt"])))
		tok := hsSign(t, matrixSecret, matrixClaims(func(c jwt.MapClaims) { c["sub"] = "josé"; c["tenant"] = "zürich" }))
		var mu sync.Mutex
		views := map[string]string{}
		t.Run("calls", func(t *testing.T) {
			for _, proto := range matrixProtos() {
				t.Run(proto.name, func(t *testing.T) {
					t.Parallel()
					a := proto.call(t, p, bearer(tok))
					want{}.check(t, proto, a)
					if a.seen != nil {
						mu.Lock()
						views[proto.name] = strings.Join(a.seen["x-consumer"], ",") + "|" + strings.Join(a.seen["x-user-id"], ",") + "|" + strings.Join(a.seen["x-tenant"], ",")
						mu.Unlock()
					}
				})
			}
		})
		want := views["grpc/relay"]
		if want == "||" || want == "" {
			t.Fatalf("the relayed call's upstream saw no identity: %q", want)
		}
		for name, v := range views {
			if v != want {
				t.Errorf("%s: upstream saw x-consumer|x-user-id|x-tenant %q; the relayed gRPC call's saw %q", name, v, want)
			}
		}
	})
	t.Run("key-auth", func(t *testing.T) {
		t.Parallel()
		be := testkit.StartBackend(t)
		url, _ := startGateway(t, be.Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
consumers:
  - name: Zoë
    keys: ["zoe-key-0a1b2c3d4e5f"]
routes:
  - selector: `+matrixSelector+`
    plugins:
      - key-auth: {}
`)
		r := do(t, "POST", url+"/v1/metadata", `{}`, "apikey: zoe-key-0a1b2c3d4e5f")
		// Header values are printable ASCII: the name goes up
		// percent-encoded (policy.FieldValue), on every protocol.
		if r.status != http.StatusOK || !strings.Contains(r.body, `"x-consumer":{"values":["Zo%C3%AB"]}`) {
			t.Errorf("REST with consumer Zoë's key: got %d %s; want 200 and x-consumer Zo%%C3%%AB upstream", r.status, r.body)
		}
	})
}

// TestPolicyAuthAlternatives: a route with key-auth and jwt-auth passes a
// call that either accepts; a refusal names a bad credential before a
// missing one; an accepted call carries no challenge, and the upstream
// sees the identity of the plugin that accepted it, never the client's
// own x-consumer or claim headers.
func TestPolicyAuthAlternatives(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(`
      - key-auth: {}
      - jwt-auth:
          secret: `+matrixSecret+`
          claims_to_headers: { sub: x-user-id }`)))
	bob := hsSign(t, matrixSecret, userClaims("bob"))
	badSig := hsSign(t, "another-secret-0123456789abcdef0123", userClaims("bob"))
	const wrongKey = "wrong-key-8c7b6a5f4e3d2c1b"
	both := func(key, tok string) http.Header {
		h := forged.Clone()
		if key != "" {
			h.Set("Apikey", key)
		}
		if tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
		return h
	}
	runCases(t, p, []matrixProto{restProto("http1"), sseProto("h2c"), grpcProto("relay"), grpcProto("handler"),
		rpcClientProto("grpc-web", "h2c", kindGRPCWeb, connect.WithGRPCWeb()), rpcClientProto("connect", "h3", kindConnectUnary),
		wsProto("http1"), uriProto("h2c")}, []authCase{
		{"none", both("", ""), want{code: codes.Unauthenticated, reason: "missing API key", challenge: `Bearer realm="rosetta"`}},
		{"bad-token", both("", badSig), want{code: codes.Unauthenticated, reason: "invalid token signature",
			challenge: `Bearer realm="rosetta", error="invalid_token"`, hide: badSig}},
		{"bad-key", both(wrongKey, ""), want{code: codes.Unauthenticated, reason: "invalid API key",
			challenge: `Bearer realm="rosetta"`, hide: wrongKey}},
		{"key-and-bad-token", both(aliceKey, badSig), want{seen: map[string][]string{"x-consumer": {"alice"}, "x-user-id": nil}}},
		{"token", both("", bob), want{seen: map[string][]string{"x-consumer": {"bob"}, "x-user-id": {"bob"}}}},
		{"bad-key-and-token", both(wrongKey, bob), want{seen: map[string][]string{"x-consumer": {"bob"}, "x-user-id": {"bob"}}}},
	})
}

// TestPolicyIdentityUnambiguous: two different identities never reach the
// upstream as the same x-consumer (or claims_to_headers value), whatever
// encoding makes them printable: "josé" and the ASCII subject
// "jos%C3%A9" are two callers, and so are consumers "Zoë" and "Zo%C3%AB".
func TestPolicyIdentityUnambiguous(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	t.Run("jwt", func(t *testing.T) {
		t.Parallel()
		p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(matrixPlugins["jwt"])))
		for _, proto := range []matrixProto{restProto("http1"), grpcProto("relay"), grpcProto("handler"),
			rpcClientProto("connect", "h2c", kindConnectUnary), wsProto("http1"), uriProto("h2c")} {
			t.Run(proto.name, func(t *testing.T) {
				t.Parallel()
				var views [2]string
				for i, sub := range []string{"josé", "jos%C3%A9"} {
					tok := hsSign(t, matrixSecret, matrixClaims(func(c jwt.MapClaims) { c["sub"] = sub }))
					a := proto.call(t, p, bearer(tok))
					want{}.check(t, proto, a)
					views[i] = strings.Join(a.seen["x-consumer"], ",") + "|" + strings.Join(a.seen["x-user-id"], ",")
				}
				if views[0] == views[1] {
					t.Errorf(`subjects "josé" and "jos%%C3%%A9" reach the upstream alike: x-consumer|x-user-id %q`, views[0])
				}
			})
		}
	})
	t.Run("key-auth", func(t *testing.T) {
		t.Parallel()
		be := testkit.StartBackend(t)
		url, _ := startGateway(t, be.Addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
consumers:
  - name: Zoë
    keys: ["zoe-key-0a1b2c3d4e5f"]
  - name: Zo%C3%AB
    keys: ["other-key-6f5e4d3c2b1a"]
routes:
  - selector: `+matrixSelector+`
    plugins:
      - key-auth: {}
`)
		a := do(t, "POST", url+"/v1/metadata", `{}`, "apikey: zoe-key-0a1b2c3d4e5f")
		b := do(t, "POST", url+"/v1/metadata", `{}`, "apikey: other-key-6f5e4d3c2b1a")
		seen := func(r response) string {
			var mb metadataBody
			_ = json.Unmarshal([]byte(r.body), &mb)
			return strings.Join(mb.seen()["x-consumer"], ",")
		}
		if a.status != http.StatusOK || b.status != http.StatusOK || seen(a) == seen(b) {
			t.Errorf(`consumers "Zoë" and "Zo%%C3%%AB": got %d x-consumer %q and %d %q; want two different identities upstream`, a.status, seen(a), b.status, seen(b))
		}
	})
}

// TestPolicyUnderscoreHeadersStripped: an upstream never gets a client's
// copy of a field the gateway sets (x-consumer, a claims_to_headers
// target) under an underscore spelling either, whatever the protocol:
// CGI-style servers (PHP, WSGI, Rack) read X_Consumer and X-Consumer as
// the same HTTP_X_CONSUMER, so a forged X_Consumer would pose as the
// consumer; and the two gRPC paths must forward the same metadata.
func TestPolicyUnderscoreHeadersStripped(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(matrixPlugins["jwt"])))
	tok := hsSign(t, matrixSecret, matrixClaims(nil))
	hdr := bearer(tok)
	for _, k := range []string{"X_consumer", "X_user_id", "X_tenant", "X-user_id", "Grpc-Metadata-X_consumer"} {
		hdr[k] = []string{"forged"}
	}
	for _, proto := range matrixProtos() {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			a := proto.call(t, p, hdr)
			want{seen: map[string][]string{"x-consumer": {"alice"}, "x-user-id": {"alice-sub"}, "x-tenant": {"t1"}}}.check(t, proto, a)
			for name, v := range a.seen {
				switch strings.ReplaceAll(name, "_", "-") {
				case "x-consumer", "x-user-id", "x-tenant":
					if name != strings.ReplaceAll(name, "_", "-") {
						t.Errorf("the upstream got the client's %s: %q", name, v)
					}
				}
			}
		})
	}
}

// TestPolicySmuggledAuthorization: a client that sends a second
// credential next to the one jwt-auth verifies (REST and WebSocket: a
// Grpc-Metadata-Authorization header; gRPC, gRPC-Web, Connect, plain HTTP
// routes: a second authorization field) never gets the unverified one to
// the upstream:
// the call is refused, or the upstream sees the verified token alone. (An
// upstream that reads the first authorization value, or decodes claims
// the gateway verified, must not read the other one.)
func TestPolicySmuggledAuthorization(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", matrixRoutes(matrixPlugins["jwt"])))
	tok := hsSign(t, matrixSecret, matrixClaims(nil))
	forgedTok := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9." // {"alg":"none"} {"sub":"admin"}
	for _, proto := range []matrixProto{restProto("http1"), restProto("h2c"), wsProto("http1"), wsProto("h2c"),
		rpcClientProto("connect", "h2c", kindConnectUnary), rpcClientProto("grpc-web", "http1", kindGRPCWeb, connect.WithGRPCWeb()),
		grpcProto("relay"), grpcProto("handler"), uriProto("http1")} {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			hdr := http.Header{"Authorization": {"Bearer " + tok, "Bearer " + forgedTok}}
			if proto.kind == kindHTTP && !proto.uri {
				hdr = http.Header{"Authorization": {"Bearer " + tok}, "Grpc-Metadata-Authorization": {"Bearer " + forgedTok}}
			}
			// Header maps are walked in random order: try a few times.
			for i := 0; i < 12; i++ {
				a := proto.call(t, p, hdr)
				if a.code != codes.OK {
					continue // refusing such a call is fine
				}
				if got := a.seen["authorization"]; len(got) != 1 || got[0] != "Bearer "+tok {
					t.Fatalf("call %d: the upstream got authorization %q; want only the verified token", i+1, got)
				}
			}
		})
	}
	// A WebSocket whose token comes in the access_token parameter or the
	// bearer subprotocol: the verified token is the one sent upstream, not
	// an Authorization the client also wrote.
	for _, tr := range []string{"http1", "h2c"} {
		for _, tc := range []struct {
			name, query  string
			subprotocols []string
			hdr          http.Header
		}{
			{"access_token+grpc-metadata", "?access_token=" + tok, nil, http.Header{"Grpc-Metadata-Authorization": {"Bearer " + forgedTok}}},
			{"subprotocol+grpc-metadata", "", []string{"rosetta.bearer." + tok}, http.Header{"Grpc-Metadata-Authorization": {"Bearer " + forgedTok}}},
			{"subprotocol+basic", "", []string{"rosetta.bearer." + tok}, http.Header{"Authorization": {"Basic YWRtaW46YWRtaW4="}}},
		} {
			t.Run("ws-"+tc.name+"/"+tr, func(t *testing.T) {
				t.Parallel()
				c, _ := dialPolicyWS(t, p, tr, "/v1/metadata"+tc.query, tc.hdr, &websocket.DialOptions{Subprotocols: tc.subprotocols})
				if c == nil {
					return // refusing such a call is fine
				}
				wsSend(t, c, `{}`)
				var mb metadataBody
				if err := json.Unmarshal(wsRead(t, c, websocket.MessageText), &mb); err != nil {
					t.Fatal(err)
				}
				wsExpectOK(t, c)
				if got := mb.seen()["authorization"]; len(got) != 1 || got[0] != "Bearer "+tok {
					t.Errorf("the upstream got authorization %q (x-consumer %q); want only the verified token", got, mb.seen()["x-consumer"])
				}
			})
		}
	}
}
