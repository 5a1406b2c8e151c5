package connect

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// connectCodeNames are the Connect protocol's names of the gRPC codes.
var connectCodeNames = [...]string{
	codes.Canceled:           "canceled",
	codes.Unknown:            "unknown",
	codes.InvalidArgument:    "invalid_argument",
	codes.DeadlineExceeded:   "deadline_exceeded",
	codes.NotFound:           "not_found",
	codes.AlreadyExists:      "already_exists",
	codes.PermissionDenied:   "permission_denied",
	codes.ResourceExhausted:  "resource_exhausted",
	codes.FailedPrecondition: "failed_precondition",
	codes.Aborted:            "aborted",
	codes.OutOfRange:         "out_of_range",
	codes.Unimplemented:      "unimplemented",
	codes.Internal:           "internal",
	codes.Unavailable:        "unavailable",
	codes.DataLoss:           "data_loss",
	codes.Unauthenticated:    "unauthenticated",
}

// Code returns the Connect protocol's name of a gRPC code
// ("not_found"); unknown codes are "unknown".
func Code(c codes.Code) string {
	if int(c) > 0 && int(c) < len(connectCodeNames) {
		return connectCodeNames[c]
	}
	return "unknown"
}

// HTTPStatus returns the HTTP status of a unary Connect error with
// code c, from the Connect protocol's table (it differs from the REST
// table: Unimplemented → 501, ResourceExhausted → 429, ...).
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// connectError is the Connect protocol's error JSON.
type connectError struct {
	Code    string          `json:"code"`
	Message string          `json:"message,omitempty"`
	Details []connectDetail `json:"details,omitempty"`
}

// connectDetail is one error detail: the message type's full name, its
// protobuf bytes as unpadded base64, and, when the gateway knows the type,
// its JSON form for humans.
type connectDetail struct {
	Type  string          `json:"type"`
	Value string          `json:"value"`
	Debug json.RawMessage `json:"debug,omitempty"`
}

// connectError renders ce in the Connect error shape.
func (b *Handler) connectError(ce *call.Error) *connectError {
	out := &connectError{Code: Code(ce.Code), Message: ce.Msg}
	for _, d := range ce.Details {
		out.Details = append(out.Details, b.connectDetail(d))
	}
	return out
}

func (b *Handler) connectDetail(a *anypb.Any) connectDetail {
	url := a.GetTypeUrl()
	d := connectDetail{
		Type:  url[strings.LastIndexByte(url, '/')+1:],
		Value: base64.RawStdEncoding.EncodeToString(a.GetValue()),
	}
	if m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: b.Resolver}); err == nil {
		if js, err := (protojson.MarshalOptions{Resolver: b.Resolver}).Marshal(m); err == nil {
			d.Debug = js
		}
	}
	return d
}

// endStreamMetadata renders trailer metadata (plus the error ID) as the
// "metadata" object of a Connect end-of-stream message.
func endStreamMetadata(trl metadata.MD, errID string) map[string][]string {
	out := map[string][]string{}
	tmp := http.Header{}
	transcoder.SetResponseMetadata(tmp, "", trl)
	for k, vs := range tmp {
		out[k] = vs
	}
	if errID != "" {
		out[transcoder.ErrorIDHeader] = []string{errID}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
