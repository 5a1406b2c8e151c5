package h2

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The headerReader must read every header block exactly as x/net's Framer
// does with ReadMetaHeaders: same fields, same truncation, same errors,
// and a dynamic table kept in the same state for the blocks that follow.
// These tests decode the same frames both ways and compare, block by
// block.

// readerCase is one connection's settings and the frames it receives.
type readerCase struct {
	tableSize, maxList uint32
	frames             []byte
	// bufSize is the size of the reader frames are read through (0:
	// 32 KiB); a smaller one makes larger HEADERS frames be copied.
	bufSize int
}

// outcome describes what reading one frame gave, for comparison.
func outcome(f http2.Frame, err error) string {
	var b strings.Builder
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case err == nil:
	case errors.As(err, &se):
		fmt.Fprintf(&b, "stream error %d %v", se.StreamID, se.Code)
		return b.String()
	case errors.As(err, &ce):
		fmt.Fprintf(&b, "connection error %v; ", http2.ErrCode(ce))
		return b.String()
	default:
		fmt.Fprintf(&b, "error %v; ", err)
		return b.String()
	}
	if mh, ok := f.(*http2.MetaHeadersFrame); ok {
		fmt.Fprintf(&b, "headers stream %d end %v truncated %v:", mh.StreamID, mh.StreamEnded(), mh.Truncated)
		for _, hf := range mh.Fields {
			fmt.Fprintf(&b, " %q=%q", hf.Name, hf.Value)
			if hf.Sensitive {
				b.WriteString("(sensitive)")
			}
		}
	} else if f != nil {
		fmt.Fprintf(&b, "%T", f)
	}
	return b.String()
}

// compareReaders reads c.frames with x/net's ReadMetaHeaders and with a
// headerReader and returns the first difference ("" when none) and the
// number of header blocks read.
func compareReaders(c readerCase) (diff string, blocks int) {
	ref := http2.NewFramer(nil, bytes.NewReader(c.frames))
	ref.ReadMetaHeaders = hpack.NewDecoder(c.tableSize, nil)
	ref.MaxHeaderListSize = c.maxList
	br := bufio.NewReaderSize(bytes.NewReader(c.frames), cmp.Or(c.bufSize, 32<<10))
	fr := http2.NewFramer(nil, br)
	fr.SetReuseFrames()
	hr := newHeaderReader(c.tableSize, c.maxList)
	for i := 0; ; i++ {
		want := outcome(ref.ReadFrame())
		if d := ref.ErrorDetail(); d != nil && strings.HasPrefix(want, "connection error") {
			want += " (" + d.Error() + ")"
		}
		// As conn.readLoop reads.
		var f http2.Frame
		fh, err := fr.ReadFrameHeader()
		if err == nil {
			if fh.Type == http2.FrameHeaders {
				f, err = hr.readHeaders(fr, br, fh)
				blocks++
			} else {
				f, err = fr.ReadFrameForHeader(fh)
			}
		}
		got := outcome(f, err)
		if d := cmp.Or(hr.detail, fr.ErrorDetail()); d != nil && strings.HasPrefix(got, "connection error") {
			got += " (" + d.Error() + ")"
		}
		if got != want {
			return fmt.Sprintf("frame %d:\n got  %s\n want %s", i, got, want), blocks
		}
		if strings.HasPrefix(want, "connection error") || strings.HasPrefix(want, "error") {
			return "", blocks
		}
	}
}

// blockWriter writes header blocks as frames, split at random into
// CONTINUATION frames.
type blockWriter struct {
	rnd    *rand.Rand
	buf    bytes.Buffer
	fr     *http2.Framer
	stream uint32
}

func newBlockWriter(rnd *rand.Rand) *blockWriter {
	w := &blockWriter{rnd: rnd, stream: 1}
	w.fr = http2.NewFramer(&w.buf, nil)
	return w
}

