package h2call

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// Attempt is one try of a call on one HTTP/2 connection, as
// [Options.Pick] hands it out.
type Attempt struct {
	// Conn carries the attempt's stream. It must not be nil.
	Conn *h2.ClientConn
	// Authority is the request's :authority: the target's host:port, or
	// the name the server expects. Empty: a round trip's request host; a
	// gRPC call then sends none (grpc.CallAuthority still sets one).
	Authority string
	// Scheme is the request's :scheme, "http" for h2c and "https" over
	// TLS. Empty means "http".
	Scheme string
	// Finish, when not nil, is called exactly once per attempt when it is
	// over, with how it ended (an attempt whose connection took no stream
	// is over at once, with [NotStarted]). It may run on any goroutine,
	// including the connection's reading goroutine and the caller's, and
	// must not block.
	Finish func(Outcome)
}

// Pick chooses the connection of one attempt of a call to method
// ("/pkg.Service/Method", or a round trip's URL path). It may block, up to
// ctx's end, e.g. while a first connection is dialed, and may be called
// concurrently. An error fails the call: a gRPC status error is returned
// as it is, a context error as the matching status, and any other error
// as UNAVAILABLE.
type Pick func(ctx context.Context, method string) (Attempt, error)

// Kind classifies how an attempt ended.
type Kind uint8

const (
	// Answered: the server ended the call with a status (Outcome.Code,
	// OK or not; for an answer that was not gRPC, the code grpc-go derives
	// from its HTTP status).
	Answered Kind = iota
	// NotStarted: the connection took no new stream (it closed, is going
	// away or is at the server's stream limit). Nothing was sent.
	NotStarted
	// Refused: the server refused the stream (RST_STREAM REFUSED_STREAM,
	// or a GOAWAY below it) and did not process it: safe to retry.
	Refused
	// Broken: the server reset the stream, broke the protocol or the
	// connection failed before the call ended.
	Broken
	// Abandoned: the client ended the attempt: its context ended, a
	// message broke a size limit, the caller closed the response body or
	// the server broke the call's shape (a second response message).
	Abandoned
)

var kindNames = [...]string{"answered", "not_started", "refused", "broken", "abandoned"}

// String returns the snake_case name of k, for logs and metrics labels.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Outcome is how an attempt ended, as [Attempt.Finish] reports it. It
// describes the attempt on the wire: a message that fails to decode
// after the server answered OK does not change it.
type Outcome struct {
	// Kind classifies the end.
	Kind Kind
	// Code is the gRPC status the caller got (OK on success). For a round
	// trip it is the response's grpc-status (UNKNOWN when it has none)
	// when the server answered; else CANCELED or DEADLINE_EXCEEDED when
	// the client gave up, UNAVAILABLE when the stream or connection broke.
	Code codes.Code
	// HTTPStatus is the response's :status (0 when no response head
	// arrived).
	HTTPStatus int
	// Sent is false when the server certainly did not process the
	// request (NotStarted, Refused); true when any of it may have.
	Sent bool
	// Received is true when any response frame arrived.
	Received bool
	// Err is the error the caller got (nil on success).
	Err error
}
