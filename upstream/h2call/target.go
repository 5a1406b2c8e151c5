package h2call

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// Target keeps HTTP/2 connections to one address and hands them out as
// attempts: the simplest [Pick], for tests and single-target upstreams.
// It follows the relay's pool (upstream.Upstream.RelayConn): a
// connection that can take a stream is used at once; when none can, one
// is dialed in the background (one dial at a time), and a new one is
// added when every connection is at the server's stream limit or going
// away. Pick waits for that dial, bounded by its context; within
// TargetRedial of a failed dial it fails at once, UNAVAILABLE, as
// grpc-go fails calls on a channel in transient failure.
//
// It is safe for concurrent use. Close closes its connections.
type Target struct {
	addr   string
	scheme string
	opts   h2.ClientOptions

	mu       sync.Mutex
	conns    []*h2.ClientConn
	dialing  chan struct{} // non-nil while a dial runs; closed when it ends
	lastErr  error
	failedAt time.Time
	closed   bool
	wg       sync.WaitGroup
}

// TargetRedial is how long after a failed dial a Target fails calls
// without dialing again.
const TargetRedial = time.Second

// maxPickDials bounds how many new connections one Pick waits for.
const maxPickDials = 3

// targetDialTimeout bounds one dial, TLS handshake and SETTINGS exchange,
// whoever waits for it.
const targetDialTimeout = 10 * time.Second

// NewTarget returns a Target for addr (host:port), dialed with opts:
// h2c, or TLS when opts.TLS is set. It does not dial yet.
func NewTarget(addr string, opts h2.ClientOptions) *Target {
	t := &Target{addr: addr, scheme: "http", opts: opts}
	if opts.TLS != nil {
		t.scheme = "https"
	}
	return t
}

// Pick returns an attempt on a connection that can take a new stream,
// dialing one if needed: see [Target]. Its attempts have no Finish hook.
func (t *Target) Pick(ctx context.Context, _ string) (Attempt, error) {
	dials := 0 // dials this Pick waited for
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return Attempt{}, status.Error(codes.Unavailable, "h2call: target closed")
		}
		if cc := t.availableLocked(); cc != nil {
			t.mu.Unlock()
			return Attempt{Conn: cc, Authority: t.addr, Scheme: t.scheme}, nil
		}
		if dials >= maxPickDials && t.dialing == nil && t.lastErr == nil {
			// New connections came and were full at once (the server
			// allows no stream, or other calls took them): do not dial
			// in a loop.
			t.mu.Unlock()
			return Attempt{}, status.Errorf(codes.Unavailable, "h2call: no connection to %s takes new streams", t.addr)
		}
		if t.dialing == nil {
			if t.lastErr != nil && time.Since(t.failedAt) < TargetRedial {
				err := t.lastErr
				t.mu.Unlock()
				return Attempt{}, err
			}
			t.dialing = make(chan struct{})
			t.wg.Add(1)
			go t.dial(t.dialing)
		}
		wait := t.dialing
		t.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return Attempt{}, contextError(ctx.Err())
		}
		// Dialed (look again) or failed (the check above returns lastErr).
		dials++
	}
}

// availableLocked drops closed connections and returns one that can take
// a stream, or nil.
func (t *Target) availableLocked() *h2.ClientConn {
	live := t.conns[:0]
	var found *h2.ClientConn
	for _, cc := range t.conns {
		select {
		case <-cc.Done():
			continue
		default:
		}
		live = append(live, cc)
		if found == nil && cc.Available() {
			found = cc
		}
	}
	clear(t.conns[len(live):])
	t.conns = live
	return found
}

func (t *Target) dial(done chan struct{}) {
	defer t.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), targetDialTimeout)
	defer cancel()
	cc, err := h2.Dial(ctx, t.addr, t.opts)
	t.mu.Lock()
	t.dialing = nil
	switch {
	case err != nil:
		t.lastErr = status.Error(codes.Unavailable, fmt.Sprintf("connection error: desc = %q", "transport: Error while dialing: "+err.Error()))
		t.failedAt = time.Now()
	case t.closed:
		defer func() { _ = cc.Close() }()
	default:
		t.lastErr, t.failedAt = nil, time.Time{}
		t.conns = append(t.conns, cc)
	}
	t.mu.Unlock()
	close(done)
}

// Close closes the target's connections (their calls end UNAVAILABLE)
// and waits for a dial in progress. Later picks fail.
func (t *Target) Close() error {
	t.mu.Lock()
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	t.wg.Wait()
	for _, cc := range conns {
		_ = cc.Close()
	}
	return nil
}