func (w *blockWriter) block(b []byte) {
	end := w.rnd.IntN(2) == 0
	chunk := len(b)
	if len(b) > 1 && w.rnd.IntN(4) == 0 {
		chunk = 1 + w.rnd.IntN(len(b)-1)
	}
	first := true
	for first || len(b) > 0 {
		n := min(chunk, len(b))
		frag := b[:n]
		b = b[n:]
		if first {
			p := http2.HeadersFrameParam{StreamID: w.stream, BlockFragment: frag, EndStream: end, EndHeaders: len(b) == 0}
			switch w.rnd.IntN(8) {
			case 0:
				p.PadLength = uint8(w.rnd.IntN(256))
			case 1:
				p.Priority = http2.PriorityParam{StreamDep: w.rnd.Uint32N(1 << 31), Exclusive: w.rnd.IntN(2) == 0, Weight: uint8(w.rnd.IntN(256))}
			case 2:
				w.badHeaders(frag, len(b) == 0)
				first = false
				continue
			}
			_ = w.fr.WriteHeaders(p)
			first = false
		} else {
			_ = w.fr.WriteContinuation(w.stream, len(b) == 0, frag)
		}
	}
	w.stream += 2
}

// badHeaders writes a HEADERS frame the Framer refuses, or on the edge
// of what it accepts: stream 0, padding or priority cut short, padding
// longer than the payload, an empty padded frame.
func (w *blockWriter) badHeaders(frag []byte, endHeaders bool) {
	flags := http2.Flags(0)
	if endHeaders {
		flags |= http2.FlagHeadersEndHeaders
	}
	stream := w.stream
	var payload []byte
	switch w.rnd.IntN(5) {
	case 0:
		stream = 0
		payload = frag
	case 1:
		flags |= http2.FlagHeadersPadded
		payload = []byte{0}[:w.rnd.IntN(2)]
	case 2:
		flags |= http2.FlagHeadersPriority
		payload = []byte{1, 2, 3, 4, 5}[:w.rnd.IntN(6)]
	case 3:
		flags |= http2.FlagHeadersPadded
		payload = append([]byte{byte(len(frag) + 1 + w.rnd.IntN(3))}, frag...)
	default:
		flags |= http2.FlagHeadersPadded | http2.FlagHeadersPriority
		payload = append([]byte{0, 0x80, 0, 0, 3, 16}, frag...)
	}
	_ = w.fr.WriteRawFrame(http2.FrameHeaders, flags, stream, payload)
}

