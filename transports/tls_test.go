package transports

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// peerCN opens a TLS connection asking for serverName and returns the
// common name of the certificate the server chose.
func peerCN(t *testing.T, addr, serverName string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}) //nolint:gosec // the test inspects the certificate itself
	if err != nil {
		t.Fatalf("TLS dial %s (SNI %q): %v", addr, serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// copyPair writes a leaf's PEM files to cert and key (key first, so the
// pair is briefly mismatched, as real rotations often are).
func copyPair(t *testing.T, l *testkit.Leaf, cert, key string) {
	t.Helper()
	if err := os.WriteFile(key, l.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, l.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLSSNI(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "sni-ca")
	def := ca.Issue(t, "default", "default.test")
	api := ca.Issue(t, "api", "api.test", "API2.test")
	wild := ca.Issue(t, "wild", "*.wild.test")
	cfg := listenerConfig()
	cfg.TLS = &config.ServerTLS{
		Cert: def.CertFile, Key: def.KeyFile,
		Certificates: []config.CertKey{{Cert: api.CertFile, Key: api.KeyFile}, {Cert: wild.CertFile, Key: wild.KeyFile}},
	}
	s := startServer(t, cfg, whoHandler, nil)
	addr := s.Addr().String()
	for _, tc := range []struct{ sni, want string }{
		{"api.test", "api"},
		{"api2.test", "api"},
		{"API.test.", "api"},
		{"x.wild.test", "wild"},
		{"a.b.wild.test", "default"}, // a wildcard covers one label
		{"wild.test", "default"},
		{"default.test", "default"},
		{"other.test", "default"},
		{"", "default"},
	} {
		t.Run("sni="+tc.sni, func(t *testing.T) {
			if got := peerCN(t, addr, tc.sni); got != tc.want {
				t.Errorf("certificate for SNI %q: got %s; want %s", tc.sni, got, tc.want)
			}
		})
	}
	// A verifying client gets the right certificate and an answer.
	_, body, err := get(httpsClient(t, ca.Pool(), "x.wild.test", true), "https://"+addr+"/")
	if err != nil || body != "HTTP/2.0 x.wild.test 0" {
		t.Errorf("GET via wildcard certificate: got %q, %v; want %q", body, err, "HTTP/2.0 x.wild.test 0")
	}
}

func TestTLSProtocols(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "ca")
	leaf := ca.Issue(t, "localhost", "localhost")
	cfg := listenerConfig()
	cfg.TLS = &config.ServerTLS{Cert: leaf.CertFile, Key: leaf.KeyFile}
	s := startServer(t, cfg, whoHandler, nil)
	url := "https://" + s.Addr().String() + "/"
	for _, tc := range []struct {
		h2   bool
		want string
	}{{true, "HTTP/2.0 localhost 0"}, {false, "HTTP/1.1 localhost 0"}} {
		resp, body, err := get(httpsClient(t, ca.Pool(), "localhost", tc.h2), url)
		if err != nil {
			t.Fatal(err)
		}
		if body != tc.want || resp.Header.Get("Alt-Svc") != "" {
			t.Errorf("got %q (Alt-Svc %q); want %q and no Alt-Svc without http3", body, resp.Header.Get("Alt-Svc"), tc.want)
		}
	}
	if got := s.Protocols(); got != "h1,h2" {
		t.Errorf("Protocols: got %s; want h1,h2", got)
	}
	// Plain HTTP to the TLS port gets net/http's 400.
	resp, body, err := get(http.DefaultClient, "http://"+s.Addr().String()+"/")
	if err != nil || resp.StatusCode != 400 || !strings.Contains(body, "HTTPS") {
		t.Errorf("cleartext request to TLS port: got %v %q; want 400 naming HTTPS", err, body)
	}
}

func TestTLSMinVersion(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "ca")
	leaf := ca.Issue(t, "localhost", "localhost")
	cfg := listenerConfig()
	cfg.TLS = &config.ServerTLS{Cert: leaf.CertFile, Key: leaf.KeyFile}
	s := startServer(t, cfg, whoHandler, nil)
	for _, tc := range []struct {
		name    string
		version uint16
		ok      bool
	}{{"tls1.0", tls.VersionTLS10, false}, {"tls1.1", tls.VersionTLS11, false}, {"tls1.2", tls.VersionTLS12, true}, {"tls1.3", tls.VersionTLS13, true}} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{
				RootCAs: ca.Pool(), ServerName: "localhost",
				MinVersion: tc.version, MaxVersion: tc.version, //nolint:gosec // testing that old versions are refused
				NextProtos: []string{"h2", "http/1.1"},
			})
			if !tc.ok {
				if err == nil {
					conn.Close()
					t.Fatalf("handshake with %s succeeded; want it refused", tc.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().NegotiatedProtocol; got != "h2" {
				t.Errorf("ALPN: got %q; want h2", got)
			}
		})
	}
}

