package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// seen is what a test backend received.
type seen struct {
	Method, Path, RawPath, Query, Host, Proto string
	Header                                    http.Header
	BodyBytes                                 int
}

// startEcho starts an HTTP backend that answers every request with JSON
// describing it (see seen), and returns its address.
func startEcho(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(echoHandler(name))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(seen{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery,
			Host: r.Host, Proto: r.Proto, Header: r.Header, BodyBytes: int(n),
		})
	})
}

// newHTTPUpstream builds an upstream of kind http named "users".
func newHTTPUpstream(t *testing.T, timeout time.Duration, logger *slog.Logger, targets ...string) *HTTPUpstream {
	t.Helper()
	u, err := NewHTTP(&config.Upstream{Name: "users", Kind: "http", Targets: config.TargetsOf(targets...), Timeout: config.Duration(timeout)}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

// startProxy serves route through u on a real listener and returns its URL
// and a client that closes its connections when the test ends.
func startProxy(t *testing.T, u *HTTPUpstream, route config.Route) (string, *http.Client) {
	t.Helper()
	front := httptest.NewServer(u.Proxy(&route))
	t.Cleanup(front.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return front.URL, &http.Client{Transport: tr}
}

// get sends a request with header pairs "Name: value" and decodes the
// backend's echo.
func get(t *testing.T, c *http.Client, method, url string, headers ...string) (*http.Response, seen) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "Host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var s seen
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("backend answer is not JSON: %v: %s", err, body)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, s
}

func TestHTTPProxyPaths(t *testing.T) {
	u := newHTTPUpstream(t, 10*time.Second, nil, startEcho(t, "a"))
	tests := []struct {
		name             string
		route            config.Route
		path             string
		wantPath         string
		wantRaw, wantQry string
	}{
		{"prefix/strip", config.Route{URI: "/api/*", StripPrefix: true}, "/api/v1/users?id=7&x=a%20b", "/v1/users", "", "id=7&x=a%20b"},
		{"prefix/strip/bare", config.Route{URI: "/api/*", StripPrefix: true}, "/api", "/", "", ""},
		{"prefix/strip/slash", config.Route{URI: "/api/*", StripPrefix: true}, "/api/", "/", "", ""},
		{"prefix/keep", config.Route{URI: "/api/*"}, "/api/v1/users", "/api/v1/users", "", ""},
		{"exact/strip", config.Route{URI: "/health", StripPrefix: true}, "/health", "/", "", ""},
		{"root/strip", config.Route{URI: "/*", StripPrefix: true}, "/a/b", "/a/b", "", ""},
		{"dot-segments", config.Route{URI: "/api/*", StripPrefix: true}, "/api/x/../y/./z/", "/y/z/", "", ""},
		{"escaped-slash", config.Route{URI: "/api/*", StripPrefix: true}, "/api/files/a%2Fb", "/files/a/b", "/files/a%2Fb", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, c := startProxy(t, u, tc.route)
			req, _ := http.NewRequest("GET", url, nil)
			// Send the path exactly as written (no client-side cleaning).
			req.URL.Opaque = strings.SplitN(tc.path, "?", 2)[0]
			if _, q, ok := strings.Cut(tc.path, "?"); ok {
				req.URL.RawQuery = q
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var s seen
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
				t.Fatal(err)
			}
			if s.Path != tc.wantPath || s.RawPath != tc.wantRaw || s.Query != tc.wantQry {
				t.Errorf("backend got path %q raw %q query %q; want %q %q %q", s.Path, s.RawPath, s.Query, tc.wantPath, tc.wantRaw, tc.wantQry)
			}
		})
	}
}

func TestHTTPProxyHeaders(t *testing.T) {
	u := newHTTPUpstream(t, 10*time.Second, nil, startEcho(t, "a"))
	t.Run("client-host", func(t *testing.T) {
		url, c := startProxy(t, u, config.Route{URI: "/*"})
		_, s := get(t, c, "GET", url+"/x", "Host: shop.example.com", "X-Forwarded-For: 10.1.1.1", "X-Forwarded-Host: evil")
		if s.Host != "shop.example.com" {
			t.Errorf("Host: got %q; want the client's shop.example.com", s.Host)
		}
		// The client's own X-Forwarded-* are not trusted: the gateway is
		// the edge, so the backend sees the peer address only.
		if got, want := s.Header.Get("X-Forwarded-For"), "127.0.0.1"; got != want {
			t.Errorf("X-Forwarded-For: got %q; want %q (the client's value dropped)", got, want)
		}
		if got, want := s.Header.Get("X-Forwarded-Host"), "shop.example.com"; got != want {
			t.Errorf("X-Forwarded-Host: got %q; want %q", got, want)
		}
		if got, want := s.Header.Get("X-Forwarded-Proto"), "http"; got != want {
			t.Errorf("X-Forwarded-Proto: got %q; want %q", got, want)
		}
	})
	t.Run("host-header", func(t *testing.T) {
		url, c := startProxy(t, u, config.Route{URI: "/*", HostHeader: "users.internal"})
		_, s := get(t, c, "GET", url+"/x", "Host: shop.example.com")
		if s.Host != "users.internal" {
			t.Errorf("Host: got %q; want users.internal", s.Host)
		}
		if got, want := s.Header.Get("X-Forwarded-Host"), "shop.example.com"; got != want {
			t.Errorf("X-Forwarded-Host: got %q; want %q", got, want)
		}
	})
	t.Run("hop-by-hop", func(t *testing.T) {
		url, c := startProxy(t, u, config.Route{URI: "/*"})
		_, s := get(t, c, "GET", url+"/x", "Connection: X-Secret", "X-Secret: 1", "Keep-Alive: timeout=5",
			"TE: gzip", "Proxy-Connection: keep-alive", "X-Kept: yes")
		for _, h := range []string{"X-Secret", "Keep-Alive", "Te", "Proxy-Connection", "Connection"} {
			if v, ok := s.Header[h]; ok {
				t.Errorf("backend got hop-by-hop header %s: %q; want it removed", h, v)
			}
		}
		if s.Header.Get("X-Kept") != "yes" {
			t.Errorf("X-Kept: got %q; want yes (end-to-end headers pass)", s.Header.Get("X-Kept"))
		}
	})
}

func TestHTTPProxyRoundRobin(t *testing.T) {
	u := newHTTPUpstream(t, 10*time.Second, nil, startEcho(t, "a"), startEcho(t, "b"))
	url, c := startProxy(t, u, config.Route{URI: "/*"})
	var got []string
	for range 4 {
		resp, _ := get(t, c, "GET", url+"/")
		got = append(got, resp.Header.Get("X-Backend"))
	}
	// The rotation starts at a random target, then alternates.
	if j := strings.Join(got, ","); j != "a,b,a,b" && j != "b,a,b,a" {
		t.Errorf("backends: got %v; want a,b,a,b or b,a,b,a", got)
	}
}

// logBuffer is a concurrency-safe buffer for a test logger.
type logBuffer = testkit.LogBuffer

func TestHTTPProxyDeadTarget(t *testing.T) {
	dead := testkit.RefusingAddr(t)
	var logs logBuffer
	u := newHTTPUpstream(t, 10*time.Second, slog.New(slog.NewTextHandler(&logs, nil)), dead)
	url, c := startProxy(t, u, config.Route{URI: "/*"})
	resp, _ := get(t, c, "GET", url+"/x")
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf(`{"code":14,"message":"upstream users: dial %s: connection refused","details":[]}`, dead)
	if resp.StatusCode != http.StatusBadGateway || string(body) != want {
		t.Errorf("got %d %s; want 502 %s", resp.StatusCode, body, want)
	}
	id := resp.Header.Get("Rosetta-Error-Id")
	if id == "" {
		t.Fatal("no Rosetta-Error-Id header on a 502")
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "error_id="+id) || !strings.Contains(lines[0], "level=ERROR") {
		t.Errorf("log: got %q; want one ERROR line with error_id=%s", lines, id)
	}
}

func TestHTTPProxyTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	u := newHTTPUpstream(t, 10*time.Second, nil, slow.Listener.Addr().String())
	url, c := startProxy(t, u, config.Route{URI: "/*", Timeout: config.Duration(100 * time.Millisecond)})
	resp, _ := get(t, c, "GET", url+"/slow")
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf(`{"code":4,"message":"upstream users: no response from %s within 100ms","details":[]}`, slow.Listener.Addr())
	if resp.StatusCode != http.StatusGatewayTimeout || string(body) != want {
		t.Errorf("got %d %s; want 504 %s", resp.StatusCode, body, want)
	}
}

