package headlimit

import (
	"strings"
	"testing"
)

var testLimits = Limits{MaxURIBytes: 64, MaxHeaderBytes: 1024, MaxHeaderCount: 10}

func TestTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, target string
		status       int // 0: accepted
	}{
		{"plain", "/v1/books/1?view=full", 0},
		{"at the limit", "/" + strings.Repeat("a", 63), 0},
		{"over the limit", "/" + strings.Repeat("a", 64), 414},
		{"asterisk", "*", 0},
		{"authority", "example.com:443", 0},
		{"encoded printable", "/a%20b/%2F/%7E/%7e/%80/%FF", 0},
		{"encoded NUL", "/books/%00", 400},
		{"encoded CR lower case", "/books/%0d", 400},
		{"encoded LF", "/books/a%0Ab", 400},
		{"encoded US", "/books/%1F", 400},
		{"encoded DEL", "/books/%7F", 400},
		{"encoded del lower case", "/books/%7f", 400},
		{"percent at end", "/books/%0", 0},
		{"percent and non-hex", "/books/%0g", 0},
		{"encoded LF in query", "/search?q=a%0Ab", 0},
		{"raw NUL", "/books/\x00", 400},
		{"raw tab", "/books/\t", 400},
		{"raw DEL in query", "/search?q=\x7f", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := testLimits.Target(tc.target)
			switch {
			case tc.status == 0 && err != nil:
				t.Errorf("Target(%q): got %d %q; want it accepted", tc.target, err.Status, err.Msg)
			case tc.status != 0 && (err == nil || err.Status != tc.status):
				t.Errorf("Target(%q): got %v; want status %d", tc.target, err, tc.status)
			}
		})
	}
	if got, want := testLimits.Target("/"+strings.Repeat("a", 64)).Msg, "request target exceeds 64 bytes (max_uri_bytes)"; got != want {
		t.Errorf("message: got %q; want %q", got, want)
	}
	if err := (Limits{}).Target("/" + strings.Repeat("a", 1<<16)); err != nil {
		t.Errorf("no limit: got %v; want the target accepted", err)
	}
}

func TestFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		count, size int
		want        string
	}{
		{10, 1024, ""},
		{11, 100, "request header fields exceed 10 (max_header_count)"},
		{1, 1025, "request header fields exceed 1024 bytes (max_header_bytes)"},
		{11, 1025, "request header fields exceed 10 (max_header_count)"},
	} {
		err := testLimits.Fields(tc.count, tc.size)
		got := ""
		if err != nil {
			got = err.Msg
			if err.Status != 431 {
				t.Errorf("Fields(%d, %d): status %d; want 431", tc.count, tc.size, err.Status)
			}
		}
		if got != tc.want {
			t.Errorf("Fields(%d, %d): got %q; want %q", tc.count, tc.size, got, tc.want)
		}
	}
	if got := FieldSize("accept", "*/*"); got != 6+3+32 {
		t.Errorf("FieldSize: got %d; want 41", got)
	}
}

// BenchmarkCheck is the per-request cost of the checks on a typical
// request: its target and ten header fields.
func BenchmarkCheck(b *testing.B) {
	lim := Limits{MaxURIBytes: 8192, MaxHeaderBytes: 61440, MaxHeaderCount: 100}
	target := "/v1/shelves/42/books?page_size=20&page_token=CgRib29r"
	fields := [][2]string{
		{"host", "api.example.com"}, {"user-agent", "curl/8.5.0"}, {"accept", "application/json"},
		{"authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"},
		{"content-type", "application/json"}, {"x-request-id", "7f8d6c1e-4b1a-4a3e-9d59-2f0b5d7e1c11"},
		{"accept-encoding", "gzip"}, {"te", "trailers"}, {"grpc-timeout", "5S"}, {"x-tenant", "acme"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if lim.Target(target) != nil {
			b.Fatal("refused")
		}
		size := 0
		for _, f := range fields {
			size += FieldSize(f[0], f[1])
		}
		if lim.Fields(len(fields), size) != nil {
			b.Fatal("refused")
		}
	}
}
