package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/rosetta-gateway/rosetta/internal/gateway"
)

// notify starts catching s (its default action, for SIGHUP and SIGUSR1,
// ends the process) and returns the channel it arrives on. serve calls it
// before the gateway starts: a signal that comes while it starts waits
// there.
func notify(s os.Signal) chan os.Signal {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, s)
	return sig
}

// reloadOnSignal reloads g's config file on each signal from sig (SIGHUP,
// see notify) until ctx ends (Gateway.Reload logs the outcome; an invalid
// file leaves the running config serving); the returned channel is closed
// once it has stopped listening.
func reloadOnSignal(ctx context.Context, g *gateway.Gateway, sig chan os.Signal) <-chan struct{} {
	return onSignal(ctx, sig, func(context.Context) { g.Reload() })
}

// onSignal runs do on each signal from sig, one at a time, until ctx
// ends; the returned channel is closed once it has stopped listening.
func onSignal(ctx context.Context, sig chan os.Signal, do func(ctx context.Context)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				do(ctx)
			}
		}
	}()
	return done
}
