package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// TestGRPCLargeMessages sends messages of 3 MiB each way on one bidi
// stream, far over the HTTP/2 windows of both hops, so flow control must
// pass credit through the gateway in both directions.
func TestGRPCLargeMessages(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, _, _ := startGRPCGatewayOn(t, path)
		// 36 MiB through two hops under the race detector: a hang guard
		// with room for a busy machine, not testContext's 20s.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stream, err := testingv1.NewEchoServiceClient(cc).BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := int32(1); i <= 6; i++ {
			text := strings.Repeat(string(rune('a'+i)), 3<<20)
			if err := stream.Send(&testingv1.StreamItem{Index: i, Text: text}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			item, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv %d: %v", i, err)
			}
			if item.GetIndex() != i || item.GetText() != text {
				t.Fatalf("recv %d: index %d, %d bytes; want the message sent back", i, item.GetIndex(), len(item.GetText()))
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})
}

// TestGRPCConcurrentCalls runs many calls at once on few connections,
// mixing unary calls and streams, and checks every answer.
func TestGRPCConcurrentCalls(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, _, _ := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					id := strings.Repeat("x", w*i%700)
					out, err := client.Echo(context.Background(), &testingv1.Everything{Id: id})
					if err != nil || out.GetId() != id {
						errs <- errors.Join(err, errors.New("echo mismatch"))
						return
					}
					if i%5 == 0 {
						if err := drainStream(client, &testingv1.StreamRequest{Count: 3, Text: "s"}); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestGRPCBackendDiesMidStream: a backend that goes away during a server
// stream ends the call with UNAVAILABLE and an error ID, and the gateway
// serves the next backend on the same address.
func TestGRPCBackendDiesMidStream(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, be, _ := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)
		stream, err := client.ServerStream(testContext(t), &testingv1.StreamRequest{Count: 5, Interval: durationpb.New(time.Hour), Text: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first item: %v", err)
		}
		be.Server.Stop()
		_, err = stream.Recv()
		wantStatus(t, err, codes.Unavailable, "the stream from upstream test broke")
	})
}

// startFakeUpstream serves handler as an h2c server on 127.0.0.1:0: a
// backend that speaks HTTP/2 but answers things a gRPC server would not.
func startFakeUpstream(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	lis := testkit.ListenLocal(t)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: handler, Protocols: &protocols}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

// TestGRPCUpstreamNotGRPC: an upstream that answers a plain HTTP status,
// or a 200 without grpc-status, gets the gRPC status the client can act
// on, with an error ID; the gateway goes on serving.
func TestGRPCUpstreamNotGRPC(t *testing.T) {
	t.Parallel()
	addr := startFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/Echo"):
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case strings.HasSuffix(r.URL.Path, "/Sleep"):
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/grpc")
			_, _ = w.Write([]byte{0, 0, 0, 0, 0}) // an empty message, then no status
		default:
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			_, _ = w.Write([]byte{0, 0, 0, 0, 0})
			w.Header().Set("Grpc-Status", "0")
		}
	})
	config := `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    descriptors: { files: ["` + descriptorSetFile(t) + `"] }
`
	forEachGRPCPath(t, func(t *testing.T, path string) {
		url, _ := startGatewayOn(t, path, addr, config)
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		_, err := client.Echo(testContext(t), &testingv1.Everything{})
		wantStatus(t, err, codes.Unavailable, "upstream test answered HTTP 503 instead of a gRPC response")
		_, err = client.Sleep(testContext(t), &testingv1.SleepRequest{})
		wantStatus(t, err, codes.Internal, "upstream test ended the stream without a gRPC status")
		if _, err := client.Fail(testContext(t), &testingv1.FailRequest{}); err != nil {
			t.Fatalf("a well-formed answer after the bad ones: %v", err)
		}
	})
}

