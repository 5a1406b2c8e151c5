package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct{ event, id, data string }

func parseSSE(t *testing.T, body string) []sseEvent {
	t.Helper()
	var out []sseEvent
	for _, block := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		var ev sseEvent
		for _, line := range strings.Split(block, "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "event":
				ev.event = v
			case "id":
				ev.id = v
			case "data":
				ev.data = v
			}
		}
		out = append(out, ev)
	}
	return out
}

func TestRESTStreamFraming(t *testing.T) {
	t.Parallel()
	url := startDefault(t)
	t.Run("sse", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/stream?count=2&text=s", "", "Accept: text/event-stream")
		if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" || r.header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("got %d %v", r.status, r.header)
		}
		evs := parseSSE(t, r.body)
		if len(evs) != 3 {
			t.Fatalf("got %d events; want 3: %q", len(evs), r.body)
		}
		for i, ev := range evs[:2] {
			if ev.event != "" || ev.id != string(rune('1'+i)) {
				t.Errorf("event %d: got event=%q id=%q", i, ev.event, ev.id)
			}
			assertJSON(t, ev.data, `{"index": `+string(rune('1'+i))+`, "text": "s"}`)
		}
		if evs[2].event != "end" || evs[2].data != "{}" {
			t.Errorf("last event: got %+v; want end", evs[2])
		}
	})
	t.Run("sse error midway", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/stream?count=3&failAt=2", "", "Accept: text/event-stream")
		evs := parseSSE(t, r.body)
		if len(evs) != 3 || evs[1].event != "error" || evs[2].event != "end" {
			t.Fatalf("got %q", r.body)
		}
		assertJSON(t, evs[1].data, `{"code": 10, "message": "failing at 2", "details": []}`)
	})
	t.Run("json array", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/stream?count=3&text=a", "", "Accept: application/json")
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
		}
		expect(t, r, 200, `[{"index": 1, "text": "a"}, {"index": 2, "text": "a"}, {"index": 3, "text": "a"}]`)
	})
	t.Run("json array error midway", func(t *testing.T) {
		t.Parallel()
		r := do(t, "GET", url+"/v1/stream?count=3&failAt=2", "", "Accept: application/json")
		expect(t, r, 200, `[{"index": 1}, {"error": {"code": 10, "message": "failing at 2", "details": []}}]`)
	})
	t.Run("empty stream", func(t *testing.T) {
		t.Parallel()
		expect(t, do(t, "GET", url+"/v1/stream?count=0", "", "Accept: application/json"), 200, `[]`)
		if r := do(t, "GET", url+"/v1/stream?count=0", ""); r.status != 200 || r.body != "" {
			t.Errorf("ndjson empty stream: got %d %q", r.status, r.body)
		}
	})
}

func TestRESTClientAndBidiStreams(t *testing.T) {
	t.Parallel()
	url := startDefault(t)
	t.Run("client stream ndjson body", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/stream:client", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"index\": 3, \"text\": \"c\"}\n")
		expect(t, r, 200, `{"count": 3, "texts": ["a", "b", "c"]}`)
	})
	t.Run("client stream empty body", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/stream:client", "", "Content-Type: application/json")
		expect(t, r, 200, `{}`)
	})
	t.Run("client stream bad message", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/stream:client", "{\"text\": \"a\"}\n{\"index\": \"x\"}\n")
		expect(t, r, 400, `{"code": 3, "message": "invalid JSON body: (line 1:11): invalid value for int32 field index: \"x\"",
			"details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "index",
			"description": "invalid JSON body: (line 1:11): invalid value for int32 field index: \"x\""}]}]}`)
		expect(t, do(t, "GET", url+"/v1/echo/ok", ""), 200, `{"id": "ok"}`)
	})
	t.Run("bidi ndjson", func(t *testing.T) {
		t.Parallel()
		r := do(t, "POST", url+"/v1/stream:bidi", "{\"text\": \"x\"} {\"text\": \"y\"}")
		lines := strings.Split(strings.TrimSpace(r.body), "\n")
		if r.status != 200 || len(lines) != 2 {
			t.Fatalf("got %d %q", r.status, r.body)
		}
		assertJSON(t, lines[0], `{"text": "x"}`)
		assertJSON(t, lines[1], `{"text": "y"}`)
	})
	t.Run("bidi full duplex over h2c", func(t *testing.T) {
		t.Parallel()
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
		defer client.CloseIdleConnections()
		pr, pw := io.Pipe()
		// Bounded: a gateway that is not full duplex would otherwise hang
		// here instead of failing.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/stream:bidi", pr)
		req.Header.Set("Content-Type", "application/json")
		respc := make(chan *http.Response, 1)
		go func() {
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				close(respc)
				return
			}
			respc <- resp
		}()
		// The first response line arrives while the request is still open.
		io.WriteString(pw, "{\"text\": \"one\"}\n")
		resp, ok := <-respc
		if !ok {
			t.FailNow()
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("proto: got %s; want HTTP/2", resp.Proto)
		}
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, line, `{"text": "one"}`)
		io.WriteString(pw, "{\"text\": \"two\"}\n")
		line, _ = br.ReadString('\n')
		assertJSON(t, line, `{"text": "two"}`)
		pw.Close()
		if rest, _ := io.ReadAll(br); len(strings.TrimSpace(string(rest))) != 0 {
			t.Errorf("unexpected tail %q", rest)
		}
	})
}

// TestRESTStreamClientDisconnect: a client that goes away cancels the
// backend stream.
func TestRESTStreamClientDisconnect(t *testing.T) {
	t.Parallel()
	var active atomic.Int32
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.StreamInterceptor(
		func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			// Only the call under test: the gateway's reflection stream
			// may still be closing.
			if info.FullMethod == "/rosetta.testing.v1.EchoService/ServerStream" {
				active.Add(1)
				defer active.Add(-1)
			}
			return h(srv, ss)
		})))
	url, _ := startGateway(t, be.Addr, basicConfig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/stream?count=5&interval=3600s", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, `"index"`) {
		t.Fatalf("first line: %q %v", line, err)
	}
	if active.Load() != 1 {
		t.Fatalf("active backend streams: %d; want 1", active.Load())
	}
	cancel()
	resp.Body.Close()
	waitUntil(t, func() bool { return active.Load() == 0 }, "backend stream cancelled after the client left")
}

// waitUntil polls cond until it holds, failing after a generous bound.
func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting: %s", what)
}
