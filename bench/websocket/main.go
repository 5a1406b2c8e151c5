// Command websocket benchmarks the gateway's WebSocket bridge: the memory
// each idle stream costs the gateway, and messages per second through the
// bridge compared with the same server stream consumed directly over gRPC.
//
//	cd bench && go run ./websocket -streams 10000 -messages 200000
//
// It runs three processes so that each measurement sees one party only:
// this one runs the gateway (in process, measured with runtime.MemStats
// and /proc/self/status), a child runs the gRPC backend
// (rosetta.testing.v1.EchoService), and another child runs the clients.
// `make bench-websocket` runs it; `make test` does not.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

func main() {
	role := flag.String("role", "gateway", "gateway (the default: runs the benchmark), backend or clients (children)")
	streams := flag.Int("streams", 10000, "idle WebSocket streams to open")
	messages := flag.Int("messages", 200000, "messages per throughput run")
	size := flag.Int("size", 64, "text bytes per message in the throughput runs")
	gw := flag.String("gateway", "", "clients: the gateway's host:port")
	be := flag.String("backend", "", "clients: the backend's host:port")
	flag.Parse()
	raiseFileLimit()
	var err error
	switch *role {
	case "gateway":
		err = runGateway(*streams, *messages, *size)
	case "backend":
		err = runBackend()
	case "clients":
		err = runClients(*gw, *be, *streams, *messages, *size)
	default:
		err = fmt.Errorf("unknown -role %q: want gateway, backend or clients", *role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/websocket (%s): %v\n", *role, err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// stream is a socket in the clients and in the gateway.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// runBackend serves EchoService with reflection and prints its address.
func runBackend() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	testingv1.RegisterEchoServiceServer(srv, testkit.NewEchoServer())
	reflection.Register(srv)
	fmt.Println(lis.Addr().String())
	go func() {
		// The parent closes stdin when it is done.
		_, _ = io.Copy(io.Discard, os.Stdin)
		srv.Stop()
	}()
	return srv.Serve(lis)
}

// child is a running child process of this program.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startChild(args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}, nil
}

// line reads the child's next output line.
func (c *child) line() (string, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return "", err
		}
		return "", errors.New("child exited early")
	}
	return c.out.Text(), nil
}

func (c *child) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Wait()
}

// memory is one reading of the gateway process's memory.
type memory struct {
	heapInuse, heapAlloc, sys uint64
	rssKB                     int64
	goroutines                int
}

func measure() memory {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heapInuse: ms.HeapInuse, heapAlloc: ms.HeapAlloc, sys: ms.Sys, rssKB: rssKB(), goroutines: runtime.NumGoroutine()}
}

// rssKB reads VmRSS from /proc/self/status (0 where there is none).
func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func runGateway(streams, messages, size int) error {
	backend, err := startChild("-role", "backend")
	if err != nil {
		return fmt.Errorf("start the backend: %w", err)
	}
	defer backend.stop()
	beAddr, err := backend.line()
	if err != nil {
		return fmt.Errorf("backend address: %w", err)
	}

	dir, err := os.MkdirTemp("", "bench-websocket")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "rosetta.yaml")
	yaml := fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
upstreams:
  echo:
    targets: [%q]
websocket:
  idle_timeout: 0s
  ping_interval: 30s
