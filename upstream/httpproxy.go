package upstream

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/upstream/breaker"
)

// errorIDHeader carries the ID of a 5xx answer; it is the header the REST
// adapter uses (transcoder.ErrorIDHeader), which this package cannot
// import.
const errorIDHeader = "Rosetta-Error-Id"

// HTTPUpstream is one upstream of kind http: a pool of keep-alive
// connections to its targets, which are picked round-robin per request. It
// is safe for concurrent use.
type HTTPUpstream struct {
	// Name is the upstream's name from the config.
	Name string
	// Config is the upstream's configuration.
	Config *config.Upstream

	// Cluster is the one view of the upstream's targets: balancing,
	// health, ejection, breakers, retries.
	*Cluster

	transport *http.Transport
	cluster   *clusterTransport
	scheme    string
	logger    *slog.Logger
}

// NewHTTP creates the transport of one upstream of kind http. It does not
// dial: connections are made by the first requests, so a dead backend does
// not stop the gateway from starting. With cfg.TLS set the targets are
// reached over HTTPS (HTTP/2 when the server offers it by ALPN, else
// HTTP/1.1); without it, over cleartext HTTP/1.1. A nil logger discards.
func NewHTTP(cfg *config.Upstream, logger *slog.Logger) (*HTTPUpstream, error) {
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("upstream %s: no targets; list at least one host:port in targets", cfg.Name)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		// Proxy is nil on purpose: a gateway does not route its backend
		// traffic through $HTTP_PROXY.
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Pass Content-Encoding through untouched instead of asking for
		// gzip and decoding it on the client's behalf.
		DisableCompression: true,
	}
	u := &HTTPUpstream{Name: cfg.Name, Config: cfg, transport: t, scheme: "http", logger: logger}
	u.cluster = &clusterTransport{u: u, next: t}
	if cfg.TLS != nil {
		tc, err := ClientTLSConfig(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
		}
		t.TLSClientConfig = tc
		// A custom TLS config turns HTTP/2 off unless asked for.
		t.ForceAttemptHTTP2 = true
		u.scheme = "https"
	}
	var err error
	u.Cluster, err = NewCluster(cfg, ClusterOptions{
		Logger:   logger,
		Check:    u.checkHTTP,
		OnRemove: func(string) { t.CloseIdleConnections() },
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// Close stops the upstream's health checks and closes its idle
// connections. Requests in flight finish on their own connections.
func (u *HTTPUpstream) Close() {
	u.Cluster.Close()
	u.transport.CloseIdleConnections()
}

// Proxy returns the handler that forwards the requests of one URI route to
// u, built once per route. The handler:
//
//   - rewrites the path: cleaned of "." and ".." segments, and without the
//     route's prefix when route.StripPrefix is set ("/api/*": "/api/v1/x"
//     → "/v1/x", "/api" → "/"; an exact URI strips to "/"); the query is
//     kept as sent;
//   - sends route.HostHeader as Host when set, else the client's Host;
//   - sets X-Forwarded-For to the client's address, X-Forwarded-Host to
//     its Host and X-Forwarded-Proto to its scheme, replacing any
//     X-Forwarded-* or Forwarded the client sent (the gateway is the
//     edge; client-supplied values cannot be trusted), and removes
//     hop-by-hop headers (Connection and those it lists, Keep-Alive, TE
//     other than "trailers", Upgrade outside an upgrade, ...);
//   - streams request and response bodies; responses of unknown length
//     and text/event-stream are flushed after every write;
//   - passes protocol upgrades (WebSocket) through, without a deadline;
//   - bounds every other request, response body included, by the route's
//     timeout, else the upstream's;
//   - answers 502 (code UNAVAILABLE) when the target cannot be reached and
//     504 (DEADLINE_EXCEEDED) on timeout, as google.rpc.Status JSON with a
//     Rosetta-Error-Id header, logging one line with the same ID.
func (u *HTTPUpstream) Proxy(route *config.Route) http.Handler {
	p := &routeProxy{u: u, route: route, timeout: route.Timeout.Std()}
	if p.timeout <= 0 {
		p.timeout = u.Config.Timeout.Std()
	}
	if route.StripPrefix {
		p.strip = strings.TrimSuffix(route.URI, "/*")
		if p.strip == "" {
			p.strip = "/" // "/*" has nothing to strip
		}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      u.cluster,
		BufferPool:     bufferPool{},
		ErrorHandler:   p.fail,
		ModifyResponse: stopHeaderTimer,
		// Zero FlushInterval buffers responses of known length; the
		// ReverseProxy flushes every write (as FlushInterval -1) for
		// text/event-stream and for bodies of unknown length, so streams
		// arrive as the backend sends them.
		FlushInterval: 0,
		ErrorLog:      slog.NewLogLogger(u.logger.Handler(), slog.LevelDebug),
	}
	return p
}

// routeProxy forwards one URI route to its upstream.
type routeProxy struct {
	u       *HTTPUpstream
	route   *config.Route
	strip   string // prefix removed from paths; "" keeps them
	timeout time.Duration
	rp      *httputil.ReverseProxy
}

// errNoResponse is the cancel cause when the route's timeout passes
// before the upstream answers.
var errNoResponse = errors.New("no response within the route timeout")

// headerTimerKey carries the per-request timer that ModifyResponse stops.
type headerTimerKey struct{}

// ServeHTTP forwards r. The route's timeout bounds the wait for the
// response headers, not the body: a streamed response (SSE, downloads)
// may last as long as it flows. Upgrades have no timeout.
func (p *routeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect && r.Header.Get(":protocol") == "websocket" {
		p.serveWebSocketStream(w, r)
		return
	}
	if p.timeout > 0 && !isUpgrade(r.Header) {
		ctx, cancel := context.WithCancelCause(r.Context())
		t := time.AfterFunc(p.timeout, func() { cancel(errNoResponse) })
		defer func() {
			t.Stop()
			cancel(nil)
		}()
		r = r.WithContext(context.WithValue(ctx, headerTimerKey{}, t))
	}
	p.rp.ServeHTTP(w, r)
}

// stopHeaderTimer runs when the upstream's response headers arrive.
func stopHeaderTimer(resp *http.Response) error {
	if t, ok := resp.Request.Context().Value(headerTimerKey{}).(*time.Timer); ok {
		t.Stop()
	}
	return nil
}

// isUpgrade reports whether h asks for a protocol switch (Connection:
// upgrade with an Upgrade header).
func isUpgrade(h http.Header) bool {
	if h.Get("Upgrade") == "" {
		return false
	}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// rewrite sets the outbound target, path, Host and X-Forwarded headers.
// The ReverseProxy has already removed hop-by-hop headers from pr.Out.
func (p *routeProxy) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In.URL, pr.Out.URL
	out.Scheme = p.u.scheme
	out.Host = p.u.Name // the cluster transport puts the picked target here
	out.Path, out.RawPath = p.rewritePath(in)
	if p.route.HostHeader != "" {
		pr.Out.Host = p.route.HostHeader
	}
	pr.SetXForwarded()
}

// rewritePath returns the outbound path and its escaped form ("" when the
// default escaping of the path will do).
func (p *routeProxy) rewritePath(in *url.URL) (string, string) {
	pth := in.Path
	if !strings.HasPrefix(pth, "/") {
		pth = "/" + pth
	}
	clean := CleanPath(pth)
	raw := ""
	if clean == pth {
		// Keep the client's escaping (e.g. %2F) when nothing was cleaned.
		raw = in.RawPath
	}
	if p.strip != "" {
		clean = stripPrefix(clean, p.strip)
		if raw != "" {
			raw = stripPrefix(raw, p.strip)
		}
	}
	// A RawPath that is not an encoding of Path is ignored by url.URL.
	return clean, raw
}

// stripPrefix removes prefix from p when p is prefix or below it; the
// result starts with "/".
func stripPrefix(p, prefix string) string {
	if prefix == "/" || !strings.HasPrefix(p, prefix) {
		return p
	}
	rest := p[len(prefix):]
	switch {
	case rest == "":
		return "/"
	case rest[0] == '/':
		return rest
	}
	return p
}

// CleanPath returns p with "." and ".." segments resolved and repeated
// slashes collapsed, keeping a trailing slash ("/a/./b/" → "/a/b/"). It
// returns p itself, without allocating, when p is already clean. p must
// start with "/". The router matches URI routes on the same cleaned path
// that the proxy forwards.
func CleanPath(p string) string {
	c := path.Clean(p)
	if c == p {
		return p
	}
	if strings.HasSuffix(p, "/") && c != "/" {
		if len(p) == len(c)+1 && strings.HasPrefix(p, c) {
			return p
		}
		return c + "/"
	}
	return c
}

// fail answers a request the proxy could not complete: 504 on the route's
// timeout, 413 when the client's body was over the listener's limit, 502
// otherwise. A client that went away gets nothing.
func (p *routeProxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	target := r.URL.Host
	var mbe *http.MaxBytesError
	var oe *breaker.OpenError
	var ce *call.Error
	status := http.StatusBadGateway
	switch {
	case errors.As(err, &oe):
		// Load shed by the circuit breaker: an answer, not a failure.
		status = http.StatusServiceUnavailable
		ce = call.Errorf(codes.Unavailable, "%s", oe.Error())
		ce.Refusal = true
	case errors.As(err, &mbe):
		status = http.StatusRequestEntityTooLarge
		ce = call.Errorf(codes.ResourceExhausted, "request body is larger than the limit of %d bytes", mbe.Limit)
	case errors.Is(context.Cause(ctx), errNoResponse) || errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
		ce = call.Errorf(codes.DeadlineExceeded, "upstream %s: no response from %s within %s", p.u.Name, target, p.timeout)
	case ctx.Err() != nil:
		// The client canceled or went away: there is no one to answer.
		p.u.logger.LogAttrs(ctx, slog.LevelDebug, "client canceled upstream request",
			slog.String("upstream", p.u.Name), slog.String("target", target), slog.String("path", r.URL.Path))
		return
	default:
		ce = call.Errorf(codes.Unavailable, "upstream %s: %s", p.u.Name, describe(err, target))
	}
	ce.Cause = err
	writeStatus(w, r, status, ce, p.u.logger, p.u.Name, target)
}

// describe says briefly what went wrong reaching target:
// "dial 127.0.0.1:1234: connection refused" rather than the full chain
// "dial tcp 127.0.0.1:1234: connect: connection refused".
func describe(err error, target string) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		var dns *net.DNSError
		if errors.As(err, &dns) {
			return fmt.Sprintf("dial %s: lookup %s: %s", target, dns.Name, dns.Err)
		}
		inner := op.Err
		for next := errors.Unwrap(inner); next != nil; next = errors.Unwrap(inner) {
			inner = next
		}
		return fmt.Sprintf("dial %s: %v", target, inner)
	}
	if target == "" {
		return err.Error()
	}
	return fmt.Sprintf("forward to %s: %v", target, err)
}

