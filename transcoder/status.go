package transcoder

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/rosetta-gateway/rosetta/call"
	"google.golang.org/protobuf/proto"
)

// EncodeGRPCMessage percent-encodes a grpc-message value as the gRPC
// HTTP/2 spec asks: bytes outside printable ASCII, and '%'.
func EncodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(msg) + 8)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// GRPCStatusFields returns ce as the grpc-status, grpc-message
// (percent-encoded) and grpc-status-details-bin (unpadded base64) fields,
// lower-case, the empty ones left out. Every adapter renders statuses
// through it: as headers, trailers, HTTP/2 fields or gRPC-Web trailers.
func GRPCStatusFields(ce *call.Error) [][2]string {
	out := make([][2]string, 1, 3)
	out[0] = [2]string{"grpc-status", strconv.Itoa(int(ce.Code))}
	if ce.Msg != "" {
		out = append(out, [2]string{"grpc-message", EncodeGRPCMessage(ce.Msg)})
	}
	if len(ce.Details) > 0 {
		if b, err := proto.Marshal(ce.Proto()); err == nil {
			out = append(out, [2]string{"grpc-status-details-bin", base64.RawStdEncoding.EncodeToString(b)})
		}
	}
	return out
}

// SetGRPCStatus puts ce's status fields in h under prefix (""
// for trailers-only headers, [http.TrailerPrefix] for trailers).
func SetGRPCStatus(h http.Header, prefix string, ce *call.Error) {
	for _, f := range GRPCStatusFields(ce) {
		h[prefix+http.CanonicalHeaderKey(f[0])] = []string{f[1]}
	}
}
