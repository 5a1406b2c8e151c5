package transcoder

import (
	"log/slog"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
	"google.golang.org/grpc"
)

// Backend is what the REST adapter needs of an upstream: a connection to
// call methods on and the default deadline of a call.
type Backend struct {
	Conn    grpc.ClientConnInterface
	Timeout time.Duration
	// MaxMessageBytes caps one message from the backend, and
	// MaxRequestMessageBytes one message from the client, for the
	// enveloped protocols (gRPC-Web, Connect). 0: 4 MiB, and
	// MaxMessageBytes.
	MaxMessageBytes, MaxRequestMessageBytes int
}

// Params are what every dialect adapter is built from: one descriptor
// snapshot, its route table, the backends and the transcoding options.
type Params struct {
	// Snapshot is the descriptor snapshot the table was built from.
	Snapshot *registry.Snapshot
	// Table is the route table of that snapshot.
	Table *router.Table
	// Backends returns the backend serving an upstream name.
	Backends func(upstream string) (Backend, bool)
	// Transcoding holds the gateway-wide options.
	Transcoding config.Transcoding
	// Logger receives one line per 5xx answer. Nil discards.
	Logger *slog.Logger
	// Policies finds the policy chain of each call. Nil: no policies.
	Policies Policies
}
