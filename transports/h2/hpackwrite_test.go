package h2

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestHeaderWriterMatchesEncoder: a headerWriter writes the very bytes
// x/net's Encoder writes, block after block, whatever the fields, the
// Sensitive flags and the table size updates between blocks.
func TestHeaderWriterMatchesEncoder(t *testing.T) {
	t.Parallel()
	names := []string{"authorization", "cookie", "x-api-key", ":path", "content-type", "proxy-authorization", "set-cookie", "x-custom"}
	values := []string{"Bearer a", "Bearer b", testToken, "", "v", "application/grpc", "k=1; l=2", string(make([]byte, 5000))}
	for seed := range 300 {
		rnd := rand.New(rand.NewPCG(uint64(seed), 11))
		w := newHeaderWriter(4096)
		var ref bytes.Buffer
		enc := hpack.NewEncoder(&ref)
		enc.SetMaxDynamicTableSizeLimit(4096)
		dec := hpack.NewDecoder(4096, nil)
		pending := false // a size update waits for the next field
		randomFields := func() []hpack.HeaderField {
			fields := make([]hpack.HeaderField, rnd.IntN(6))
			for i := range fields {
				fields[i] = hpack.HeaderField{
					Name:      names[rnd.IntN(len(names))],
					Value:     values[rnd.IntN(len(values))],
					Sensitive: rnd.IntN(2) == 0,
				}
			}
			return fields
		}
		// Blocks repeat (remembered blocks are reused) between new ones
		// (which may change the table and so must forget them).
		pool := [][]hpack.HeaderField{randomFields(), randomFields(), randomFields()}
		for block := range 60 {
			fields := randomFields()
			if rnd.IntN(3) > 0 {
				fields = slices.Clone(pool[rnd.IntN(len(pool))])
			}
			// One update at a time: x/net's decoder refuses the two the
			// Encoder writes after two changes (RFC 7541 allows them).
			if !pending && rnd.IntN(6) == 0 {
				size := uint32(rnd.IntN(5000))
				w.setMaxTableSize(size)
				enc.SetMaxDynamicTableSize(size)
				pending = true
			}
			if len(fields) > 0 {
				pending = false
			}
			got := w.encode(fields)
			ref.Reset()
			for _, f := range fields {
				_ = enc.WriteField(f)
			}
			if !bytes.Equal(got, ref.Bytes()) {
				t.Fatalf("seed %d block %d: %x; want %x", seed, block, got, ref.Bytes())
			}
			decoded, err := dec.DecodeFull(got)
			if err != nil {
				t.Fatalf("seed %d block %d: decode: %v", seed, block, err)
			}
			for i := range fields {
				if decoded[i] != fields[i] {
					t.Fatalf("seed %d block %d: field %d decodes to %+v; want %+v", seed, block, i, decoded[i], fields[i])
				}
			}
		}
	}
}

// TestHeaderWriterCachesSensitive: the second block with the same token
// copies its bytes instead of encoding them.
func TestHeaderWriterCachesSensitive(t *testing.T) {
	w := newHeaderWriter(4096)
	fields := []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: "authorization", Value: testToken, Sensitive: true}}
	first := append([]byte(nil), w.encode(fields)...)
	if w.sens.get(fields[1]) == nil {
		t.Fatal("the token's encoding was not kept")
	}
	if second := w.encode(fields); !bytes.Equal(second[1:], first[1:]) {
		t.Errorf("second block %x; want %x after the indexed :method", second, first)
	}
	if w.memos[0].gen != w.gen || !slices.Equal(w.memos[0].fields, fields) {
		t.Error("a block that left the table alone was not remembered")
	}
	other := hpack.HeaderField{Name: "x-token", Value: testToken, Sensitive: true}
	w.encode([]hpack.HeaderField{fields[0], other})
	if w.sens.get(other) != nil {
		t.Error("a name outside the static table was cached; its encoding depends on the dynamic table")
	}
	if allocs := testing.AllocsPerRun(100, func() { w.encode(fields) }); allocs != 0 {
		t.Errorf("encoding a cached token allocates %.0f times; want 0", allocs)
	}
}
