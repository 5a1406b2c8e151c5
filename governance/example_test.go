package governance_test

import (
	"fmt"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/governance"
	"github.com/rosetta-gateway/rosetta/registry"
)

// ExampleCheck lints the test EchoService: two of its methods have no
// HTTP binding, one of which the config binds deliberately by default,
// and a deprecated route has no sunset.
func ExampleCheck() {
	cfg, err := config.Parse("rosetta.yaml", []byte(`listeners: [{address: "127.0.0.1:8080"}]
upstreams:
  test: {targets: ["127.0.0.1:9000"]}
transcoding:
  default_bound: [rosetta.testing.v1.EchoService.Configured]
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    deprecated: {link: "https://example.com/v2"}
`), nil)
	if err != nil {
		panic(err)
	}
	snap := registry.NewSnapshot(1, nil, nil, []*registry.Service{{Desc: echo, Upstream: "test"}}, nil)
	for _, f := range governance.Check(governance.Input{Config: cfg, Snapshot: snap, Now: time.Now()}) {
		fmt.Println(f.Rule, f.Subject)
	}
	// Output:
	// deprecation-sunset rosetta.testing.v1.EchoService.Echo
	// http-binding rosetta.testing.v1.EchoService.Unannotated
}
