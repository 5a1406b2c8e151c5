package h2call

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzFraming feeds DATA split anywhere to a call's framing and checks
// that the messages come out whole and every byte's credit is owed once.
func FuzzFraming(f *testing.F) {
	f.Add([]byte("hello"), []byte{1, 2, 3}, uint8(2))
	f.Add([]byte{}, []byte{0}, uint8(1))
	f.Add(bytes.Repeat([]byte{0xab}, 70000), []byte{7, 255, 13, 1}, uint8(3))
	f.Fuzz(func(t *testing.T, payload, cuts []byte, count uint8) {
		n := int(count%5) + 1
		var wire []byte
		var want [][]byte
		for i := range n {
			msg := payload[:len(payload)*(i+1)/n]
			want = append(want, msg)
			wire = binary.BigEndian.AppendUint32(append(wire, 0), uint32(len(msg)))
			wire = append(wire, msg...)
		}
		c := &call{serverStreams: true, o: callOptions{maxRecv: 1 << 30}}
		c.queue = c.q0[:0]
		credited := 0
		for i := 0; len(wire) > 0; i++ {
			k := len(wire)
			if len(cuts) > 0 {
				k = min(k, int(cuts[i%len(cuts)])+1)
			}
			cr, err := c.frameLocked(wire[:k])
			if err != nil {
				t.Fatal(err)
			}
			credited += cr
			wire = wire[k:]
		}
		if len(c.queue) != n {
			t.Fatalf("%d messages framed; want %d", len(c.queue), n)
		}
		for i, m := range c.queue {
			if !bytes.Equal(m.data, want[i]) {
				t.Fatalf("message %d: %d bytes; want %d", i, len(m.data), len(want[i]))
			}
			credited += m.owed
		}
		if total := n*grpcHeaderLen + func() int {
			s := 0
			for _, m := range want {
				s += len(m)
			}
			return s
		}(); credited != total || c.curOwed != 0 {
			t.Fatalf("credit %d (+%d pending); want %d", credited, c.curOwed, total)
		}
	})
}

func TestEncodeTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0n"},
		{-time.Second, "0n"},
		{time.Nanosecond, "1n"},
		{99999999 * time.Nanosecond, "99999999n"},
		{100000000 * time.Nanosecond, "100000u"},
		{100000001 * time.Nanosecond, "100001u"},
		{time.Hour, "3600000m"},
		{100000 * time.Second, "100000S"},
		{1000000 * time.Second, "1000000S"},
		{time.Duration(1<<63 - 1), "2562048H"},
	} {
		if got := encodeTimeout(tc.d); got != tc.want {
			t.Errorf("encodeTimeout(%v) = %q; want %q", tc.d, got, tc.want)
		}
	}
}

func TestDecodeGrpcMessage(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                "",
		"plain":           "plain",
		"50%25":           "50%",
		"caf%C3%A9":       "café",
		"%zz and %4":      "%zz and %4",
		"end%":            "end%",
		"%41%42%43":       "ABC",
		"line%0Anext%0D.": "line\nnext\r.",
	} {
		if got := decodeGrpcMessage(in); got != want {
			t.Errorf("decodeGrpcMessage(%q) = %q; want %q", in, got, want)
		}
	}
}
