package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway"
	"github.com/rosetta-gateway/rosetta/internal/redisclient"
	"github.com/rosetta-gateway/rosetta/policy/cache"
)

// purgeTimeout bounds one purge (a SCAN of the Redis keyspace).
const purgeTimeout = time.Minute

// purgeOnSignal purges every response cache of g (its memory stores and
// the Redis store) on each signal from sig (SIGUSR1, see notify), until
// ctx ends; the returned channel is closed once it has stopped listening.
func purgeOnSignal(ctx context.Context, g *gateway.Gateway, logger *slog.Logger, sig chan os.Signal) <-chan struct{} {
	return onSignal(ctx, sig, func(ctx context.Context) {
		pctx, cancel := context.WithTimeout(ctx, purgeTimeout)
		n, err := g.PurgeCaches(pctx, "", true, "")
		cancel()
		if err != nil {
			logger.Error("cache purge (SIGUSR1)", "purged", n, "error", err)
			return
		}
		logger.Info("cache purged (SIGUSR1)", "purged", n)
	})
}

const cacheUsage = `Usage:
  rosetta cache purge --config FILE [--route ROUTE] [--key KEY]

Purges the Redis store of the config's proxy-cache plugins: every entry,
or those of one route (its selector or uri, as written in the config),
or of one key (a method "/pkg.Service/Method", or a uri route's request
path), or both.

Memory stores live in each "rosetta serve" process: SIGUSR1 to it purges
all of its caches (and the Redis store); purging one route or key of a
memory store needs the admin API.
`

// cacheCommand runs "rosetta cache SUBCOMMAND".
func cacheCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "purge" {
		fmt.Fprint(stderr, cacheUsage)
		return 2
	}
	fs := flag.NewFlagSet("cache purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "config file (YAML)")
	route := fs.String("route", "", "purge this route's entries only (a selector or uri as written in the config)")
	key := fs.String("key", "", `purge this key's entries only ("/pkg.Service/Method", or a uri route's request path)`)
	if !parseFlags(fs, args[1:]) {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "rosetta cache purge: --config FILE is required")
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	redisStore, memory := cacheStores(cfg)
	if !redisStore && len(memory) == 0 {
		fmt.Fprintf(stderr, "rosetta cache purge: %s has no proxy-cache plugin\n", *file)
		return 2
	}
	if *route != "" {
		if known := routeNames(cfg); !slices.Contains(known, *route) {
			fmt.Fprintf(stderr, "rosetta cache purge: no route %q in %s (routes: %s)\n", *route, *file, strings.Join(known, ", "))
			return 2
		}
	}
	if len(memory) > 0 {
		fmt.Fprintf(stderr, "note: the memory caches of %s live in each rosetta serve process: send it SIGUSR1 to purge them (all of them)\n", strings.Join(memory, ", "))
	}
	if !redisStore {
		return 0
	}
	srv, err := redisclient.NewServer(cfg.Redis, cache.StoreName, nil, nil)
	if err != nil {
		fmt.Fprintln(stderr, "rosetta cache purge:", err)
		return 1
	}
	store := cache.NewRedis(srv, true)
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), purgeTimeout)
	defer cancel()
	n, err := store.Purge(ctx, *route, *route == "", *key)
	if err != nil {
		fmt.Fprintf(stderr, "rosetta cache purge: redis %s: %v (purged %d entries)\n", cfg.Redis.Address, err, n)
		return 1
	}
	fmt.Fprintf(stdout, "purged %d entries from redis %s\n", n, cfg.Redis.Address)
	return 0
}

// cacheStores reports whether cfg has a proxy-cache with store: redis,
// and names the entries with store: memory ("plugins[0]",
// "routes[2] (/users/*)").
func cacheStores(cfg *config.Config) (redis bool, memory []string) {
	see := func(pc *config.ProxyCache, where string) {
		if pc == nil {
			return
		}
		if pc.Store == "redis" {
			redis = true
			return
		}
		memory = append(memory, where)
	}
	for i := range cfg.Plugins {
		see(cfg.Plugins[i].ProxyCache, fmt.Sprintf("plugins[%d]", i))
	}
	for r, rt := range cfg.Routes {
		for i := range rt.Plugins {
			name := rt.Selector
			if rt.URI != "" {
				name = rt.URI
			}
			see(rt.Plugins[i].ProxyCache, fmt.Sprintf("routes[%d] (%s)", r, name))
		}
	}
	return redis, memory
}

// routeNames lists the config's routes as the cache names them.
func routeNames(cfg *config.Config) []string {
	var out []string
	for _, r := range cfg.Routes {
		if r.URI != "" {
			out = append(out, r.URI)
		} else if r.Selector != "" {
			out = append(out, r.Selector)
		}
	}
	return out
}
