package websocket

import (
	"testing"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/internal/testkit/snapshot"
	"github.com/rosetta-gateway/rosetta/transcoder"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// newTestBridge builds the WebSocket bridge of the echo service from a
// real descriptor-set file loaded by the registry, with no backend.
func newTestBridge(tb testing.TB, tc config.Transcoding) *Bridge {
	tb.Helper()
	snap, table := snapshot.EchoSnapshot(tb)
	return New(Params{Params: transcoder.Params{
		Snapshot:    snap,
		Table:       table,
		Backends:    func(string) (transcoder.Backend, bool) { return transcoder.Backend{}, true },
		Transcoding: tc,
	}})
}
