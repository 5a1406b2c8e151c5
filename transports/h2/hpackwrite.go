package h2

import (
	"bytes"
	"slices"

	"golang.org/x/net/http2/hpack"
)

// headerWriter HPACK-encodes the header blocks of one connection with
// x/net's Encoder, and skips what it would do again the same way.
//
// A field marked Sensitive is encoded as a literal never indexed (RFC
// 7541 §7.1.3: an intermediary forwards it so), whose bytes the Encoder
// Huffman-codes again on every block. When the field's name is in the
// static table, the Encoder refers to it by its static index whatever its
// dynamic table holds, and a never-indexed literal leaves that table
// alone: the encoding depends on the field only. So the relay, which
// forwards the client's bearer token on every call, encodes it once per
// connection and copies the bytes after that.
//
// A whole block is remembered too when encoding it left the dynamic
// table as it was (every field indexed, or a literal not indexed): while
// the table stays so, the same fields encode to the same bytes, and the
// next block of the same fields (the relay's request head to a backend,
// the response head and trailers of a unary call) is those bytes,
// without a table search per field. Any block that changes the table,
// and any size change, forgets the remembered blocks.
//
// Either way the bytes are the ones the Encoder wrote.
type headerWriter struct {
	enc   *hpack.Encoder
	buf   bytes.Buffer
	sens  sensitiveCache
	gen   uint64 // changes whenever the Encoder's table may have
	memos [maxMemos]blockMemo
	next  int // the memo to replace
}

// blockMemo is a block encoded without changing the table.
type blockMemo struct {
	fields []hpack.HeaderField
	enc    []byte
	gen    uint64 // headerWriter.gen when encoded
}

// Bounds of the blocks a headerWriter remembers.
const (
	maxMemos       = 4
	maxMemoFields  = 16
	maxMemoEncoded = 512
)

func newHeaderWriter(tableSize uint32) *headerWriter {
	w := &headerWriter{gen: 1}
	w.enc = hpack.NewEncoder(&w.buf)
	w.enc.SetMaxDynamicTableSizeLimit(tableSize)
	return w
}

// setMaxTableSize applies the peer's SETTINGS_HEADER_TABLE_SIZE (bounded
// by what this side allows).
func (w *headerWriter) setMaxTableSize(v uint32) {
	w.enc.SetMaxDynamicTableSize(v)
	w.gen++
}

// encode returns the header block of fields, valid until the next call.
func (w *headerWriter) encode(fields []hpack.HeaderField) []byte {
	for i := range w.memos {
		m := &w.memos[i]
		if m.gen == w.gen && slices.Equal(m.fields, fields) {
			return m.enc
		}
	}
	w.buf.Reset()
	for i, f := range fields {
		// The first field of a block goes to the Encoder, which puts any
		// pending dynamic table size update before it.
		if f.Sensitive && i > 0 {
			if enc := w.sens.get(f); enc != nil {
				w.buf.Write(enc)
				continue
			}
			before := w.buf.Len()
			_ = w.enc.WriteField(f)
			if inStaticTable(f.Name) {
				w.sens.put(f, w.buf.Bytes()[before:])
			}
			continue
		}
		_ = w.enc.WriteField(f)
	}
	b := w.buf.Bytes()
	if changesTable(b) {
		w.gen++
	} else if len(fields) <= maxMemoFields && len(b) <= maxMemoEncoded {
		m := &w.memos[w.next]
		w.next = (w.next + 1) % maxMemos
		m.fields = append(m.fields[:0], fields...)
		m.enc = append(m.enc[:0], b...)
		m.gen = w.gen
	}
	return b
}

// changesTable reports whether a header block the Encoder wrote adds to
// the dynamic table or resizes it (or is not one it would write).
func changesTable(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c&0x80 != 0: // indexed
			_, w := hpackVarint(b[i:], 7)
			if w == 0 {
				return true
			}
			i += w
		case c&0xf0 == 0x00 || c&0xf0 == 0x10: // without indexing, never indexed
			n := literalLen(b[i:], 4, 0)
			if n == 0 {
				return true
			}
			i += n
		default: // incremental indexing, size update
			return true
		}
	}
	return false
}

// Bounds of a connection's sensitiveCache: entries, and the length of a
// value it keeps.
const (
	maxSensitive      = 4
	maxSensitiveValue = 4 << 10
)

// sensitiveCache maps never-indexed fields with a static-table name to
// their encoding; the oldest entry makes room.
type sensitiveCache struct {
	entries [maxSensitive]sensitiveEntry
	next    int
}

type sensitiveEntry struct {
	name, value string
	enc         []byte
}

// get returns the encoding of f, or nil. A value forwarded from the
// headerReader's cache is the same string every time, which string
// comparison notices at once.
func (sc *sensitiveCache) get(f hpack.HeaderField) []byte {
	for i := range sc.entries {
		e := &sc.entries[i]
		if e.enc != nil && e.value == f.Value && e.name == f.Name {
			return e.enc
		}
	}
	return nil
}

func (sc *sensitiveCache) put(f hpack.HeaderField, enc []byte) {
	if len(f.Value) > maxSensitiveValue {
		return
	}
	e := &sc.entries[sc.next]
	sc.next = (sc.next + 1) % maxSensitive
	e.name, e.value = f.Name, f.Value
	if cap(e.enc) >= len(enc) && cap(e.enc) <= 2*len(enc) {
		e.enc = append(e.enc[:0], enc...)
	} else {
		e.enc = append([]byte(nil), enc...)
	}
}