// appendVarint appends an HPACK integer with an n-bit prefix whose other
// bits are first.
func appendVarint(b []byte, first byte, n uint8, v uint64) []byte {
	mask := uint64(1)<<n - 1
	if v < mask {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(mask))
	v -= mask
	for v >= 128 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendString appends an HPACK string, Huffman-coded when huff is set.
func appendString(b []byte, s string, huff bool) []byte {
	if huff {
		b = appendVarint(b, 0x80, 7, hpack.HuffmanEncodeLength(s))
		return hpack.AppendHuffmanString(b, s)
	}
	b = appendVarint(b, 0, 7, uint64(len(s)))
	return append(b, s...)
}

var (
	testToken = "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJiZW5jaCJ9.plaAKSS1ZMohh2jGjoQJy0wAx2KOGDEPls5gexHnff0"
	// testNames and testValues are what random fields are made of: valid
	// ones, and some of every kind readMetaFrame refuses.
	testNames = []string{
		":path", ":method", ":status", ":authority", ":scheme", ":protocol", ":bogus",
		"authorization", "content-length", "content-type", "cookie", "te", "trailer",
		"x-request-id", "grpc-timeout", "X-Upper", "bad name", "", "naïve", strings.Repeat("n", 90),
	}
	testValues = []string{
		"", "0", "809", "/pkg.Service/Method", "POST", "application/grpc", "trailers", testToken,
		"a, b, c", "x\x00y", "line\r\nbreak", "tab\tok", "caf\xc3\xa9", strings.Repeat("v", 120),
	}
)

// randomBlock returns a header block of random representations, mostly
// well formed, built so that blocks repeat literals (the cache's case),
// touch the dynamic table every way and sometimes break the rules.
func randomBlock(rnd *rand.Rand, enc *hpack.Encoder, encBuf *bytes.Buffer) []byte {
	var b []byte
	if rnd.IntN(8) == 0 {
		b = appendVarint(b, 0x20, 5, uint64(rnd.IntN(5000))) // size update first
	}
	// Half the blocks are made of valid fields only, so that checks
	// later in a block (size limits, pseudo-field order) are reached.
	clean := rnd.IntN(2) == 0
	names, values, kinds := testNames, testValues, 13
	if clean {
		names, values, kinds = testNames[7:15], testValues[:9], 10
		// Request pseudo-fields lead, as literals of every kind.
		for _, idx := range []uint64{2, 4, 1}[:rnd.IntN(4)] {
			b = appendVarint(b, []byte{0x00, 0x10, 0x40}[rnd.IntN(3)], 4, idx)
			b = appendString(b, values[rnd.IntN(len(values))], rnd.IntN(2) == 0)
		}
	}
	n := rnd.IntN(12)
	for range n {
		name := names[rnd.IntN(len(names))]
		value := values[rnd.IntN(len(values))]
		huff := rnd.IntN(2) == 0
		switch rnd.IntN(kinds) {
		case 0, 1: // the encoder's choice (keeps a dynamic table in use)
			encBuf.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: rnd.IntN(4) == 0})
			b = append(b, encBuf.Bytes()...)
		case 2: // indexed, static or dynamic, sometimes out of range
			b = appendVarint(b, 0x80, 7, uint64(rnd.IntN(80)))
		case 9: // indexed, static
			b = appendVarint(b, 0x80, 7, uint64(1+rnd.IntN(staticTableLen)))
		case 3: // literal with incremental indexing
			if rnd.IntN(2) == 0 {
				b = appendVarint(b, 0x40, 6, uint64(1+rnd.IntN(70)))
			} else {
				b = appendString(append(b, 0x40), name, huff)
			}
			b = appendString(b, value, huff)
		case 4, 5, 6: // never indexed, static name
			b = appendVarint(b, 0x10, 4, uint64(1+rnd.IntN(staticTableLen)))
			b = appendString(b, value, huff)
		case 7, 8: // without indexing, literal name
			b = appendString(append(b, 0x00), name, huff)
			b = appendString(b, value, huff)
		case 10: // without indexing or never indexed, dynamic name
			b = appendVarint(b, byte(rnd.IntN(2))<<4, 4, uint64(62+rnd.IntN(8)))
			b = appendString(b, value, huff)
		case 11: // a size update anywhere
			b = appendVarint(b, 0x20, 5, uint64(rnd.IntN(5000)))
		case 12: // broken: bad Huffman, long varint, truncation
			switch rnd.IntN(4) {
			case 0:
				b = append(b, 0x10|1, 0x84, 0xff, 0xff, 0xff, 0xff)
			case 1:
				b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
			case 2:
				b = appendString(append(b, 0x00), name, huff)
				b = appendVarint(b, 0, 7, 50) // a value that is not there
			default:
				b = append(b, 0x1f) // varint cut short
			}
		}
	}
	return b
}

