package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	keyFixturesOnce sync.Once
	keyFixtureFiles map[string]string
)

// keyFixtures returns the key files golden configs refer to, generated
// once per test run: keys/jwt-ec.pem (a P-256 public key) and
// keys/jwt-private.pem (a private key, which public_key must refuse).
func keyFixtures(t testing.TB) map[string]string {
	t.Helper()
	keyFixturesOnce.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			panic(err)
		}
		priv, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		keyFixtureFiles = map[string]string{
			"keys/jwt-ec.pem":      string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
			"keys/jwt-private.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})),
		}
	})
	return keyFixtureFiles
}

// secretsConfig holds a secret in every field that takes one, some of them
// in places that fail validation, so that every output path is exercised.
const secretsConfig = `listeners: [{address: ":8080"}]
upstreams:
  backend: {targets: ["localhost:9000"]}
routes:
  - selector: a.B.*
    plugins:
      - jwt-auth: {secret: "${JWT_SECRET}", algorithms: [RS256]}
      - jwt-auth: {secret: "lit${eral-secret-1"}
plugins:
  - key-auth: {}
  - jwt-auth: {secret: "${JWT_SECRET}"}
consumers:
  - name: alice
    keys: ["${ALICE_KEY}", "${ALICE_KEY}"]
  - name: bob
    keys: lit${eral-secret-2
  - name: carol
    keys: ["${ALICE_KEY}"]
redis: {address: "127.0.0.1:6379", password: "${REDIS_PASSWORD}"}
`

