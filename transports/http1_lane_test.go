package transports

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// laneHandler answers by path, for the lane's framing cases; /echo
// returns the request as the handler saw it.
func laneHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html><body>hi</body></html>")
	})
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 10000))
	})
	mux.HandleFunc("/flushed", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "one,")
		http.NewResponseController(w).Flush()
		_, _ = io.WriteString(w, "two")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		_, _ = io.WriteString(w, "dropped")
	})
	mux.HandleFunc("/length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello")
	})
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Late", "l")
	})
	mux.HandleFunc("/newline", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Bad", "a\r\nInjected: yes")
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "short and stout", http.StatusTeapot)
	})
	mux.HandleFunc("/ignore", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "body left unread")
	})
	mux.HandleFunc("/half", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 3)
		n, _ := io.ReadFull(r.Body, b)
		fmt.Fprintf(w, "read %q", b[:n])
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s host=%s ua=%q hosthdr=%q body=%q", r.Method, r.RequestURI, r.Proto,
			r.Host, r.Header.Get("User-Agent"), r.Header.Get("Host"), body)
	})
	return mux
}

// TestHTTP1LaneMatchesNetHTTP sends the same requests to a listener and
// to a bare net/http server with the same handler: status, framing,
// headers (but Date) and body must agree, for answers the lane writes
// (small, sniffed, large and chunked, flushed, empty, 204, a set
// Content-Length, trailers, a value with a line break, HEAD, bodies read
// whole, in part or not at all) and for requests it hands to net/http
// (Expect, chunked, HTTP/1.0, and the heads net/http refuses with 400:
// no Host, two, an invalid target).
func TestHTTP1LaneMatchesNetHTTP(t *testing.T) {
	s := startServer(t, listenerConfig(), laneHandler(), nil)
	ref := httptest.NewServer(laneHandler())
	defer ref.Close()
	reqs := []string{
		"GET /small HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /sniff HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /large HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /flushed HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /empty HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /nocontent HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /length HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /trailers HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /newline HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /teapot HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /small HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /large HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /echo?q=1&r=%20 HTTP/1.1\r\nhost: a.test\r\nuser-agent: lane\r\npragma: no-cache\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"PUT /half HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 03\r\nContent-Length: 3\r\n\r\nabc",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
		"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET /echo HTTP/1.0\r\nHost: a\r\n\r\n",
	}
	// Heads the lane leaves to net/http, which refuses them with 400 (and
	// names the missing Host): no Host, two, a target that is not a
	// request URI.
	refused := map[string]string{
		"GET /small HTTP/1.1\r\n\r\n":                       "missing required Host header",
		"GET /small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n": `body="400 Bad Request"`,
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n":              `body="400 Bad Request"`,
	}
	for req, reason := range refused {
		got := laneExchange(t, s.Addr().String(), req)
		if !strings.HasPrefix(got, "HTTP/1.1 400 Bad Request") || !strings.Contains(got, reason) {
			t.Errorf("%q: %q; want 400 Bad Request, %q", req, got, reason)
		}
		reqs = append(reqs, req)
	}
	for _, req := range reqs {
		line := req[:strings.Index(req, "\r\n")]
		got := laneExchange(t, s.Addr().String(), req)
		want := laneExchange(t, ref.Listener.Addr().String(), req)
		if got != want {
			t.Errorf("%s:\n lane:     %q\n net/http: %q", line, got, want)
		}
	}
}

// laneExchange sends one request on a new connection and renders the
// answer: status, framing, header fields (Date left out), body, trailers.
func laneExchange(t *testing.T, addr, req string) string {
	t.Helper()
	conn := dialRaw(t, addr)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	method := req[:strings.IndexByte(req, ' ')]
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: %v", req, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: body: %v", req, err)
	}
	resp.Header.Del("Date")
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s len=%d te=%v close=%v\n", resp.Proto, resp.Status, resp.ContentLength, resp.TransferEncoding, resp.Close)
	_ = resp.Header.Write(&b)
	fmt.Fprintf(&b, "body=%q trailer=%v", body, resp.Trailer)
	return b.String()
}

