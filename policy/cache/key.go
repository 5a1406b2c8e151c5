package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rosetta-gateway/rosetta/call"
)

// Key identifies one entry. Route and Resource name it for purges; Sum
// is the SHA-256 of everything that sets it apart (route, resource, the
// request, the vary headers' values and the key: parts), so that two
// calls share an entry only when all of those are equal.
type Key struct {
	// Route is the config route the entry was stored for ("" for calls no
	// route covers).
	Route string
	// Resource is the procedure ("/pkg.Service/Method") of an RPC entry,
	// or the request path of an HTTP entry.
	Resource string
	// Sum is the digest.
	Sum [sha256.Size]byte
	// private is set when the key holds a consumer's identity, so that
	// the entry can only ever reach that consumer: only then is an answer
	// marked Cache-Control: private stored.
	private bool
}

// Kinds of entries, part of the digest so that an RPC entry and an HTTP
// entry never meet.
const (
	kindRPC  = 'r'
	kindHTTP = 'h'
)

// keyBufs holds the buffers digests are computed over.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// RPCKey fills k for a unary call of resource ("/pkg.Service/Method") on
// route, whose request message is req (wire bytes), described by cl
// (headers, peer, consumer). Messages that differ only in the order of
// their top-level fields share a key (REST builds requests in path and
// query order, other clients in field-number order). It does not
// allocate.
func (c *Cache) RPCKey(k *Key, route, resource string, req []byte, cl *call.Call) {
	c.key(k, kindRPC, route, resource, req, "", cl)
}

// HTTPKey fills k for a plain HTTP GET of path with query rawQuery on
// route. The request's Accept-Encoding is always part of it (the backend
// may compress), besides the configured vary headers.
func (c *Cache) HTTPKey(k *Key, route, path, rawQuery string, cl *call.Call) {
	c.key(k, kindHTTP, route, path, nil, rawQuery, cl)
}

func (c *Cache) key(k *Key, kind byte, route, resource string, req []byte, query string, cl *call.Call) {
	bp := keyBufs.Get().(*[]byte)
	b := append((*bp)[:0], kind)
	b = appendString(b, route)
	b = appendString(b, resource)
	if kind == kindRPC {
		b = appendCanonical(b, req)
	} else {
		b = appendString(b, query)
		b = appendValues(b, cl.Header, "accept-encoding")
	}
	for _, name := range c.vary {
		b = appendValues(b, cl.Header, name)
	}
	k.private = false
	for _, p := range c.parts {
		b = append(b, p.kind)
		switch p.kind {
		case partConsumer:
			b = appendString(b, cl.Consumer)
			k.private = k.private || cl.Consumer != ""
		case partIP:
			a := clientIP(cl, c.trusted).As16()
			b = append(b, a[:]...)
		case partHeader:
			b = appendValues(b, cl.Header, p.name)
		}
	}
	k.Route, k.Resource = route, resource
	k.Sum = sha256.Sum256(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
	}
	keyBufs.Put(bp)
}

// Key parts, the values of the key: setting.
const (
	partConsumer = 'c'
	partIP       = 'i'
	partHeader   = 'h'
)

type keyPart struct {
	kind byte
	name string // partHeader: the header's lower-case name
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendValues appends every value of the header name, in order.
func appendValues(b []byte, h call.Header, name string) []byte {
	if h == nil {
		return binary.AppendUvarint(b, 0)
	}
	vs := h.Values(name)
	b = binary.AppendUvarint(b, uint64(len(vs)))
	for _, v := range vs {
		b = appendString(b, v)
	}
	return b
}

// appendCanonical appends msg with its top-level fields in field-number
// order (stable: the values of a repeated field keep theirs). A message
// already in order, the common case, is appended as is; so is one that
// does not parse (its bytes are still a faithful key).
func appendCanonical(b, msg []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(msg)))
	prev := protowire.Number(0)
	sorted := true
	for rest := msg; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return append(b, msg...)
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return append(b, msg...)
		}
		if num < prev {
			sorted = false
		}
		prev = num
		rest = rest[n+m:]
	}
	if sorted {
		return append(b, msg...)
	}
	type field struct {
		num        protowire.Number
		start, end int
	}
	var fields []field
	for off := 0; off < len(msg); {
		num, typ, n := protowire.ConsumeTag(msg[off:])
		m := protowire.ConsumeFieldValue(num, typ, msg[off+n:])
		fields = append(fields, field{num, off, off + n + m})
		off += n + m
	}
	slices.SortStableFunc(fields, func(a, b field) int { return int(a.num) - int(b.num) })
	for _, f := range fields {
		b = append(b, msg[f.start:f.end]...)
	}
	return b
}

// parseTrusted parses trusted_proxies: CIDRs or single addresses (the
// config validated them; bad ones are skipped).
func parseTrusted(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func trusts(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the calling client's address as rate-limiting's key:
// ip reads it: the peer, unless the peer is a trusted proxy; then
// X-Forwarded-For is walked from the right and the first address that
// is not a trusted proxy is the client (a client cannot pick its entry
// by sending its own X-Forwarded-For).
func clientIP(c *call.Call, trusted []netip.Prefix) netip.Addr {
	addr := c.Peer.Addr().Unmap()
	if len(trusted) == 0 || !addr.IsValid() || !trusts(trusted, addr) || c.Header == nil {
		return addr
	}
	lines := c.Header.Values("x-forwarded-for")
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, err := netip.ParseAddr(entry)
			if err != nil {
				ap, err := netip.ParseAddrPort(entry)
				if err != nil {
					return addr
				}
				a = ap.Addr()
			}
			addr = a.Unmap()
			if !trusts(trusted, addr) {
				return addr
			}
		}
	}
	return addr
}
