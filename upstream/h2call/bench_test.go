package h2call_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// The benchmarks call a grpc-go backend in another process (this test
// binary, running TestBackendProcess) over loopback, once through h2call
// and once through grpc-go's own client, so that allocs/op and cpu-ns/op
// (the process's CPU time per call) are the client's alone.

func benchClients(b *testing.B) (grpc.ClientConnInterface, grpc.ClientConnInterface, string) {
	addr := startBackendProcess(b)
	cc, _ := newConn(b, addr, h2callOptions(), h2.ClientOptions{})
	ref, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ref.Close() })
	return cc, ref, addr
}

// startBackendProcess runs the EchoService backend in a child process
// and returns its address; the child ends when the benchmark does.
func startBackendProcess(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBackendProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), backendProcessEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("backend process: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return strings.TrimSpace(line)
}

const backendProcessEnv = "H2CALL_BACKEND_PROCESS"

// TestBackendProcess is the benchmarks' backend process: it serves
// EchoService, prints its address and runs until stdin closes.
func TestBackendProcess(t *testing.T) {
	if os.Getenv(backendProcessEnv) == "" {
		t.Skip("the benchmarks' backend process; runs only when they start it")
	}
	be := testkit.StartBackend(t)
	fmt.Println(be.Addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// restContext is the outgoing metadata the REST dialect attaches to a
// call (X-Forwarded-*), for the rest-like cases.
func restContext() context.Context {
	return metadata.NewOutgoingContext(context.Background(), metadata.MD{
		"x-forwarded-for":   {"192.0.2.1"},
		"x-forwarded-host":  {"api.example.com"},
		"x-forwarded-proto": {"http"},
	})
}

func BenchmarkUnary(b *testing.B) {
	cc, ref, _ := benchClients(b)
	in, _ := proto.Marshal(&testingv1.Everything{BytesValue: bytes.Repeat([]byte{7}, 1000)})
	msg := &testingv1.Everything{StringValue: "hello", BytesValue: bytes.Repeat([]byte{7}, 1000)}
	for _, client := range []struct {
		name string
		cc   grpc.ClientConnInterface
	}{{"h2call", cc}, {"grpc-go", ref}} {
		b.Run("raw-1KB/"+client.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			ctx := context.Background()
			for b.Loop() {
				var out []byte
				if err := client.cc.Invoke(ctx, echoMethod, &in, &out, rawCall); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("rest-like-1KB/"+client.name, func(b *testing.B) {
			// The REST fast path: raw codec, forwarded metadata, header
			// and trailer wanted.
			b.ReportAllocs()
			defer reportCPU(b)()
			ctx := restContext()
			for b.Loop() {
				var out []byte
				var hdr, trl metadata.MD
				if err := client.cc.Invoke(ctx, echoMethod, &in, &out, rawCall, grpc.Header(&hdr), grpc.Trailer(&trl)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("proto-1KB/"+client.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			ctx := context.Background()
			for b.Loop() {
				out := &testingv1.Everything{}
				if err := client.cc.Invoke(ctx, echoMethod, msg, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("raw-1KB-parallel/"+client.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var out []byte
					if err := client.cc.Invoke(ctx, echoMethod, &in, &out, rawCall); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkServerStream(b *testing.B) {
	cc, ref, _ := benchClients(b)
	for _, client := range []struct {
		name string
		cc   grpc.ClientConnInterface
	}{{"h2call", cc}, {"grpc-go", ref}} {
		b.Run("10-items/"+client.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			c := testingv1.NewEchoServiceClient(client.cc)
			for b.Loop() {
				st, err := c.ServerStream(context.Background(), &testingv1.StreamRequest{Count: 10, Text: "item"})
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := st.Recv(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	cc, _, addr := benchClients(b)
	frame := marshalFrame(b, &testingv1.Everything{BytesValue: bytes.Repeat([]byte{7}, 1000)})
	buf := make([]byte, 32<<10)
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{{"h2call", cc.(http.RoundTripper)}, {"net-http", netHTTP2(b)}} {
		b.Run("unary-1KB/"+rt.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				req := grpcRequest(b, context.Background(), addr, echoMethod, bytes.NewReader(frame))
				resp, err := rt.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := resp.Body.Read(buf); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
				_ = resp.Body.Close()
				if resp.Trailer.Get("Grpc-Status") != "0" {
					b.Fatalf("trailer %v", resp.Trailer)
				}
			}
		})
	}
}

// BenchmarkUnaryCPU compares the clients' CPU per call on a busy machine:
// it alternates batches of calls between h2call and grpc-go and charges
// each batch's process CPU time to its client, so load that comes and
// goes weighs on both alike. It reports cpu-ns per call of each and
// their ratio (h2call/grpc-go).
func BenchmarkUnaryCPU(b *testing.B) {
	cc, ref, _ := benchClients(b)
	in, _ := proto.Marshal(&testingv1.Everything{BytesValue: bytes.Repeat([]byte{7}, 1000)})
	for _, tc := range []struct {
		name string
		ctx  context.Context
		opts func(hdr, trl *metadata.MD) []grpc.CallOption
	}{
		{"raw-1KB", context.Background(), func(*metadata.MD, *metadata.MD) []grpc.CallOption { return []grpc.CallOption{rawCall} }},
		{"rest-like-1KB", restContext(), func(hdr, trl *metadata.MD) []grpc.CallOption {
			return []grpc.CallOption{rawCall, grpc.Header(hdr), grpc.Trailer(trl)}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const batch = 100
			var spent [2]time.Duration
			calls := 0
			clients := [2]grpc.ClientConnInterface{cc, ref}
			for b.Loop() {
				for i, c := range clients {
					start := cpuTime()
					for range batch {
						var out []byte
						var hdr, trl metadata.MD
						if err := c.Invoke(tc.ctx, echoMethod, &in, &out, tc.opts(&hdr, &trl)...); err != nil {
							b.Fatal(err)
						}
					}
					spent[i] += cpuTime() - start
				}
				calls += batch
			}
			h, g := float64(spent[0])/float64(calls), float64(spent[1])/float64(calls)
			b.ReportMetric(h, "h2call-cpu-ns/call")
			b.ReportMetric(g, "grpc-go-cpu-ns/call")
			if g > 0 {
				b.ReportMetric(h/g, "cpu-ratio")
			}
		})
	}
}
