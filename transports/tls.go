package transports

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

// defaultReloadCheck is how often, at most, a handshake stats the
// certificate files to see whether they changed.
const defaultReloadCheck = 2 * time.Second

// certStore terminates TLS for one listener. It holds the current
// certificates (the default one first, then the SNI ones) and the client
// CA pool, and reloads them when their files change.
//
// Reloading is driven by handshakes, not by a background goroutine: the
// GetConfigForClient hook stats the files at most once per checkEvery and,
// when one changed (modification time, size or identity), parses them all
// again and swaps the new set in atomically. Connections already open keep
// the certificate they were made with; new handshakes get the new one. A
// set that fails to load leaves the old one in place and is logged once,
// until the files change again.
type certStore struct {
	logger     *slog.Logger
	pairs      []config.CertKey // files to watch; pairs[0] is the default unless self-signed
	selfSigned *tls.Certificate // generated default certificate, or nil
	clientCA   string
	clientAuth tls.ClientAuthType
	nextProtos []string
	checkEvery time.Duration

	cur       atomic.Pointer[certSet]
	lastCheck atomic.Int64 // unix nanoseconds of the last stat round
	checking  sync.Mutex   // held by the one handshake that stats the files
	stamps    []fileStamp  // what the files looked like at the last load attempt; guarded by checking
}

// certSet is one immutable generation of certificates and its tls.Config.
type certSet struct {
	certs    []*tls.Certificate // certs[0] is the default
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // keyed by the parent domain of "*.parent"
	config   *tls.Config
}

// fileStamp is what a stat says about a file, to notice a change cheaply.
type fileStamp struct {
	info os.FileInfo // nil when stat failed
	err  string
}

func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil && a.err == b.err
	}
	return a.info.ModTime().Equal(b.info.ModTime()) && a.info.Size() == b.info.Size() && os.SameFile(a.info, b.info)
}

// newCertStore loads the listener's certificates. Errors name the file
// and what to fix.
func newCertStore(cfg *config.ServerTLS, nextProtos []string, logger *slog.Logger) (*certStore, error) {
	s := &certStore{
		logger:     logger,
		clientCA:   cfg.ClientCA,
		nextProtos: nextProtos,
		checkEvery: defaultReloadCheck,
	}
	switch cfg.ClientAuth {
	case "", "none":
		s.clientAuth = tls.NoClientCert
	case "request":
		s.clientAuth = tls.VerifyClientCertIfGiven
	case "require":
		s.clientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("tls: unknown client_auth %q (want none, request or require)", cfg.ClientAuth)
	}
	if s.clientAuth != tls.NoClientCert && cfg.ClientCA == "" {
		return nil, fmt.Errorf("tls: client_auth %q needs client_ca, a PEM file of the CAs client certificates must chain to", cfg.ClientAuth)
	}
	switch {
	case cfg.SelfSigned:
		if cfg.Cert != "" || cfg.Key != "" {
			return nil, errors.New("tls: self_signed cannot be combined with cert and key; remove one or the other")
		}
		cert, err := selfSignedCert()
		if err != nil {
			return nil, fmt.Errorf("tls: generate self-signed certificate: %w", err)
		}
		s.selfSigned = cert
		sum := sha256.Sum256(cert.Leaf.Raw)
		logger.Warn("serving a self-signed certificate; for local use only",
			"names", "localhost,127.0.0.1,::1", "sha256", fingerprint(sum[:]), "not_after", cert.Leaf.NotAfter.Format(time.RFC3339))
	case cfg.Cert == "" || cfg.Key == "":
		return nil, errors.New("tls: cert and key are both required (or set self_signed: true)")
	default:
		s.pairs = append(s.pairs, config.CertKey{Cert: cfg.Cert, Key: cfg.Key})
	}
	s.pairs = append(s.pairs, cfg.Certificates...)
	s.stamps = s.stat()
	set, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(set)
	s.lastCheck.Store(time.Now().UnixNano())
	return s, nil
}

// fingerprint formats a digest as colon-separated upper-case hex, as
// browsers and openssl show it.
func fingerprint(sum []byte) string {
	h := strings.ToUpper(hex.EncodeToString(sum))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// files lists every watched file, in a fixed order.
func (s *certStore) files() []string {
	out := make([]string, 0, 2*len(s.pairs)+1)
	for _, p := range s.pairs {
		out = append(out, p.Cert, p.Key)
	}
	if s.clientCA != "" {
		out = append(out, s.clientCA)
	}
	return out
}

func (s *certStore) stat() []fileStamp {
	files := s.files()
	out := make([]fileStamp, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			out[i] = fileStamp{err: err.Error()}
			continue
		}
		out[i] = fileStamp{info: fi}
	}
	return out
}

