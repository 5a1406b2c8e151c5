package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rosetta-gateway/rosetta/internal/gateway"
)

// reloadOnSignal reloads g's config file on each SIGHUP until ctx ends
// (Gateway.Reload logs the outcome; an invalid file leaves the running
// config serving); the returned channel is closed once it has stopped
// listening.
func reloadOnSignal(ctx context.Context, g *gateway.Gateway) <-chan struct{} {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				g.Reload()
			}
		}
	}()
	return done
}