// TestGRPCRelayAccessLog: relayed calls get the same access line as the
// handler path: inbound grpc, the procedure, status 200, the gRPC code and
// byte counts.
func TestGRPCRelayAccessLog(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		var logs syncBuffer
		g := newTestGateway(t, be.Addr, basicConfig, newJSONLogger(&logs))
		url := startTestGateway(t, g, path)
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		_, _ = client.Fail(testContext(t), &testingv1.FailRequest{Code: 5, Message: "nope"})
		if _, err := client.Echo(testContext(t), &testingv1.Everything{Id: "abc"}); err != nil {
			t.Fatal(err)
		}
		var lines []map[string]any
		waitUntil(t, func() bool { lines = logs.lines(); return len(lines) >= 2 }, "access lines")
		for i, want := range []struct {
			procedure string
			code      float64
		}{{"/rosetta.testing.v1.EchoService/Fail", 5}, {"/rosetta.testing.v1.EchoService/Echo", 0}} {
			l := lines[i]
			if l["inbound"] != "grpc" || l["http"] != "2" || l["procedure"] != want.procedure || l["status"] != float64(200) || l["code"] != want.code || l["method"] != "POST" {
				t.Errorf("line %d: %v; want grpc %s status 200 code %v", i, l, want.procedure, want.code)
			}
			if _, ok := l["duration"]; !ok {
				t.Errorf("line %d lacks duration", i)
			}
		}
		// Echo: the message and its 5-byte prefix each way.
		size := float64(5 + proto.Size(&testingv1.Everything{Id: "abc"}))
		if lines[1]["bytes_in"] != size || lines[1]["bytes_out"] != size {
			t.Errorf("bytes: in %v out %v; want %v both", lines[1]["bytes_in"], lines[1]["bytes_out"], size)
		}
	})
}

// TestGRPCUpstreamErrorLogged: a call the gateway fails is logged at
// Error with the error ID the client sees in Rosetta-Error-Id.
func TestGRPCUpstreamErrorLogged(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		addr := startFakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nope", http.StatusBadGateway)
		})
		var logs syncBuffer
		g := newTestGateway(t, addr, `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
    descriptors: { files: ["`+descriptorSetFile(t)+`"] }
`, newJSONLogger(&logs))
		url := startTestGateway(t, g, path)
		req, _ := http.NewRequest("POST", url+"/rosetta.testing.v1.EchoService/Echo", bytes.NewReader([]byte{0, 0, 0, 0, 0}))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := newH2CClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Rosetta-Error-Id")
		if resp.Header.Get("Grpc-Status") != "14" || id == "" {
			t.Fatalf("trailers-only answer: grpc-status %q, error id %q; want 14 and an ID", resp.Header.Get("Grpc-Status"), id)
		}
		text := logs.String()
		if !strings.Contains(text, `"msg":"grpc call failed"`) || !strings.Contains(text, id) {
			t.Errorf("no error line with the ID %s in the log:\n%s", id, text)
		}
	})
}

// newJSONLogger logs JSON lines at Info to w.
func newJSONLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// TestGRPCForwardedHeaders: gRPC calls reach the backend with
// x-forwarded-for (the client's chain plus its address), -host and
// -proto, as REST calls do.
func TestGRPCForwardedHeaders(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		url, _ := startGatewayOn(t, path, be.Addr, basicConfig)
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		ctx := metadata.AppendToOutgoingContext(testContext(t), "x-forwarded-for", "10.0.0.1")
		resp, err := client.Metadata(ctx, &testingv1.MetadataRequest{})
		if err != nil {
			t.Fatal(err)
		}
		in := resp.GetIncoming()
		host := strings.TrimPrefix(url, "http://")
		for k, want := range map[string]string{
			"x-forwarded-for":   "10.0.0.1, 127.0.0.1",
			"x-forwarded-host":  host,
			"x-forwarded-proto": "http",
		} {
			if got := in[k].GetValues(); len(got) != 1 || got[0] != want {
				t.Errorf("%s: got %q; want [%s]", k, got, want)
			}
		}
	})
}