// serverConfig returns the listener's base tls.Config. Every handshake
// goes through GetConfigForClient, which hands out the current set.
func (s *certStore) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         s.nextProtos,
		GetConfigForClient: s.configForClient,
	}
}

func (s *certStore) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	s.maybeReload()
	return s.cur.Load().config, nil
}

// maybeReload stats the files when checkEvery has passed since the last
// look, and reloads when they changed. One handshake does the work; the
// others go on with the current set.
func (s *certStore) maybeReload() {
	if len(s.pairs) == 0 && s.clientCA == "" {
		return
	}
	now := time.Now().UnixNano()
	if now-s.lastCheck.Load() < int64(s.checkEvery) || !s.checking.TryLock() {
		return
	}
	defer s.checking.Unlock()
	s.lastCheck.Store(now)
	stamps := s.stat()
	changed := false
	for i := range stamps {
		if !stamps[i].same(s.stamps[i]) {
			changed = true
			break
		}
	}
	if !changed {
		return
	}
	// Remember this state even if it fails to load, so a broken file is
	// reported once and retried only when it changes again.
	s.stamps = stamps
	set, err := s.load()
	if err != nil {
		s.logger.Error("TLS files changed but do not load; still serving the previous certificates", "error", err.Error())
		return
	}
	s.cur.Store(set)
	s.logger.Info("TLS certificates reloaded", "files", strings.Join(s.files(), ","))
}

// load reads every certificate and the client CA into a new set.
func (s *certStore) load() (*certSet, error) {
	set := &certSet{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	if s.selfSigned != nil {
		set.add(s.selfSigned)
	}
	for i, p := range s.pairs {
		cert, err := loadPair(p)
		if err != nil {
			return nil, err
		}
		if i > 0 || s.selfSigned != nil {
			if len(cert.Leaf.DNSNames) == 0 {
				s.logger.Warn("TLS certificate has no DNS names; SNI never selects it", "cert", p.Cert)
			}
		}
		if time.Now().After(cert.Leaf.NotAfter) {
			s.logger.Warn("TLS certificate has expired", "cert", p.Cert, "not_after", cert.Leaf.NotAfter.Format(time.RFC3339))
		}
		set.add(cert)
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     s.nextProtos,
		GetCertificate: set.pick,
		ClientAuth:     s.clientAuth,
	}
	if s.clientCA != "" {
		pem, err := os.ReadFile(s.clientCA)
		if err != nil {
			return nil, fmt.Errorf("tls client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls client_ca %s: no PEM certificate found; want one or more -----BEGIN CERTIFICATE----- blocks", s.clientCA)
		}
		cfg.ClientCAs = pool
	}
	set.config = cfg
	return set, nil
}

// loadPair loads one certificate and its key, with an error that names
// both files and says what to check.
func loadPair(p config.CertKey) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		hint := "want a PEM certificate chain and the PEM private key that belongs to it"
		if errors.Is(err, fs.ErrNotExist) {
			hint = "check the path; relative paths are resolved against the config file's directory"
		}
		return nil, fmt.Errorf("tls: load certificate %s with key %s: %w (%s)", p.Cert, p.Key, err, hint)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("tls: parse certificate %s: %w", p.Cert, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// add indexes cert by its DNS names. The first certificate to claim a
// name keeps it.
func (cs *certSet) add(cert *tls.Certificate) {
	cs.certs = append(cs.certs, cert)
	for _, name := range cert.Leaf.DNSNames {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		m, key := cs.exact, name
		if parent, ok := strings.CutPrefix(name, "*."); ok {
			m, key = cs.wildcard, parent
		}
		if _, taken := m[key]; !taken {
			m[key] = cert
		}
	}
}

// pick chooses the certificate for a ClientHello: an exact DNS name match,
// then a wildcard one ("*.example.com" covers one label), else the default.
func (cs *certSet) pick(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c, ok := cs.exact[name]; ok {
			return c, nil
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c, ok := cs.wildcard[parent]; ok {
				return c, nil
			}
		}
	}
	return cs.certs[0], nil
}

// selfSignedCert generates an ECDSA P-256 certificate for localhost,
// 127.0.0.1 and ::1, valid for 90 days.
func selfSignedCert() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"Rosetta self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