// cleanBlock returns a block that leaves the dynamic table alone, so
// that resending it may be answered whole: indexed fields (dynamic ones
// among them) and literals not indexed, with names of every kind.
func cleanBlock(rnd *rand.Rand) []byte {
	var b []byte
	for range 1 + rnd.IntN(6) {
		value := testValues[rnd.IntN(9)]
		switch rnd.IntN(4) {
		case 0:
			b = appendVarint(b, 0x80, 7, uint64(15+rnd.IntN(staticTableLen-14))) // regular fields
		case 1:
			b = appendVarint(b, 0x80, 7, uint64(62+rnd.IntN(6)))
		case 2:
			b = appendVarint(b, byte(rnd.IntN(2))<<4, 4, uint64([]int{0, 16, 23, 28, 31, 62, 63, 64}[rnd.IntN(8)]))
			if b[len(b)-1]&0x0f == 0 && b[len(b)-1] < 0x20 {
				b = appendString(b, testNames[7+rnd.IntN(8)], rnd.IntN(2) == 0)
			}
			b = appendString(b, value, rnd.IntN(2) == 0)
		default:
			b = appendString(append(b, 0x00), testNames[7+rnd.IntN(8)], rnd.IntN(2) == 0)
			b = appendString(b, value, rnd.IntN(2) == 0)
		}
	}
	return b
}

// TestHeaderReaderMatchesFramer decodes random blocks both ways.
func TestHeaderReaderMatchesFramer(t *testing.T) {
	t.Parallel()
	iterations := 3000
	if testing.Short() {
		iterations = 500
	}
	limits := []struct{ table, list uint32 }{{4096, 1 << 20}, {4096, 300}, {256, 1 << 20}, {0, 1 << 20}, {4096, 40}}
	totalBlocks := 0
	for i := range iterations {
		rnd := rand.New(rand.NewPCG(uint64(i), 7))
		lim := limits[i%len(limits)]
		enc := new(bytes.Buffer)
		henc := hpack.NewEncoder(enc)
		henc.SetMaxDynamicTableSizeLimit(lim.table)
		w := newBlockWriter(rnd)
		// Entries in the table first, for dynamic indexes to refer to.
		var primer []byte
		for j := range 10 {
			primer = appendString(appendString(append(primer, 0x40), fmt.Sprintf("x-%d", j), false), testValues[j%9], j%2 == 0)
		}
		w.block(primer)
		var sent [][]byte
		for range 1 + rnd.IntN(20) {
			b := randomBlock(rnd, henc, enc)
			switch rnd.IntN(5) {
			case 0:
				b = cleanBlock(rnd)
			case 1, 2:
				if len(sent) > 0 {
					b = sent[max(0, len(sent)-1-rnd.IntN(3))] // resent as it was
				}
			}
			sent = append(sent, b)
			w.block(b)
		}
		c := readerCase{tableSize: lim.table, maxList: lim.list, frames: w.buf.Bytes()}
		if i%7 == 0 {
			c.bufSize = 16 // HEADERS frames over 16 bytes are copied, not peeked
		}
		diff, blocks := compareReaders(c)
		totalBlocks += blocks
		if diff != "" {
			t.Fatalf("case %d (table %d, list %d): %s\nframes %x", i, lim.table, lim.list, diff, c.frames)
		}
	}
	t.Logf("%d blocks compared", totalBlocks)
}

// h2loadBlock is the request header block h2load sends on a connection's
// second request (HPACK table primed by the first): :path and
// content-length as literals without indexing, authorization never
// indexed.
func h2loadBlocks() [][]byte {
	var blocks [][]byte
	var dyn bytes.Buffer
	enc := hpack.NewEncoder(&dyn)
	for i := range 2 {
		b := appendVarint(nil, 0x00, 4, 4) // :path, without indexing
		b = appendString(b, "/rosetta.bench.v1.BenchService/Echo", true)
		for _, f := range []hpack.HeaderField{
			{Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "127.0.0.1:19081"},
			{Name: ":method", Value: "POST"}, {Name: "user-agent", Value: "h2load nghttp2/1.52.0"},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		} {
			dyn.Reset()
			_ = enc.WriteField(f)
			b = append(b, dyn.Bytes()...)
		}
		b = appendVarint(b, 0x10, 4, 23) // authorization, never indexed
		b = appendString(b, testToken, true)
		b = appendVarint(b, 0x00, 4, 28) // content-length, without indexing
		b = appendString(b, strings.Repeat("8", i+1), false)
		blocks = append(blocks, b)
	}
	return blocks
}

