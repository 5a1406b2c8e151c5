package transcoder

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rosetta-gateway/rosetta/call"
)

// ErrorIDHeader carries the ID of a 5xx error; the same ID is in the log
// line, so an operator can find one from the other.
const ErrorIDHeader = "Rosetta-Error-Id"

// HTTPError is a call error with an HTTP status that overrides the gRPC
// code's usual mapping (405, 413, 415 have no gRPC code of their own).
type HTTPError struct {
	Err    *call.Error
	Status int
	Allow  []string
}

// Error returns the call error's text.
func (e *HTTPError) Error() string { return e.Err.Error() }

// Unwrap returns the call error.
func (e *HTTPError) Unwrap() error { return e.Err }

// HTTPStatus returns the HTTP status for a gRPC code, following the
// grpc-gateway table (Canceled → 499, FailedPrecondition → 400, ...).
func HTTPStatus(code codes.Code) int { return runtime.HTTPStatusFromCode(code) }

// WriteJSONError renders err as a google.rpc.Status JSON body with the
// HTTP status of its code (or the status an [HTTPError] carries), as REST
// answers errors; detail types are resolved with res. 5xx answers carry an
// error ID, logged to logger with the cause.
func WriteJSONError(w http.ResponseWriter, r *http.Request, err error, res *TypeResolver, logger *slog.Logger) {
	var he *HTTPError
	var ce *call.Error
	status := 0
	if errors.As(err, &he) {
		ce, status = he.Err, he.Status
		if len(he.Allow) > 0 {
			w.Header().Set("Allow", strings.Join(he.Allow, ", "))
		}
	} else {
		ce = call.FromError(err)
	}
	if status == 0 {
		status = ce.HTTPStatus
	}
	if status == 0 {
		status = HTTPStatus(ce.Code)
	}
	if status >= 500 && !ce.Refusal {
		id := NewErrorID()
		w.Header().Set(ErrorIDHeader, id)
		logger.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("code", ce.Code.String()), slog.Int("status", status),
			slog.String("error_id", id), slog.Any("error", ce))
	}
	if ce.Code == codes.Unauthenticated && w.Header().Get("WWW-Authenticate") == "" {
		// RFC 6750 §3: a 401 names the scheme; the policy chain sets a
		// more precise challenge (error="invalid_token") when it refused.
		w.Header().Set("WWW-Authenticate", `Bearer realm="rosetta"`)
	}
	call.ReportFrom(r.Context()).SetCode(ce.Code)
	body := StatusJSON(ce, res)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// StatusJSON marshals ce as google.rpc.Status JSON, resolving detail types
// with res. Details whose types the gateway cannot resolve are kept as
// {"@type": ..., "value": base64}.
func StatusJSON(ce *call.Error, res *TypeResolver) []byte {
	type status struct {
		Code    int32             `json:"code"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details"`
	}
	out := status{Code: int32(ce.Code), Message: ce.Msg, Details: make([]json.RawMessage, 0, len(ce.Details))}
	mo := protojson.MarshalOptions{Resolver: res}
	for _, d := range ce.Details {
		b, err := mo.Marshal(d)
		if err != nil {
			b = unresolvedAny(d)
		}
		out.Details = append(out.Details, b)
	}
	b, _ := json.Marshal(out)
	return b
}

func unresolvedAny(a *anypb.Any) []byte {
	b, _ := json.Marshal(struct {
		Type  string `json:"@type"`
		Value string `json:"value"`
	}{a.GetTypeUrl(), base64.StdEncoding.EncodeToString(a.GetValue())})
	return b
}

// NewErrorID returns a random 16-hex-digit ID for a 5xx answer, sent in
// the [ErrorIDHeader] and written in the log line.
func NewErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var (
	reUnknownField = regexp.MustCompile(`unknown field "([^"]+)"`)
	reInvalidValue = regexp.MustCompile(`invalid value for [^ ]+ (?:field|type) ([A-Za-z0-9_.]+)?`)
	reFieldName    = regexp.MustCompile(`field ([A-Za-z0-9_.]+)`)
)

// JSONError turns a protojson decoding error into a 400 naming the field
// by its JSON path in the body. prefix is the body field path ("" for
// body "*").
func JSONError(err error, body []byte, prefix string) *call.Error {
	return DecodeJSONError(err, body, prefix, "body")
}

// DecodeJSONError is [JSONError] for any JSON document: what names it in
// the message ("body", or "message" for a WebSocket frame) and is the
// field blamed when the error names no field.
func DecodeJSONError(err error, body []byte, prefix, what string) *call.Error {
	// protojson writes "proto:" and then, at random, a space or a
	// non-breaking space; only that one separator is dropped.
	msg := strings.TrimPrefix(err.Error(), "proto:")
	if r, n := utf8.DecodeRuneInString(msg); r == ' ' || r == '\u00a0' {
		msg = msg[n:]
	}
	field := errorFieldPath(body, msg)
	if field == "" {
		field = fieldFromMessage(msg)
	}
	if prefix != "" {
		if field == "" {
			field = prefix
		} else {
			field = prefix + "." + field
		}
	}
	if field == "" {
		field = what
	}
	return call.BadField(field, fmt.Sprintf("invalid JSON %s: %s", what, msg))
}

// fieldFromMessage picks a field name out of a protojson error message
// that has no usable position.
func fieldFromMessage(msg string) string {
	if m := reUnknownField.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	if m := reInvalidValue.FindStringSubmatch(msg); m != nil && m[1] != "" {
		return m[1]
	}
	if m := reFieldName.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

// StatusError wraps err so that the REST error writer answers with the
// given HTTP status instead of the one mapped from err's code.
func StatusError(status int, err *call.Error) error {
	return &HTTPError{Err: err, Status: status}
}

// IsNotFound reports whether err is Match's "no route" answer.
func IsNotFound(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}
