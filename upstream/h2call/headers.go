package h2call

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fieldSlices recycles request header blocks: h2's NewStream encodes the
// fields before it returns and keeps none of them.
var fieldSlices = sync.Pool{New: func() any {
	s := make([]hpack.HeaderField, 0, 16)
	return &s
}}

func putFields(p *[]hpack.HeaderField) {
	if cap(*p) > 256 {
		return
	}
	clear(*p)
	*p = (*p)[:0]
	fieldSlices.Put(p)
}

// requestFields appends the header block of a gRPC call to dst: the
// pseudo-fields, content-type, user-agent, te, compression fields,
// grpc-timeout from ctx's deadline and the outgoing metadata of ctx, as
// grpc-go's http2Client.createHeaderFields writes them.
func (cc *Conn) requestFields(dst []hpack.HeaderField, ctx context.Context, method string, att *Attempt, o *callOptions) ([]hpack.HeaderField, error) {
	scheme := att.Scheme
	if scheme == "" {
		scheme = "http"
	}
	authority := att.Authority
	if o.authority != "" {
		authority = o.authority
	}
	dst = append(dst,
		hpack.HeaderField{Name: ":method", Value: "POST"},
		hpack.HeaderField{Name: ":scheme", Value: scheme},
		hpack.HeaderField{Name: ":path", Value: method})
	if authority != "" {
		dst = append(dst, hpack.HeaderField{Name: ":authority", Value: authority})
	}
	dst = append(dst,
		hpack.HeaderField{Name: "content-type", Value: o.contentType()},
		hpack.HeaderField{Name: "user-agent", Value: cc.userAgent},
		hpack.HeaderField{Name: "te", Value: "trailers"})
	if o.gzip {
		dst = append(dst, hpack.HeaderField{Name: "grpc-encoding", Value: "gzip"})
	}
	if cc.acceptGzip || o.gzip {
		dst = append(dst, hpack.HeaderField{Name: "grpc-accept-encoding", Value: "gzip"})
	}
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return dst, status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
		}
		dst = append(dst, hpack.HeaderField{Name: "grpc-timeout", Value: encodeTimeout(d)})
	}
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		return dst, nil
	}
	for k, vv := range md {
		if isReservedHeader(k) || connectionSpecific(k) {
			continue
		}
		if err := validatePair(k, vv); err != nil {
			return dst, status.Error(codes.Internal, err.Error())
		}
		bin := strings.HasSuffix(k, "-bin")
		for _, v := range vv {
			if bin {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			dst = append(dst, hpack.HeaderField{Name: k, Value: v})
		}
	}
	return dst, nil
}

// connectionSpecific reports the fields HTTP/2 forbids (RFC 9113
// §8.2.2): a server resets a request that has one, so metadata of these
// names is not sent (grpc-go sends it and fails the call).
func connectionSpecific(k string) bool {
	switch k {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// validatePair checks a metadata key and its values as grpc-go does
// before sending them: keys of [0-9a-z-_.], values of printable ASCII
// unless the key ends in -bin.
func validatePair(k string, vv []string) error {
	if k == "" {
		return fmt.Errorf("there is an empty key in the header")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("header key %q contains illegal characters not in [0-9a-z-_.]", k)
		}
	}
	if strings.HasSuffix(k, "-bin") {
		return nil
	}
	for _, v := range vv {
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fmt.Errorf("header key %q contains value with non-printable ASCII characters", k)
			}
		}
	}
	return nil
}

// encodeTimeout formats d as a grpc-timeout value, in the finest unit
// that keeps it within 8 digits, rounded up (grpc-go's EncodeDuration).
func encodeTimeout(d time.Duration) string {
	const maxValue = 1e8 - 1
	if d <= 0 {
		return "0n"
	}
	units := [...]struct {
		d time.Duration
		c byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}}
	var buf [24]byte
	for _, u := range units {
		if v := ceilDiv(d, u.d); v <= maxValue {
			return string(append(strconv.AppendInt(buf[:0], v, 10), u.c))
		}
	}
	return string(append(strconv.AppendInt(buf[:0], ceilDiv(d, time.Hour), 10), 'H'))
}

func ceilDiv(d, unit time.Duration) int64 {
	if d%unit > 0 {
		return int64(d/unit + 1)
	}
	return int64(d / unit)
}
