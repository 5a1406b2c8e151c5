package policy_test

import (
	"strings"
	"testing"

	"github.com/rosetta-gateway/rosetta/policy"
)

// A config with plans needs the plan plugin, which this test binary does
// not import: Build says which package to import.
func TestBuildPlansNeedQuotaPackage(t *testing.T) {
	t.Parallel()
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
upstreams:
  library: {targets: ["127.0.0.1:9000"]}
plugins: [{key-auth: {}}]
plans:
  free: {quota: {limit: 10, period: day}}
consumers:
  - {name: alice, keys: [alice-key], plan: free}
`)
	s, err := policy.Build(cfg, nil, nil)
	if err == nil {
		_ = s.Close()
		t.Fatal("Build: got no error")
	}
	want := `rosetta.yaml:7:9: plans: the plan plugin is not built into this binary; import github.com/rosetta-gateway/rosetta/policy/quota for its side effect (import _ "github.com/rosetta-gateway/rosetta/policy/quota")`
	if got := err.Error(); !strings.HasSuffix(got, want) {
		t.Errorf("got %q; want it to end with %q", got, want)
	}
}