// writeStatus writes ce as google.rpc.Status JSON ({"code", "message",
// "details"}) with the given HTTP status, the shape of every gateway
// error. A 5xx also gets an error ID, in a response header and in the one
// log line written for it.
func writeStatus(w http.ResponseWriter, r *http.Request, status int, ce *call.Error, logger *slog.Logger, upstream, target string) {
	h := w.Header()
	if status >= 500 && !ce.Refusal {
		id := newErrorID()
		h.Set(errorIDHeader, id)
		logger.LogAttrs(r.Context(), slog.LevelError, "upstream request failed",
			slog.String("upstream", upstream), slog.String("target", target),
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("code", ce.Code.String()), slog.Int("status", status),
			slog.String("error_id", id), slog.Any("error", ce))
	}
	body, _ := json.Marshal(struct {
		Code    int32      `json:"code"`
		Message string     `json:"message"`
		Details []struct{} `json:"details"`
	}{int32(ce.Code), ce.Msg, []struct{}{}})
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func newErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// proxyBuffers holds the 32 KiB copy buffers of every proxy.
var proxyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bufferPool lends the ReverseProxy copy buffers from proxyBuffers.
type bufferPool struct{}

// Get returns a 32 KiB buffer.
func (bufferPool) Get() []byte { return *proxyBuffers.Get().(*[]byte) }

// Put returns a buffer got from Get.
func (bufferPool) Put(b []byte) {
	if cap(b) == 32<<10 {
		proxyBuffers.Put(&b)
	}
}

// HTTPSet is every upstream of kind http of one config, by name.
type HTTPSet struct {
	byName map[string]*HTTPUpstream
	// pending are the target updates of carried-over upstreams (Commit).
	pending []func()
}

// Commit applies the target changes of the upstreams s carried over from
// the previous set, as [Set.Commit] does. It is nil-safe.
func (s *HTTPSet) Commit() {
	if s == nil {
		return
	}
	for _, f := range s.pending {
		f()
	}
	s.pending = nil
}

// NewHTTPSet creates an [HTTPUpstream] for every upstream of kind http in
// ups; other kinds are skipped (see [NewSet]). A nil logger discards.
func NewHTTPSet(ups map[string]*config.Upstream, logger *slog.Logger) (*HTTPSet, error) {
	return NewHTTPSetFrom(ups, logger, nil)
}

// NewHTTPSetFrom is [NewHTTPSet] for a config reload: upstreams of prev
// whose config is unchanged are taken over (targets alone changed:
// updated in place).
func NewHTTPSetFrom(ups map[string]*config.Upstream, logger *slog.Logger, prev *HTTPSet) (*HTTPSet, error) {
	s := &HTTPSet{byName: map[string]*HTTPUpstream{}}
	names := make([]string, 0, len(ups))
	for name := range ups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cfg := ups[name]
		if cfg == nil || !strings.EqualFold(cfg.Kind, "http") {
			continue
		}
		if prev != nil {
			if old, ok := prev.byName[name]; ok && sameButTargets(old.Config, cfg) {
				// The upstream keeps its Config (calls in flight read it);
				// its cluster follows the targets once s serves.
				if old.Cluster.targetsChanged(cfg) {
					s.pending = append(s.pending, func() { old.Cluster.UpdateTargets(cfg) })
				}
				s.byName[name] = old
				continue
			}
		}
		u, err := NewHTTP(cfg, logger)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.byName[name] = u
	}
	return s, nil
}