func TestTLSClientAuth(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "server-ca")
	leaf := ca.Issue(t, "localhost", "localhost")
	clientCA := testkit.NewCA(t, "client-ca")
	good := clientCA.Issue(t, "good-client")
	bad := testkit.NewCA(t, "other-ca").Issue(t, "bad-client")
	for _, mode := range []string{"require", "request"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cfg := listenerConfig()
			cfg.TLS = &config.ServerTLS{Cert: leaf.CertFile, Key: leaf.KeyFile, ClientCA: clientCA.CertFile, ClientAuth: mode}
			s := startServer(t, cfg, whoHandler, nil)
			url := "https://" + s.Addr().String() + "/"
			for _, tc := range []struct {
				name  string
				certs []tls.Certificate
				want  string // "" for a failed handshake
			}{
				{"no cert", nil, map[string]string{"require": "", "request": "HTTP/2.0 localhost 0"}[mode]},
				{"good cert", []tls.Certificate{good.TLS}, "HTTP/2.0 localhost 1"},
				{"cert of another CA", []tls.Certificate{bad.TLS}, ""},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, body, err := get(httpsClient(t, ca.Pool(), "localhost", true, tc.certs...), url)
					switch {
					case tc.want == "" && err == nil:
						t.Errorf("got %q; want a failed handshake", body)
					case tc.want != "" && (err != nil || body != tc.want):
						t.Errorf("got %q, %v; want %q", body, err, tc.want)
					}
				})
			}
		})
	}
}

func TestTLSSelfSigned(t *testing.T) {
	t.Parallel()
	logger, logs := newLogger()
	cfg := listenerConfig()
	cfg.TLS = &config.ServerTLS{SelfSigned: true}
	s := startServer(t, cfg, whoHandler, logger)
	conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // fetching the certificate to pin it
	if err != nil {
		t.Fatal(err)
	}
	cert := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	sum := sha256.Sum256(cert.Raw)
	if want := "sha256=" + fingerprint(sum[:]); !strings.Contains(logs.String(), want) {
		t.Errorf("log does not show the certificate's fingerprint %s:\n%s", want, logs)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	for _, name := range []string{"localhost", "127.0.0.1"} {
		_, body, err := get(httpsClient(t, pool, name, true), "https://"+s.Addr().String()+"/")
		if err != nil || !strings.HasPrefix(body, "HTTP/2.0") {
			t.Errorf("GET trusting the self-signed certificate as %s: got %q, %v", name, body, err)
		}
	}
}

// rotatingServer serves a copy of v1's files from its own directory,
// checking them for changes every 20ms.
func rotatingServer(t *testing.T, v1 *testkit.Leaf, logger *slog.Logger) (s *Server, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyPair(t, v1, cert, key)
	cfg := listenerConfig()
	cfg.TLS = &config.ServerTLS{Cert: cert, Key: key}
	s = newServer(t, cfg, whoHandler, logger)
	s.certs.checkEvery = 20 * time.Millisecond
	serve(t, s)
	return s, cert, key
}

// waitForCN polls new connections until the server presents want.
func waitForCN(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := peerCN(t, addr, "localhost")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still get %s; want %s", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTLSRotateMidTraffic(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "ca")
	v1, v2 := ca.Issue(t, "v1", "localhost"), ca.Issue(t, "v2", "localhost")
	logger, logs := newLogger()
	s, cert, key := rotatingServer(t, v1, logger)
	url := "https://" + s.Addr().String() + "/"

	// One kept-alive HTTP/2 connection does requests all along.
	client := httpsClient(t, ca.Pool(), "localhost", true)
	var (
		stop     = make(chan struct{})
		done     sync.WaitGroup
		requests atomic.Int64
		mu       sync.Mutex
		failures []string
	)
	done.Add(1)
	go func() {
		defer done.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, body, err := get(client, url)
			mu.Lock()
			switch {
			case err != nil:
				failures = append(failures, err.Error())
			case body != "HTTP/2.0 localhost 0":
				failures = append(failures, "body "+body)
			case resp.TLS.PeerCertificates[0].Subject.CommonName != "v1":
				failures = append(failures, "kept-alive connection changed certificate to "+resp.TLS.PeerCertificates[0].Subject.CommonName)
			}
			mu.Unlock()
			requests.Add(1)
		}
	}()
	waitRequests := func(n int64) {
		for start := requests.Load(); requests.Load() < start+n; {
			time.Sleep(time.Millisecond)
		}
	}
	waitRequests(20)
	copyPair(t, v2, cert, key)
	waitForCN(t, s.Addr().String(), "v2")
	waitRequests(20)
	close(stop)
	done.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests on the kept-alive connection failed; first: %s", len(failures), requests.Load(), failures[0])
	}
	// A new verifying client gets the new certificate.
	resp, _, err := get(httpsClient(t, ca.Pool(), "localhost", false), url)
	if err != nil || resp.TLS.PeerCertificates[0].Subject.CommonName != "v2" {
		t.Fatalf("new client after rotation: %v; want the v2 certificate", err)
	}
	if !strings.Contains(logs.String(), "TLS certificates reloaded") {
		t.Errorf("no reload logged:\n%s", logs)
	}
}

