package h2_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// h2specPath finds the h2spec binary: $H2SPEC, then the repository's
// .tmp/bin (make test installs the pinned version there), then PATH.
func h2specPath() (string, error) {
	if p := os.Getenv("H2SPEC"); p != "" {
		_, err := os.Stat(p)
		return p, err
	}
	if p, err := filepath.Abs(filepath.Join("..", "..", ".tmp", "bin", "h2spec")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("h2spec")
}

// h2specHandler is what h2spec needs from the server: 200 with a small
// body on every path, request bodies read to the end.
var h2specHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "hello from h2\n")
})

// h2specReport is the part of h2spec's JUnit report the test reads. Test
// cases appear in the order h2spec runs them, so a case's number in its
// group (the last part of its ID, as in http2/3.5/2) is its position.
type h2specReport struct {
	Suites []struct {
		Package string `xml:"package,attr"` // the group ID: http2/3.5
		Cases   []struct {
			Desc    string    `xml:"classname,attr"`
			Failure *struct{} `xml:"failure"`
			Error   *struct {
				Text string `xml:",chardata"`
			} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestH2Spec runs the h2spec conformance suite (RFC 7540/9113 and HPACK)
// against an h2.Server installed in net/http, over TLS and over
// prior-knowledge h2c. Every case must pass, except the h2c ones listed.
func TestH2Spec(t *testing.T) {
	bin, err := h2specPath()
	if err != nil {
		if testing.Short() {
			t.Skip("h2spec not installed (make test installs it into .tmp/bin)")
		}
		t.Fatalf("h2spec not found: set $H2SPEC, put it on PATH, or run make test, which installs the pinned version into .tmp/bin (%v)", err)
	}
	for _, tc := range []struct {
		name   string
		tls    bool
		except map[string]string // case ID → why it may fail
	}{
		{name: "tls", tls: true},
		{name: "h2c", except: map[string]string{
			// "Sends invalid connection preface": over cleartext the
			// connection is HTTP/1.1 until net/http has seen the whole
			// h2c preface, so an invalid one gets HTTP/1's 400 Bad
			// Request instead of an HTTP/2 GOAWAY. h2.Server never sees
			// the connection.
			"http2/3.5/2": "answered by net/http's HTTP/1 parser",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The frame size transports configures: the RFC default,
			// which h2spec assumes (4.2/3 sends a 20 kB HEADERS frame
			// and expects FRAME_SIZE_ERROR).
			limits := withLimits(h2.Limits{MaxReadFrameSize: 16 << 10})
			var ts *testServer
			if tc.tls {
				ts = startTLSServer(t, h2specHandler, limits)
			} else {
				ts = startServer(t, h2specHandler, limits)
			}
			host, port, _ := net.SplitHostPort(ts.Addr)
			report := filepath.Join(t.TempDir(), "report.xml")
			args := []string{"-h", host, "-p", port, "-o", "2", "-j", report}
			if tc.tls {
				args = append(args, "-t", "-k")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			runErr := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("h2spec did not finish in time:\n%s", out.String())
			}
			// h2spec exits 1 when a case fails; the report says which.
			var exit *exec.ExitError
			if runErr != nil && !errors.As(runErr, &exit) {
				t.Fatalf("run h2spec: %v", runErr)
			}
			raw, err := os.ReadFile(report)
			if err != nil {
				t.Fatalf("h2spec wrote no report (%v; exit %v):\n%s", err, runErr, out.String())
			}
			var rep h2specReport
			if err := xml.Unmarshal(raw, &rep); err != nil {
				t.Fatalf("parse h2spec report: %v", err)
			}
			total, passed, skipped := 0, 0, 0
			var failed []string
			for _, s := range rep.Suites {
				for i, c := range s.Cases {
					total++
					id := fmt.Sprintf("%s/%d", s.Package, i+1)
					detail := ""
					if c.Error != nil {
						detail = ": " + strings.Join(strings.Fields(c.Error.Text), " ")
					}
					switch {
					case c.Skipped != nil:
						skipped++
					case c.Failure == nil && c.Error == nil:
						passed++
					case tc.except[id] != "":
						t.Logf("h2spec %s %s: failed as expected, %s%s", id, c.Desc, tc.except[id], detail)
					default:
						failed = append(failed, fmt.Sprintf("%s %s%s", id, c.Desc, detail))
					}
				}
			}
			t.Logf("h2spec over %s: %d/%d passed, %d skipped", tc.name, passed, total, skipped)
			if total < 140 {
				t.Fatalf("h2spec ran %d cases; want the full suite (145):\n%s", total, out.String())
			}
			if len(failed) > 0 {
				t.Errorf("h2spec over %s: %d cases failed:\n  %s", tc.name, len(failed), strings.Join(failed, "\n  "))
			}
			if len(failed) == 0 && runErr != nil && len(tc.except) == 0 {
				t.Errorf("h2spec exited with %v but the report lists no failure:\n%s", runErr, out.String())
			}
		})
	}
}
