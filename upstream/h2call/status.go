package h2call

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// This file reads statuses the way grpc-go's HTTP/2 client does
// (internal/transport/http2_client.go operateHeaders, handleRSTStream;
// http_util.go), so that a call on this package fails with the code and
// message a grpc.ClientConn would give.

// httpStatusCodes maps the HTTP status of an answer that is not gRPC to
// a gRPC code (grpc-go's HTTPStatusConvTab); others give UNKNOWN.
func httpStatusCode(st int) codes.Code {
	switch st {
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

// resetCode maps the code of an RST_STREAM from the server to a gRPC code
// (grpc-go's http2ErrConvTab; unknown codes give UNKNOWN).
func resetCode(c http2.ErrCode) codes.Code {
	switch c {
	case http2.ErrCodeNo, http2.ErrCodeProtocol, http2.ErrCodeInternal, http2.ErrCodeSettingsTimeout,
		http2.ErrCodeStreamClosed, http2.ErrCodeFrameSize, http2.ErrCodeCompression, http2.ErrCodeConnect,
		http2.ErrCodeHTTP11Required:
		return codes.Internal
	case http2.ErrCodeFlowControl, http2.ErrCodeEnhanceYourCalm:
		return codes.ResourceExhausted
	case http2.ErrCodeRefusedStream:
		return codes.Unavailable
	case http2.ErrCodeCancel:
		return codes.Canceled
	case http2.ErrCodeInadequateSecurity:
		return codes.PermissionDenied
	}
	return codes.Unknown
}

// streamEndError converts the error of an h2 Reset event into the status
// the caller gets and the attempt's kind. deadline is the call's
// announced deadline (zero: none): a CANCEL after it is the server giving
// up on it, DEADLINE_EXCEEDED as grpc-go reports it.
func streamEndError(err error, deadline time.Time) (Kind, error) {
	var se h2.StreamError
	switch {
	case errors.As(err, &se) && se.Remote:
		code := resetCode(se.Code)
		if code == codes.Canceled && !deadline.IsZero() && !time.Now().Before(deadline) {
			code = codes.DeadlineExceeded
		}
		kind := Broken
		if se.Code == http2.ErrCodeRefusedStream {
			kind = Refused
		}
		return kind, status.Errorf(code, "stream terminated by RST_STREAM with error code: %v", se.Code)
	case errors.As(err, &se):
		// The engine found the server's frames malformed and reset the
		// stream itself.
		return Broken, status.Errorf(codes.Internal, "transport: %v", se)
	case errors.Is(err, h2.ErrConnClosed):
		return Broken, status.Error(codes.Unavailable, `connection error: desc = "error reading from server: http2 connection closed"`)
	}
	return Broken, status.Errorf(codes.Unavailable, "transport: %v", err)
}

// contextError is the status of a call whose context ended, as grpc-go
// words it.
func contextError(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, context.Canceled.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// pickError converts an error of the Pick hook into a status error.
func pickError(ctx context.Context, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ctx.Err() != nil {
			return contextError(ctx.Err())
		}
		return contextError(err)
	}
	return status.Error(codes.Unavailable, err.Error())
}

// validContentType reports whether ct is a gRPC content type:
// application/grpc, optionally followed by "+subtype" or ";params".
func validContentType(ct string) bool {
	const base = "application/grpc"
	if ct == base {
		return true
	}
	return strings.HasPrefix(ct, base) && (ct[len(base)] == '+' || ct[len(base)] == ';')
}

// isReservedHeader reports whether a field belongs to the gRPC protocol
// rather than to metadata (grpc-go's isReservedHeader).
func isReservedHeader(k string) bool {
	if k != "" && k[0] == ':' {
		return true
	}
	switch k {
	case "content-type", "user-agent", "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "te":
		return true
	}
	return false
}

// head is what one response header block says, read as grpc-go reads it.
type head struct {
	httpStatus  int
	isGRPC      bool   // a gRPC content type was present
	ctErr       string // why the content type is not gRPC's
	encoding    string // grpc-encoding
	hasStatus   bool
	code        codes.Code
	codeErr     string // malformed grpc-status
	message     string // grpc-message, decoded
	details     []string
	headerError string // a malformed -bin field
}

// readBlock reads a header block. When md is not nil, the block's
// metadata goes into it as grpc-go reports it: every field except
// pseudo-fields and the gRPC protocol's own (user-agent, and content-type
// when it is gRPC's, are kept), -bin values decoded.
func readBlock(fields []hpack.HeaderField, md metadata.MD) head {
	h := head{code: codes.Unknown, ctErr: "malformed header: missing HTTP content-type"}
	for _, f := range fields {
		switch f.Name {
		case "content-type":
			if !validContentType(f.Value) {
				h.ctErr = fmt.Sprintf("transport: received unexpected content-type %q", f.Value)
				break
			}
			h.ctErr = ""
			h.isGRPC = true
			if md != nil {
				md[f.Name] = append(md[f.Name], f.Value)
			}
		case "grpc-encoding":
			h.encoding = f.Value
		case "grpc-status":
			n, err := strconv.ParseInt(f.Value, 10, 32)
			if err != nil {
				h.codeErr = fmt.Sprintf("transport: malformed grpc-status: %v", err)
				break
			}
			h.code, h.hasStatus = codes.Code(uint32(n)), true
		case "grpc-message":
			h.message = decodeGrpcMessage(f.Value)
		case ":status":
			h.httpStatus, _ = strconv.Atoi(f.Value)
		default:
			if isReservedHeader(f.Name) && f.Name != "user-agent" {
				break
			}
			v := f.Value
			if strings.HasSuffix(f.Name, "-bin") {
				b, err := decodeBinHeader(v)
				if err != nil {
					h.headerError = fmt.Sprintf("transport: malformed %s: %v", f.Name, err)
					break
				}
				v = string(b)
				if f.Name == "grpc-status-details-bin" {
					h.details = append(h.details, v)
				}
			}
			if md != nil {
				md[f.Name] = append(md[f.Name], v)
			}
		}
	}
	return h
}

// nonGRPCStatus is the status of a response head that is not gRPC's
// (grpc-go: "unexpected HTTP status code received from server").
func (h *head) nonGRPCStatus() *status.Status {
	msg := fmt.Sprintf("unexpected HTTP status code received from server: %d (%s)", h.httpStatus, http.StatusText(h.httpStatus))
	if h.ctErr != "" {
		msg += "; " + h.ctErr
	}
	return status.New(httpStatusCode(h.httpStatus), msg)
}

// status is the call's status from a final block (trailers or
// trailers-only): grpc-status, grpc-message and, when its code agrees,
// grpc-status-details-bin. Nil means OK.
func (h *head) status() error {
	if h.codeErr != "" {
		return status.Error(codes.Unknown, h.codeErr)
	}
	if h.headerError != "" {
		return status.Error(codes.Internal, h.headerError)
	}
	if h.code == codes.OK {
		return nil
	}
	if len(h.details) != 1 {
		return status.Error(h.code, h.message)
	}
	sp := &spb.Status{}
	if err := proto.Unmarshal([]byte(h.details[0]), sp); err != nil {
		return status.Error(h.code, h.message)
	}
	if sp.GetCode() != int32(h.code) {
		return status.Errorf(codes.Internal, "grpc-status-details-bin mismatch: grpc-status=%v, grpc-message=%q, grpc-status-details-bin=%+v",
			h.code, h.message, sp)
	}
	return status.FromProto(sp).Err()
}

// decodeGrpcMessage undoes the percent-encoding of grpc-message; a '%'
// not followed by two hex digits stays as it is.
func decodeGrpcMessage(msg string) string {
	i := strings.IndexByte(msg, '%')
	if i < 0 || i+2 >= len(msg) {
		return msg
	}
	var sb strings.Builder
	sb.Grow(len(msg))
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '%' && i+2 < len(msg) {
			if v, err := strconv.ParseUint(msg[i+1:i+3], 16, 8); err == nil {
				sb.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// decodeBinHeader decodes a -bin value, padded or not.
func decodeBinHeader(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}
