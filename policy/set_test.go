package policy_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	_ "github.com/rosetta-gateway/rosetta/policy/jwtauth"
	_ "github.com/rosetta-gateway/rosetta/policy/keyauth"
)

// concurrencyBuilds records each concurrency-limit the fake constructor
// below builds: this test binary stands in for policy/concurrency.
var concurrencyBuilds struct {
	sync.Mutex
	routes map[string][]string // test tag → Env.Route of each build
}

// fakeLimit is a Limit-phase plugin that allows everything.
type fakeLimit struct{ route string }

func (f *fakeLimit) Name() string        { return "concurrency-limit" }
func (f *fakeLimit) Phase() policy.Phase { return policy.Limit }
func (f *fakeLimit) Check(context.Context, *call.Call, *policy.State) *call.Error {
	return nil
}

func init() {
	policy.Register("concurrency-limit", func(env policy.Env, spec config.Plugin) (policy.Plugin, error) {
		concurrencyBuilds.Lock()
		defer concurrencyBuilds.Unlock()
		if concurrencyBuilds.routes == nil {
			concurrencyBuilds.routes = map[string][]string{}
		}
		tag := env.Config.Admin.Address // each test's config names itself here
		concurrencyBuilds.routes[tag] = append(concurrencyBuilds.routes[tag], env.Route)
		return &fakeLimit{route: env.Route}, nil
	})
}

const (
	secretA = "top-level-secret-aaaaaaaaaaaaaaaa"
	secretB = "route-secret-bbbbbbbbbbbbbbbbbbbbb"
)