// TestHTTP1LaneConnection: one connection carries requests the lane
// serves, a pipelined pair, a request it hands to net/http (a POST with a
// body) and more after it; every answer comes in order.
func TestHTTP1LaneConnection(t *testing.T) {
	s := startServer(t, listenerConfig(), laneHandler(), nil)
	conn := dialRaw(t, s.Addr().String())
	br := bufio.NewReader(conn)
	exchange := func(send string, want ...string) {
		t.Helper()
		if _, err := io.WriteString(conn, send); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer to %q: %v", send, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != w {
				t.Fatalf("answer %q; want %q", b, w)
			}
		}
	}
	exchange("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n", `GET /echo HTTP/1.1 host=a ua="" hosthdr="" body=""`)
	exchange("GET /echo?1 HTTP/1.1\r\nHost: a\r\n\r\nGET /echo?2 HTTP/1.1\r\nHost: a\r\n\r\n",
		`GET /echo?1 HTTP/1.1 host=a ua="" hosthdr="" body=""`, `GET /echo?2 HTTP/1.1 host=a ua="" hosthdr="" body=""`)
	exchange("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", `POST /echo HTTP/1.1 host=a ua="" hosthdr="" body="hello"`)
	// A body its handler leaves (partly) unread is dropped; the next
	// request is read where it begins.
	exchange("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n"+strings.Repeat("z", 70000), "body left unread")
	exchange("POST /half HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabcdefGET /echo?3 HTTP/1.1\r\nHost: a\r\n\r\n",
		`read "abc"`, `GET /echo?3 HTTP/1.1 host=a ua="" hosthdr="" body=""`)
	exchange("POST /te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "404 page not found\n")
	exchange("GET /large HTTP/1.1\r\nHost: a\r\n\r\n", strings.Repeat("x", 10000))
	exchange("GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", `GET /echo HTTP/1.1 host=a ua="" hosthdr="" body=""`)
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after Connection: close: read %v, %v; want the connection closed", n, err)
	}
}

// TestHTTP1LaneContext: a handler that waits on its request's context
// sees it end when the client goes away, and the context ends when the
// handler returns; a request whose context nobody waits on still gets
// its answer.
func TestHTTP1LaneContext(t *testing.T) {
	gone := make(chan error, 1)
	after := make(chan error, 1)
	var local atomic.Value
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local.Store(fmt.Sprint(r.Context().Value(http.LocalAddrContextKey)))
		switch r.URL.Path {
		case "/wait":
			ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
			defer cancel()
			<-ctx.Done()
			gone <- r.Context().Err()
		case "/spawn":
			ctx := r.Context()
			go func() { <-ctx.Done(); after <- ctx.Err() }()
			_, _ = io.WriteString(w, "spawned")
		}
	})
	s := startServer(t, listenerConfig(), h, nil)
	conn := dialRaw(t, s.Addr().String())
	_, _ = io.WriteString(conn, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // let the handler start waiting (the test holds either way)
	_ = conn.Close()
	if err := within(t, gone, "the handler's context did not end when the client closed the connection"); err != context.Canceled {
		t.Errorf("the request context after the client left: %v; want context.Canceled", err)
	}
	resp, body, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+s.Addr().String()+"/spawn")
	if err != nil || resp.StatusCode != 200 || body != "spawned" {
		t.Fatalf("GET /spawn: %v %v %q", resp, err, body)
	}
	if err := within(t, after, "the request context did not end when the handler returned"); err != context.Canceled {
		t.Errorf("the context after the handler returned: %v", err)
	}
	if got := local.Load(); got != s.Addr().String() {
		t.Errorf("LocalAddrContextKey: %v; want %s", got, s.Addr())
	}
}

