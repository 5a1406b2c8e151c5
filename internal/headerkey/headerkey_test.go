package headerkey

import (
	"net/textproto"
	"strings"
	"testing"
)

// TestAppend agrees with net/textproto on token names.
func TestAppend(t *testing.T) {
	for _, name := range []string{"", "a", "content-type", "CONTENT-TYPE", "X-Request-Id", "x_under-score", "-x", "a--b", "www-authenticate", "X-ABC-def1"} {
		if got, want := string(Append(nil, name)), textproto.CanonicalMIMEHeaderKey(name); got != want {
			t.Errorf("Append(%q) = %q; want %q", name, got, want)
		}
	}
}

// BenchmarkGetAbsent looks up fields a header does not have, by their
// canonical and lower-case names (a response's Transfer-Encoding, a
// request's Connect-Protocol-Version).
func BenchmarkGetAbsent(b *testing.B) {
	h := map[string][]string{"Content-Type": {"a"}, "Date": {"d"}, "X-Cache": {"HIT"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = Get(h, "Transfer-Encoding")
		_ = Get(h, "connect-protocol-version")
	}
}

func BenchmarkAppend(b *testing.B) {
	b.ReportAllocs()
	var buf [64]byte
	for b.Loop() {
		_ = Append(buf[:0], "x-forwarded-for")
	}
}

// TestValues finds a field by its canonical name, a lower-case one and
// a name longer than the stack buffer, and returns the header's own slice.
func TestValues(t *testing.T) {
	long := "X-" + strings.Repeat("Long-", 14) + "Name" // 76 bytes
	h := map[string][]string{"Content-Type": {"a", "b"}, long: {"c"}, "x-raw": {"d"}}
	for _, tc := range []struct{ name, want string }{
		{"Content-Type", "a"}, {"content-type", "a"}, {strings.ToLower(long), "c"}, {"x-raw", "d"}, {"Accept", ""}, {"accept", ""}, {"X-RAW", ""},
	} {
		if got := Get(h, tc.name); got != tc.want {
			t.Errorf("Get(%q) = %q; want %q", tc.name, got, tc.want)
		}
	}
	if v := Values(h, "content-type"); len(v) != 2 || &v[0] != &h["Content-Type"][0] {
		t.Errorf("Values(content-type) = %v; want the header's own slice", v)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Get(h, "content-type") }); n != 0 {
		t.Errorf("Get of a lower-case name allocates %v times; want 0", n)
	}
}