// TestHTTPProxyTimeoutBoundsHeadersOnly: a response that started in time
// may stream for longer than the route's timeout.
func TestHTTPProxyTimeoutBoundsHeadersOnly(t *testing.T) {
	streamer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 4; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(60 * time.Millisecond)
		}
	}))
	t.Cleanup(streamer.Close)
	u := newHTTPUpstream(t, 10*time.Second, nil, streamer.Listener.Addr().String())
	url, c := startProxy(t, u, config.Route{URI: "/*", Timeout: config.Duration(50 * time.Millisecond)})
	resp, err := c.Get(url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(body) != "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n" {
		t.Errorf("got %d %q %v; want the whole stream", resp.StatusCode, body, err)
	}
}

func TestHTTPProxyStreams(t *testing.T) {
	t.Run("response", func(t *testing.T) {
		var finished atomic.Bool
		next := make(chan struct{})
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer finished.Store(true)
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
			}
			_, _ = io.WriteString(w, "data: two\n\n")
		}))
		t.Cleanup(be.Close)
		u := newHTTPUpstream(t, 10*time.Second, nil, be.Listener.Addr().String())
		url, c := startProxy(t, u, config.Route{URI: "/*"})
		resp, err := c.Get(url + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "data: one\n" {
			t.Fatalf("first line: got %q, %v; want \"data: one\\n\"", line, err)
		}
		if finished.Load() {
			t.Error("first event arrived only after the backend finished; want it streamed")
		}
		close(next)
		rest, _ := io.ReadAll(br)
		if string(rest) != "\ndata: two\n\n" {
			t.Errorf("rest: got %q; want the second event", rest)
		}
	})
	t.Run("request", func(t *testing.T) {
		u := newHTTPUpstream(t, 30*time.Second, nil, startEcho(t, "a"))
		url, c := startProxy(t, u, config.Route{URI: "/*"})
		const size = 32 << 20
		pr, pw := io.Pipe()
		go func() {
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			_ = pw.Close()
		}()
		resp, err := c.Post(url+"/upload", "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s seen
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s.BodyBytes != size {
			t.Errorf("backend got %d bytes; want %d", s.BodyBytes, size)
		}
	})
}

