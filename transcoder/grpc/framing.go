package grpc

import (
	"net/http"
	"strconv"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// grpcHeaderLen is the size of the gRPC length prefix: one flag byte
// (compressed or not) and a big-endian uint32 message length.
const grpcHeaderLen = 5

// frameScanner follows the gRPC length prefixes of a byte stream without
// buffering messages, to enforce a size limit while the bytes are copied.
// Its zero value (with max set) is at a message boundary.
//
// With gzip set (the stream's grpc-encoding is gzip), a message flagged
// compressed is also checked by the size it inflates to, which gzip
// records in the last 4 bytes of the stream (ISIZE, RFC 1952): the
// check happens on the message's last byte, before that byte is passed
// on, so an oversized message never reaches the other side whole. (A
// gzip stream can lie about ISIZE; its reader then fails, and the
// receiver's own limit still applies.)
type frameScanner struct {
	max  uint32 // largest message allowed
	gzip bool   // compressed messages are gzip streams
	need uint64 // payload bytes of the current message still to come
	hdrN int    // header bytes seen of the next message (0..4)
	size uint32 // length accumulated from the header bytes seen

	compressed bool    // the current message is flagged compressed
	tail       [4]byte // its last payload bytes so far
}

// gzipMinSize is the smallest gzip stream: a 10-byte header, an empty
// deflate block and the 8-byte trailer.
const gzipMinSize = 20

// consume scans p, which may split headers anywhere, and reports the size
// of the first message over the limit (0 when none).
func (s *frameScanner) consume(p []byte) uint32 {
	for len(p) > 0 {
		if s.need > 0 {
			k := min(s.need, uint64(len(p)))
			if s.compressed {
				s.keepTail(p[:k])
			}
			p = p[k:]
			s.need -= k
			if s.need == 0 && s.compressed {
				if inflated := uint32(s.tail[0]) | uint32(s.tail[1])<<8 | uint32(s.tail[2])<<16 | uint32(s.tail[3])<<24; inflated > s.max {
					return inflated
				}
			}
			continue
		}
		if s.hdrN == 0 {
			s.compressed = false
			if s.gzip && p[0]&1 != 0 {
				s.compressed = true
			}
		} else {
			s.size = s.size<<8 | uint32(p[0])
		}
		s.hdrN++
		p = p[1:]
		if s.hdrN == grpcHeaderLen {
			if s.size > s.max {
				return s.size
			}
			if s.size < gzipMinSize {
				s.compressed = false // too short to be gzip; the reader will say so
			}
			s.need, s.hdrN, s.size = uint64(s.size), 0, 0
		}
	}
	return 0
}

// keepTail keeps the last 4 bytes seen of the current message.
func (s *frameScanner) keepTail(b []byte) {
	if len(b) >= len(s.tail) {
		copy(s.tail[:], b[len(b)-len(s.tail):])
		return
	}
	n := copy(s.tail[:], s.tail[len(b):])
	copy(s.tail[n:], b)
}

// boundary scans chunk, which starts where the previous call stopped, and
// returns how many of its bytes may be written: everything up to a partial
// header at the end (held back until the rest arrives) or up to the header
// of a message over the limit, whose size it then returns. Holding back
// partial headers means an oversized message is refused before any of its
// bytes reach the client.
func (s *frameScanner) boundary(chunk []byte) (writable int, tooBig uint32) {
	i := 0
	for i < len(chunk) {
		if s.need > 0 {
			k := min(s.need, uint64(len(chunk)-i))
			i += int(k)
			s.need -= k
			continue
		}
		if len(chunk)-i < grpcHeaderLen {
			return i, 0
		}
		n := uint32(chunk[i+1])<<24 | uint32(chunk[i+2])<<16 | uint32(chunk[i+3])<<8 | uint32(chunk[i+4])
		if n > s.max {
			return i, n
		}
		s.need = uint64(n)
		i += grpcHeaderLen
	}
	return i, 0
}

// formatGRPCTimeout formats d as a grpc-timeout value in milliseconds
// (rounded up, at most 8 digits).
func formatGRPCTimeout(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > 99999999 {
		return strconv.FormatInt(int64(d/time.Second+1), 10) + "S"
	}
	return strconv.FormatInt(int64(ms), 10) + "m"
}

// grpcCodeForHTTP maps the HTTP status of a non-gRPC answer to a gRPC code,
// as gRPC clients do ("HTTP to gRPC Status Code Mapping").
func grpcCodeForHTTP(status int) codes.Code {
	switch status {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

// appendGRPCStatusFields appends ce's status fields to an HTTP/2 header
// block.
func appendGRPCStatusFields(f []hpack.HeaderField, ce *call.Error) []hpack.HeaderField {
	for _, kv := range transcoder.GRPCStatusFields(ce) {
		f = append(f, hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	return f
}

// hopByHop lists the request and response headers a proxy must not
// forward (RFC 9110 §7.6.1), in canonical form. TE is handled apart:
// "te: trailers" is end-to-end in gRPC.
var hopByHop = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Trailer":             true,
	"Content-Length":      true,
}

// hopByHopNames lists the keys of [hopByHop], for deleting them from a
// header map in place.
var hopByHopNames = func() []string {
	names := make([]string, 0, len(hopByHop))
	for k := range hopByHop {
		names = append(names, k)
	}
	return names
}()
