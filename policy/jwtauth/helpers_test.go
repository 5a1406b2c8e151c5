package jwtauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the time every test starts at.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testClock is a clock tests move by hand.
type testClock = testkit.Clock

func newClock() *testClock { return testkit.NewClock(t0) }

// withTicks drives the JWKS refresh loop by hand.
func withTicks(ticks <-chan time.Time) Option { return func(o *options) { o.ticks = ticks } }

// keys generated once per test run; generating RSA keys is slow.
var (
	keysOnce sync.Once
	rsaKey1  *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey1, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

// pemOf encodes a public key as PEM.
func pemOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// sign makes a token of claims signed with key by method; kid is set in
// the header when not empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// validClaims are claims valid at t0 for an hour.
func validClaims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "user-1",
		"iat": t0.Add(-time.Minute).Unix(),
		"nbf": t0.Add(-time.Minute).Unix(),
		"exp": t0.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// bearer returns a call carrying tok in an Authorization header.
func bearer(tok string) *call.Call {
	return &call.Call{Header: call.HTTPHeader{"Authorization": {"Bearer " + tok}}}
}

// newPlugin builds a plugin from cfg with a test clock, closed at the
// end of the test.
func newPlugin(t testing.TB, cfg config.JWTAuth, env policy.Env, opts ...Option) *Plugin {
	t.Helper()
	p, err := New(cfg, env, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// jwksServer is a real JWKS endpoint on 127.0.0.1 whose keys tests
// change.
type jwksServer struct {
	t       testing.TB
	srv     *httptest.Server
	client  *http.Client
	mu      sync.Mutex
	doc     []byte
	status  int
	gate    chan struct{} // when set, requests wait for it to close
	fetches atomic.Int64
}

// jwk is one key the server publishes.
type jwk struct {
	kid string
	key any    // public key, or []byte for an oct key
	alg string // optional
	use string // optional
}

func startJWKSServer(t testing.TB, keys ...jwk) *jwksServer {
	t.Helper()
	s := &jwksServer{t: t, status: http.StatusOK}
	s.setKeys(keys...)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tr := &http.Transport{}
	s.client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		s.srv.Close()
		tr.CloseIdleConnections()
	})
	return s
}

func (s *jwksServer) url() string { return s.srv.URL + "/.well-known/jwks.json" }

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	gate, doc, status := s.gate, s.doc, s.status
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	s.fetches.Add(1)
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(status)
	_, _ = w.Write(doc)
}

// setKeys replaces the published keys.
func (s *jwksServer) setKeys(keys ...jwk) {
	s.t.Helper()
	var doc jwkset.JWKSMarshal
	for _, k := range keys {
		if secret, ok := k.key.([]byte); ok {
			doc.Keys = append(doc.Keys, jwkset.JWKMarshal{KTY: jwkset.KtyOct, KID: k.kid,
				K: jwtEncode(secret), ALG: jwkset.ALG(k.alg), USE: jwkset.USE(k.use)})
			continue
		}
		j, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: k.kid, ALG: jwkset.ALG(k.alg), USE: jwkset.USE(k.use)}})
		if err != nil {
			s.t.Fatalf("JWK %s: %v", k.kid, err)
		}
		doc.Keys = append(doc.Keys, j.Marshal())
	}
	b, err := json.Marshal(doc)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.doc = b
	s.mu.Unlock()
}

func (s *jwksServer) setStatus(code int) {
	s.mu.Lock()
	s.status = code
	s.mu.Unlock()
}

// hold makes requests wait until the returned function is called.
func (s *jwksServer) hold() (release func()) {
	gate := make(chan struct{})
	s.mu.Lock()
	s.gate = gate
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.gate = nil
			s.mu.Unlock()
			close(gate)
		})
	}
}

func jwtEncode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
