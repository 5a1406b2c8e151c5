package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/transcoder"
)

// webSeen is what the plain HTTP test backend answers: what it received.
type webSeen struct {
	Backend, Method, Path, Query, Host string
	Header                             http.Header
	BodyBytes                          int64
}

// webBackend is the plain HTTP backend of these tests: /ws echoes
// WebSocket messages, /stream sends two chunks with a pause between them,
// anything else echoes the request as JSON (webSeen).
type webBackend struct {
	streamDone atomic.Bool
	streamNext chan struct{}
}

func (b *webBackend) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, append([]byte(name+": "), msg...)); err != nil {
					return
				}
			}
		case "/stream":
			defer b.streamDone.Store(true)
			_, _ = io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-b.streamNext:
			case <-time.After(5 * time.Second):
			}
			_, _ = io.WriteString(w, "second\n")
		default:
			n, _ := io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(webSeen{Backend: name, Method: r.Method, Path: r.URL.Path,
				Query: r.URL.RawQuery, Host: r.Host, Header: r.Header, BodyBytes: n})
		}
	})
}

const mixedConfig = `
listeners:
  - address: "127.0.0.1:0"
    max_body_bytes: 67108864
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
  web:
    kind: http
    targets: ["$WEB1", "$WEB2"]
  dead:
    kind: http
    targets: ["$DEAD"]
  slow:
    kind: http
    targets: ["$SLOW"]
routes:
  - uri: /api/*
    service: web
    strip_prefix: true
  - uri: /named/*
    service: web
    host_header: web.internal
  - uri: /readonly/*
    service: web
    methods: [GET, HEAD]
  - uri: /ws
    service: web
  - uri: /stream
    service: web
  - uri: /dead/*
    service: dead
  - uri: /slow/*
    service: slow
    timeout: 200ms
`

type mixedGateway struct {
	url, smallURL string // listener with 64 MiB bodies; with the 4 MiB default
	backend       *webBackend
	dead, slow    string
	client        *http.Client
}

// startMixed starts the gRPC test backend, two plain HTTP backends, a dead
// address, a slow backend and a gateway fronting them all.
func startMixed(t *testing.T) *mixedGateway {
	t.Helper()
	be := testkit.StartBackend(t)
	m := &mixedGateway{backend: &webBackend{streamNext: make(chan struct{})}}
	web1 := httptest.NewServer(m.backend.handler("web1"))
	t.Cleanup(web1.Close)
	web2 := httptest.NewServer(m.backend.handler("web2"))
	t.Cleanup(web2.Close)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	m.dead = testkit.RefusingAddr(t)
	m.slow = slow.Listener.Addr().String()
	yaml := strings.NewReplacer("$WEB1", web1.Listener.Addr().String(), "$WEB2", web2.Listener.Addr().String(),
		"$DEAD", m.dead, "$SLOW", m.slow).Replace(mixedConfig)
	url, g := startGateway(t, be.Addr, yaml)
	m.url, m.smallURL = url, "http://"+g.Addrs()[1].String()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	m.client = &http.Client{Transport: tr}
	return m
}

// web sends a request to the gateway and decodes the web backend's echo.
// Header pairs are "Name: value"; "Host: x" sets the request's Host.
func (m *mixedGateway) web(t *testing.T, method, path string, headers ...string) (response, webSeen) {
	t.Helper()
	req, err := http.NewRequest(method, m.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		if k == "Host" {
			req.Host = strings.TrimSpace(v)
		} else {
			req.Header.Add(k, strings.TrimSpace(v))
		}
	}
	resp, err := m.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var s webSeen
	if resp.StatusCode == http.StatusOK && method != http.MethodHead {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("%s %s: answer is not the backend's echo: %v: %s", method, path, err, body)
		}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}, s
}

