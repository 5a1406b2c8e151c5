package quota_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/policy"
	_ "github.com/rosetta-gateway/rosetta/policy/keyauth"
	"github.com/rosetta-gateway/rosetta/policy/quota"
	_ "github.com/rosetta-gateway/rosetta/policy/ratelimit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a clock tests move by hand.
type fakeClock = testkit.Clock

func newFakeClock(t time.Time) *fakeClock { return testkit.NewClock(t) }

// testKeys are the API keys of the consumers of baseConfig.
var testKeys = map[string]string{
	"ALICE_KEY": "alice-key-0001",
	"BOB_KEY":   "bob-key-0002",
	"CAROL_KEY": "carol-key-0003",
}

// baseConfig is a config with key-auth on every route, two routes
// (a selector and a uri route), a route without authentication, and the
// plans and consumers that each test appends (a "plans:" block and
// consumers alice, bob and carol).
const baseConfig = `
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  library: {targets: ["127.0.0.1:9000"]}
  users: {kind: http, targets: ["127.0.0.1:9001"]}
  public: {kind: http, targets: ["127.0.0.1:9002"]}
routes:
  - selector: lib.v1.Library.*
    plugins: [{key-auth: {}}]
  - uri: /users/*
    service: users
    plugins: [{key-auth: {}}]
  - uri: /public/*
    service: public
`

// routeLibrary, routeUsers and routePublic index baseConfig's routes.
const (
	routeLibrary = 0
	routeUsers   = 1
	routePublic  = 2
)

// newConfig parses baseConfig + extra (plans, consumers, redis),
// expanding ${ALICE_KEY} and friends from testKeys.
func newConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "rosetta.yaml"), []byte(baseConfig+extra), func(name string) (string, bool) {
		v, ok := testKeys[name]
		return v, ok
	})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// instance is one gateway instance: its policy set, its Shared, its
// clock and its log.
type instance struct {
	set    *policy.Set
	shared *policy.Shared
	clock  *fakeClock
	logger *slog.Logger
	logs   *testkit.LogBuffer
}

// newInstance builds cfg's policy set with a Shared of its own and a
// fake clock at now; both are closed when the test ends.
func newInstance(t testing.TB, cfg *config.Config, now time.Time) *instance {
	t.Helper()
	in := &instance{shared: &policy.Shared{}, clock: newFakeClock(now)}
	in.logger, in.logs = newLogger()
	t.Cleanup(func() {
		if err := in.set.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		_ = in.shared.Close()
	})
	in.reload(t, cfg)
	return in
}

// reload builds a new set of cfg with the instance's Shared, as a
// config reload does, and closes the previous set.
func (in *instance) reload(t testing.TB, cfg *config.Config) {
	t.Helper()
	set, err := policy.Build(cfg, in.shared, in.logger, policy.WithClock(in.clock.Now))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	old := in.set
	in.set = set
	if err := old.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// plan returns the instance's plan plugin.
func (in *instance) plan(t testing.TB) *quota.Plugin {
	t.Helper()
	p := quota.Find(in.set)
	if p == nil {
		t.Fatal("Find: no plan plugin in the set")
	}
	return p
}

// chain returns the chain of baseConfig's route i.
func (in *instance) chain(i int) *policy.Chain { return in.set.ForURIRoute(i) }

// library returns the chain of the selector route.
func (in *instance) library() *policy.Chain {
	c, _ := in.set.ForMethod("lib.v1.Library.GetBook")
	return c
}

// keyCall returns a call that sends the API key of env name (""
// sends none).
func keyCall(env string) *call.Call {
	h := call.HTTPHeader{}
	if env != "" {
		h["Apikey"] = []string{testKeys[env]}
	}
	return &call.Call{Procedure: "/lib.v1.Library/GetBook", Header: h}
}

// check runs chain.Check on a call with the key of env and returns the
// refusal and the state.
func check(chain *policy.Chain, env string) (*call.Error, *policy.State) {
	st := &policy.State{}
	err := chain.Check(context.Background(), keyCall(env), st)
	chain.Done(st)
	return err, st
}

// allowedN counts how many of n calls with the key of env pass chain.
func allowedN(chain *policy.Chain, env string, n int) int {
	ok := 0
	for range n {
		if err, _ := check(chain, env); err == nil {
			ok++
		}
	}
	return ok
}

func newLogger() (*slog.Logger, *testkit.LogBuffer) {
	b := &testkit.LogBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}
