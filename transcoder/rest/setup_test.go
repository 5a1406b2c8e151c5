package rest

import (
	"context"
	"testing"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"google.golang.org/grpc"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// newTestREST builds the REST adapter of the echo service from a real
// descriptor-set file loaded by the registry, calling conn for every
// backend.
func newTestREST(tb testing.TB, conn grpc.ClientConnInterface, tc config.Transcoding) *Handler {
	tb.Helper()
	path := testkit.WriteDescriptorSet(tb, testingv1.File_rosetta_testing_v1_echo_proto)
	reg, err := registry.New(registry.Params{Upstreams: []registry.UpstreamSpec{{Name: "test", Files: []string{path}}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = reg.Close() })
	snap, err := reg.Load(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	table, problems := router.Build(snap, router.Params{DefaultBindings: true})
	if len(problems) > 0 {
		tb.Fatalf("route problems: %v", problems)
	}
	return New(transcoder.Params{
		Snapshot:    snap,
		Table:       table,
		Backends:    func(string) (transcoder.Backend, bool) { return transcoder.Backend{Conn: conn}, true },
		Transcoding: tc,
	})
}
