package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

const usageUsage = `Usage:
  rosetta usage --config FILE --from DATE [--to DATE] [--consumer NAME] [--format csv|json] [--admin URL]

Prints the usage export for billing: calls and bytes per consumer, API,
method and status class between --from and --to (dates such as
2026-12-01, or RFC 3339 times; --to defaults to now), from the running
gateway's admin API (the config's admin address and token; --admin
overrides the address). With a redis block every instance's calls are
counted; without one, only the instance that answers.
`

// usageCommand runs "rosetta usage": it asks the admin API of the
// gateway of a config for /usage and prints the answer.
//
// Exit codes: 2 for bad flags or a config without an admin block; 1 when
// the gateway cannot be reached or refuses.
func usageCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageUsage); fs.PrintDefaults() }
	file := fs.String("config", "", "config file (YAML) of the running gateway")
	from := fs.String("from", "", "start of the period: a date (2026-12-01) or an RFC 3339 time (required)")
	to := fs.String("to", "", "end of the period, exclusive (default: now)")
	consumer := fs.String("consumer", "", "one consumer's usage (default: every consumer)")
	format := fs.String("format", "csv", "csv or json")
	adminURL := fs.String("admin", "", "admin API base URL (default: http://<the config's admin.address>)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the answer")
	if !parseFlags(fs, args) {
		return 2
	}
	switch {
	case *file == "":
		fmt.Fprintln(stderr, "rosetta usage: --config FILE is required")
		return 2
	case *from == "":
		fmt.Fprintln(stderr, "rosetta usage: --from DATE is required, e.g. --from 2026-12-01")
		return 2
	case *format != "csv" && *format != "json":
		fmt.Fprintf(stderr, "rosetta usage: --format %q: use csv or json\n", *format)
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if cfg.Admin == nil || cfg.Admin.Address == "" {
		fmt.Fprintf(stderr, "rosetta usage: %s has no admin block: add admin: { address: \"127.0.0.1:9901\" } (usage is read from the admin API)\n", *file)
		return 2
	}
	base := *adminURL
	if base == "" {
		base = "http://" + dialable(cfg.Admin.Address)
	}
	q := url.Values{"from": {*from}, "format": {*format}}
	if *to != "" {
		q.Set("to", *to)
	}
	if *consumer != "" {
		q.Set("consumer", *consumer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/usage?"+q.Encode(), nil)
	if err != nil {
		fmt.Fprintln(stderr, "rosetta usage:", err)
		return 2
	}
	if cfg.Admin.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Admin.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "rosetta usage: the gateway's admin API at %s: %v (is rosetta serve running with this config?)\n", base, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		fmt.Fprintf(stderr, "rosetta usage: %s answered %s: %s\n", base, resp.Status, strings.TrimSpace(string(b)))
		return 1
	}
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		fmt.Fprintln(stderr, "rosetta usage:", err)
		return 1
	}
	return 0
}

// dialable turns a listen address into one to dial: ":9901" and
// "0.0.0.0:9901" become "127.0.0.1:9901".
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