`, beAddr)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(file)
	if err != nil {
		return err
	}
	g, err := gateway.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := g.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
	}()
	gwAddr := g.Addrs()[0].String()

	// Warm up (descriptor load, backend connection) before the baseline.
	before := measure()
	clients, err := startChild("-role", "clients", "-gateway", gwAddr, "-backend", beAddr,
		"-streams", strconv.Itoa(streams), "-messages", strconv.Itoa(messages), "-size", strconv.Itoa(size))
	if err != nil {
		return fmt.Errorf("start the clients: %w", err)
	}
	defer clients.stop()
	start := time.Now()
	if l, err := clients.line(); err != nil || l != "READY" {
		return fmt.Errorf("clients: %q %v", l, err)
	}
	opened := time.Since(start)
	after := measure()
	n := float64(streams)
	fmt.Printf("idle streams: %d open in %s (ServerStream, 1h interval, through the gateway)\n", streams, opened.Round(time.Millisecond))
	fmt.Printf("gateway per idle stream: heap in use %.1f KiB, heap alloc %.1f KiB, Go sys %.1f KiB, RSS %.1f KiB, goroutines %.2f\n",
		float64(after.heapInuse-before.heapInuse)/1024/n,
		float64(after.heapAlloc-before.heapAlloc)/1024/n,
		float64(after.sys-before.sys)/1024/n,
		float64(after.rssKB-before.rssKB)/n,
		float64(after.goroutines-before.goroutines)/n)
	fmt.Printf("gateway totals: heap in use %d MiB → %d MiB, RSS %d MiB → %d MiB, goroutines %d → %d\n",
		before.heapInuse>>20, after.heapInuse>>20, before.rssKB>>10, after.rssKB>>10, before.goroutines, after.goroutines)
	if _, err := fmt.Fprintln(clients.stdin, "MEASURED"); err != nil {
		return err
	}
	for {
		l, err := clients.line()
		if err != nil {
			return fmt.Errorf("clients: %w", err)
		}
		if l == "DONE" {
			return nil
		}
		fmt.Println(l)
	}
}

// runClients opens the idle streams, waits for the parent to measure, then
// runs the throughput comparison.
func runClients(gwAddr, beAddr string, streams, messages, size int) error {
	ctx := context.Background()
	idle := "ws://" + gwAddr + "/v1/stream?count=2&interval=3600s"
	conns := make([]*websocket.Conn, streams)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := openIdle(ctx, idle)
			if err != nil {
				select {
				case errs <- fmt.Errorf("stream %d: %w", i, err):
				default:
				}
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "MEASURED" {
		return errors.New("the parent went away")
	}
	for _, c := range conns {
		_ = c.CloseNow()
	}
	time.Sleep(time.Second) // let the gateway and backend release the streams

	text := strings.Repeat("x", size)
	direct, err := throughputGRPC(ctx, beAddr, messages, text)
	if err != nil {
		return fmt.Errorf("direct gRPC: %w", err)
	}
	viaGRPC, err := throughputGRPC(ctx, gwAddr, messages, text)
	if err != nil {
		return fmt.Errorf("gRPC through the gateway: %w", err)
	}
	wsJSON, err := throughputWS(ctx, gwAddr, messages, text, "rosetta.json.v1")
	if err != nil {
		return fmt.Errorf("WebSocket JSON: %w", err)
	}
	wsProto, err := throughputWS(ctx, gwAddr, messages, text, "rosetta.proto.v1")
	if err != nil {
		return fmt.Errorf("WebSocket proto: %w", err)
	}
	fmt.Printf("throughput, one ServerStream of %d messages of %d text bytes:\n", messages, size)
	fmt.Printf("  direct gRPC to the backend      %9.0f msg/s\n", direct)
	fmt.Printf("  gRPC through the gateway        %9.0f msg/s\n", viaGRPC)
	fmt.Printf("  WebSocket bridge, JSON frames   %9.0f msg/s (%.0f%% of direct)\n", wsJSON, 100*wsJSON/direct)
	fmt.Printf("  WebSocket bridge, proto frames  %9.0f msg/s (%.0f%% of direct)\n", wsProto, 100*wsProto/direct)
	fmt.Println("DONE")
	return nil
}

// openIdle opens a server stream that sends one item and then waits an
// hour, and leaves it open with a background reader answering pings.
func openIdle(ctx context.Context, url string) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Write(dctx, websocket.MessageText, []byte("{}")); err != nil {
		return nil, err
	}
	if _, _, err := c.Read(dctx); err != nil {
		return nil, err
	}
	c.CloseRead(ctx)
	return c, nil
}

func throughputGRPC(ctx context.Context, addr string, n int, text string) (float64, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	client := testingv1.NewEchoServiceClient(cc)
	start := time.Now()
	stream, err := client.ServerStream(ctx, &testingv1.StreamRequest{Count: int32(n), Text: text})
	if err != nil {
		return 0, err
	}
	got := 0
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		got++
	}
	if got != n {
		return 0, fmt.Errorf("got %d messages; want %d", got, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func throughputWS(ctx context.Context, addr string, n int, text, subprotocol string) (float64, error) {
	start := time.Now()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/v1/stream?count=%d&text=%s", addr, n, text),
		&websocket.DialOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		return 0, err
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"@close_send": true}`)); err != nil {
		return 0, err
	}
	got := -1 // the status frame
	for {
		_, _, err := c.Read(ctx)
		if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			break
		}
		if err != nil {
			return 0, err
		}
		got++
	}
	if got != n {
		return 0, fmt.Errorf("got %d messages; want %d", got, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
