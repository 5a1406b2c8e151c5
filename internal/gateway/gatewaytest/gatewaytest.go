// Package gatewaytest starts a real gateway for the tests of other
// packages (the commands, the examples, admin/openapi): built from a
// validated config, listening, and shut down when the test ends.
package gatewaytest

import (
	"context"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway"
)

// Start builds a gateway from cfg and starts it (its descriptors loaded,
// its listeners up), failing t on error. It shuts the gateway down when
// the test ends, after the cleanups registered later (a test's clients
// close first), and reports a shutdown error.
func Start(t testing.TB, cfg *config.Config) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New(cfg, nil)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatalf("gateway.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
	})
	return g
}

// URL returns the base URL of g's first listener.
func URL(g *gateway.Gateway) string { return "http://" + g.Addrs()[0].String() }
