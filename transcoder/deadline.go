package transcoder

import (
	"context"
	"time"
)

// CallDeadline bounds a backend call. client is the deadline the client
// asked for (0: none) and limit the gateway's own (the route's or the
// upstream's timeout; 0: none).
//
// The client's deadline, shortened to limit, is announced to the backend:
// grpc-go sends it as grpc-timeout. A limit on a call that has no client
// deadline is enforced but not announced, as Envoy does with route
// timeouts: the backend sees an open-ended call (the gRPC spec's default,
// which backends that echo deadlines, such as the Connect conformance
// suite's, check), and the gateway cancels it when the limit passes, with
// DEADLINE_EXCEEDED. Either way the returned context ends when the call's
// time is up.
func CallDeadline(ctx context.Context, limit, client time.Duration) (context.Context, context.CancelFunc) {
	timeout, announced := Announce(limit, client)
	switch {
	case timeout == 0:
		return context.WithCancel(ctx)
	case announced:
		return context.WithTimeout(ctx, timeout)
	}
	c, cancel := context.WithTimeout(ctx, timeout)
	return unannounced{c}, cancel
}

// unannounced is a context whose deadline is kept from the gRPC client
// (and from contexts derived from it), which therefore sends no
// grpc-timeout; it still ends, with context.DeadlineExceeded, when the
// deadline passes.
type unannounced struct{ context.Context }

// Deadline reports no deadline.
func (unannounced) Deadline() (time.Time, bool) { return time.Time{}, false }

// Announce reports whether a call whose client asked for deadline client
// (0: none) carries a grpc-timeout to the backend, and the deadline the
// gateway enforces: see [CallDeadline].
func Announce(limit, client time.Duration) (timeout time.Duration, announced bool) {
	switch {
	case client > 0:
		if limit > 0 && limit < client {
			return limit, true
		}
		return client, true
	case limit > 0:
		return limit, false
	}
	return 0, false
}