func TestHTTPUpstreamRouting(t *testing.T) {
	t.Parallel()
	m := startMixed(t)

	t.Run("rest-still-served", func(t *testing.T) {
		expect(t, do(t, "GET", m.url+"/v1/echo/ok", ""), 200, `{"id": "ok"}`)
	})
	t.Run("strip-prefix+query", func(t *testing.T) {
		r, s := m.web(t, "GET", "/api/v1/users?id=7&q=a%20b")
		if r.status != 200 || s.Path != "/v1/users" || s.Query != "id=7&q=a%20b" {
			t.Errorf("got %d path %q query %q; want 200 /v1/users id=7&q=a%%20b", r.status, s.Path, s.Query)
		}
	})
	t.Run("no-strip", func(t *testing.T) {
		_, s := m.web(t, "GET", "/named/x")
		if s.Path != "/named/x" {
			t.Errorf("path: got %q; want /named/x", s.Path)
		}
	})
	t.Run("host/client", func(t *testing.T) {
		_, s := m.web(t, "GET", "/api/h", "Host: shop.example.com")
		if s.Host != "shop.example.com" {
			t.Errorf("Host: got %q; want the client's shop.example.com", s.Host)
		}
	})
	t.Run("host/host_header", func(t *testing.T) {
		_, s := m.web(t, "GET", "/named/h", "Host: shop.example.com")
		if s.Host != "web.internal" {
			t.Errorf("Host: got %q; want web.internal", s.Host)
		}
	})
	t.Run("x-forwarded", func(t *testing.T) {
		_, s := m.web(t, "GET", "/api/f", "Host: shop.example.com", "X-Forwarded-For: 6.6.6.6")
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "shop.example.com", "X-Forwarded-Proto": "http"}
		for k, v := range want {
			if got := s.Header.Get(k); got != v {
				t.Errorf("%s: got %q; want %q", k, got, v)
			}
		}
	})
	t.Run("hop-by-hop", func(t *testing.T) {
		_, s := m.web(t, "GET", "/api/hop", "Connection: X-Secret", "X-Secret: 1", "Keep-Alive: timeout=5", "TE: gzip", "X-Kept: yes")
		for _, h := range []string{"X-Secret", "Keep-Alive", "Te", "Connection"} {
			if v, ok := s.Header[h]; ok {
				t.Errorf("backend got %s: %q; want it removed", h, v)
			}
		}
		if s.Header.Get("X-Kept") != "yes" {
			t.Errorf("X-Kept: got %q; want yes", s.Header.Get("X-Kept"))
		}
	})
	t.Run("methods/allowed", func(t *testing.T) {
		if r, _ := m.web(t, "HEAD", "/readonly/x"); r.status != 200 {
			t.Errorf("HEAD: got %d; want 200", r.status)
		}
	})
	t.Run("methods/405", func(t *testing.T) {
		r, _ := m.web(t, "POST", "/readonly/x")
		expect(t, r, 405, `{"code": 12, "message": "method POST is not allowed on /readonly/x (allowed: GET, HEAD)", "details": []}`)
		if got := r.header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("Allow: got %q; want \"GET, HEAD\"", got)
		}
	})
	t.Run("round-robin", func(t *testing.T) {
		var got []string
		for range 4 {
			_, s := m.web(t, "GET", "/api/rr")
			got = append(got, s.Backend)
		}
		if got[0] == got[1] || got[0] != got[2] || got[1] != got[3] {
			t.Errorf("backends: got %v; want web1 and web2 alternating", got)
		}
	})
	t.Run("no-uri-route-falls-through-to-rest", func(t *testing.T) {
		expect(t, do(t, "GET", m.url+"/nothing/here", ""), 404, "")
	})
}

func TestHTTPUpstreamStreaming(t *testing.T) {
	t.Parallel()
	m := startMixed(t)
	t.Run("response", func(t *testing.T) {
		resp, err := m.client.Get(m.url + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
			t.Fatalf("first chunk: got %q, %v; want \"first\\n\"", line, err)
		}
		if m.backend.streamDone.Load() {
			t.Error("first chunk arrived only after the backend finished; want it streamed")
		}
		close(m.backend.streamNext)
		if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
			t.Errorf("rest: got %q; want \"second\\n\"", rest)
		}
	})
	t.Run("large-request-body", func(t *testing.T) {
		const size = 32 << 20
		resp, err := m.client.Post(m.url+"/api/upload", "application/octet-stream", newChunkedBody(size))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s webSeen
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s.BodyBytes != size {
			t.Errorf("backend got %d bytes; want %d", s.BodyBytes, size)
		}
	})
	t.Run("body-over-listener-limit", func(t *testing.T) {
		resp, err := m.client.Post(m.smallURL+"/api/upload", "application/octet-stream", newChunkedBody(5<<20))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("got %d %s; want 413", resp.StatusCode, body)
		}
	})
}