// TestHeaderReaderCachesLiterals: a literal resent byte for byte is
// answered from the cache (the very same string), and the dynamic table
// stays in sync around it.
func TestHeaderReaderCachesLiterals(t *testing.T) {
	t.Parallel()
	blocks := h2loadBlocks()
	w := newBlockWriter(rand.New(rand.NewPCG(1, 1)))
	for _, b := range [][]byte{blocks[0], blocks[1], blocks[1], blocks[0]} {
		_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.stream, BlockFragment: b, EndHeaders: true})
		w.stream += 2
	}
	c := readerCase{tableSize: 4096, maxList: 1 << 20, frames: w.buf.Bytes()}
	if diff, _ := compareReaders(c); diff != "" {
		t.Fatal(diff)
	}
	br := bufio.NewReader(bytes.NewReader(c.frames))
	fr := http2.NewFramer(nil, br)
	hr := newHeaderReader(4096, 1<<20)
	var tokens []*byte
	for range 4 {
		fh, err := fr.ReadFrameHeader()
		if err != nil {
			t.Fatal(err)
		}
		mh, err := hr.readHeaders(fr, br, fh)
		if err != nil {
			t.Fatal(err)
		}
		var auth hpack.HeaderField
		for _, hf := range mh.Fields {
			if hf.Name == "authorization" {
				auth = hf
			}
		}
		if auth.Value != testToken || !auth.Sensitive {
			t.Fatalf("authorization %+v; want the token, sensitive", auth)
		}
		tokens = append(tokens, unsafe.StringData(auth.Value))
	}
	for i, p := range tokens[1:] {
		if p != tokens[0] {
			t.Errorf("block %d: the token was decoded again; want the cached string", i+2)
		}
	}
}

// TestHeaderReaderCachesBlocks: a block resent byte for byte while the
// table is unchanged is answered whole; one that adds to the table makes
// the remembered blocks stale.
func TestHeaderReaderCachesBlocks(t *testing.T) {
	t.Parallel()
	blocks := h2loadBlocks()
	incr := appendString(appendString([]byte{0x40}, "x-new", false), "1", false)
	// Literals only: valid whatever the table holds.
	lits := appendString(appendVarint(nil, 0x00, 4, 4), "/p", true)
	lits = appendString(appendVarint(lits, 0x10, 4, 23), testToken, true)
	sequence := [][]byte{blocks[0], blocks[1], blocks[1], lits, incr, lits, lits}
	w := newBlockWriter(rand.New(rand.NewPCG(1, 1)))
	for _, b := range sequence {
		_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.stream, BlockFragment: b, EndHeaders: true})
		w.stream += 2
	}
	c := readerCase{tableSize: 4096, maxList: 1 << 20, frames: w.buf.Bytes()}
	if diff, _ := compareReaders(c); diff != "" {
		t.Fatal(diff)
	}
	br := bufio.NewReader(bytes.NewReader(c.frames))
	fr := http2.NewFramer(nil, br)
	hr := newHeaderReader(4096, 1<<20)
	for i, b := range sequence {
		fh, err := fr.ReadFrameHeader()
		if err != nil {
			t.Fatal(err)
		}
		cached := hr.blocks.get(b, hr.gen) != nil
		if _, err := hr.readHeaders(fr, br, fh); err != nil {
			t.Fatal(err)
		}
		if want := i == 2 || i == 6; cached != want {
			t.Errorf("block %d: answered whole %v; want %v", i, cached, want)
		}
	}
}