// Get returns the upstream of the given name.
func (s *HTTPSet) Get(name string) (*HTTPUpstream, bool) {
	u, ok := s.byName[name]
	return u, ok
}

// Len returns the number of upstreams in the set.
func (s *HTTPSet) Len() int { return len(s.byName) }

// Retire closes, once idle, the upstreams of s that next does not carry
// over (see [Set.Retire]).
func (s *HTTPSet) Retire(next *HTTPSet, done func()) {
	var gone []*HTTPUpstream
	for name, u := range s.byName {
		if n, ok := next.byName[name]; !ok || n != u {
			gone = append(gone, u)
		}
	}
	go func() {
		for _, u := range gone {
			u.Cluster.waitIdle()
			u.Close()
		}
		if done != nil {
			done()
		}
	}()
}

// CloseNew closes the upstreams of s that prev does not hold.
func (s *HTTPSet) CloseNew(prev *HTTPSet) {
	for name, u := range s.byName {
		if prev != nil && prev.byName[name] == u {
			continue
		}
		u.Close()
	}
}

// Close closes the idle connections of every upstream.
func (s *HTTPSet) Close() {
	for _, u := range s.byName {
		u.Close()
	}
}

// serveWebSocketStream bridges a WebSocket opened over an HTTP/2 or HTTP/3
// stream (RFC 8441 / RFC 9220 extended CONNECT) to the upstream's HTTP/1.1 WebSocket. It
// sends the upgrade the backend expects, rewritten like any request of
// the route, with a fresh key whose accept value it checks; answers the
// stream 200 with the backend's subprotocol and extensions; then copies
// bytes both ways until either side ends. Frames pass through untouched,
// so a negotiated permessage-deflate works end to end. A backend that
// refuses the upgrade has its answer passed back as it came.
func (p *routeProxy) serveWebSocketStream(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.Method = http.MethodGet
	out.Body, out.ContentLength = http.NoBody, 0
	out.RequestURI = ""
	h := out.Header
	for _, k := range []string{":protocol", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		delete(h, k)
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	h.Set("Sec-WebSocket-Key", key)
	if h.Get("Sec-WebSocket-Version") == "" {
		h.Set("Sec-WebSocket-Version", "13")
	}
	p.rewrite(&httputil.ProxyRequest{In: r, Out: out})
	resp, err := p.u.cluster.RoundTrip(out)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		defer resp.Body.Close()
		maps.Copy(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	defer backend.Close()
	if resp.Header.Get("Sec-WebSocket-Accept") != websocketAccept(key) {
		p.fail(w, r, fmt.Errorf("upstream %s answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept", p.u.Name))
		return
	}
	for _, k := range []string{"Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
		if v := resp.Header.Values(k); len(v) > 0 {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	// Client to backend; a client that resets the stream ends the
	// request context, which the close below turns into the backend's end.
	go func() {
		_, _ = io.Copy(backend, r.Body)
	}()
	stop := context.AfterFunc(r.Context(), func() { _ = backend.Close() })
	defer stop()
	buf := make([]byte, 32<<10)
	for {
		n, err := backend.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// websocketAccept is the Sec-WebSocket-Accept for key (RFC 6455 §4.2.2).
func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}