func TestTLSBrokenReplacementKeepsOld(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "ca")
	v1, v3 := ca.Issue(t, "v1", "localhost"), ca.Issue(t, "v3", "localhost")
	logger, logs := newLogger()
	s, cert, key := rotatingServer(t, v1, logger)
	addr := s.Addr().String()
	if err := os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Several handshakes, each after the check interval: all get v1, and
	// the broken file is reported once.
	for range 5 {
		time.Sleep(30 * time.Millisecond)
		if got := peerCN(t, addr, "localhost"); got != "v1" {
			t.Fatalf("after a broken replacement: got certificate %s; want v1 kept", got)
		}
	}
	const msg = "TLS files changed but do not load"
	if n := len(logs.Lines(msg)); n != 1 {
		t.Errorf("%q logged %d times; want once:\n%s", msg, n, logs)
	}
	if !strings.Contains(logs.String(), cert) {
		t.Errorf("the error does not name %s:\n%s", cert, logs)
	}
	// A good file after the broken one is picked up.
	copyPair(t, v3, cert, key)
	waitForCN(t, addr, "v3")
}

func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "ca")
	a, b := ca.Issue(t, "a", "a.test"), ca.Issue(t, "b", "b.test")
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	for _, tc := range []struct {
		name string
		tls  config.ServerTLS
		h3   bool
		want []string
	}{
		{"missing cert", config.ServerTLS{Cert: missing, Key: a.KeyFile}, false, []string{missing, "no such file"}},
		{"key of another cert", config.ServerTLS{Cert: a.CertFile, Key: b.KeyFile}, false, []string{a.CertFile, b.KeyFile, "does not match"}},
		{"not PEM", config.ServerTLS{Cert: junk, Key: a.KeyFile}, false, []string{junk, "PEM"}},
		{"bad SNI cert", config.ServerTLS{Cert: a.CertFile, Key: a.KeyFile, Certificates: []config.CertKey{{Cert: b.CertFile, Key: missing}}}, false, []string{missing}},
		{"client CA not PEM", config.ServerTLS{Cert: a.CertFile, Key: a.KeyFile, ClientCA: junk, ClientAuth: "require"}, false, []string{"client_ca", junk, "no PEM certificate"}},
		{"require without CA", config.ServerTLS{Cert: a.CertFile, Key: a.KeyFile, ClientAuth: "require"}, false, []string{"needs client_ca"}},
		{"unknown client_auth", config.ServerTLS{Cert: a.CertFile, Key: a.KeyFile, ClientAuth: "always"}, false, []string{`"always"`, "want none, request or require"}},
		{"nothing", config.ServerTLS{}, false, []string{"cert and key are both required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := listenerConfig()
			cfg.TLS = &tc.tls
			_, err := NewServer(cfg, whoHandler, nil)
			if err == nil {
				t.Fatal("NewServer succeeded; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	cfg := listenerConfig()
	cfg.HTTP3 = true
	if _, err := NewServer(cfg, whoHandler, nil); err == nil || !strings.Contains(err.Error(), "http3 needs tls") {
		t.Errorf("http3 without tls: got %v; want an error saying http3 needs tls", err)
	}
}
