package config

import (
	"fmt"
	"strings"
)

// FromFlags builds the zero-config configuration of
// "rosetta serve --listen ADDR --upstream SPEC...": one listener on listen
// (host:port, e.g. "127.0.0.1:8080" or ":8080") and one upstream per spec,
// each discovering its descriptors by reflection.
//
// A spec is "host:port", or "name=host:port", or "name=a:1,b:2" for
// several targets. Without a name, the name is derived from the address:
// "127.0.0.1:9000" becomes "127-0-0-1-9000". The result has defaults
// applied and is validated like a file config; on failure the error is
// [Diagnostics] whose paths name the flag ("--listen", "--upstream").
func FromFlags(listen string, upstreams []string) (*Config, error) {
	var diags Diagnostics
	bad := func(path, msg, hint string) {
		diags = append(diags, Diagnostic{Path: path, Msg: msg, Hint: hint})
	}
	c := &Config{
		Listeners: []Listener{{Address: listen}},
		Upstreams: map[string]*Upstream{},
	}
	if msg := checkAddress(listen, listenAddr); msg != "" {
		bad("--listen", msg, listenAddr.hint())
	}
	if len(upstreams) == 0 {
		bad("--upstream", "at least one upstream is required", "e.g. --upstream 127.0.0.1:9000 or --upstream name=host:port")
	}
	for _, spec := range upstreams {
		name, list, named := strings.Cut(spec, "=")
		if !named {
			name, list = "", spec
		}
		name = strings.TrimSpace(name)
		addrs := strings.Split(list, ",")
		for i := range addrs {
			addrs[i] = strings.TrimSpace(addrs[i])
		}
		switch {
		case strings.TrimSpace(spec) == "":
			bad("--upstream", "empty value", "write host:port or name=host:port")
			continue
		case named && name == "":
			bad("--upstream", fmt.Sprintf("%q: missing name before \"=\"", spec), "write name=host:port, or just host:port")
			continue
		case named && !upstreamName.MatchString(name):
			bad("--upstream", fmt.Sprintf("%q: invalid upstream name %q", spec, name), "use letters, digits, '_', '.' and '-'")
			continue
		case !named && len(addrs) > 1:
			bad("--upstream", fmt.Sprintf("%q: several addresses need a name", spec), fmt.Sprintf("write name=%s", spec))
			continue
		}
		ok := true
		for _, a := range addrs {
			if msg := checkAddress(a, targetAddr); msg != "" {
				bad("--upstream", msg, targetAddr.hint())
				ok = false
			}
		}
		if !ok {
			continue
		}
		if !named {
			name = nameFromAddr(addrs[0])
		}
		if _, dup := c.Upstreams[name]; dup {
			bad("--upstream", fmt.Sprintf("duplicate upstream name %q", name), fmt.Sprintf("list several addresses as %s=a:1,b:2", name))
			continue
		}
		c.Upstreams[name] = &Upstream{Targets: TargetsOf(addrs...)}
	}
	if len(diags) > 0 {
		return nil, diags.err()
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// nameFromAddr derives an upstream name from host:port: every run of
// characters other than letters, digits and '_' becomes one '-', e.g.
// "127.0.0.1:9000" → "127-0-0-1-9000", "[::1]:9000" → "1-9000".
func nameFromAddr(addr string) string {
	var b strings.Builder
	dash := false
	for _, r := range addr {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
	}
	return b.String()
}