func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"JWT_SECRET":     "jwt-secret-value-1234",
		"ALICE_KEY":      "alice-key-value-5678",
		"REDIS_PASSWORD": "redis-password-9012",
	}
	env := func(k string) (string, bool) { v, ok := secrets[k]; return v, ok }
	mustNotLeak := func(t *testing.T, what, out string) {
		t.Helper()
		for _, s := range append(mapValues(secrets), "eral-secret-1", "eral-secret-2") {
			if strings.Contains(out, s) {
				t.Errorf("%s shows the secret %q:\n%s", what, s, out)
			}
		}
	}

	_, err := Parse("secrets.yaml", []byte(secretsConfig), env)
	if err == nil {
		t.Fatal("Parse: got nil; want diagnostics")
	}
	mustNotLeak(t, "diagnostics", err.Error())
	for _, want := range []string{
		`routes[0].plugins[1].jwt-auth.secret: unterminated ${ in "<redacted>"`,
		`consumers[0].keys[1]: the same key as consumers[0].keys[0]`,
		`consumers[2].keys[0]: the same key as consumers[0].keys[0]`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("diagnostics lack %q:\n%s", want, err)
		}
	}

	// A valid config with the same secrets: Normalized redacts them.
	valid := strings.NewReplacer(
		`, algorithms: [RS256]`, ``,
		"      - jwt-auth: {secret: \"lit${eral-secret-1\"}\n", "",
		"  - name: bob\n    keys: lit${eral-secret-2\n", "",
		`  - name: carol
    keys: ["${ALICE_KEY}"]
`, "",
		`["${ALICE_KEY}", "${ALICE_KEY}"]`, `["${ALICE_KEY}"]`,
	).Replace(secretsConfig)
	c, err := Parse("secrets.yaml", []byte(valid), env)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := c.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	mustNotLeak(t, "Normalized", string(out))
	if got, want := strings.Count(string(out), `"<redacted>"`), 4; got != want {
		t.Errorf("Normalized has %d redacted values; want %d:\n%s", got, want, out)
	}
	// The values themselves are intact for the plugins.
	if got := c.Plugins[1].JWTAuth.Secret; got != secrets["JWT_SECRET"] {
		t.Errorf("secret: got %q; want the expanded value", got)
	}
	if got := c.Consumers[0].Keys; len(got) != 1 || got[0] != secrets["ALICE_KEY"] {
		t.Errorf("keys: got %q; want the expanded value", got)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestPeriodAndStringList(t *testing.T) {
	t.Parallel()
	cases := []struct {
		period string
		want   time.Duration
	}{
		{"3600", time.Hour},
		{`"90"`, 90 * time.Second},
		{"1h", time.Hour},
		{`"250ms"`, 250 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.period, func(t *testing.T) {
			t.Parallel()
			doc := `listeners: [{address: ":8080"}]
upstreams: {b: {targets: ["localhost:9000"]}}
plugins:
  - rate-limiting: {limit: 1, period: ` + tc.period + `}
  - jwt-auth: {secret: x, audience: api}
`
			c, err := Parse("p.yaml", []byte(doc), nil)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.Plugins[0].RateLimiting.Period.Std(); got != tc.want {
				t.Errorf("period: got %v; want %v", got, tc.want)
			}
			if diff := cmp.Diff(StringList{"api"}, c.Plugins[1].JWTAuth.Audience); diff != "" {
				t.Errorf("audience (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPluginName(t *testing.T) {
	t.Parallel()
	if diff := cmp.Diff([]string{"concurrency-limit", "cors", "jwt-auth", "key-auth", "proxy-cache", "rate-limiting"}, PluginNames()); diff != "" {
		t.Errorf("PluginNames (-want +got):\n%s", diff)
	}
	cases := map[string]Plugin{
		"jwt-auth":          {JWTAuth: &JWTAuth{}},
		"key-auth":          {KeyAuth: &KeyAuth{}},
		"rate-limiting":     {RateLimiting: &RateLimiting{}},
		"concurrency-limit": {ConcurrencyLimit: &ConcurrencyLimit{}},
		"cors":              {CORS: &CORS{}},
		"proxy-cache":       {ProxyCache: &ProxyCache{}},
		"":                  {},
	}
	for want, p := range cases {
		if got := p.Name(); got != want {
			t.Errorf("Name: got %q; want %q", got, want)
		}
	}
}

func TestReadPublicKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkix224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jwt"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, edPub, edPriv)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	pkixOf := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	if err := os.WriteFile(filepath.Join(dir, "rsa.pem"), []byte(encode("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, value string
		algs        []string
		err         string
	}{
		{"rsa pkcs1 file", "rsa.pem", rsaAlgorithms, ""},
		{"ecdsa p384 inline", encode("PUBLIC KEY", pkixOf(&ecKey.PublicKey)), []string{"ES384"}, ""},
		{"ed25519 certificate", encode("CERTIFICATE", certDER), []string{"EdDSA"}, ""},
		{"p224", encode("PUBLIC KEY", pkixOf(&pkix224.PublicKey)), nil, "unsupported ECDSA curve P-224 (want P-256, P-384 or P-521)"},
		{"private", encode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), nil, "the PEM block is a RSA PRIVATE KEY, not a public key"},
		{"missing", "nope.pem", nil, "open nope.pem: no such file"},
		{"not pem", "-----BEGIN PUBLIC KEY-----\nabc", nil, "no PEM block found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, err := ReadPublicKey(tc.value, dir)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %v; want error %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.algs, KeyAlgorithms(key)); diff != "" {
				t.Errorf("KeyAlgorithms (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidatePluginsInCode covers plugin checks on a config built in
// code: no positions, no defaults.
func TestValidatePluginsInCode(t *testing.T) {
	t.Parallel()
	c := &Config{
		Listeners: []Listener{{Address: ":8080"}},
		Upstreams: map[string]*Upstream{"b": {Targets: TargetsOf("127.0.0.1:9000")}},
		Routes: []Route{{Selector: "*", Plugins: []Plugin{
			{KeyAuth: &KeyAuth{}},
			{RateLimiting: &RateLimiting{Limit: 1, Period: Period(time.Second), Policy: "redis"}},
		}}},
		Plugins: []Plugin{{}, {JWTAuth: &JWTAuth{Secret: "s", PublicKey: "k.pem"}}},
	}
	want := strings.Join([]string{
		`plugins[0]: empty plugins entry (hint: name one plugin, e.g. "- key-auth: {}")`,
		`plugins[1].jwt-auth.public_key: secret and public_key are exclusive (hint: set exactly one of secret, public_key or jwks_uri)`,
		`routes[0].plugins[1].rate-limiting.policy: policy redis needs the top-level redis block (hint: add redis: {address: "127.0.0.1:6379"})`,
		`routes[0].plugins[0].key-auth: key-auth needs at least one consumer with keys (hint: add consumers: [{name: alice, keys: ["${ALICE_KEY}"]}], or let consumers create keys: portal: {self_service: true})`,
	}, "\n")
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate: got nil; want errors")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Validate (-want +got):\n%s", diff)
	}
}
