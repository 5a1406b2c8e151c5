package transports

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

// echoServer answers every request with "<method> <path> <body sha256>"
// and records the paths it served.
type echoServer struct {
	*Server
	mu    sync.Mutex
	paths []string
}

func startEchoServer(t *testing.T) *echoServer {
	t.Helper()
	es := &echoServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		es.mu.Lock()
		es.paths = append(es.paths, r.URL.Path)
		es.mu.Unlock()
		sum := sha256.Sum256(b)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, hex.EncodeToString(sum[:4]))
	})
	es.Server = startServer(t, listenerConfig(), h, nil)
	return es
}

func (es *echoServer) served() []string {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]string(nil), es.paths...)
}

func shortSum(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// pipeline writes send on one connection and reads responses until the
// server closes it or want responses came; it returns "<status> <body>"
// for each, and whether the connection was closed after the last.
func pipeline(t *testing.T, addr, send string, want int) (answers []string, closed bool) {
	t.Helper()
	conn := dialRaw(t, addr)
	go func() { _, _ = io.WriteString(conn, send) }()
	br := bufio.NewReader(conn)
	for len(answers) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return answers, true
			}
			t.Fatalf("reading answer %d: %v", len(answers)+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		answers = append(answers, fmt.Sprintf("%d %s", resp.StatusCode, body))
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err := br.ReadByte()
	return answers, errors.Is(err, io.EOF)
}

// TestHTTP1Smuggling checks requests whose body framing is ambiguous
// (RFC 9112 §6.1, §6.3): each gets 400 (or 501 for a transfer coding
// net/http does not know) with a reason, the connection closes, and what
// follows the head on that connection is never served. Without the check,
// net/http serves the first (dropping Content-Length) and then the
// smuggled request.
func TestHTTP1Smuggling(t *testing.T) {
	t.Parallel()
	es := startEchoServer(t)
	addr := es.Addr().String()
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, head string
		want       string
	}{
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n",
			"400 request has both Content-Length and Transfer-Encoding\n"},
		{"TE and CL", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
			"400 request has both Content-Length and Transfer-Encoding\n"},
		{"CL and TE in other case", "POST /a HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n",
			"400 request has both Content-Length and Transfer-Encoding\n"},
		{"TE in HTTP/1.0", "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
			"400 Transfer-Encoding in an HTTP/1.0 request\n"},
		{"two TE fields", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
			"501 unsupported transfer coding (only chunked is)\n"},
		{"TE list", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			"501 unsupported transfer coding (only chunked is)\n"},
		{"two different CL", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
			"400 invalid Content-Length\n"},
		{"CL list", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", "400 invalid Content-Length\n"},
		{"signed CL", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", "400 invalid Content-Length\n"},
		{"space before colon", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", "400 malformed header field line\n"},
		{"folded TE", "POST /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n", "400 obsolete line folding in a header field\n"},
		{"CR in a value", "POST /a HTTP/1.1\r\nHost: x\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n", "400 invalid character in a header field value\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "0\r\n\r\n" + smuggled
			answers, closed := pipeline(t, addr, tc.head+body, 2)
			if len(answers) != 1 || answers[0] != tc.want || !closed {
				t.Errorf("got %q (closed %v); want [%q], then the connection closed", answers, closed, tc.want)
			}
		})
	}
	if got := es.served(); len(got) != 0 {
		t.Errorf("served %q; want nothing", got)
	}
	plainGet(t, "http://"+addr+"/")
}

// TestHTTP1Framing sends pipelined requests whose bodies (Content-Length,
// chunked with extensions and trailers) hold text that looks like request
// heads, smuggling attempts included: every request is served, in order,
// with its body intact, on one connection. The head checks follow the
// framing; they must not mistake a body for a head.
func TestHTTP1Framing(t *testing.T) {
	t.Parallel()
	es := startEchoServer(t)
	looksLikeHead := "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\nX-Big: " + strings.Repeat("a", 70_000) + "\r\n\r\n"
	chunked := fmt.Sprintf("%x;ext=1\r\n%s\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n", len(looksLikeHead), looksLikeHead)
	send := "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(looksLikeHead)) + "\r\n\r\n" + looksLikeHead +
		"POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked +
		"\r\n" + // tolerated after a POST (RFC 9112 §2.2)
		"GET /three HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 6000) + "\r\n\r\n" +
		"POST /four HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
	answers, closed := pipeline(t, es.Addr().String(), send, 4)
	want := []string{
		"200 POST /one " + shortSum(looksLikeHead),
		"200 POST /two " + shortSum(looksLikeHead+"0123456789abcdef"),
		"200 GET /three " + shortSum(""),
		"200 POST /four " + shortSum("abc"),
	}
	if strings.Join(answers, "\n") != strings.Join(want, "\n") || !closed {
		t.Errorf("got %q (closed %v);\nwant %q, then the connection closed (HTTP/1.0)", answers, closed, want)
	}
}

// TestHTTP1PipelinedRefusal checks a refused head pipelined behind a
// request being served: the first answer is complete, then the refusal,
// then the connection closes.
func TestHTTP1PipelinedRefusal(t *testing.T) {
	t.Parallel()
	es := startEchoServer(t)
	send := "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" +
		"GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /third HTTP/1.1\r\nHost: x\r\n\r\n"
	answers, closed := pipeline(t, es.Addr().String(), send, 3)
	want := []string{"200 POST /first " + shortSum("hi"), "414 request target exceeds 8192 bytes (max_uri_bytes)\n"}
	if strings.Join(answers, "\n") != strings.Join(want, "\n") || !closed {
		t.Errorf("got %q (closed %v); want %q, then the connection closed", answers, closed, want)
	}
	if got := es.served(); len(got) != 1 {
		t.Errorf("served %q; want /first only", got)
	}
}

// TestHTTP1MalformedHeads checks heads refused for their syntax: each gets
// 400 (or 505) with a reason and the connection closes.
func TestHTTP1MalformedHeads(t *testing.T) {
	t.Parallel()
	es := startEchoServer(t)
	for _, tc := range []struct{ name, send, want string }{
		{"raw control character in the target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", "400 request target contains a control character\n"},
		{"raw DEL in the query", "GET /a?b=\x7f HTTP/1.1\r\nHost: x\r\n\r\n", "400 request target contains a control character\n"},
		{"NUL in a field value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n", "400 invalid character in a header field value\n"},
		{"no version", "GET /\r\nHost: x\r\n\r\n", "400 malformed request line\n"},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505 unsupported HTTP version\n"},
		{"field without colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", "400 malformed header field line\n"},
		{"long method", strings.Repeat("M", 9000) + " / HTTP/1.1\r\n\r\n", "400 malformed request line\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers, closed := pipeline(t, es.Addr().String(), tc.send, 2)
			if len(answers) != 1 || answers[0] != tc.want || !closed {
				t.Errorf("got %q (closed %v); want [%q], then the connection closed", answers, closed, tc.want)
			}
		})
	}
	if got := es.served(); len(got) != 0 {
		t.Errorf("served %q; want nothing", got)
	}
}