// newChunkedBody returns a body of size bytes of unknown length, so that
// it is sent chunked.
func newChunkedBody(size int) io.Reader {
	return io.LimitReader(neverEnding('x'), int64(size))
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestHTTPUpstreamWebSocket(t *testing.T) {
	t.Parallel()
	m := startMixed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(m.url, "http")+"/ws", &websocket.DialOptions{HTTPClient: m.client})
	if err != nil {
		t.Fatalf("dial through the gateway: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("status: got %d; want 101", resp.StatusCode)
	}
	for i, msg := range []string{"hello", "again"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !strings.HasSuffix(string(got), ": "+msg) {
			t.Errorf("echo %d: got %q; want \"webN: %s\"", i, got, msg)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Errorf("close: %v", err)
	}

	// A WebSocket upgrade on a path no URI route matches goes to the
	// WebSocket bridge, which answers 404 for a path that names no method.
	_, resp, err = websocket.Dial(ctx, "ws"+strings.TrimPrefix(m.url, "http")+"/v9/unrouted", &websocket.DialOptions{HTTPClient: m.client})
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unrouted upgrade: got %v, %v; want a 404 answer", resp, err)
	}
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
}

func TestHTTPUpstreamFailures(t *testing.T) {
	t.Parallel()
	m := startMixed(t)
	t.Run("dead-target", func(t *testing.T) {
		r, _ := m.web(t, "GET", "/dead/x")
		want := fmt.Sprintf(`{"code":14,"message":"upstream dead: dial %s: connection refused","details":[]}`, m.dead)
		if r.status != http.StatusBadGateway || r.body != want {
			t.Errorf("got %d %s; want 502 %s", r.status, r.body, want)
		}
		if r.header.Get(transcoder.ErrorIDHeader) == "" {
			t.Errorf("no %s header on a 502", transcoder.ErrorIDHeader)
		}
	})
	t.Run("slow-target", func(t *testing.T) {
		r, _ := m.web(t, "GET", "/slow/x")
		want := fmt.Sprintf(`{"code":4,"message":"upstream slow: no response from %s within 200ms","details":[]}`, m.slow)
		if r.status != http.StatusGatewayTimeout || r.body != want {
			t.Errorf("got %d %s; want 504 %s", r.status, r.body, want)
		}
		if r.header.Get(transcoder.ErrorIDHeader) == "" {
			t.Errorf("no %s header on a 504", transcoder.ErrorIDHeader)
		}
	})
	t.Run("still-serving", func(t *testing.T) {
		expect(t, do(t, "GET", m.url+"/v1/echo/ok", ""), 200, `{"id": "ok"}`)
		if r, _ := m.web(t, "GET", "/api/after"); r.status != 200 {
			t.Errorf("proxy after failures: got %d; want 200", r.status)
		}
	})
}

// TestHTTPUpstreamOnly checks a gateway with no gRPC upstream at all.
func TestHTTPUpstreamOnly(t *testing.T) {
	t.Parallel()
	web := httptest.NewServer((&webBackend{}).handler("only"))
	t.Cleanup(web.Close)
	url, _ := startGateway(t, web.Listener.Addr().String(), `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  web:
    kind: http
    targets: ["$BACKEND"]
routes:
  - uri: /*
    service: web
`)
	r := do(t, "GET", url+"/anything?x=1", "")
	var s webSeen
	if err := json.Unmarshal([]byte(r.body), &s); err != nil || r.status != 200 || s.Path != "/anything" || s.Query != "x=1" {
		t.Errorf("got %d %s; want 200 echo of /anything?x=1", r.status, r.body)
	}
}
