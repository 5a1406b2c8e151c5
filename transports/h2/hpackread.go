package h2

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Header blocks are read here rather than by the Framer's
// ReadMetaHeaders, for two costs that one per call would otherwise pay:
//
//   - readMetaFrame allocates the MetaHeadersFrame, its emit closure and
//     the growing Fields slice for every block; a headerReader keeps them
//     per connection.
//   - Clients send some fields as literals that are never added to the
//     HPACK dynamic table, so each request carries them whole again and
//     the decoder Huffman-decodes them again: nghttp2 (h2load, curl) sends
//     :path and content-length without indexing and authorization never
//     indexed (RFC 7541 §7.1.3). A headerReader remembers what such a
//     literal decoded to, keyed by its encoded bytes, so a client that
//     resends the same bearer token costs a byte comparison.
//
// x/net's hpack.Decoder stays in charge of the dynamic table: every
// representation that reads or changes it (indexed fields past the
// static table, literals with incremental indexing, size updates) is
// given to it in order, and so are the cached literals the first time
// they are seen. What the headerReader answers itself only reads the
// static table or the bytes of the block, so the decoder's state is the
// one it would have had decoding the whole block. The checks are
// readMetaFrame's, in its order, with its errors.

// staticTableLen is the number of entries of the HPACK static table
// (RFC 7541 Appendix A).
const staticTableLen = 61

// staticFields is the static table, index 1 to 61, as x/net's decoder
// decodes it.
var staticFields = func() (t [staticTableLen + 1]hpack.HeaderField) {
	for i := 1; i <= staticTableLen; i++ {
		d := hpack.NewDecoder(0, func(f hpack.HeaderField) { t[i] = f })
		if _, err := d.Write([]byte{0x80 | byte(i)}); err != nil {
			panic(fmt.Sprintf("hpack static table entry %d: %v", i, err))
		}
	}
	return t
}()

// inStaticTable reports whether name is the name of a static table entry.
func inStaticTable(name string) bool {
	for i := 1; i <= staticTableLen; i++ {
		if staticFields[i].Name == name {
			return true
		}
	}
	return false
}

// headerReader reads the header blocks of one connection, on its reading
// goroutine.
type headerReader struct {
	dec     *hpack.Decoder
	maxList uint32 // MAX_HEADER_LIST_SIZE enforced, as the Framer's MaxHeaderListSize
	maxStr  int    // the decoder's string length limit (0: none)

	hf      http2.HeadersFrame     // the HEADERS frame last read
	payload []byte                 // its payload, when too large to read in place
	detail  error                  // what the Framer's ErrorDetail would say of the last error
	mh      http2.MetaHeadersFrame // the block last read
	fields  []hpack.HeaderField    // mh.Fields' array, reused
	spans   []hpackSpan            // scratch for scan
	lits    literalCache

	// State of the block being read.
	headersRemain  uint32
	trailersRemain uint32
	sawRegular     bool
	emitting       bool
	invalid        error
	// blocks remembers whole blocks that decoded to valid fields without
	// changing the dynamic table: the same bytes decode to the same
	// fields while the table is the same. gen changes whenever a block
	// may have changed the table; changes says the last one did.
	blocks  blockCache
	gen     uint64
	changes bool
	// checked remembers fields found valid: the decoder emits a field of
	// its dynamic table as the same strings every time, and comparing
	// strings that share their bytes costs next to nothing.
	checked [16]hpack.HeaderField
	// While capture is set, the decoder is decoding one literal the cache
	// may keep: emit records it in last, and sets captured when the field
	// was valid.
	capture  bool
	captured bool
	last     hpack.HeaderField
}

func newHeaderReader(tableSize, maxList uint32) *headerReader {
	hr := &headerReader{maxList: maxList, gen: 1}
	// readMetaFrame limits each string to the header list size.
	if v := int(maxList); v >= 0 {
		hr.maxStr = v
	}
	hr.dec = hpack.NewDecoder(tableSize, hr.emit)
	hr.dec.SetMaxStringLength(hr.maxStr)
	hr.lits.budget = int(tableSize)
	return hr
}

// maxReusedFields bounds the field array a connection keeps between
// blocks; a larger one, from an unusually large block, is let go.
const maxReusedFields = 64

