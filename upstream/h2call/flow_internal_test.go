package h2call

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
)

const (
	testWindow = 256 << 10
	itemText   = 30 << 10
	itemCount  = 100
)

// waitFill polls buffered until it stops short of the window by less
// than two items (the server has filled it) and returns the largest value
// seen, failing after 10s.
func waitFill(t *testing.T, buffered func() int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	most := 0
	for {
		n := buffered()
		most = max(most, n)
		if n >= testWindow-2*(itemText+64) {
			return most
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes buffered after 10s; want the window (%d) nearly full", n, testWindow)
		}
		time.Sleep(time.Millisecond)
	}
}

func newTestConn(t *testing.T) (*Conn, string) {
	be := testkit.StartBackend(t)
	tgt := NewTarget(be.Addr, h2.ClientOptions{Limits: h2.Limits{StreamWindow: testWindow, ConnWindow: 4 * testWindow}})
	t.Cleanup(func() { _ = tgt.Close() })
	return New(Options{Pick: tgt.Pick}), be.Addr
}

// TestReceiveBuffering checks that a stream whose reader stops holds at
// most one window of messages: bytes are credited only as RecvMsg takes
// them.
func TestReceiveBuffering(t *testing.T) {
	t.Parallel()
	cc, _ := newTestConn(t)
	ctx := context.Background()
	cs, err := cc.NewStream(ctx, &testingv1.EchoService_ServiceDesc.Streams[0], "/rosetta.testing.v1.EchoService/ServerStream")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(&testingv1.StreamRequest{Count: itemCount, Text: strings.Repeat("w", itemText)}); err != nil {
		t.Fatal(err)
	}
	_ = cs.CloseSend()
	item := &testingv1.StreamItem{}
	if err := cs.RecvMsg(item); err != nil {
		t.Fatal(err)
	}
	c := cs.(*call)
	queued := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := 0
		for _, m := range c.queue[c.qHead:] {
			n += grpcHeaderLen + len(m.data)
		}
		return n + c.prefixN + len(c.cur)
	}
	if most := waitFill(t, queued); most > testWindow {
		t.Fatalf("%d bytes buffered; want at most the stream window, %d", most, testWindow)
	}
	for i := 2; i <= itemCount; i++ {
		if err := cs.RecvMsg(item); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	if err := cs.RecvMsg(item); !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v; want io.EOF", err)
	}
}

// TestResponseBodyBuffering checks the same bound for a round trip's
// response body.
func TestResponseBodyBuffering(t *testing.T) {
	t.Parallel()
	cc, addr := newTestConn(t)
	b, _ := proto.Marshal(&testingv1.StreamRequest{Count: itemCount, Text: strings.Repeat("w", itemText)})
	frame := append([]byte{0, byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/rosetta.testing.v1.EchoService/ServerStream", bytes.NewReader(frame))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	rt := (*roundTrip)(resp.Body.(*responseBody))
	buffered := func() int {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return len(rt.buf) - rt.off
	}
	if most := waitFill(t, buffered); most > testWindow {
		t.Fatalf("%d bytes buffered; want at most the stream window, %d", most, testWindow)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rest) + 1; n < itemCount*itemText {
		t.Fatalf("got %d bytes; want the %d items", n, itemCount)
	}
}
