package transcoder

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/rosetta-gateway/rosetta/call"
)

// defaultForwardHeaders are forwarded to backends as metadata by default,
// besides Authorization and Grpc-Metadata-* headers.
var defaultForwardHeaders = []string{"x-request-id", "traceparent", "tracestate", "last-event-id"}

// HeaderAllowList decides which request headers become backend metadata.
type HeaderAllowList struct {
	exact    map[string]bool
	prefixes []string
}

// NewHeaderAllowList builds the list of names (case-insensitive; a
// trailing "*" matches a prefix).
func NewHeaderAllowList(names []string) HeaderAllowList {
	l := HeaderAllowList{exact: map[string]bool{}}
	for _, n := range append(append([]string(nil), defaultForwardHeaders...), names...) {
		n = strings.ToLower(strings.TrimSpace(n))
		if p, ok := strings.CutSuffix(n, "*"); ok {
			l.prefixes = append(l.prefixes, p)
			continue
		}
		l.exact[n] = true
	}
	return l
}

func (l HeaderAllowList) allows(lower string) bool {
	if l.exact[lower] {
		return true
	}
	for _, p := range l.prefixes {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	return false
}

// OutgoingMetadata builds the backend metadata of a REST request:
// Authorization, Grpc-Metadata-<key> headers (prefix stripped, -bin values
// base64-decoded), allow-listed headers, and X-Forwarded-For/-Host/-Proto.
func OutgoingMetadata(r *http.Request, forward HeaderAllowList) metadata.MD {
	md := metadata.MD{}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(lk, "grpc-metadata-"):
			key := lk[len("grpc-metadata-"):]
			if !ValidMetadataKey(key) {
				continue
			}
			if strings.HasSuffix(key, "-bin") {
				for _, v := range vs {
					if b, err := DecodeBase64(v); err == nil {
						md[key] = append(md[key], string(b))
					}
				}
				continue
			}
			md[key] = append(md[key], vs...)
		case lk == "authorization" || forward.allows(lk):
			if ValidMetadataKey(lk) && !strings.HasPrefix(lk, "x-forwarded-") {
				md[lk] = append(md[lk], vs...)
			}
		}
	}
	SetForwarded(md, r)
	return md
}

// SetForwarded adds x-forwarded-for (the client's chain plus its address),
// x-forwarded-host and x-forwarded-proto metadata for r.
func SetForwarded(md metadata.MD, r *http.Request) {
	f := ForwardedFor(r.RemoteAddr, r.TLS != nil, r.Host,
		strings.Join(r.Header.Values("X-Forwarded-For"), ", "), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"))
	if f.For != "" {
		md["x-forwarded-for"] = []string{f.For}
	}
	md["x-forwarded-host"] = []string{f.Host}
	md["x-forwarded-proto"] = []string{f.Proto}
}

// Forwarded are the X-Forwarded-For, -Host and -Proto values the gateway
// sends upstream.
type Forwarded struct{ For, Host, Proto string }

// ForwardedFor computes them for a client at remoteAddr that asked for
// host, extending what the client sent (prev*): its address is appended
// to the For chain; Host and Proto are kept when set. For is empty when
// remoteAddr has no host:port form.
func ForwardedFor(remoteAddr string, tls bool, host, prevFor, prevHost, prevProto string) Forwarded {
	var f Forwarded
	if ip, _, err := net.SplitHostPort(remoteAddr); err == nil {
		f.For = ip
		if prevFor != "" {
			f.For = prevFor + ", " + ip
		}
	}
	f.Host = prevHost
	if f.Host == "" {
		f.Host = host
	}
	f.Proto = prevProto
	if f.Proto == "" {
		f.Proto = "http"
		if tls {
			f.Proto = "https"
		}
	}
	return f
}

// ValidMetadataKey reports whether key may be sent as gRPC metadata: not
// reserved (grpc-*), not a pseudo or connection header, and made of
// [0-9a-z-_.].
func ValidMetadataKey(key string) bool {
	if key == "" || strings.HasPrefix(key, "grpc-") || strings.HasPrefix(key, ":") {
		return false
	}
	switch key {
	case "content-type", "te", "connection", "host", "user-agent", "content-length", "transfer-encoding", "keep-alive", "upgrade":
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// SetResponseMetadata writes backend response metadata as
// Grpc-Metadata-<key> headers (prefix "Grpc-Metadata-") or as
// Grpc-Trailer-<key> (prefix "Grpc-Trailer-"); binary values are base64.
func SetResponseMetadata(hdr http.Header, prefix string, md metadata.MD) {
	for k, vs := range md {
		if k == "content-type" || strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":") {
			continue
		}
		name := prefix + k
		bin := strings.HasSuffix(k, "-bin")
		for _, v := range vs {
			if bin {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			hdr.Add(name, v)
		}
	}
}

// ParseGRPCTimeout parses a Grpc-Timeout header value: at most 8 digits and
// a unit (H, M, S, m, u, n).
func ParseGRPCTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > 9 {
		return 0, fmt.Errorf("want up to 8 digits and a unit, such as 5S or 200m")
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want up to 8 digits and a unit, such as 5S or 200m")
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("unknown unit %q (want H, M, S, m, u or n)", s[len(s)-1])
	}
	return time.Duration(n) * unit, nil
}

// ParseQuery parses a raw query string, answering 400 for malformed
// escapes.
func ParseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, call.BadField("query", fmt.Sprintf("malformed query string: %v", err))
	}
	return q, nil
}

// DecodeBase64 accepts standard and URL-safe base64, padded or not, as the
// proto3 JSON mapping does for bytes.
func DecodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64")
	}
	return b, nil
}
