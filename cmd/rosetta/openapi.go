package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/admin/openapi"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/router"
)

// openapiCommand prints the OpenAPI 3.1 document of the gateway's REST
// bindings: descriptors are loaded as `rosetta routes` loads them, and the
// route table is built with the config's HTTP rules, routes and default
// bindings, as the gateway builds it.
//
// Exit codes: 2 for bad flags, an invalid config or an unknown
// --upstream-name (nothing is dialled); 1 when an upstream in the
// document's scope yields no descriptors (unreachable, no reflection),
// after its problems, since the document would silently lack its
// routes. Other problems (a binding that conflicts with another) are
// printed to stderr as `rosetta routes` prints them, and the document is
// printed.
func openapiCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("openapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf configFlags
	cf.register(fs, false)
	name := fs.String("upstream-name", "", "print only the document of this upstream (default: every upstream)")
	var servers stringList
	fs.Var(&servers, "server", "base URL clients call, e.g. https://api.example.com (repeatable; default: the config's openapi.servers, else the first listener's address)")
	title := fs.String("title", "", "info.title of the document (default: the config's openapi.title)")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for descriptors")
	if !parseFlags(fs, args) {
		return 2
	}
	cfg, err := cf.load()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	scope := grpcUpstreams(cfg)
	if *name != "" {
		if !slices.Contains(scope, *name) {
			fmt.Fprintf(stderr, "rosetta openapi: --upstream-name %q: no such gRPC upstream (have: %s)\n", *name, strings.Join(scope, ", "))
			return 2
		}
		scope = []string{*name}
	}
	snap, done, code := loadDescriptors(cfg, loadParams{
		cmd:     "openapi",
		scope:   scope,
		timeout: *timeout,
		without: "not printing a document without their routes",
	}, stderr)
	if code != 0 {
		return code
	}
	defer done()
	// The same table the gateway installs for this snapshot (see
	// gateway.install).
	table, _ := router.Build(snap, router.Params{
		Rules:           cfg.HTTP.Rules,
		Routes:          cfg.Routes,
		DefaultBindings: cfg.Transcoding.DefaultBindingsEnabled(),
	})
	if *title == "" && cfg.OpenAPI != nil {
		*title = cfg.OpenAPI.Title
	}
	if len(servers) == 0 && cfg.OpenAPI != nil {
		servers = append(servers, cfg.OpenAPI.Servers...)
	}
	if len(servers) == 0 && len(cfg.Listeners) > 0 {
		scheme := "http"
		if cfg.Listeners[0].TLS != nil {
			scheme = "https"
		}
		servers = append(servers, scheme+"://"+dialAddress(cfg.Listeners[0].Address))
	}
	doc, err := openapi.Generate(snap, table, openapi.Options{
		Title:    *title,
		Servers:  servers,
		Upstream: *name,
		JSON:     cfg.Transcoding.JSON,
		Security: openapi.SecurityFromConfig(cfg),
	})
	if err != nil {
		fmt.Fprintln(stderr, "rosetta openapi:", err)
		return 1
	}
	b, err := doc.JSON()
	if err != nil {
		fmt.Fprintln(stderr, "rosetta openapi:", err)
		return 1
	}
	if _, err := stdout.Write(b); err != nil {
		fmt.Fprintln(stderr, "rosetta openapi:", err)
		return 1
	}
	return 0
}

// grpcUpstreams returns the names of cfg's gRPC upstreams (those with
// descriptors), sorted.
func grpcUpstreams(cfg *config.Config) []string {
	var out []string
	for n, u := range cfg.Upstreams {
		if u.Kind == "" || u.Kind == "grpc" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// dialAddress turns a listen address into one a client can call: an
// empty or unspecified host ("", 0.0.0.0, ::) becomes localhost.
func dialAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