// TestHeaderReaderBlockCacheStale: a remembered block that refers to the
// dynamic table is decoded again once the table changed, however the
// change came (one frame, CONTINUATION frames, a size update).
func TestHeaderReaderBlockCacheStale(t *testing.T) {
	t.Parallel()
	newest := []byte{0x80 | 62} // the entry added last
	incr := func(v string) []byte { return appendString(appendString([]byte{0x40}, "x-a", false), v, false) }
	w := newBlockWriter(rand.New(rand.NewPCG(1, 1)))
	write := func(b []byte, split bool) {
		if !split {
			_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.stream, BlockFragment: b, EndHeaders: true})
		} else {
			_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.stream, BlockFragment: b[:2]})
			_ = w.fr.WriteContinuation(w.stream, true, b[2:])
		}
		w.stream += 2
	}
	write(incr("1"), false)
	write(newest, false)
	write(newest, false)
	write(incr("2"), true)
	write(newest, false)
	write(newest, false)
	write(appendVarint(nil, 0x20, 5, 0), false) // empties the table
	write(incr("3"), false)
	write(newest, false)
	c := readerCase{tableSize: 4096, maxList: 1 << 20, frames: w.buf.Bytes()}
	if diff, _ := compareReaders(c); diff != "" {
		t.Fatal(diff)
	}
}

// TestLiteralCacheBudget: the cache never holds more than its budget, and
// a literal hit on every block survives a stream of others.
func TestLiteralCacheBudget(t *testing.T) {
	t.Parallel()
	lc := literalCache{budget: 1000}
	hot := []byte("hot literal")
	hotField := hpack.HeaderField{Name: "authorization", Value: "token"}
	lc.put(hot, hotField)
	for i := range 200 {
		if f := lc.get(hot); f == nil || *f != hotField {
			t.Fatalf("round %d: hot literal evicted", i)
		}
		raw := fmt.Appendf(nil, "cold %d %s", i, strings.Repeat("x", i%150))
		lc.put(raw, hpack.HeaderField{Name: "x-cold", Value: string(raw)})
		size := 0
		for _, e := range lc.entries {
			if e.used {
				size += e.size()
			}
		}
		if size != lc.size || size > lc.budget {
			t.Fatalf("round %d: size %d, counted %d; want equal and at most %d", i, size, lc.size, lc.budget)
		}
	}
	lc.put(bytes.Repeat([]byte("z"), 2000), hpack.HeaderField{Name: "x", Value: "big"})
	if f := lc.get(bytes.Repeat([]byte("z"), 2000)); f != nil {
		t.Error("an entry over the budget was kept")
	}
}

// TestHeaderReaderEdgeCases compares hand-made blocks that sit on the
// rules' edges.
func TestHeaderReaderEdgeCases(t *testing.T) {
	t.Parallel()
	never := func(idx uint64, v string, huff bool) []byte {
		return appendString(appendVarint(nil, 0x10, 4, idx), v, huff)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	sizeUpdate := appendVarint(nil, 0x20, 5, 100)
	incr := appendString(appendString([]byte{0x40}, "x-a", false), "1", false)
	cases := map[string][][]byte{
		"empty block":                    {{}},
		"size update after cached field": {cat(never(23, "t", true), sizeUpdate), cat(never(23, "t", true), sizeUpdate)},
		"size update after indexed":      {cat(incr, sizeUpdate), cat([]byte{0x80 | 62}, sizeUpdate)},
		"two size updates first":         {cat(sizeUpdate, sizeUpdate, incr), cat(sizeUpdate, never(4, "/p", false))},
		"pseudo after cached regular":    {cat(never(23, "t", false), never(4, "/p", false)), cat(never(23, "t", false), never(4, "/p", false))},
		"static index 0":                 {{0x80}},
		"static then dynamic":            {cat(incr, []byte{0x82, 0x80 | 62, 0x84})},
		"cached invalid value":           {never(23, "a\x00b", false), never(23, "a\x00b", false)},
		"cached upper-case name":         {cat([]byte{0x10}, appendString(nil, "X-A", false), appendString(nil, "v", false))},
		"truncated after cached":         {cat(never(23, "t", true), []byte{0x10, 0x05, 'a'})},
		"trailer field sizes":            {cat(appendString(appendString([]byte{0x00}, "trailer", false), "a, b, c, d, e, f", false))},
		"over the string limit":          {never(23, strings.Repeat("a", 100), false)},
		"static over the string limit":   {{0x80 | 16}}, // accept-encoding: gzip, deflate
	}
	for name, blocks := range cases {
		for _, lim := range []struct{ table, list uint32 }{{4096, 1 << 20}, {4096, 60}, {4096, 10}} {
			w := newBlockWriter(rand.New(rand.NewPCG(2, 2)))
			for _, b := range blocks {
				_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.stream, BlockFragment: b, EndHeaders: true})
				w.stream += 2
			}
			c := readerCase{tableSize: lim.table, maxList: lim.list, frames: w.buf.Bytes()}
			if diff, _ := compareReaders(c); diff != "" {
				t.Errorf("%s (list %d): %s", name, lim.list, diff)
			}
		}
	}
}

