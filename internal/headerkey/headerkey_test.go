package headerkey

import (
	"net/textproto"
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

func BenchmarkAppend(b *testing.B) {
	b.ReportAllocs()
	var buf [64]byte
	for b.Loop() {
		_ = Append(buf[:0], "x-forwarded-for")
	}
}