// TestHTTP1Upgrade checks that an upgraded connection is passed through
// untouched (bytes that look like a bad head included), and that after a
// declined upgrade the connection goes on with checked HTTP/1.1.
func TestHTTP1Upgrade(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/upgrade" {
			_, _ = io.WriteString(w, "plain "+r.URL.Path)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(conn, brw) // echo until the client half-closes
	})
	s := startServer(t, listenerConfig(), h, nil)
	addr := s.Addr().String()

	conn := dialRaw(t, addr)
	raw := "GET /" + strings.Repeat("a", 10_000) + " HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n\x00\x01"
	if _, err := io.WriteString(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v; want 101", resp, err)
	}
	go func() {
		_, _ = io.WriteString(conn, raw)
		_ = conn.(*net.TCPConn).CloseWrite()
	}()
	echoed, err := io.ReadAll(br)
	if err != nil || string(echoed) != raw {
		t.Errorf("echoed %d bytes (%v); want the %d bytes sent", len(echoed), err, len(raw))
	}

	// Declined: the handler answers 200 without hijacking.
	answers, closed := pipeline(t, addr, "GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n", 1)
	if len(answers) != 1 || answers[0] != "200 plain /nope" || closed {
		t.Fatalf("declined upgrade: got %q (closed %v); want [200 plain /nope] on an open connection", answers, closed)
	}
	answers, closed = pipeline(t, addr, "GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"+
		"GET /after HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if strings.Join(answers, ",") != "200 plain /nope,200 plain /after" || closed {
		t.Errorf("after a declined upgrade: got %q (closed %v); want /nope, then /after, on an open connection", answers, closed)
	}
	// A head behind a declined upgrade is checked whole: none of it went
	// to net/http before the handler declined.
	answers, closed = pipeline(t, addr, "GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"+
		"GET /"+strings.Repeat("a", 9000)+" HTTP/1.1\r\nHost: x\r\n\r\n", 3)
	if strings.Join(answers, ",") != "200 plain /nope,414 request target exceeds 8192 bytes (max_uri_bytes)\n" || !closed {
		t.Errorf("refused head after a declined upgrade: got %q (closed %v); want /nope, then 414, then the connection closed", answers, closed)
	}
}

// TestHTTP1HeadTimeout checks that a head that starts arriving on an idle
// keep-alive connection must arrive whole within read_header_timeout, as
// net/http bounds it, not within idle_timeout: the connection is closed.
func TestHTTP1HeadTimeout(t *testing.T) {
	t.Parallel()
	cfg := listenerConfig()
	cfg.ReadHeaderTimeout = config.Duration(200 * time.Millisecond)
	cfg.IdleTimeout = config.Duration(time.Minute)
	s := startServer(t, cfg, whoHandler, nil)
	conn := dialRaw(t, s.Addr().String())
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	// The second head never ends: the server must close the connection
	// (long before the client's 10s deadline or the idle timeout).
	if b, err := io.ReadAll(br); err != nil {
		t.Errorf("after an incomplete head: %q, %v; want the connection closed", b, err)
	}
}

// TestTLSPlainHTTPRequest checks that an HTTP request sent to a TLS port
// still gets net/http's hint now that the listener runs the handshakes.
func TestTLSPlainHTTPRequest(t *testing.T) {
	t.Parallel()
	cfg, _ := h3Listener(t)
	cfg.HTTP3 = false
	s := startServer(t, cfg, whoHandler, nil)
	got := rawExchange(t, s.Addr().String(), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false)
	if want := "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
