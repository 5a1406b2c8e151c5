package ratelimit

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy"
)

// keyKind is what a limiter counts by.
type keyKind uint8

const (
	// keyAuto counts by consumer when the call is authenticated, by client
	// IP otherwise (no key: setting).
	keyAuto keyKind = iota
	keyConsumer
	keyIP
	keyRoute
	keyHeader
	keyClaim
)

// keySpec is a parsed key: setting.
type keySpec struct {
	kind keyKind
	// name is the header (lower case) or claim name.
	name string
}

// parseKey parses a key: setting: "" (auto), consumer, ip, route,
// header:<name> or claim:<name>.
func parseKey(s string) (keySpec, error) {
	kind, name, hasName := strings.Cut(s, ":")
	switch {
	case s == "":
		return keySpec{kind: keyAuto}, nil
	case kind == "header" && name != "":
		return keySpec{kind: keyHeader, name: strings.ToLower(name)}, nil
	case kind == "claim" && name != "":
		return keySpec{kind: keyClaim, name: name}, nil
	case hasName:
	case s == "consumer":
		return keySpec{kind: keyConsumer}, nil
	case s == "ip":
		return keySpec{kind: keyIP}, nil
	case s == "route":
		return keySpec{kind: keyRoute}, nil
	}
	return keySpec{}, fmt.Errorf("unknown key %q (known: consumer, ip, route, header:<name>, claim:<name>)", s)
}

// String returns the setting the spec was parsed from ("auto" for none).
func (k keySpec) String() string {
	switch k.kind {
	case keyConsumer:
		return "consumer"
	case keyIP:
		return "ip"
	case keyRoute:
		return "route"
	case keyHeader:
		return "header:" + k.name
	case keyClaim:
		return "claim:" + k.name
	}
	return "auto"
}

// bucketKey identifies one bucket of a limiter. It is comparable, so the
// in-memory store maps it without building a string: a client IP fills
// addr (s empty); a consumer, header value or claim fills s (addr zero);
// the route key leaves both zero. The two halves never collide.
type bucketKey struct {
	addr netip.Addr
	s    string
}

// bucket returns the bucket c counts against. A consumer, header or claim
// key whose value is missing (an anonymous call, no such header or claim)
// counts by the client IP instead: under one shared "" bucket, a single
// client that omits the value would exhaust the limit of every other
// client that omits it, and nothing is gained by making omission cheaper
// than sending a value (each value has a bucket of its own anyway). It
// allocates nothing for string claims and every other kind.
func (l *Limiter) bucket(c *call.Call, st *policy.State) bucketKey {
	switch l.key.kind {
	case keyRoute:
		return bucketKey{}
	case keyIP:
		return bucketKey{addr: l.clientIP(c)}
	case keyAuto, keyConsumer:
		if c.Consumer != "" {
			return bucketKey{s: c.Consumer}
		}
	case keyHeader:
		if v := l.header(c); v != "" {
			return bucketKey{s: v}
		}
	case keyClaim:
		if v := claimString(st.Claims[l.key.name]); v != "" {
			return bucketKey{s: v}
		}
	}
	return bucketKey{addr: l.clientIP(c)}
}

// header returns the first value of the key's header field.
func (l *Limiter) header(c *call.Call) string {
	if c.Header == nil {
		return ""
	}
	return c.Header.Get(l.key.name)
}

// claimString formats a claim value as a key: strings as they are
// (without allocating), numbers without exponent, booleans as
// true/false, anything else (arrays, objects) as fmt prints it.
func claimString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	}
	return fmt.Sprint(v)
}

// label renders k for a Redis key: "ip=192.0.2.1", "consumer=alice",
// "header:x-tenant=acme", "claim:org=acme" or "route".
func (l *Limiter) label(k bucketKey) string {
	switch {
	case k.s == "" && l.key.kind == keyRoute:
		return "route"
	case k.s == "":
		return "ip=" + k.addr.String()
	case l.key.kind == keyHeader || l.key.kind == keyClaim:
		return l.key.String() + "=" + k.s
	}
	return "consumer=" + k.s
}

// parseTrusted parses trusted_proxies: CIDRs or single addresses.
func parseTrusted(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies[%d]: invalid trusted proxy %q", i, s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// trusts reports whether a is one of the trusted proxies.
func (l *Limiter) trusts(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the calling client's address: the connection's peer,
// unless the peer is a trusted proxy; then X-Forwarded-For is read from
// the right (the entries the nearest proxies appended) and the first
// address that is not a trusted proxy is the client. Entries to the left
// of it were written by the client or by untrusted hops and are never
// believed, so a client cannot choose its bucket by sending its own
// X-Forwarded-For. An unparsable entry stops the walk at the last trusted
// hop; a chain of trusted proxies only yields its leftmost address. A
// peer without an IP (a Unix socket) yields the zero address, one bucket
// for all such peers.
func (l *Limiter) clientIP(c *call.Call) netip.Addr {
	addr := c.Peer.Addr().Unmap()
	if len(l.trusted) == 0 || !addr.IsValid() || !l.trusts(addr) || c.Header == nil {
		return addr
	}
	// Walk the field lines from the last one: a proxy may append to the
	// existing line or add a line of its own.
	lines := c.Header.Values("x-forwarded-for")
	for i := len(lines) - 1; i >= 0; i-- {
		var done bool
		if addr, done = l.walkXFF(lines[i], addr); done {
			return addr
		}
	}
	return addr
}

// walkXFF walks one X-Forwarded-For line from its right end. client is
// the nearest hop so far (a trusted proxy). done reports that the walk
// found the client (an untrusted address) or must stop (a bad entry).
func (l *Limiter) walkXFF(line string, client netip.Addr) (netip.Addr, bool) {
	for line != "" {
		var entry string
		if i := strings.LastIndexByte(line, ','); i >= 0 {
			entry, line = line[i+1:], line[:i]
		} else {
			entry, line = line, ""
		}
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		a, ok := parseForwarded(entry)
		if !ok {
			return client, true
		}
		client = a
		if !l.trusts(a) {
			return client, true
		}
	}
	return client, false
}

// parseForwarded parses one X-Forwarded-For entry: an address, with or
// without a port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseForwarded(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
