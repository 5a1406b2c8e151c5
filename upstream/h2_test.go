package upstream

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func newTestUpstream(t *testing.T, cfg *config.Upstream) *Upstream {
	t.Helper()
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

func TestPickRoundRobin(t *testing.T) {
	u := newTestUpstream(t, &config.Upstream{Name: "rr", Targets: config.TargetsOf("a:1", "b:2", "c:3")})
	var got []string
	for range 9 {
		got = append(got, u.Pick())
	}
	// The rotation starts at a random target (so that gateways started
	// together do not all begin with the same one), then goes round.
	for i := 3; i < len(got); i++ {
		if got[i] != got[i-3] {
			t.Fatalf("Pick sequence %q is not a rotation of the three targets", got)
		}
	}
	if seen := map[string]bool{got[0]: true, got[1]: true, got[2]: true}; len(seen) != 3 {
		t.Errorf("Pick sequence %q does not visit every target once per round", got)
	}
	if u.Scheme() != "http" {
		t.Errorf("Scheme: got %q; want http", u.Scheme())
	}
}

// TestHTTP2H2C sends a raw grpc.health.v1.Health/Check through the
// upstream's round tripper (h2c) to a real grpc-go backend and reads the
// trailers.
func TestHTTP2H2C(t *testing.T) {
	be := testkit.StartBackend(t)
	u := newTestUpstream(t, &config.Upstream{Name: "h2c", Targets: config.TargetsOf(be.Addr)})
	req, err := http.NewRequest(http.MethodPost, u.Scheme()+"://"+u.Pick()+"/grpc.health.v1.Health/Check",
		bytes.NewReader([]byte{0, 0, 0, 0, 0})) // one empty, uncompressed message
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := u.RoundTripper().RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol: got %s; want HTTP/2.0", resp.Proto)
	}
	// HealthCheckResponse{status: SERVING} is 08 01, after the 5-byte prefix.
	if want := []byte{0, 0, 0, 0, 2, 8, 1}; !bytes.Equal(body, want) {
		t.Errorf("body: got %x; want %x", body, want)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("grpc-status trailer: got %q; want 0", got)
	}
}

func TestHTTP2BadTLSConfig(t *testing.T) {
	cfg := &config.Upstream{Name: "tls", Targets: config.TargetsOf("127.0.0.1:1"), TLS: &config.ClientTLS{InsecureSkipVerify: true}}
	u := newTestUpstream(t, cfg)
	if u.Scheme() != "https" {
		t.Errorf("Scheme: got %q; want https", u.Scheme())
	}
	// The CA disappears after New validated the config.
	cfg.TLS.CA = "/nonexistent/ca.pem"
	req, _ := http.NewRequest(http.MethodPost, "https://127.0.0.1:1/x.Y/Z", nil)
	_, err := u.RoundTripper().RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "read upstream CA") {
		t.Errorf("RoundTrip: got %v; want the CA read error", err)
	}
}
