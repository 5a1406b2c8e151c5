package call

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// Error is the protocol-neutral runtime error. Code is a gRPC code (never
// OK); Msg is safe to show to clients; Details are google.rpc detail
// messages (already packed as Any) sent with the status; Cause is for logs
// only and never reaches a client.
type Error struct {
	Code    codes.Code
	Msg     string
	Details []*anypb.Any
	Cause   error
	// Refusal marks a deliberate answer of the policy chain (no
	// credentials, over a limit, load shed), not a failure: it is not
	// logged as an error and carries no error ID, whatever its code.
	Refusal bool
	// Plugin names the policy plugin that refused the call ("jwt-auth",
	// "rate-limiting"), set by the policy chain; "" for other errors.
	Plugin string
	// HTTPStatus, when non-zero, is the status that dialects whose HTTP
	// status follows the code (REST, SSE, plain HTTP routes, WebSocket
	// upgrades) answer instead of the code's usual mapping: 410 Gone for
	// a retired route's UNIMPLEMENTED. gRPC, gRPC-Web and Connect keep
	// their own mapping.
	HTTPStatus int
}

// Errorf returns an [Error] with the given code and a formatted client-facing
// message.
func Errorf(code codes.Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// BadField returns an InvalidArgument [Error] whose message is msg and whose
// details carry a google.rpc.BadRequest naming field, so a client can tell
// which part of its request to fix.
func BadField(field, msg string) *Error {
	e := &Error{Code: codes.InvalidArgument, Msg: msg}
	br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
		Field:       field,
		Description: msg,
	}}}
	if a, err := anypb.New(br); err == nil {
		e.Details = append(e.Details, a)
	}
	return e
}

// Error implements error. It shows the code and message, and the cause when
// there is one (for logs).
func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Msg, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Msg)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// GRPCStatus returns e as a gRPC status with its details, so that grpc-go
// and status.FromError understand it.
func (e *Error) GRPCStatus() *status.Status {
	return status.FromProto(e.Proto())
}

// WithCause returns e with its cause set to cause.
func (e *Error) WithCause(cause error) *Error {
	e.Cause = cause
	return e
}

// FromError converts any error into an [*Error]: an *Error is returned as
// is; a gRPC status keeps its code, message and details; context
// cancellation and deadline errors become Canceled and DeadlineExceeded;
// anything else becomes Internal with a generic message and err as cause.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	if s, ok := status.FromError(err); ok {
		p := s.Proto()
		return &Error{Code: s.Code(), Msg: p.GetMessage(), Details: p.GetDetails(), Cause: err}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Code: codes.Canceled, Msg: "the request was canceled", Cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: codes.DeadlineExceeded, Msg: "the deadline was exceeded", Cause: err}
	}
	return &Error{Code: codes.Internal, Msg: "internal error", Cause: err}
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &Error{Code: codes.NotFound}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Msg == ""
}

var _ interface{ GRPCStatus() *status.Status } = (*Error)(nil)

// Proto returns e as a google.rpc.Status message.
func (e *Error) Proto() *spb.Status {
	return &spb.Status{Code: int32(e.Code), Message: e.Msg, Details: e.Details}
}
