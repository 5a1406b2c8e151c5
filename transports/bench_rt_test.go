package transports

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkHTTP1RoundTrip is one HTTP/1.1 GET with ten header fields on a
// keep-alive connection, through a real socket: the whole per-request
// path, the head checks included.
func BenchmarkHTTP1RoundTrip(b *testing.B) {
	s, err := NewServer(listenerConfig(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	s.Serve()
	defer s.Shutdown(b.Context())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr().String()+"/v1/shelves/42/books?page_size=20", nil)
	for _, kv := range [][2]string{
		{"Accept", "application/json"}, {"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"},
		{"X-Request-Id", "7f8d6c1e-4b1a-4a3e-9d59-2f0b5d7e1c11"}, {"X-Tenant", "acme"}, {"Cookie", "a=b; c=d"},
	} {
		req.Header.Set(kv[0], kv[1])
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
