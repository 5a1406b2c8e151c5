package h2_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/transports/headlimit"
)

// stubRelay is the Events of a stream the test's Intercept took: it
// gives the request body's credit back and ignores the rest.
type stubRelay struct{}

func (stubRelay) Headers(*h2.Stream, []hpack.HeaderField, bool) {}
func (stubRelay) Data(s *h2.Stream, p []byte, _ bool)           { s.Credit(len(p)) }
func (stubRelay) Reset(*h2.Stream, error)                       {}

// headLimitServer serves with small head limits. Its Intercept takes the
// requests with Content-Type application/grpc (answering 200 at once) and
// counts every head it sees; its handler counts the requests it serves.
func headLimitServer(t *testing.T, listSize uint32) (ts *testServer, intercepted, handled *atomic.Int32) {
	intercepted, handled = new(atomic.Int32), new(atomic.Int32)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		_, _ = w.Write([]byte("ok"))
	})
	ts = startServer(t, h, func(s *h2.Server) {
		s.Limits.MaxHeaderListSize = listSize
		s.HeadLimits = headlimit.Limits{MaxURIBytes: 64, MaxHeaderBytes: 1024, MaxHeaderCount: 10}
		s.Intercept = func(st *h2.Stream, head *h2.RequestHead) h2.Events {
			intercepted.Add(1)
			if head.Get("content-type") != "application/grpc" {
				return nil
			}
			_ = st.WriteHeaders([]hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "grpc-status", Value: "0"}}, true)
			return stubRelay{}
		}
	})
	return ts, intercepted, handled
}

func fields(n int, name string, value string) []hpack.HeaderField {
	f := make([]hpack.HeaderField, n)
	for i := range f {
		f[i] = hpack.HeaderField{Name: fmt.Sprintf("%s-%d", name, i), Value: value}
		if name == "cookie" {
			f[i].Name = "cookie"
		}
	}
	return f
}

// TestHeadLimits checks that requests over the head limits get 431, 414
// or 400 with a plain-text reason before Intercept or the handler sees
// them, on the handler path and on the intercepted (relay) path alike, and
// that the connection serves on.
func TestHeadLimits(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"handler", "intercepted"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			ts, intercepted, handled := headLimitServer(t, 0)
			var extra []hpack.HeaderField
			if path == "intercepted" {
				extra = []hpack.HeaderField{{Name: "content-type", Value: "application/grpc"}}
			}
			c := dialRaw(t, ts.Addr)
			id := uint32(1)
			for _, tc := range []struct {
				name   string
				path   string
				fields []hpack.HeaderField
				status string
				body   string
			}{
				{"too many fields", "/", fields(11, "x-f", "1"), "431", "request header fields exceed 10 (max_header_count)\n"},
				{"fields too large", "/", fields(2, "x-big", strings.Repeat("v", 500)), "431", "request header fields exceed 1024 bytes (max_header_bytes)\n"},
				{"path too long", "/" + strings.Repeat("p", 64), nil, "414", "request target exceeds 64 bytes (max_uri_bytes)\n"},
				{"encoded NUL", "/books/%00", nil, "400", "request path contains an encoded control character (%00-%1F or %7F)\n"},
				{"encoded DEL", "/books/%7f", nil, "400", "request path contains an encoded control character (%00-%1F or %7F)\n"},
			} {
				c.request(id, "POST", tc.path, true, append(extra, tc.fields...)...)
				status, body := c.response(id)
				if status != tc.status || string(body) != tc.body {
					t.Errorf("%s: got %s %q; want %s %q", tc.name, status, body, tc.status, tc.body)
				}
				id += 2
			}
			if n := intercepted.Load(); n != 0 {
				t.Errorf("Intercept saw %d refused heads; want 0", n)
			}
			if n := handled.Load(); n != 0 {
				t.Errorf("handler served %d refused requests; want 0", n)
			}
			// Within the limits: nine fields plus split cookies (one field),
			// and an encoded line end in the query.
			ok := append(append(extra, fields(8, "x-f", "1")...), fields(12, "cookie", "a=b")...)
			c.request(id, "POST", "/search?q=a%0Ab", true, ok...)
			if status, _ := c.response(id); status != "200" {
				t.Errorf("request within the limits: got %s; want 200", status)
			}
			if path == "intercepted" && intercepted.Load() != 1 {
				t.Errorf("Intercept saw %d heads; want 1", intercepted.Load())
			}
		})
	}
}

