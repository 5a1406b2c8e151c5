package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway"
	"github.com/rosetta-gateway/rosetta/registry"
)

// loadParams configures loadDescriptors.
type loadParams struct {
	// cmd names the command in messages ("openapi" → "rosetta openapi: ...").
	cmd string
	// scope are the upstreams that must yield services.
	scope []string
	// timeout bounds the descriptor load.
	timeout time.Duration
	// without ends the message about upstreams that yield no services:
	// what the command refuses to do without them.
	without string
}

// loadDescriptors loads the descriptors of cfg's upstreams as the gateway
// does (gateway.New then Load: nothing listens) and prints the problems
// of the load and of the route table to stderr, sorted, as `rosetta
// routes` prints them. When an upstream of p.scope yields no services it
// says so and returns exit code 1, since the caller would silently miss
// their methods; gateway errors also give 1. On success (code 0) the
// caller must call done when finished with the snapshot.
func loadDescriptors(cfg *config.Config, p loadParams, stderr io.Writer) (snap *registry.Snapshot, done func(), code int) {
	g, err := gateway.New(cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "rosetta %s: %v\n", p.cmd, err)
		return nil, nil, 1
	}
	done = func() { _ = g.Shutdown(context.Background()) }
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if err := g.Load(ctx); err != nil {
		done()
		fmt.Fprintf(stderr, "rosetta %s: %v\n", p.cmd, err)
		return nil, nil, 1
	}
	snap = g.Snapshot()
	problems := g.Problems()
	msgs := make([]string, len(problems))
	for i, pr := range problems {
		msgs[i] = pr.String()
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		fmt.Fprintln(stderr, "problem:", m)
	}
	served := map[string]bool{}
	for _, s := range snap.Services() {
		served[s.Upstream] = true
	}
	var empty []string
	for _, u := range p.scope {
		if !served[u] {
			empty = append(empty, strconv.Quote(u))
		}
	}
	if len(empty) > 0 {
		done()
		noun := "upstream"
		if len(empty) > 1 {
			noun = "upstreams"
		}
		fmt.Fprintf(stderr, "rosetta %s: no services from %s %s (see the problems above); %s\n", p.cmd, noun, strings.Join(empty, ", "), p.without)
		return nil, nil, 1
	}
	return snap, done, 0
}