// setConfig exercises every merge rule; its admin address tags the
// fake constructor's records.
const setConfig = `
listeners: [{address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:1"}
upstreams:
  library: {targets: ["127.0.0.1:9000"]}
  users: {kind: http, targets: ["127.0.0.1:9001"]}
cors:
  allowed_origins: ["https://top.example.com"]
plugins:
  - key-auth: {}
  - jwt-auth:
      secret: ` + secretA + `
      claims_to_headers: {sub: X-User, tenant: x-tenant}
  - concurrency-limit: {max: 10}
routes:
  - selector: lib.v1.Library.GetBook
    plugins:
      - jwt-auth: {secret: ` + secretB + `}
  - selector: lib.v1.Library.*
    plugins:
      - cors: {allowed_origins: ["https://route.example.com"]}
  - selector: lib.*
    plugins:
      - key-auth: {header: x-key}
      - concurrency-limit: {max: 1}
  - uri: /users/*
    service: users
    plugins:
      - jwt-auth: {secret: ` + secretB + `}
  - selector: "*"
consumers:
  - {name: alice, keys: [alice-key], jwt_subject: user-1}
`

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "rosetta.yaml"), []byte(yaml), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func build(t *testing.T, cfg *config.Config) *policy.Set {
	t.Helper()
	s, err := policy.Build(cfg, nil, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func token(t *testing.T, secret string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "user-1", "tenant": "acme", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// accepts runs chain on a call with header and reports whether it passed.
func accepts(chain *policy.Chain, header call.HTTPHeader) (bool, *call.Call, *policy.State) {
	c := &call.Call{Header: header}
	st := &policy.State{}
	err := chain.Check(context.Background(), c, st)
	chain.Done(st)
	return err == nil, c, st
}

func TestSetSelectorPrecedence(t *testing.T) {
	t.Parallel()
	s := build(t, parseConfig(t, setConfig))
	cases := []struct {
		method, route string
	}{
		{"lib.v1.Library.GetBook", "lib.v1.Library.GetBook"}, // first match, though route 1 matches too
		{"lib.v1.Library.ListBooks", "lib.v1.Library.*"},
		{"lib.v2.Shelves.List", "lib.*"},
		{"lib.v1.LibraryAdmin.Purge", "lib.*"}, // "lib.v1.Library.*" is not a mere string prefix
		{"other.Svc.Method", "*"},
	}
	for _, tc := range cases {
		chain, route := s.ForMethod(tc.method)
		if route != tc.route || chain == nil {
			t.Errorf("ForMethod(%q): got route %q; want %q", tc.method, route, tc.route)
		}
		again, route2 := s.ForMethod(tc.method)
		if again != chain || route2 != route {
			t.Errorf("ForMethod(%q) answered differently the second time", tc.method)
		}
	}
	// Without a "*" route, uncovered methods get the default chain.
	noStar := strings.Replace(setConfig, "  - selector: \"*\"\n", "", 1)
	s2 := build(t, parseConfig(t, strings.Replace(noStar, "127.0.0.1:1", "127.0.0.1:2", 1)))
	if chain, route := s2.ForMethod("other.Svc.Method"); route != "" || chain != s2.Default() {
		t.Errorf("uncovered method: got route %q, default %v; want the default chain and \"\"", route, chain == s2.Default())
	}
}

func TestSetMergeRules(t *testing.T) {
	t.Parallel()
	s := build(t, parseConfig(t, setConfig))
	tokA, tokB := call.HTTPHeader{"Authorization": {"Bearer " + token(t, secretA)}}, call.HTTPHeader{"Authorization": {"Bearer " + token(t, secretB)}}
	apikey, xkey := call.HTTPHeader{"Apikey": {"alice-key"}}, call.HTTPHeader{"X-Key": {"alice-key"}}
	getBook, _ := s.ForMethod("lib.v1.Library.GetBook")
	listBooks, _ := s.ForMethod("lib.v1.Library.ListBooks")
	shelves, _ := s.ForMethod("lib.v2.Shelves.List")
	star, _ := s.ForMethod("other.Svc.Method")
	cases := []struct {
		name   string
		chain  *policy.Chain
		header call.HTTPHeader
		ok     bool
	}{
		{"route jwt-auth replaces the top-level one", getBook, tokB, true},
		{"top-level jwt-auth is gone from that route", getBook, tokA, false},
		{"top-level key-auth still applies", getBook, apikey, true},
		{"a route without plugins of its own gets the top-level jwt-auth", listBooks, tokA, true},
		{"... and the top-level key-auth", listBooks, apikey, true},
		{"route key-auth reads its own header", shelves, xkey, true},
		{"... not the top-level one's", shelves, apikey, false},
		{"top-level jwt-auth applies beside it", shelves, tokA, true},
		{"uri route: its own jwt-auth", s.ForURIRoute(3), tokB, true},
		{"uri route: not the top-level one", s.ForURIRoute(3), tokA, false},
		{"default chain: top-level plugins", s.Default(), tokA, true},
		{"default chain refuses anonymous calls", s.Default(), call.HTTPHeader{}, false},
		{"star route: top-level plugins", star, apikey, true},
		{"out-of-range route index gets the default chain", s.ForURIRoute(99), call.HTTPHeader{}, false},
	}
	for _, tc := range cases {
		if ok, _, _ := accepts(tc.chain, tc.header); ok != tc.ok {
			t.Errorf("%s: accepted %v; want %v", tc.name, ok, tc.ok)
		}
	}

	// The verified token (as the only authorization), x-consumer and the
	// claims go upstream; the strip list names them.
	ok, c, st := accepts(listBooks, tokA)
	if !ok || c.Consumer != "alice" {
		t.Fatalf("got accepted %v, consumer %q; want alice (jwt_subject user-1)", ok, c.Consumer)
	}
	wantUp := []policy.Field{{Name: "authorization", Value: tokA.Get("authorization")}, {Name: "x-tenant", Value: "acme"}, {Name: "x-user", Value: "user-1"}, {Name: "x-consumer", Value: "alice"}}
	if diff := cmp.Diff(wantUp, st.Upstream); diff != "" {
		t.Errorf("Upstream (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name  string
		chain *policy.Chain
		want  []string
	}{
		{"top-level jwt-auth", listBooks, []string{"authorization", "x-consumer", "x-tenant", "x-user"}},
		{"route jwt-auth without claims", getBook, []string{"authorization", "x-consumer"}},
		{"default", s.Default(), []string{"authorization", "x-consumer", "x-tenant", "x-user"}},
	} {
		if diff := cmp.Diff(tc.want, tc.chain.Strip()); diff != "" {
			t.Errorf("%s: Strip (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestSetTopLevelPluginsPerRoute(t *testing.T) {
	t.Parallel()
	concurrencyBuilds.Lock()
	delete(concurrencyBuilds.routes, "127.0.0.1:3") // from an earlier -count run
	concurrencyBuilds.Unlock()
	build(t, parseConfig(t, strings.Replace(setConfig, "127.0.0.1:1", "127.0.0.1:3", 1)))
	concurrencyBuilds.Lock()
	got := concurrencyBuilds.routes["127.0.0.1:3"]
	concurrencyBuilds.Unlock()
	// The top-level one for the default chain and for each route that
	// does not name its own, as if the route listed it; lib.* its own.
	want := []string{"", "lib.v1.Library.GetBook", "lib.v1.Library.*", "lib.*", "/users/*", "*"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("concurrency-limit builds by Env.Route (-want +got):\n%s", diff)
	}
}

func TestSetCORS(t *testing.T) {
	t.Parallel()
	s := build(t, parseConfig(t, setConfig))
	origin := func(c *config.CORS) string {
		if c == nil {
			return "<none>"
		}
		return c.AllowedOrigins[0]
	}
	cases := []struct {
		name string
		got  *config.CORS
		want string
	}{
		{"route cors plugin", s.CORSForMethod("lib.v1.Library.ListBooks"), "https://route.example.com"},
		{"first matching route has none: top-level block", s.CORSForMethod("lib.v1.Library.GetBook"), "https://top.example.com"},
		{"uri route", s.CORSForURIRoute(3), "https://top.example.com"},
		{"uncovered", s.CORSForURIRoute(-1), "https://top.example.com"},
	}
	for _, tc := range cases {
		if got := origin(tc.got); got != tc.want {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}

	// A top-level cors plugin applies like the block; routes still win.
	yaml := strings.NewReplacer(
		"cors:\n  allowed_origins: [\"https://top.example.com\"]\n", "",
		"plugins:\n  - key-auth: {}\n", "plugins:\n  - cors: {allowed_origins: [\"https://plugin.example.com\"]}\n  - key-auth: {}\n",
		"127.0.0.1:1", "127.0.0.1:4",
	).Replace(setConfig)
	s = build(t, parseConfig(t, yaml))
	if got := origin(s.CORSForMethod("other.Svc.M")); got != "https://plugin.example.com" {
		t.Errorf("top-level cors plugin: got %s", got)
	}
	if got := origin(s.CORSForMethod("lib.v1.Library.ListBooks")); got != "https://route.example.com" {
		t.Errorf("route over top-level plugin: got %s", got)
	}
	if s.Default().Empty() {
		t.Error("default chain is empty; the cors entry must not displace key-auth")
	}
}

func TestSetBuildErrors(t *testing.T) {
	t.Parallel()
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
upstreams: {b: {targets: ["127.0.0.1:9000"]}}
routes:
  - selector: a.B.*
    plugins:
      - rate-limiting: {limit: 1, period: 1s}
`)
	_, err := policy.Build(cfg, nil, nil)
	if err == nil {
		t.Fatal("Build: got nil; want an error for rate-limiting, which this test binary does not import")
	}
	for _, want := range []string{
		"rosetta.yaml:7:9: routes[0].plugins[0]: plugin \"rate-limiting\" is not built into this binary (registered: ",
		"import github.com/rosetta-gateway/rosetta/policy/ratelimit",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	// A constructor's error is prefixed with where the entry is.
	code := &config.Config{Plugins: []config.Plugin{{JWTAuth: &config.JWTAuth{PublicKey: "missing.pem"}}}}
	_, err = policy.Build(code, nil, nil)
	if err == nil || err.Error() != "plugins[0]: jwt-auth: public_key: open missing.pem: no such file" {
		t.Errorf("constructor error: got %v", err)
	}
}

// TestSetForMethodAllocs runs alone: AllocsPerRun refuses parallel tests.
func TestSetForMethodAllocs(t *testing.T) {
	s := build(t, parseConfig(t, setConfig))
	s.ForMethod("lib.v1.Library.ListBooks")
	allocs := testing.AllocsPerRun(100, func() {
		if _, route := s.ForMethod("lib.v1.Library.ListBooks"); route == "" {
			t.Fatal("no route")
		}
	})
	if allocs != 0 {
		t.Errorf("a cached ForMethod allocates %v times; want 0", allocs)
	}
}

func TestSetForMethodConcurrent(t *testing.T) {
	t.Parallel()
	s := build(t, parseConfig(t, setConfig))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				name := "lib.v" + string(rune('0'+g)) + ".S.M" + string(rune('a'+i%26))
				if _, route := s.ForMethod(name); route != "lib.*" {
					t.Errorf("ForMethod(%q): got %q; want lib.*", name, route)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkForMethod(b *testing.B) {
	cfg, err := config.Parse("rosetta.yaml", []byte(setConfig), nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := policy.Build(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.ForMethod("lib.v2.Shelves.List")
		}
	})
}