// TestGRPCBackendRestart: after the backend goes away and comes back on
// the same address, calls succeed again; on the relay path the gateway
// dials a new relay connection and carries calls on it.
func TestGRPCBackendRestart(t *testing.T) {
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, be, g := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)
		if _, err := client.Echo(testContext(t), &testingv1.Everything{Id: "before"}); err != nil {
			t.Fatal(err)
		}
		be.Server.Stop()
		testkit.StartBackend(t, testkit.WithAddress(be.Addr))
		waitUntil(t, func() bool {
			_, err := client.Echo(testContext(t), &testingv1.Everything{Id: "after"})
			return err == nil
		}, "a call to the restarted backend")
		if path != "relay" {
			return
		}
		up, _ := g.gen().ups.Get("test")
		waitUntil(t, func() bool { return up.RelayConn(be.Addr) != nil }, "a new relay connection")
		stream, err := client.BidiStream(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testingv1.StreamItem{Index: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		if n := up.RelayConn(be.Addr).Streams(); n != 1 {
			t.Errorf("streams on the new relay connection: %d; want the open call", n)
		}
		_ = stream.CloseSend()
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("end of stream: %v", err)
		}
	})
}

// TestGRPCRequestMessageLimit: max_request_message_bytes bounds what
// clients send, apart from max_message_bytes, which bounds what the
// upstream answers.
func TestGRPCRequestMessageLimit(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		be := testkit.StartBackend(t)
		url, _ := startGatewayOn(t, path, be.Addr, basicConfig+"    max_request_message_bytes: 1024\n")
		client := testingv1.NewEchoServiceClient(dialGateway(t, url))
		_, err := client.Echo(testContext(t), &testingv1.Everything{StringValue: strings.Repeat("x", 2000)})
		st := wantStatus(t, err, codes.ResourceExhausted, "")
		if !strings.Contains(st.Message(), "larger than the limit of 1024 bytes (upstream test max_request_message_bytes)") {
			t.Errorf("message: %q", st.Message())
		}
		// Compressed, the same message is checked by its inflated size.
		_, err = client.Echo(testContext(t), &testingv1.Everything{StringValue: strings.Repeat("x", 2000)}, grpc.UseCompressor(gzip.Name))
		st = wantStatus(t, err, codes.ResourceExhausted, "")
		if !strings.Contains(st.Message(), "request message of 2003 bytes is larger than the limit of 1024 bytes") {
			t.Errorf("gzip message: %q", st.Message())
		}
		if _, err := client.Echo(testContext(t), &testingv1.Everything{StringValue: strings.Repeat("x", 900)}, grpc.UseCompressor(gzip.Name)); err != nil {
			t.Errorf("a compressed message under the limit: %v", err)
		}
		// A small request whose answer is over 1024 bytes passes.
		ctx := metadata.AppendToOutgoingContext(testContext(t), "x-big", strings.Repeat("y", 2000))
		if _, err := client.Metadata(ctx, &testingv1.MetadataRequest{}); err != nil {
			t.Fatalf("a large answer: %v", err)
		}
	})
}

// TestGRPCClientStreamHalfCloseBehindData: a client that half-closes
// while its last messages still wait for the backend's flow-control window
// (three 200 KB messages against a 64 KB initial window) gets its answer:
// the END_STREAM waits behind the data instead of being lost.
func TestGRPCClientStreamHalfCloseBehindData(t *testing.T) {
	t.Parallel()
	forEachGRPCPath(t, func(t *testing.T, path string) {
		cc, _, _ := startGRPCGatewayOn(t, path)
		client := testingv1.NewEchoServiceClient(cc)
		text := strings.Repeat("x", 200<<10)
		st, err := client.ClientStream(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if err := st.Send(&testingv1.StreamItem{Text: text}); err != nil {
				t.Fatal(err)
			}
		}
		sum, err := st.CloseAndRecv()
		if err != nil || sum.GetCount() != 3 {
			t.Fatalf("client stream: %v, %v; want a summary of 3", sum, err)
		}
	})
}