func TestHTTPProxyTLS(t *testing.T) {
	be := httptest.NewUnstartedServer(echoHandler("tls"))
	be.EnableHTTP2 = true
	be.StartTLS()
	t.Cleanup(be.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: be.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := NewHTTP(&config.Upstream{
		Name: "secure", Kind: "http", Targets: config.TargetsOf(be.Listener.Addr().String()),
		TLS: &config.ClientTLS{CA: caFile, ServerName: "example.com"}, Timeout: config.Duration(10 * time.Second),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	url, c := startProxy(t, u, config.Route{URI: "/*"})
	resp, s := get(t, c, "GET", url+"/x")
	if resp.StatusCode != http.StatusOK || s.Proto != "HTTP/2.0" {
		t.Errorf("got status %d, backend proto %q; want 200 over HTTP/2.0", resp.StatusCode, s.Proto)
	}
	if got := s.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto: got %q; want http (the client's scheme)", got)
	}
}

func TestHTTPSet(t *testing.T) {
	s, err := NewHTTPSet(map[string]*config.Upstream{
		"web":  {Name: "web", Kind: "http", Targets: config.TargetsOf("127.0.0.1:1")},
		"grpc": {Name: "grpc", Kind: "grpc", Targets: config.TargetsOf("127.0.0.1:2")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Get("web"); !ok || s.Len() != 1 {
		t.Errorf("got Len %d, web found %v; want only the http upstream", s.Len(), ok)
	}
	_, err = NewHTTPSet(map[string]*config.Upstream{"web": {Name: "web", Kind: "http"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no targets") {
		t.Errorf("no targets: got %v; want an error saying so", err)
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/": "/", "/a": "/a", "/a/": "/a/", "//a//b/": "/a/b/", "/a/./b": "/a/b",
		"/a/../b": "/b", "/../x": "/x", "/a/..": "/", "/a/b/../": "/a/",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q; want %q", in, got, want)
		}
	}
}