// readHeaders reads the payload of the HEADERS frame whose header fh
// the Framer has just read, and its header block, as the Framer's
// ReadFrameForHeader does with ReadMetaHeaders set: same checks, same
// errors (with ErrorDetail's text in hr.detail). The payload is read in
// place from br, the Framer's reader, rather than copied into a
// HeadersFrame allocated per frame. The frame returned, and its Fields,
// are valid until the next call.
func (hr *headerReader) readHeaders(fr *http2.Framer, br *bufio.Reader, fh http2.FrameHeader) (*http2.MetaHeadersFrame, error) {
	hr.detail = nil
	n := int(fh.Length)
	var p []byte
	peeked := 0
	if n <= br.Size() {
		var err error
		if p, err = br.Peek(n); err != nil {
			if len(p) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF // as io.ReadFull reports a frame cut short
			}
			return nil, err
		}
		peeked = n
	} else {
		hr.payload = slices.Grow(hr.payload[:0], n)[:n]
		if _, err := io.ReadFull(br, hr.payload); err != nil {
			return nil, err
		}
		p = hr.payload
	}
	// x/net's parseHeadersFrame.
	if fh.StreamID == 0 {
		_, _ = br.Discard(peeked)
		hr.detail = errHeadersStreamZero
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	hr.hf = http2.HeadersFrame{FrameHeader: fh}
	var padLength int
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			_, _ = br.Discard(peeked)
			return nil, io.ErrUnexpectedEOF
		}
		padLength, p = int(p[0]), p[1:]
	}
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			_, _ = br.Discard(peeked)
			return nil, io.ErrUnexpectedEOF
		}
		v := binary.BigEndian.Uint32(p)
		hr.hf.Priority.StreamDep = v & 0x7fffffff
		hr.hf.Priority.Exclusive = v != hr.hf.Priority.StreamDep // the high bit was set
		hr.hf.Priority.Weight = p[4]
		p = p[5:]
	}
	if len(p)-padLength < 0 {
		_, _ = br.Discard(peeked)
		return nil, http2.StreamError{StreamID: fh.StreamID, Code: http2.ErrCodeProtocol}
	}
	return hr.read(fr, br, peeked, &hr.hf, p[:len(p)-padLength])
}

var errHeadersStreamZero = errors.New("HEADERS frame with stream ID 0")

