package h2call_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
)

// TestRequestHead checks the header block of a call as the server
// receives it.
func TestRequestHead(t *testing.T) {
	t.Parallel()
	heads := make(chan []hpack.HeaderField, 1)
	addr := startFake(t, func(c *fakeConn, id uint32, fields []hpack.HeaderField) {
		heads <- fields
		c.headers(id, true, append(okHead, "grpc-status", "0")...)
	})
	cc, _ := newConn(t, addr, h2call.Options{UserAgent: "test-agent/1"}, h2.ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-id", "7", "x-raw-bin", "\x00\xff\xfe", "user-agent", "not me", "grpc-timeout", "1S")
	var in []byte
	_ = cc.Invoke(ctx, echoMethod, &in, &in, rawCall)
	got := map[string][]string{}
	var order []string
	for _, f := range <-heads {
		got[f.Name] = append(got[f.Name], f.Value)
		if strings.HasPrefix(f.Name, ":") {
			order = append(order, f.Name)
		}
	}
	if d := cmp.Diff([]string{":method", ":scheme", ":path", ":authority"}, order); d != "" {
		t.Errorf("pseudo-fields (-want +got):\n%s", d)
	}
	timeout := got["grpc-timeout"]
	delete(got, "grpc-timeout")
	want := map[string][]string{
		":method": {"POST"}, ":scheme": {"http"}, ":path": {echoMethod}, ":authority": {addr},
		"content-type": {"application/grpc+proto"}, "user-agent": {"test-agent/1"}, "te": {"trailers"},
		"x-id": {"7"}, "x-raw-bin": {base64.RawStdEncoding.EncodeToString([]byte("\x00\xff\xfe"))},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("request head (-want +got):\n%s", d)
	}
	if len(timeout) != 1 || !strings.HasSuffix(timeout[0], "m") || len(timeout[0]) > 9 {
		t.Errorf("grpc-timeout = %q; want one value of at most 8 digits in milliseconds (an hour)", timeout)
	}
}

// TestSendFlowControl checks that SendMsg waits for the server's window
// instead of queueing messages, and that the context ends the wait.
func TestSendFlowControl(t *testing.T) {
	t.Parallel()
	var received atomic.Int64
	grew := make(chan struct{}, 1)
	addr := startFakeServer(t, fakeHandlers{
		headers: func(c *fakeConn, id uint32, _ []hpack.HeaderField) { c.headers(id, false, okHead...) },
		data: func(_ *fakeConn, _ uint32, n int, _ bool) {
			received.Add(int64(n))
			select {
			case grew <- struct{}{}:
			default:
			}
		},
	})
	cc, _ := newConn(t, addr, h2call.Options{}, h2.ClientOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/x.Y/Z", rawCall)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 40<<10)
	var sent atomic.Int32
	done := make(chan error, 1)
	go func() {
		for range 10 {
			if err := cs.SendMsg(&msg); err != nil {
				done <- err
				return
			}
			sent.Add(1)
		}
		done <- nil
	}()
	// The server grants no window beyond the initial 65535 bytes: the
	// first message fits, the second waits in SendMsg.
	for received.Load() < 65535 {
		select {
		case <-grew:
		case err := <-done:
			t.Fatalf("SendMsg loop ended with %v before the window was used", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("the server got %d bytes in 10s; want the 65535 of its window", received.Load())
		}
	}
	if n := sent.Load(); n > 1 {
		t.Fatalf("%d SendMsg calls returned with a 64 KiB window and 40 KiB messages; want 1", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Fatalf("blocked SendMsg returned %v after the context ended; want io.EOF", err)
	}
	if err := cs.RecvMsg(&msg); grpcstatus.Code(err) != codes.Canceled {
		t.Fatalf("RecvMsg = %v; want CANCELED", err)
	}
}

// TestTargetStreamLimit checks that a Target adds a connection when the
// server's stream limit is reached.
func TestTargetStreamLimit(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.MaxConcurrentStreams(1)))
	var mu sync.Mutex
	conns := map[*h2.ClientConn]bool{}
	tgt := h2call.NewTarget(be.Addr, h2.ClientOptions{})
	t.Cleanup(func() { _ = tgt.Close() })
	cc := h2call.New(h2call.Options{Pick: func(ctx context.Context, m string) (h2call.Attempt, error) {
		a, err := tgt.Pick(ctx, m)
		mu.Lock()
		conns[a.Conn] = true
		mu.Unlock()
		return a, err
	}})
	client := testingv1.NewEchoServiceClient(cc)
	// Wait for the server's SETTINGS (the limit) on the first connection.
	if _, err := client.Echo(context.Background(), everything()); err != nil {
		t.Fatal(err)
	}
	st, err := client.BidiStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Echo(context.Background(), everything()); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseSend()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end = %v; want io.EOF", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 2 {
		t.Fatalf("calls used %d connections; want 2 with a limit of one stream each", len(conns))
	}
}