// FuzzHeaderReader decodes arbitrary header blocks both ways. The input
// is a list of blocks, each a 2-byte length and that many bytes; the
// first byte picks the limits.
func FuzzHeaderReader(f *testing.F) {
	pack := func(limits byte, blocks ...[]byte) []byte {
		out := []byte{limits}
		for _, b := range blocks {
			out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
			out = append(out, b...)
		}
		return out
	}
	h := h2loadBlocks()
	f.Add(pack(0, h[0], h[1], h[1]))
	f.Add(pack(1, h[0], h[1]))
	f.Add(pack(2, h[1], h[0]))
	for i := range 20 {
		rnd := rand.New(rand.NewPCG(uint64(i), 9))
		var enc bytes.Buffer
		henc := hpack.NewEncoder(&enc)
		f.Add(pack(byte(i), randomBlock(rnd, henc, &enc), randomBlock(rnd, henc, &enc), randomBlock(rnd, henc, &enc)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		limits := []struct{ table, list uint32 }{{4096, 1 << 20}, {4096, 200}, {64, 1 << 20}, {4096, 12}}
		lim := limits[int(data[0])%len(limits)]
		w := newBlockWriter(rand.New(rand.NewPCG(uint64(len(data)), 3)))
		for p := data[1:]; len(p) >= 2; {
			n := min(int(binary.BigEndian.Uint16(p)), len(p)-2)
			w.block(p[2 : 2+n])
			p = p[2+n:]
		}
		c := readerCase{tableSize: lim.table, maxList: lim.list, frames: w.buf.Bytes()}
		if diff, _ := compareReaders(c); diff != "" {
			t.Fatal(diff)
		}
	})
}

// TestHpackVarint compares the integer reader with what x/net's decoder
// accepts, at the boundaries of each prefix size.
func TestHpackVarint(t *testing.T) {
	t.Parallel()
	for _, n := range []uint8{4, 5, 6, 7} {
		for _, v := range []uint64{0, 1, 1<<n - 2, 1<<n - 1, 1 << n, 127 + 1<<n, 1 << 20, 1<<62 - 1} {
			b := appendVarint(nil, 0, n, v)
			got, w := hpackVarint(b, n)
			if got != v || w != len(b) {
				t.Errorf("prefix %d value %d: got %d (width %d of %d)", n, v, got, w, len(b))
			}
			if _, w := hpackVarint(b[:len(b)-1], n); w != 0 {
				t.Errorf("prefix %d value %d: a truncated integer was read", n, v)
			}
		}
	}
	overlong := append([]byte{0x7f}, bytes.Repeat([]byte{0x80}, 9)...)
	if _, w := hpackVarint(append(overlong, 0), 7); w != 0 {
		t.Error("an integer x/net refuses as too long was read")
	}
}
