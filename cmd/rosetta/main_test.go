package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	if code, out, _ := runCLI("version"); code != 0 || !strings.HasPrefix(out, "rosetta ") {
		t.Errorf("version: got %d %q", code, out)
	}
	if code, _, errs := runCLI("frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: got %d %q", code, errs)
	}
	if code, _, errs := runCLI(); code != 2 || !strings.Contains(errs, "Usage:") {
		t.Errorf("no command: got %d %q", code, errs)
	}
}

// TestPositionalArgument: every command takes flags only; an argument
// left over (a config path given without --config) is refused with exit
// 2, naming it, before anything is loaded or dialled.
func TestPositionalArgument(t *testing.T) {
	t.Parallel()
	for _, cmd := range [][]string{{"serve"}, {"validate"}, {"routes"}, {"openapi"}, {"lint"}, {"usage"}, {"cache", "purge"}} {
		name := strings.Join(cmd, " ")
		checkCLIErrors(t, cmd[0], []cliError{{append(cmd[1:], "rosetta.yaml"), 2,
			fmt.Sprintf(`rosetta %s: unexpected argument "rosetta.yaml" (flags only: see rosetta %s -h)`, name, name), ""}})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n  a:\n    targets: [127.0.0.1:9000]\n"), 0o600)
	os.WriteFile(bad, []byte("listeners:\n  - adress: 127.0.0.1:8080\nupstreams:\n  a:\n    targets: [nope]\n"), 0o600)
	if code, out, errs := runCLI("validate", "--config", good); code != 0 || out != good+": ok\n" {
		t.Errorf("good config: got %d %q %q", code, out, errs)
	}
	code, _, errs := runCLI("validate", "--config", bad)
	if code != 2 {
		t.Errorf("bad config: exit %d; want 2", code)
	}
	for _, want := range []string{bad + ":2:5: listeners[0].adress: unknown key \"adress\" (known: address, http3, idle_timeout, max_body_bytes, max_concurrent_streams, max_header_bytes, max_header_count, max_uri_bytes, read_header_timeout, read_timeout, tls, write_timeout) (hint: did you mean \"address\"?)", bad + ":5:15: upstreams.a.targets[0]"} {
		if !strings.Contains(errs, want) {
			t.Errorf("bad config output lacks %q:\n%s", want, errs)
		}
	}
	if code, _, errs := runCLI("validate"); code != 2 || !strings.Contains(errs, "--config FILE is required") {
		t.Errorf("missing flag: got %d %q", code, errs)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	code, out, errs := runCLI("routes", "--upstream", "test="+be.Addr)
	if code != 0 {
		t.Fatalf("routes: exit %d: %s", code, errs)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^VERB\s+PATH\s+RPC\s+UPSTREAM\s+SOURCE$`),
		regexp.MustCompile(`(?m)^GET\s+/v1/echo/\{id\}\s+rosetta\.testing\.v1\.EchoService\.Echo\s+test\s+annotation$`),
		regexp.MustCompile(`(?m)^POST\s+/v1/\{name=shelves/\*/books/\*\}:publish\s+rosetta\.examples\.library\.v1\.LibraryService\.PublishBook\s+test\s+annotation$`),
		regexp.MustCompile(`(?m)^POST\s+/rosetta\.testing\.v1\.EchoService/Unannotated\s+rosetta\.testing\.v1\.EchoService\.Unannotated\s+test\s+default$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("routes output lacks %s:\n%s", want, out)
		}
	}
}

// TestServeUsageErrors: what a user sees when serve cannot start from its
// flags or config (exit 2, a message saying what to fix), and routes with
// no upstream at all.
func TestServeUsageErrors(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listeners: []\nupstreams: {}\n"), 0o600)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, 2, "no config: give --config FILE, or --upstream HOST:PORT for zero-config mode"},
		{[]string{"serve", "--config", bad, "--upstream", "127.0.0.1:9000"}, 2, "give either --config or --upstream, not both"},
		{[]string{"serve", "--config", bad}, 2, bad + `:1:12: listeners: at least one listener is required (hint: add one, e.g. listeners: [{address: ":8080"}])`},
		{[]string{"serve", "--upstream", "nope"}, 2, `--upstream: invalid address "nope"`},
		{[]string{"serve", "--upstream", "127.0.0.1:9000", "--log-level", "loud"}, 2, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"routes"}, 2, "no config: give --config FILE"},
	}
	for _, c := range cases {
		code, _, errs := runCLI(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("rosetta %s: got exit %d, %q; want exit %d with %q", strings.Join(c.args, " "), code, errs, c.code, c.want)
		}
	}
}

// buildBinary builds the rosetta binary once for the process tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rosetta")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestServeZeroConfigAndDrain runs the exact zero-config command from the
// README, serves a request, then sends SIGTERM while a slow request is in
// flight: the request completes and the process exits 0.
func TestServeZeroConfigAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short")
	}
	t.Parallel()
	sleeping := make(chan struct{}, 1)
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if strings.HasSuffix(info.FullMethod, "/Sleep") {
				select {
				case sleeping <- struct{}{}:
				default:
				}
			}
			return h(ctx, req)
		})))
	bin := buildBinary(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "serve", "--listen", addr, "--upstream", be.Addr)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	waitFor(t, logs, "listening")
	resp, err := http.Get("http://" + addr + "/v1/echo/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"hello"`) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}

	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/v1/sleep?duration=1s")
		if err != nil {
			slow <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	// Send SIGTERM once the slow request is in flight at the backend.
	<-sleeping
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := <-slow; got != 200 {
		t.Errorf("in-flight request during shutdown: got %d; want 200", got)
	}
	for range logs {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v; want status 0", err)
	}
}

// waitFor returns the first log line that contains substr.
func waitFor(t *testing.T, logs <-chan string, substr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		select {
		case l, ok := <-logs:
			if !ok {
				t.Fatalf("process exited before logging %q", substr)
			}
			if testing.Verbose() {
				t.Log(l)
			}
			if strings.Contains(l, substr) {
				return l
			}
		case <-ctx.Done():
			t.Fatalf("no log line with %q", substr)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