// TestHeadLimitBodyRefused checks that a refused request whose body is
// still coming gets its answer, then RST_STREAM NO_ERROR, and that the
// connection's flow control still lets other streams through.
func TestHeadLimitBodyRefused(t *testing.T) {
	t.Parallel()
	ts, _, handled := headLimitServer(t, 0)
	c := dialRaw(t, ts.Addr)
	c.request(1, "POST", "/"+strings.Repeat("p", 100), false)
	if status, body := c.response(1); status != "414" || !strings.Contains(string(body), "max_uri_bytes") {
		t.Fatalf("got %s %q; want 414 naming max_uri_bytes", status, body)
	}
	rst := nextAs[*http2.RSTStreamFrame](c)
	if rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeNo {
		t.Fatalf("got %v; want RST_STREAM NO_ERROR on stream 1", rst)
	}
	// Body sent before the reset arrived is still credited.
	if err := c.fr.WriteData(1, true, make([]byte, 16000)); err != nil {
		t.Fatal(err)
	}
	c.request(3, "POST", "/", false)
	if err := c.fr.WriteData(3, true, make([]byte, 16000)); err != nil {
		t.Fatal(err)
	}
	if status, body := c.response(3); status != "200" || string(body) != "ok" {
		t.Errorf("next stream: got %s %q; want 200 ok", status, body)
	}
	if n := handled.Load(); n != 1 {
		t.Errorf("handler served %d requests; want 1", n)
	}
}

// TestHeadListTruncated checks the header blocks past MaxHeaderListSize,
// which the Framer stops decoding: 431, or 414 when the :path decoded
// shows why, with a reason, on a connection that serves on.
func TestHeadListTruncated(t *testing.T) {
	t.Parallel()
	ts, intercepted, handled := headLimitServer(t, 4096)
	c := dialRaw(t, ts.Addr)
	if got := c.settings[http2.SettingMaxHeaderListSize]; got != 4096 {
		t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE: got %d; want 4096", got)
	}
	for i, tc := range []struct {
		path   string
		fields []hpack.HeaderField
		status string
		reason string
	}{
		{"/", fields(4, "x-big", strings.Repeat("v", 1000)), "431", "max_header_bytes"},
		{"/" + strings.Repeat("p", 3000), fields(2, "x-big", strings.Repeat("v", 1000)), "414", "max_uri_bytes"},
	} {
		id := uint32(2*i + 1)
		c.request(id, "GET", tc.path, true, tc.fields...)
		status, body := c.response(id)
		if status != tc.status || !strings.Contains(string(body), tc.reason) {
			t.Errorf("got %s %q; want %s naming %s", status, body, tc.status, tc.reason)
		}
	}
	c.request(5, "GET", "/", true)
	if status, _ := c.response(5); status != "200" {
		t.Errorf("next request: got %s; want 200", status)
	}
	if intercepted.Load() != 1 || handled.Load() != 1 {
		t.Errorf("Intercept saw %d heads, handler %d; want 1 and 1", intercepted.Load(), handled.Load())
	}
}

// TestRawControlInPath checks that a raw control character in :path (not
// percent-encoded) makes the request malformed (RFC 9113 §8.2.1): the
// Framer resets the stream with PROTOCOL_ERROR before Intercept or the
// handler sees it, and the connection serves on.
func TestRawControlInPath(t *testing.T) {
	t.Parallel()
	ts, intercepted, handled := headLimitServer(t, 0)
	c := dialRaw(t, ts.Addr)
	c.request(1, "GET", "/books/\x00", true)
	rst := nextAs[*http2.RSTStreamFrame](c)
	if rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got %v; want RST_STREAM PROTOCOL_ERROR on stream 1", rst)
	}
	c.request(3, "GET", "/", true)
	if status, _ := c.response(3); status != "200" {
		t.Errorf("next request: got %s; want 200", status)
	}
	if intercepted.Load() != 1 || handled.Load() != 1 {
		t.Errorf("Intercept saw %d heads, handler %d; want 1 and 1", intercepted.Load(), handled.Load())
	}
}
