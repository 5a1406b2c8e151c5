package upstream

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// h2Client is an upstream's raw HTTP/2 side, used by the gRPC pass-through
// proxy: one http.Transport (created on first use) and the round-robin
// counter of [Upstream.Pick]. Its zero value is ready to use.
type h2Client struct {
	once sync.Once
	rt   http.RoundTripper
	tr   atomic.Pointer[http.Transport]
}

// HTTP2 returns the upstream's HTTP/2 round tripper: prior-knowledge h2c
// for plaintext upstreams, h2 over TLS (ALPN "h2", the upstream's tls
// settings) when the config has tls. It is created on the first call and
// shared by every request; it never decompresses response bodies, so
// gRPC messages pass through as they came. Requests must carry the URL
// scheme [Upstream.Scheme] and a host from [Upstream.Pick]. It is safe for
// concurrent use.
func (u *Upstream) HTTP2() http.RoundTripper {
	u.h2.once.Do(func() {
		tr, err := newH2Transport(u)
		if err != nil {
			u.h2.rt = errRoundTripper{err: fmt.Errorf("upstream %s: %w", u.Name, err)}
			return
		}
		u.h2.tr.Store(tr)
		u.h2.rt = tr
	})
	return u.h2.rt
}

// Scheme returns the URL scheme of requests sent through [Upstream.HTTP2]:
// "https" when the upstream has tls, "http" otherwise.
func (u *Upstream) Scheme() string {
	if u.Config.TLS != nil {
		return "https"
	}
	return "http"
}

// Pick returns the target (host:port) for one RPC, chosen by the
// upstream's balancer (its algorithm, health, ejections and connection
// state). It never blocks and is safe for concurrent use. Callers that
// can report how the call went use [Cluster.PickEndpoint] instead.
func (u *Upstream) Pick() string {
	e, err := u.PickEndpoint(0, nil)
	if err != nil {
		return u.Config.Targets[0].Address
	}
	return e.Addr()
}

// closeH2 closes the idle connections of the HTTP/2 transport, if one was
// created.
func (u *Upstream) closeH2() {
	if tr := u.h2.tr.Load(); tr != nil {
		tr.CloseIdleConnections()
	}
}

// newH2Transport builds the HTTP/2-only transport of one upstream.
func newH2Transport(u *Upstream) (*http.Transport, error) {
	var protocols http.Protocols
	var tc *tls.Config
	if u.Config.TLS != nil {
		var err error
		tc, err = ClientTLSConfig(u.Config.TLS)
		if err != nil {
			return nil, err
		}
		tc.NextProtos = []string{"h2"}
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Protocols:           &protocols,
		TLSClientConfig:     tc,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		// gRPC compression is per message and must reach the client as
		// sent; never let the transport ask for or undo gzip.
		DisableCompression:  true,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 16,
		HTTP2: &http.HTTP2Config{
			// Ping a connection that has been silent this long, and drop it
			// when the ping is not answered, so a dead backend is noticed.
			SendPingTimeout:           30 * time.Second,
			PingTimeout:               15 * time.Second,
			MaxReceiveBufferPerStream: 1 << 20,
		},
	}, nil
}

// errRoundTripper fails every request with the error that kept the real
// transport from being built.
type errRoundTripper struct{ err error }

// RoundTrip returns the construction error.
func (e errRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return nil, e.err
}
