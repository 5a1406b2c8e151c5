// Command rosetta is the Rosetta gateway: it serves gRPC services as
// REST/JSON with no code generation.
//
// Usage:
//
//	rosetta serve --config rosetta.yaml
//	rosetta serve --listen 127.0.0.1:8080 --upstream 127.0.0.1:9000
//	rosetta validate --config rosetta.yaml
//	rosetta routes --config rosetta.yaml
//	rosetta openapi --config rosetta.yaml [--upstream-name NAME]
//	rosetta lint --config rosetta.yaml [--format text|json]
//	rosetta cache purge --config rosetta.yaml [--route R] [--key K]
//	rosetta usage --config rosetta.yaml --from 2026-12-01 [--format json]
//	rosetta version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway"
	"github.com/rosetta-gateway/rosetta/internal/gctune"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

const usage = `rosetta: a multi-protocol API gateway for gRPC services

Usage:
  rosetta serve    [--config FILE | --listen ADDR --upstream [NAME=]ADDR ...]
  rosetta validate --config FILE
  rosetta routes   [--config FILE | --upstream [NAME=]ADDR ...]
  rosetta openapi  [--config FILE | --upstream [NAME=]ADDR ...] [--upstream-name NAME]
  rosetta lint     [--config FILE | --upstream [NAME=]ADDR ...] [--format text|json]
  rosetta cache purge --config FILE [--route ROUTE] [--key KEY]
  rosetta usage    --config FILE --from DATE [--to DATE] [--consumer NAME] [--format csv|json]
  rosetta version

Run "rosetta COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit code: 0 on
// success, 1 on a runtime failure, 2 on bad usage or an invalid config.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "routes":
		return routes(args[1:], stdout, stderr)
	case "openapi":
		return openapiCommand(args[1:], stdout, stderr)
	case "lint":
		return lintCommand(args[1:], stdout, stderr)
	case "cache":
		return cacheCommand(args[1:], stdout, stderr)
	case "usage":
		return usageCommand(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "rosetta", buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "rosetta: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// configFlags are the flags that say where the config comes from.
type configFlags struct {
	file      string
	listen    string
	upstreams stringList
}

func (c *configFlags) register(fs *flag.FlagSet, withListen bool) {
	fs.StringVar(&c.file, "config", "", "config file (YAML)")
	if withListen {
		fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address to serve on when no --config is given")
	}
	fs.Var(&c.upstreams, "upstream", "gRPC upstream [NAME=]HOST:PORT served by reflection (repeatable) when no --config is given")
}

func (c *configFlags) load() (*config.Config, error) {
	if c.file != "" {
		if len(c.upstreams) > 0 {
			return nil, errors.New("give either --config or --upstream, not both")
		}
		return config.Load(c.file)
	}
	if len(c.upstreams) == 0 {
		return nil, errors.New("no config: give --config FILE, or --upstream HOST:PORT for zero-config mode")
	}
	listen := c.listen
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	return config.FromFlags(listen, c.upstreams)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf configFlags
	cf.register(fs, true)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	drain := fs.Duration("drain-timeout", 15*time.Second, "how long to wait for in-flight requests on shutdown")
	watch := fs.Bool("watch", true, "reload the config when its file changes (SIGHUP and the admin API's POST /reload always do)")
	if !parseFlags(fs, args) {
		return 2
	}
	logger, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(stderr, "rosetta serve:", err)
		return 2
	}
	cfg, err := cf.load()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	for _, w := range cfg.Warnings {
		logger.Warn("config", "warning", w.String())
	}
	// A small live heap would be collected dozens of times a second under
	// load; the tuner lets it grow to 32 MiB first (GOGC in the
	// environment turns it off).
	defer gctune.Start(gctune.MinHeap).Stop()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup, usr1 := notify(syscall.SIGHUP), notify(syscall.SIGUSR1)
	g, err := gateway.New(cfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, "rosetta serve:", err)
		return 1
	}
	if err := g.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "rosetta serve:", err)
		_ = g.Shutdown(context.Background())
		return 1
	}
	if *watch && cfg.File != "" {
		if err := g.Watch(); err != nil {
			logger.Warn("config file not watched; SIGHUP still reloads it", "error", err)
		}
	}
	purged := purgeOnSignal(ctx, g, logger, usr1)
	reloaded := reloadOnSignal(ctx, g, hup)
	<-ctx.Done()
	<-purged
	<-reloaded
	stop()
	logger.Info("shutting down", "drain_timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Error("shutdown", "error", err)
	}
	logger.Info("stopped")
	return 0
}

// parseFlags parses args into fs, whose output is the command's stderr,
// and refuses positional arguments: every command takes flags only, and
// an argument left over (a config path without --config) would otherwise
// be ignored without a word.
func parseFlags(fs *flag.FlagSet, args []string) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "rosetta %s: unexpected argument %q (flags only: see rosetta %s -h)\n", fs.Name(), fs.Arg(0), fs.Name())
		return false
	}
	return true
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "config file to check")
	if !parseFlags(fs, args) {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "rosetta validate: --config FILE is required")
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok\n", *file)
	return 0
}

func routes(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("routes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf configFlags
	cf.register(fs, false)
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for descriptors")
	if !parseFlags(fs, args) {
		return 2
	}
	cfg, err := cf.load()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	g, err := gateway.New(cfg, nil)
	if err != nil {
		fmt.Fprintln(stderr, "rosetta routes:", err)
		return 1
	}
	defer func() { _ = g.Shutdown(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := g.Load(ctx); err != nil {
		fmt.Fprintln(stderr, "rosetta routes:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERB\tPATH\tRPC\tUPSTREAM\tSOURCE")
	for _, r := range g.Routes() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.HTTPMethod, r.Pattern, r.Method.FullName(), r.Upstream, r.Source)
	}
	_ = tw.Flush()
	problems := g.Problems()
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.String()
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		fmt.Fprintln(stderr, "problem:", m)
	}
	return 0
}
