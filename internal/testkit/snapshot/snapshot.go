// Package snapshot builds descriptor snapshots of the test services for
// tests of the packages that consume snapshots (the transcoder dialects).
// It is apart from package testkit because it imports router, which
// imports upstream, whose own tests use testkit.
package snapshot

import (
	"context"
	"testing"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

// EchoSnapshot loads the echo test service's descriptors (from a real
// descriptor-set file, through the registry) as upstream "test", and
// returns the snapshot with its route table (default bindings on).
func EchoSnapshot(t testing.TB) (*registry.Snapshot, *router.Table) {
	t.Helper()
	path := testkit.WriteDescriptorSet(t, testingv1.File_rosetta_testing_v1_echo_proto)
	reg, err := registry.New(registry.Params{Upstreams: []registry.UpstreamSpec{{Name: "test", Files: []string{path}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	snap, err := reg.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	table, problems := router.Build(snap, router.Params{DefaultBindings: true})
	if len(problems) > 0 {
		t.Fatalf("route problems: %v", problems)
	}
	return snap, table
}