// read decodes the header block whose first fragment is frag, from the
// HEADERS frame hf, reading its CONTINUATION frames from fr, as the
// Framer does with ReadMetaHeaders set. frag is in the first peeked
// bytes of br, which are discarded before anything else is read from it.
func (hr *headerReader) read(fr *http2.Framer, br *bufio.Reader, peeked int, hf *http2.HeadersFrame, frag []byte) (*http2.MetaHeadersFrame, error) {
	if cap(hr.fields) > maxReusedFields {
		hr.fields = nil
	}
	hr.mh = http2.MetaHeadersFrame{HeadersFrame: hf, Fields: hr.fields[:0]}
	defer func() {
		hr.fields = hr.mh.Fields[:0]
		_, _ = br.Discard(peeked) // when no CONTINUATION was read
	}()
	hr.headersRemain, hr.trailersRemain = hr.maxList, hr.maxList
	hr.sawRegular, hr.invalid = false, nil
	hr.setEmitting(true)

	var hc headerFragment = hf
	for first := true; ; first = false {
		if !first {
			frag = hc.HeaderBlockFragment()
		}
		// Avoid decoding much more than will be kept: a fragment over
		// twice what may still be kept, or any fragment after an invalid
		// field, ends the connection (readMetaFrame's rules).
		if int64(len(frag)) > 2*int64(hr.headersRemain+hr.trailersRemain) || hr.invalid != nil {
			return &hr.mh, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		var err error
		whole := first && hc.HeadersEnded()
		if whole {
			if b := hr.blocks.get(frag, hr.gen); b != nil {
				// The very block decoded before, to the same table.
				hr.mh.Fields = append(hr.mh.Fields, b.fields...)
				return &hr.mh, nil
			}
			err = hr.decodeBlock(frag)
		} else {
			hr.changes = true // not scanned
			_, err = hr.dec.Write(frag)
		}
		if hr.changes {
			hr.gen++
		}
		if err != nil {
			return &hr.mh, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if hc.HeadersEnded() {
			break
		}
		_, _ = br.Discard(peeked) // frag is decoded; the next read may overwrite it
		peeked = 0
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		hc = f.(*http2.ContinuationFrame) // the Framer checks the order
	}
	if err := hr.dec.Close(); err != nil {
		return &hr.mh, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if hr.invalid != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: hr.invalid}
	}
	if err := checkPseudos(hr.mh.Fields); err != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	if !hr.changes && !hr.mh.Truncated {
		hr.blocks.put(frag, hr.mh.Fields, hr.gen)
	}
	return &hr.mh, nil
}

// headerFragment is a HEADERS or CONTINUATION frame.
type headerFragment interface {
	HeaderBlockFragment() []byte
	HeadersEnded() bool
}

func (hr *headerReader) setEmitting(on bool) {
	hr.emitting = on
	hr.dec.SetEmitEnabled(on)
}

// emit receives the fields the decoder decodes.
func (hr *headerReader) emit(f hpack.HeaderField) {
	valid := hr.add(f, true)
	if hr.capture && valid {
		hr.captured, hr.last = true, f
	}
}

// add checks f and appends it to the block's fields, as readMetaFrame's
// emit function does; check is false for fields known to be valid (the
// static table's, and cached literals). It reports whether f's name and
// value are valid.
func (hr *headerReader) add(f hpack.HeaderField, check bool) bool {
	if check && f.Name != "" {
		// Two places a field may be remembered in: it moves the one in
		// the first to the second.
		i := (len(f.Name)*7 + len(f.Value)*3 + int(f.Name[0]) + int(f.Name[len(f.Name)-1])) % (len(hr.checked) - 1)
		m := hr.checked[i : i+2]
		switch {
		case m[0].Name == f.Name && m[0].Value == f.Value, m[1].Name == f.Name && m[1].Value == f.Value:
			check = false
		case validField(f):
			if len(f.Name)+len(f.Value) <= maxCheckedLen {
				m[1] = m[0]
				m[0] = hpack.HeaderField{Name: f.Name, Value: f.Value}
			}
			check = false
		}
	}
	valid := true
	if check && !httpguts.ValidHeaderFieldValue(f.Value) {
		// The value may be sensitive: the error names the field only.
		hr.invalid = headerFieldError{"value", f.Name}
		valid = false
	}
	if strings.HasPrefix(f.Name, ":") {
		if hr.sawRegular {
			hr.invalid = errPseudoAfterRegular
		}
	} else {
		hr.sawRegular = true
		if check && !validWireName(f.Name) {
			hr.invalid = headerFieldError{"name", f.Name}
			valid = false
		}
	}
	if hr.invalid != nil {
		hr.setEmitting(false)
		return valid
	}
	remain := &hr.headersRemain
	size := f.Size()
	if f.Name == "trailer" {
		// readMetaFrame counts each name a trailer field announces as a
		// field of its own.
		remain = &hr.trailersRemain
		n := strings.Count(f.Value, ",") + 1
		size = uint32(len(f.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		hr.setEmitting(false)
		hr.mh.Truncated = true
		hr.headersRemain, hr.trailersRemain = 0, 0
		return valid
	}
	*remain -= size
	hr.mh.Fields = append(hr.mh.Fields, f)
	return valid
}

// maxCheckedLen bounds the fields headerReader.checked keeps.
const maxCheckedLen = 256

// validField reports whether f's name (when not a pseudo-field's) and
// value are valid.
func validField(f hpack.HeaderField) bool {
	return httpguts.ValidHeaderFieldValue(f.Value) && (strings.HasPrefix(f.Name, ":") || validWireName(f.Name))
}

// validWireName reports whether name is a valid HTTP/2 field name: a
// token without upper-case letters (x/net's validWireHeaderFieldName).
func validWireName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b >= 0x80 || !httpguts.IsTokenRune(rune(b)) || ('A' <= b && b <= 'Z') {
			return false
		}
	}
	return true
}

var (
	errPseudoAfterRegular   = errors.New("pseudo header field after regular")
	errMixPseudoHeaderTypes = errors.New("mix of request and response pseudo headers")
)

// headerFieldError is an invalid field name or value.
type headerFieldError struct{ what, name string }

func (e headerFieldError) Error() string {
	return fmt.Sprintf("invalid header field %s for %q", e.what, e.name)
}

// checkPseudos checks the pseudo-header fields of a block (which lead
// it): known names, no duplicates, not both request and response ones.
func checkPseudos(fields []hpack.HeaderField) error {
	var isRequest, isResponse bool
	n := 0
	for n < len(fields) && strings.HasPrefix(fields[n].Name, ":") {
		n++
	}
	pf := fields[:n]
	for i, f := range pf {
		switch f.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", f.Name)
		}
		for _, g := range pf[:i] {
			if f.Name == g.Name {
				return fmt.Errorf("duplicate pseudo-header %q", f.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errMixPseudoHeaderTypes
	}
	return nil
}

// hpackSpan is one field representation of a block that the
// headerReader handles itself.
type hpackSpan struct {
	off, end int
	static   int // static table index of an indexed field; 0 for a literal
}

// decodeBlock decodes a whole header block: the representations the
// decoder must see are written to it in runs, between the ones answered
// here.
func (hr *headerReader) decodeBlock(p []byte) error {
	spans, ok := hr.scan(p)
	if !ok {
		// Malformed, or a table size update after a field: only the
		// decoder knows what to make of it.
		hr.changes = true
		_, err := hr.dec.Write(p)
		return err
	}
	start := 0 // the run not yet written to the decoder
	for _, s := range spans {
		if _, err := hr.dec.Write(p[start:s.off]); err != nil {
			return err
		}
		start = s.off
		if !hr.emitting {
			break // the decoder keeps its table in sync with nothing to emit
		}
		start = s.end
		if s.static > 0 {
			f := staticFields[s.static]
			if hr.maxStr != 0 && (len(f.Name) > hr.maxStr || len(f.Value) > hr.maxStr) {
				return hpack.ErrStringLength // as the decoder checks every field
			}
			hr.add(f, false)
			continue
		}
		raw := p[s.off:s.end]
		if f := hr.lits.get(raw); f != nil {
			hr.add(*f, false)
			continue
		}
		hr.capture, hr.captured = true, false
		_, err := hr.dec.Write(raw)
		hr.capture = false
		if err != nil {
			return err
		}
		if hr.captured {
			hr.lits.put(raw, hr.last)
			hr.last = hpack.HeaderField{}
		}
	}
	_, err := hr.dec.Write(p[start:])
	return err
}

// scan splits a header block into representations, listing those the
// headerReader answers itself: indexed fields of the static table, and
// literals without indexing or never indexed whose name is in the static
// table or literal (the decoding of those depends only on their bytes).
// It returns false, answering nothing, when the block is malformed,
// truncated, has a string longer than the decoder allows, or a dynamic
// table size update after a field (the decoder's checks decide those).
func (hr *headerReader) scan(p []byte) ([]hpackSpan, bool) {
	spans := hr.spans[:0]
	defer func() { hr.spans = spans[:0] }()
	sawField := false
	hr.changes = false
	for i := 0; i < len(p); {
		b := p[i]
		off := i
		var n int
		switch {
		case b&0x80 != 0: // indexed field (RFC 7541 §6.1)
			idx, w := hpackVarint(p[i:], 7)
			if w == 0 {
				return nil, false
			}
			i += w
			sawField = true
			if idx >= 1 && idx <= staticTableLen {
				spans = append(spans, hpackSpan{off: off, end: i, static: int(idx)})
			}
			continue
		case b&0xc0 == 0x40: // literal with incremental indexing (§6.2.1)
			if n = hr.literalLen(p[i:], 6); n == 0 {
				return nil, false
			}
			i += n
			sawField = true
			hr.changes = true
			continue
		case b&0xe0 == 0x20: // dynamic table size update (§6.3)
			if sawField {
				return nil, false
			}
			hr.changes = true
			_, w := hpackVarint(p[i:], 5)
			if w == 0 {
				return nil, false
			}
			i += w
			continue
		}
		// Literal without indexing (0000xxxx, §6.2.2) or never indexed
		// (0001xxxx, §6.2.3).
		if n = hr.literalLen(p[i:], 4); n == 0 {
			return nil, false
		}
		i += n
		sawField = true
		if nameIdx, _ := hpackVarint(p[off:], 4); nameIdx <= staticTableLen {
			spans = append(spans, hpackSpan{off: off, end: i})
		}
	}
	return spans, true
}

// literalLen returns the length of the literal field representation at
// the start of p, whose name index has an n-bit prefix; 0 when it is
// truncated or malformed, or a string is longer than the decoder allows.
func (hr *headerReader) literalLen(p []byte, n uint8) int {
	return literalLen(p, n, hr.maxStr)
}

// literalLen returns the length of the literal field representation at
// the start of p, whose name index has an n-bit prefix; 0 when it is
// truncated or malformed, or a string is longer than maxStr (0: no limit).
func literalLen(p []byte, n uint8, maxStr int) int {
	nameIdx, w := hpackVarint(p, n)
	if w == 0 {
		return 0
	}
	i := w
	count := 1 // strings: the value, after the name when it is literal
	if nameIdx == 0 {
		count = 2
	}
	for range count {
		if i >= len(p) {
			return 0
		}
		l, w := hpackVarint(p[i:], 7)
		if w == 0 || (maxStr != 0 && l > uint64(maxStr)) || l > uint64(len(p)-i-w) {
			return 0
		}
		i += w + int(l)
	}
	return i
}

// hpackVarint reads an HPACK integer with an n-bit prefix (RFC 7541
// §5.1) from the start of p and returns it and its length; the length is
// 0 when p ends first or the integer is one x/net's decoder refuses.
func hpackVarint(p []byte, n uint8) (uint64, int) {
	if len(p) == 0 {
		return 0, 0
	}
	mask := uint64(1)<<n - 1
	v := uint64(p[0]) & mask
	if v < mask {
		return v, 1
	}
	var m uint
	for i := 1; i < len(p); i++ {
		b := p[i]
		v += uint64(b&127) << m
		if b&128 == 0 {
			return v, i + 1
		}
		m += 7
		if m >= 63 {
			return 0, 0
		}
	}
	return 0, 0
}

// Bounds of a connection's blockCache: blocks, and the size and number
// of fields of each.
const (
	maxBlocks      = 2
	maxBlockBytes  = 512
	maxBlockFields = 16
)

// blockCache holds the last blocks a connection decoded without changing
// its dynamic table; the oldest makes room.
type blockCache struct {
	entries [maxBlocks]decodedBlock
	next    int
}

type decodedBlock struct {
	raw    []byte
	fields []hpack.HeaderField
	gen    uint64 // headerReader.gen when decoded
}

// get returns the block raw decoded to, at table generation gen, or nil.
func (bc *blockCache) get(raw []byte, gen uint64) *decodedBlock {
	for i := range bc.entries {
		b := &bc.entries[i]
		if b.gen == gen && len(b.raw) == len(raw) && string(b.raw) == string(raw) {
			return b
		}
	}
	return nil
}

func (bc *blockCache) put(raw []byte, fields []hpack.HeaderField, gen uint64) {
	if len(raw) > maxBlockBytes || len(fields) > maxBlockFields || bc.get(raw, gen) != nil {
		return
	}
	b := &bc.entries[bc.next]
	bc.next = (bc.next + 1) % maxBlocks
	b.raw = append(b.raw[:0], raw...)
	b.fields = append(b.fields[:0], fields...)
	b.gen = gen
}

// maxLiterals is how many literals a connection's cache holds.
const maxLiterals = 8

// literalCache maps the encoded bytes of literals (without indexing or
// never indexed, static or literal name) to the field they decode to.
// It holds at most budget bytes, counted as the dynamic table counts
// (name, value and 32) plus the encoded bytes, and evicts with the CLOCK
// algorithm, so a literal resent on every request stays.
type literalCache struct {
	entries [maxLiterals]literalEntry
	hand    int
	size    int
	budget  int
}

type literalEntry struct {
	raw       []byte
	f         hpack.HeaderField
	used, ref bool
}

func (e *literalEntry) size() int { return len(e.raw) + int(e.f.Size()) }

// get returns the field raw decodes to, or nil.
func (lc *literalCache) get(raw []byte) *hpack.HeaderField {
	for i := range lc.entries {
		e := &lc.entries[i]
		if e.used && len(e.raw) == len(raw) && string(e.raw) == string(raw) {
			e.ref = true
			return &e.f
		}
	}
	return nil
}

// put remembers that raw decodes to f.
func (lc *literalCache) put(raw []byte, f hpack.HeaderField) {
	n := len(raw) + int(f.Size())
	if n > lc.budget {
		return
	}
	i := lc.victim(false)
	lc.evict(i)
	for lc.size+n > lc.budget {
		lc.evict(lc.victim(true))
	}
	e := &lc.entries[i]
	if cap(e.raw) >= len(raw) && cap(e.raw) <= 2*len(raw) {
		e.raw = append(e.raw[:0], raw...)
	} else {
		e.raw = append([]byte(nil), raw...)
	}
	e.f, e.used, e.ref = f, true, false
	lc.size += n
}

// victim picks the entry to replace: an empty one, unless used is set,
// else the first the clock hand finds not referenced since it last
// passed.
func (lc *literalCache) victim(used bool) int {
	for {
		i := lc.hand
		lc.hand = (lc.hand + 1) % maxLiterals
		e := &lc.entries[i]
		switch {
		case !e.used:
			if !used {
				return i
			}
		case e.ref:
			e.ref = false
		default:
			return i
		}
	}
}

func (lc *literalCache) evict(i int) {
	e := &lc.entries[i]
	if !e.used {
		return
	}
	lc.size -= e.size()
	e.raw = e.raw[:0]
	e.f, e.used, e.ref = hpack.HeaderField{}, false, false
}