// TestHTTP1LaneContextUnwaited: a request context nobody waited on while
// the handler ran (its cancel context not made yet) still reads as ended
// afterwards: Err is context.Canceled, Done is closed, and a child made
// then is canceled at once.
func TestHTTP1LaneContextUnwaited(t *testing.T) {
	type result struct {
		during, after, child error
		closed, deadline     bool
	}
	results := make(chan result, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		_, hasDeadline := ctx.Deadline()
		during := ctx.Err()
		go func() {
			res := result{during: during, deadline: hasDeadline}
			for ctx.Err() == nil { // the lane ends the context when the handler returns; nothing waits on Done before
				time.Sleep(time.Millisecond)
			}
			res.after = ctx.Err()
			select {
			case <-ctx.Done():
				res.closed = true
			default:
			}
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			res.child = child.Err()
			results <- res
		}()
		_, _ = io.WriteString(w, "ok")
	})
	s := startServer(t, listenerConfig(), h, nil)
	resp, body, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+s.Addr().String()+"/")
	if err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET: %v %v %q", resp, err, body)
	}
	res := within(t, results, "the goroutine the handler started did not report")
	if res.during != nil || res.deadline {
		t.Errorf("while the handler ran: Err %v, deadline %v; want nil, none", res.during, res.deadline)
	}
	if res.after != context.Canceled || !res.closed || res.child != context.Canceled {
		t.Errorf("after the handler returned: Err %v, Done closed %v, child's Err %v; want Canceled, true, Canceled", res.after, res.closed, res.child)
	}
}

// TestHTTP1LaneValueSlot: a lane request's context takes one value
// itself (call.ValueSlot), which it and its children answer; it refuses
// a second, and the next request on the connection starts without it.
func TestHTTP1LaneValueSlot(t *testing.T) {
	type key struct{ n int }
	type slot interface{ SetValue(key, val any) bool }
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := r.Context().(slot)
		if !ok {
			http.Error(w, "no value slot", http.StatusInternalServerError)
			return
		}
		before := r.Context().Value(key{1})
		took := s.SetValue(key{1}, "one")
		second := s.SetValue(key{2}, "two")
		child, cancel := context.WithCancel(r.Context())
		defer cancel()
		fmt.Fprintf(w, "before=%v took=%v second=%v value=%v child=%v other=%v server=%v",
			before, took, second, r.Context().Value(key{1}), child.Value(key{1}), r.Context().Value(key{2}),
			r.Context().Value(http.ServerContextKey) != nil)
	})
	s := startServer(t, listenerConfig(), h, nil)
	client := &http.Client{Timeout: 5 * time.Second}
	const want = "before=<nil> took=true second=false value=one child=one other=<nil> server=true"
	for i := range 2 { // the second request reuses the connection
		resp, body, err := get(client, "http://"+s.Addr().String()+"/")
		if err != nil || resp.StatusCode != 200 || body != want {
			t.Fatalf("request %d: %v %v\n got %q\nwant %q", i+1, resp, err, body, want)
		}
	}
}

// TestHTTP1LanePanic: a handler's panic closes that connection without
// an answer and is logged; the listener goes on serving.
func TestHTTP1LanePanic(t *testing.T) {
	logger, logs := newLogger()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		_, _ = io.WriteString(w, "fine")
	})
	s := startServer(t, listenerConfig(), h, logger)
	if got := rawExchange(t, s.Addr().String(), []byte("GET /panic HTTP/1.1\r\nHost: a\r\n\r\n"), false); got != "" {
		t.Errorf("answer to a request whose handler panicked: %q; want none (closed)", got)
	}
	if !strings.Contains(logs.String(), "panic serving") || !strings.Contains(logs.String(), "boom") {
		t.Errorf("log: %s; want the panic", logs.String())
	}
	plainGet(t, "http://"+s.Addr().String()+"/ok")
}

// TestHTTP1LaneIdleTimeout: a kept-alive connection with no request for
// idle_timeout is closed.
func TestHTTP1LaneIdleTimeout(t *testing.T) {
	cfg := listenerConfig()
	cfg.IdleTimeout = config.Duration(200 * time.Millisecond)
	s := startServer(t, cfg, laneHandler(), nil)
	conn := dialRaw(t, s.Addr().String())
	_, _ = io.WriteString(conn, "GET /small HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v; want closed by the server (EOF)", err)
	}
}

