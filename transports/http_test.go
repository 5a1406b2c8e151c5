package transports

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange writes send on a new TCP connection, half-closes it when
// closeWrite is set, and returns what the server wrote before closing.
func rawExchange(t *testing.T, addr string, send []byte, closeWrite bool) string {
	t.Helper()
	conn := dialRaw(t, addr)
	if _, err := conn.Write(send); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	got, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("reading the answer: %v (want an answer or a close, not a hang)", err)
	}
	return string(got)
}

// plainGet does a GET on a new connection and fails the test unless it
// gets 200.
func plainGet(t *testing.T, url string) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, body, err := get(&http.Client{Transport: tr, Timeout: 5 * time.Second}, url)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("normal request after bad input: %v %q", err, body)
	}
}

func TestCleartextMalformedInput(t *testing.T) {
	t.Parallel()
	cfg := listenerConfig()
	cfg.MaxHeaderBytes = 8 << 10
	s := startServer(t, cfg, whoHandler, nil)
	addr := s.Addr().String()
	for _, tc := range []struct {
		name       string
		send       []byte
		closeWrite bool
		want       string // prefix of the answer
	}{
		{"tcp garbage", []byte("\x00\xff\x13garbage \x01\x02\r\n\r\n"), false, "HTTP/1.1 400 Bad Request"},
		{"half h2 preface then close", []byte("PRI * HTTP/2.0\r\n\r\nS"), true, "HTTP/1.1 400 Bad Request"},
		{"h2 preface start then close", []byte("PRI * HT"), true, "HTTP/1.1 400 Bad Request"},
		{"h2 preface then garbage frame", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff"), true, "\x00\x00"}, // SETTINGS, then GOAWAY
		{"tls record", []byte("\x16\x03\x01\x00\x05hello"), false, "HTTP/1.1 400 Bad Request"},
		{"huge header", []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"), false, "HTTP/1.1 431 Request Header Fields Too Large"},
		// Requests shorter than 14 bytes wait for read_header_timeout:
		// net/http peeks for "PRI * HTTP/2.0" first.
		{"bad request line", []byte("GET /\r\nHost: x\r\n\r\n"), false, "HTTP/1.1 400 Bad Request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, addr, tc.send, tc.closeWrite)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("answer: got %.80q; want it to start with %q", got, tc.want)
			}
			plainGet(t, "http://"+addr+"/")
		})
	}
	t.Run("tls client", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost"})
		if err == nil {
			conn.Close()
			t.Fatal("TLS handshake with a cleartext port succeeded")
		}
		if !strings.Contains(err.Error(), "does not look like a TLS handshake") {
			t.Errorf("TLS client error: got %v; want crypto/tls's 'does not look like a TLS handshake'", err)
		}
		got := rawExchange(t, addr, []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), false)
		if !strings.Contains(got, "use http:// or enable tls") {
			t.Errorf("answer to a ClientHello: got %q; want the plain-text hint", got)
		}
		plainGet(t, "http://"+addr+"/")
	})
}

