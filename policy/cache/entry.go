package cache

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"
)

// Entry is one stored answer. Once stored it is shared by every call it
// answers and must not be modified: its maps and slices are read-only.
type Entry struct {
	// Status is the HTTP status of an HTTP answer; 0 for an RPC answer.
	Status int
	// Header is the answer's header: an http.Header for HTTP answers,
	// gRPC header metadata (lower-case names) for RPC answers. Its value
	// slices are full (len == cap), so appending to one copies it.
	Header map[string][]string
	// Trailer is an RPC answer's trailer metadata.
	Trailer map[string][]string
	// Body is the HTTP body, or the response message's wire bytes.
	Body []byte

	// Control is the backend's Cache-Control, set by the fetch that
	// made the entry; Age is how old the answer said it was (an HTTP
	// backend's Age field).
	Control Control
	Age     time.Duration

	// stored is when the answer was made (cache clock, Unix
	// nanoseconds, its Age already subtracted); fresh and stale are until
	// when it is served fresh and then stale.
	stored, fresh, stale int64
	// shared is set when the answer may reach every caller of its key
	// (it was storable; coalesced callers of one that was not call the
	// backend themselves).
	shared bool
	size   int64
	// rendering is the last rendering a dialect kept ([Entry.Rendering]).
	rendering atomic.Pointer[rendering]
}

// rendering is the body as one dialect renders it (a REST route's
// JSON), so that hits do not convert it again.
type rendering struct {
	owner       any
	variant     uint8
	contentType string
	body        []byte
}

// Rendering returns the rendering of the entry's body that owner (a
// dialect's per-route plan) kept for variant (its options), if it is the
// last one kept. The body is shared and read-only.
func (e *Entry) Rendering(owner any, variant uint8) (contentType string, body []byte, ok bool) {
	r := e.rendering.Load()
	if r == nil || r.owner != owner || r.variant != variant {
		return "", nil, false
	}
	return r.contentType, r.body, true
}

// SetRendering keeps body, the entry's body as owner renders it for
// variant, for [Entry.Rendering]. One rendering is kept (the last), and
// only on stored entries; body must not be modified afterwards.
func (e *Entry) SetRendering(owner any, variant uint8, contentType string, body []byte) {
	if e.shared {
		e.rendering.Store(&rendering{owner: owner, variant: variant, contentType: contentType, body: body})
	}
}

// AgeAt returns the entry's age in whole seconds at now (Unix
// nanoseconds), as the Age header shows it.
func (e *Entry) AgeAt(now int64) int64 {
	if now <= e.stored {
		return 0
	}
	return (now - e.stored) / int64(time.Second)
}

// entryOverhead approximates the bytes an entry costs besides its
// contents (the entry, its LRU element, map slots).
const entryOverhead = 256

// computeSize sets e.size: what the memory store counts it as.
func (e *Entry) computeSize() {
	n := int64(entryOverhead + len(e.Body))
	for _, m := range []map[string][]string{e.Header, e.Trailer} {
		for k, vs := range m {
			n += int64(len(k)) + 16
			for _, v := range vs {
				n += int64(len(v)) + 16
			}
		}
	}
	e.size = n
}

// entryVersion is the first byte of an encoded entry; decode refuses
// others (a newer gateway's format reads as a miss).
const entryVersion = 1

// encode appends e's stored form (for Redis) to b.
func (e *Entry) encode(b []byte) []byte {
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, uint64(e.Status))
	b = binary.AppendVarint(b, e.stored)
	b = binary.AppendVarint(b, e.fresh)
	b = binary.AppendVarint(b, e.stale)
	b = appendMap(b, e.Header)
	b = appendMap(b, e.Trailer)
	b = binary.AppendUvarint(b, uint64(len(e.Body)))
	return append(b, e.Body...)
}

func appendMap(b []byte, m map[string][]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, vs := range m {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return b
}

var errCorrupt = errors.New("cache entry: corrupt or of another version")

// decode parses an encoded entry. The entry's body aliases b.
func decode(b []byte) (*Entry, error) {
	d := decoder{b: b}
	if d.byte() != entryVersion {
		return nil, errCorrupt
	}
	e := &Entry{shared: true}
	e.Status = int(d.uvarint())
	e.stored, e.fresh, e.stale = d.varint(), d.varint(), d.varint()
	e.Header = d.strMap()
	e.Trailer = d.strMap()
	e.Body = d.bytes()
	if d.bad || len(d.b) != 0 {
		return nil, errCorrupt
	}
	e.computeSize()
	return e, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) strMap() map[string][]string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	m := make(map[string][]string, n)
	for i := uint64(0); i < n && !d.bad; i++ {
		k := string(d.bytes())
		c := d.uvarint()
		if d.bad || c > uint64(len(d.b)) {
			d.bad = true
			return nil
		}
		vs := make([]string, c)
		for j := range vs {
			vs[j] = string(d.bytes())
		}
		m[k] = vs
	}
	return m
}