// TestHTTP1LaneShutdown: Shutdown closes idle connections and lets a
// request in progress finish, its answer saying Connection: close.
func TestHTTP1LaneShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	s := newServer(t, listenerConfig(), h, nil)
	s.Serve()
	addr := s.Addr().String()
	idle := dialRaw(t, addr)
	_, _ = io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil {
		t.Fatal(err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	busy := dialRaw(t, addr)
	_, _ = io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection at shutdown: %v; want closed", err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the request in progress at shutdown: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "done" || !resp.Close {
		t.Errorf("answer during shutdown: %q close=%v; want done, Connection: close", b, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// BenchmarkHTTP1Lane measures a small GET answered by the lane, over
// kept-alive connections on a real socket.
func BenchmarkHTTP1Lane(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"42","name":"a small answer"}`)
	})
	s, err := NewServer(listenerConfig(), h, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	s.Serve()
	defer func() { _ = s.Shutdown(context.Background()) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := "http://" + s.Addr().String() + "/item"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// TestHTTP1LaneBody: a body that arrives slowly is read whole; one the
// client abandons fails the handler's read (io.ErrUnexpectedEOF) and the
// listener goes on; a large body its handler does not read ends the
// connection after the answer (Connection: close) instead of being read.
func TestHTTP1LaneBody(t *testing.T) {
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/read":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				readErr <- err
				return
			}
			fmt.Fprintf(w, "%d bytes", len(b))
		default:
			_, _ = io.WriteString(w, "not read")
		}
	})
	s := startServer(t, listenerConfig(), h, nil)
	addr := s.Addr().String()

	conn := dialRaw(t, addr)
	_, _ = io.WriteString(conn, "POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
	time.Sleep(20 * time.Millisecond) // the rest comes later (the test holds either way)
	_, _ = io.WriteString(conn, "56789")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "10 bytes" {
		t.Errorf("a body in two pieces: %q; want 10 bytes", b)
	}

	cut := dialRaw(t, addr)
	_, _ = io.WriteString(cut, "POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly part")
	_ = cut.Close()
	if err := within(t, readErr, "the handler's read of an abandoned body did not end"); err != io.ErrUnexpectedEOF {
		t.Errorf("reading a body the client abandoned: %v; want io.ErrUnexpectedEOF", err)
	}

	big := dialRaw(t, addr)
	const size = 1 << 20
	go func() {
		_, _ = io.WriteString(big, fmt.Sprintf("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size))
		_, _ = big.Write(make([]byte, size)) // fails once the server closes; that is the point
	}()
	br := bufio.NewReader(big)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "not read" || !resp.Close {
		t.Errorf("a 1 MiB body left unread: %q close=%v; want the answer with Connection: close", b, resp.Close)
	}
	plainGet(t, "http://"+addr+"/after")
}

// TestHTTP1LaneTimeouts: a body that stops coming fails the handler's
// read once read_timeout has passed since the request began (the answer
// then closes the connection); an answer the client stops reading fails
// the handler's writes once write_timeout has passed. The listener goes
// on serving.
func TestHTTP1LaneTimeouts(t *testing.T) {
	readErr, writeErr := make(chan error, 1), make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			_, err := io.ReadAll(r.Body)
			readErr <- err
			http.Error(w, "request body too slow", http.StatusRequestTimeout)
		case "/download":
			chunk := make([]byte, 64<<10)
			for {
				if _, err := w.Write(chunk); err != nil {
					writeErr <- err
					return
				}
			}
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})
	cfg := listenerConfig()
	cfg.ReadTimeout = config.Duration(300 * time.Millisecond)
	cfg.WriteTimeout = config.Duration(time.Second) // counts from the request's start: the 408 must fit in it
	s := startServer(t, cfg, h, nil)
	addr := s.Addr().String()

	up := dialRaw(t, addr)
	_, _ = io.WriteString(up, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf ")
	if err := within(t, readErr, "reading a stalled body did not end"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("reading a stalled body: %v; want the read deadline", err)
	}
	br := bufio.NewReader(up)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("answer after a stalled body: %d close=%v; want 408 with Connection: close", resp.StatusCode, resp.Close)
	}

	down := dialRaw(t, addr)
	_, _ = io.WriteString(down, "GET /download HTTP/1.1\r\nHost: a\r\n\r\n") // and never read
	if err := within(t, writeErr, "writing to a client that does not read did not end"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("writing to a client that does not read: %v; want the write deadline", err)
	}
	plainGet(t, "http://"+addr+"/after")
}

// TestHTTP1LaneWriteErrors: a handler's writes that the answer cannot
// take fail on the lane with net/http's errors, through Write and
// WriteString alike, and the client gets net/http's answer (read raw to
// the connection's end, Date left out): a body on a 204
// (http.ErrBodyNotAllowed); a write past the declared Content-Length
// (http.ErrContentLength), after which, as net/http counts the refused
// bytes too, every later write fails and a body left short ends the
// connection.
func TestHTTP1LaneWriteErrors(t *testing.T) {
	writes := map[string][]string{
		"/full":      {"abc", "d", "e"}, // the body is whole, then two writes too many
		"/short":     {"abcd", "abc"},   // too much at once; then even what fits fails
		"/nocontent": {"x", "y"},
	}
	record := func(errs chan<- []string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/nocontent" {
				w.WriteHeader(http.StatusNoContent)
			} else {
				w.Header().Set("Content-Length", "3")
			}
			var got []string
			for i, p := range writes[r.URL.Path] {
				var err error
				if i%2 == 0 {
					_, err = w.Write([]byte(p))
				} else {
					_, err = io.WriteString(w, p)
				}
				got = append(got, fmt.Sprint(err))
			}
			errs <- got
		})
	}
	raw := func(addr, path string) string {
		conn := dialRaw(t, addr)
		_, _ = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return regexp.MustCompile(`Date: [^\r]*\r\n`).ReplaceAllString(string(b), "")
	}
	laneErrs, refErrs := make(chan []string, 1), make(chan []string, 1)
	s := startServer(t, listenerConfig(), record(laneErrs), nil)
	ref := httptest.NewServer(record(refErrs))
	defer ref.Close()
	for _, path := range []string{"/full", "/short", "/nocontent"} {
		want, got := raw(ref.Listener.Addr().String(), path), raw(s.Addr().String(), path)
		if got != want {
			t.Errorf("%s:\n lane:     %q\n net/http: %q", path, got, want)
		}
		gotErrs, wantErrs := <-laneErrs, <-refErrs
		if !slices.Equal(gotErrs, wantErrs) {
			t.Errorf("%s: the handler's write errors on the lane %q; net/http gives %q", path, gotErrs, wantErrs)
		}
		t.Logf("%s: %q, %q", path, got, gotErrs)
	}
}

// TestHTTP1LaneShutdownWhileAccepting: Shutdown while clients keep
// opening connections. Under -race it shows that a connection the lane
// takes at the moment of shutdown does not race its wait for the others
// (the lane's WaitGroup Add against its Wait); every connection either
// gets its answer or is closed, and Shutdown returns.
func TestHTTP1LaneShutdownWhileAccepting(t *testing.T) {
	for range 20 {
		s := newServer(t, listenerConfig(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}), nil)
		s.Serve()
		addr := s.Addr().String()
		var answered atomic.Int64
		stop := testkit.Repeat(4, func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return true // the listener is closed
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || string(b) != "ok" {
					t.Errorf("answer: %d %q; want 200 ok", resp.StatusCode, b)
				}
				answered.Add(1)
			}
			return true
		})
		for answered.Load() < 4 {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		stop()
	}
}