func TestH2C(t *testing.T) {
	t.Parallel()
	s := startServer(t, listenerConfig(), whoHandler, nil)
	if got := s.Protocols(); got != "h1,h2c" {
		t.Errorf("Protocols: got %s; want h1,h2c", got)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	_, body, err := get(&http.Client{Transport: tr}, "http://"+s.Addr().String()+"/")
	if err != nil || body != "HTTP/2.0 - 0" {
		t.Errorf("h2c GET: got %q, %v; want %q", body, err, "HTTP/2.0 - 0")
	}
}

// h2 frame types and settings used below (RFC 9113).
const (
	frameHeaders  = 0x1
	frameRST      = 0x3
	frameSettings = 0x4
	frameGoAway   = 0x7

	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6
)

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func writeFrame(t *testing.T, w io.Writer, typ, flags byte, stream uint32, payload []byte) {
	t.Helper()
	hdr := make([]byte, 9, 9+len(payload))
	hdr[0], hdr[1], hdr[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	hdr[3], hdr[4] = typ, flags
	binary.BigEndian.PutUint32(hdr[5:], stream)
	if _, err := w.Write(append(hdr, payload...)); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

// readFrame reads one frame: its type and payload.
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	payload := make([]byte, n)
	_, err := io.ReadFull(r, payload)
	return hdr[3], payload, err
}

// dialH2C opens a cleartext HTTP/2 connection and returns it with the
// server's SETTINGS.
func dialH2C(t *testing.T, addr string) (net.Conn, map[uint16]uint32) {
	t.Helper()
	conn := dialRaw(t, addr)
	if _, err := conn.Write([]byte(h2Preface)); err != nil {
		t.Fatal(err)
	}
	writeFrame(t, conn, frameSettings, 0, 0, nil)
	typ, payload, err := readFrame(conn)
	if err != nil || typ != frameSettings {
		t.Fatalf("first server frame: type %d, %v; want SETTINGS", typ, err)
	}
	settings := map[uint16]uint32{}
	for b := payload; len(b) >= 6; b = b[6:] {
		settings[binary.BigEndian.Uint16(b)] = binary.BigEndian.Uint32(b[2:])
	}
	return conn, settings
}

func TestH2Settings(t *testing.T) {
	t.Parallel()
	cfg := listenerConfig()
	cfg.MaxConcurrentStreams = 7
	cfg.MaxHeaderBytes = 16 << 10
	s := startServer(t, cfg, whoHandler, nil)
	_, settings := dialH2C(t, s.Addr().String())
	for id, want := range map[uint16]uint32{
		settingMaxConcurrentStreams: 7,
		settingMaxFrameSize:         h2MaxReadFrameSize,
		settingInitialWindowSize:    h2StreamWindow,
	} {
		if got := settings[id]; got != want {
			t.Errorf("setting 0x%x: got %d; want %d", id, got, want)
		}
	}
	// The header list decoded: the limits (max_header_bytes 16384,
	// max_uri_bytes 8192) plus headReadSlack, so that a request over them
	// gets an answer that names the limit.
	if got, want := settings[settingMaxHeaderListSize], uint32(16384+8192+headReadSlack); got != want {
		t.Errorf("MAX_HEADER_LIST_SIZE: got %d; want %d", got, want)
	}
}

// TestH2RapidReset checks that the server answers a client that opens and
// resets streams faster than its handlers finish (CVE-2023-44487) with
// GOAWAY ENHANCE_YOUR_CALM, and stays up for others.
func TestH2RapidReset(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			return
		}
		entered <- struct{}{}
		<-release // ignores cancellation, as a slow backend call would
	})
	cfg := listenerConfig()
	cfg.MaxConcurrentStreams = 2
	s := startServer(t, cfg, stuck, nil)
	t.Cleanup(func() { close(release) }) // runs before the shutdown
	conn, _ := dialH2C(t, s.Addr().String())
	// HEADERS for GET http://x/ from the HPACK static table (:method GET,
	// :scheme http, :path /) plus a literal :authority "x".
	block := []byte{0x82, 0x86, 0x84, 0x41, 0x01, 'x'}
	var frames bytes.Buffer
	for i := uint32(0); i < 40; i++ {
		stream := 2*i + 1
		writeFrame(t, &frames, frameHeaders, 0x4|0x1, stream, block) // END_HEADERS|END_STREAM
		writeFrame(t, &frames, frameRST, 0, stream, []byte{0, 0, 0, 0x8})
	}
	if _, err := conn.Write(frames.Bytes()); err != nil {
		t.Fatal(err)
	}
	for {
		typ, payload, err := readFrame(conn)
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if typ == frameGoAway {
			if code := binary.BigEndian.Uint32(payload[4:]); code != 0xb {
				t.Fatalf("GOAWAY code: got 0x%x; want 0xb (ENHANCE_YOUR_CALM)", code)
			}
			break
		}
	}
	plainGet(t, "http://"+s.Addr().String()+"/ok")
}
