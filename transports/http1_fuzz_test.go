package transports

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/rosetta-gateway/rosetta/transports/headlimit"
)

var fuzzLimits = headlimit.Limits{MaxURIBytes: 8192, MaxHeaderBytes: 61440, MaxHeaderCount: 100}

// goChunkedEnd reads body as the chunked body of a request with
// net/http's own reader (the server's, behind http.ReadRequest) and
// returns where net/http found its end.
func goChunkedEnd(t *testing.T, body []byte) (int, error) {
	const head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	r := bytes.NewReader(append([]byte(head), body...))
	br := bufio.NewReaderSize(r, 4096) // net/http's size
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	if _, err := io.Copy(io.Discard, req.Body); err != nil {
		return -1, err
	}
	return len(body) - br.Buffered() - r.Len(), nil
}

// FuzzHTTP1Chunked checks the chunked-body scanner against net/http's
// reader: where the scanner finds the end, net/http must find it too;
// where net/http finds it, the scanner must too, or refuse the body
// (being stricter is allowed). The body is fed in pieces of every size.
func FuzzHTTP1Chunked(f *testing.F) {
	for _, s := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"5;a=b;c\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n",
		"5  \r\nhello\r\n0\r\n\r\n",
		"5 ;x\r\nhello\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"5\r\nhelloXX0\r\n\r\n",
		"0\r\nX: y\n\nGET /smuggled HTTP/1.1\r\n\r\n",
		"0\r\n X: y\r\n\r\n",
		"00000000000000005\r\nhello\r\n0\r\n\r\n",
		"0000000000000005\r\nhello\r\n0\r\n\r\n",
		"1;" + string(bytes.Repeat([]byte("e"), 5000)) + "\r\nx\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, piece uint8) {
		goEnd, goErr := goChunkedEnd(t, body)
		var cs chunkScan
		end, bad := -1, -1
		step := int(piece)%64 + 1
		for off := 0; off < len(body) && end < 0 && bad < 0; off += step {
			p := body[off:min(off+step, len(body))]
			e, b := cs.scan(p)
			if e >= 0 {
				end = off + e
			}
			if b >= 0 {
				bad = off + b
			}
		}
		switch {
		case end >= 0 && (goErr != nil || goEnd != end):
			t.Fatalf("scanner: end at %d; net/http: end at %d, %v", end, goEnd, goErr)
		case goErr == nil && end != goEnd && bad < 0:
			t.Fatalf("net/http: end at %d; scanner: end %d, refused at %d", goEnd, end, bad)
		}
	})
}

// FuzzHTTP1Head checks the head scanner against net/http's parser: a head
// that both accept must end at the same byte and frame its body the same
// way, and a head net/http parses must not leave the scanner waiting. For
// a head the HTTP/1.1 lane takes, its request must be net/http's
// (checkLaneParse).
func FuzzHTTP1Head(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 05\r\nContent-Length: 5\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n",
		"POST /a HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:\t7\t\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\nContent-Length: 1\r\n\r\n",
		"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.5\r\nHost: x\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		// For the lane:
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\nGET /x?y=1&z=%20 HTTP/1.1\r\nhost: a.test:80\r\nuser-agent: u\r\naccept: */*\r\n\r\n",
		"GET /a HTTP/1.1\nHost: a\nX-Dup: 1\nx-dup: 2\nConnection: keep-alive, Close\n\n",
		"HEAD /a HTTP/1.1\r\nHost: \r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET //x/../y HTTP/1.1\r\nHost: [::1]:8080\r\nX_Under_Score: v \t\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"DELETE /a HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var h headScan
		h.reset()
		done, refused := h.scan(in, fuzzLimits)
		if done && refused == nil && h.laneTakes() {
			checkLaneParse(t, &h, in)
		}
		r := bytes.NewReader(in)
		br := bufio.NewReaderSize(r, 4096)
		req, err := http.ReadRequest(br)
		if err != nil {
			return // net/http answers 400 and closes: nothing follows
		}
		if refused != nil || h.pri {
			return // refused; or HTTP/2, which net/http hands to package h2
		}
		if !done {
			t.Fatalf("net/http parsed the head; the scanner waits for more")
		}
		goLen := len(in) - br.Buffered() - r.Len()
		if goLen != h.off {
			t.Fatalf("head length: scanner %d; net/http %d", h.off, goLen)
		}
		switch {
		case h.chunked:
			if len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked" {
				t.Fatalf("scanner: chunked; net/http: %v, length %d", req.TransferEncoding, req.ContentLength)
			}
		case req.TransferEncoding != nil:
			t.Fatalf("net/http: %v; scanner: length %d", req.TransferEncoding, h.cl)
		case max(h.cl, 0) != req.ContentLength:
			t.Fatalf("body length: scanner %d; net/http %d", h.cl, req.ContentLength)
		}
	})
}

// checkLaneParse parses the head h scanned at the start of b as the lane
// does and, when the lane takes the request, checks that net/http reads
// the same method, target, URL, Host, header and Connection: close.
func checkLaneParse(t *testing.T, h *headScan, b []byte) {
	t.Helper()
	lc := &laneConn{peer: "192.0.2.1:1234", hc: &http1Conn{head: *h}}
	req, ok := lc.parse(b[h.lead:h.off])
	if !ok {
		return // net/http's to answer
	}
	// Empty lines before the request line: the lane ignores them, as
	// RFC 9112 §2.2 says a server should; net/http does only after a
	// POST, so it gets the head without them.
	ref, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[h.lead:h.off])))
	if err != nil {
		t.Fatalf("the lane took a head net/http refuses (%v): %q", err, b[:h.off])
	}
	delete(ref.Header, "Host") // as net/http's server does
	got := fmt.Sprintf("%s %s %s host=%q close=%v %v", req.Method, req.RequestURI, req.URL, req.Host, req.Close, req.Header)
	want := fmt.Sprintf("%s %s %s host=%q close=%v %v", ref.Method, ref.RequestURI, ref.URL, ref.Host, ref.Close, ref.Header)
	if got != want {
		t.Fatalf("head %q:\n lane:     %s\n net/http: %s", b[:h.off], got, want)
	}
}

// BenchmarkHTTP1Head is the per-request cost of the HTTP/1.1 head checks:
// scanning a typical head of ten fields.
func BenchmarkHTTP1Head(b *testing.B) {
	head := []byte("GET /v1/shelves/42/books?page_size=20&page_token=CgRib29r HTTP/1.1\r\n" +
		"Host: api.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: application/json\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo\r\n" +
		"Content-Type: application/json\r\nX-Request-Id: 7f8d6c1e-4b1a-4a3e-9d59-2f0b5d7e1c11\r\n" +
		"Accept-Encoding: gzip\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-Tenant: acme\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(head)))
	var h headScan
	for b.Loop() {
		h.reset()
		if done, e := h.scan(head, fuzzLimits); !done || e != nil {
			b.Fatal(e)
		}
	}
}
