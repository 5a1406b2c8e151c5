package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// relayConns holds an upstream's frame-level HTTP/2 connections (package
// h2), per target, for the gRPC relay. Its zero value is ready to use.
type relayConns struct {
	mu      sync.Mutex
	targets map[string]*targetConns
	closed  bool
	wg      sync.WaitGroup // dials in flight
	// draining are the connections of targets that left the upstream,
	// closing once their streams end (dropRelay).
	draining map[*h2.ClientConn]struct{}
}

type targetConns struct {
	conns    []*h2.ClientConn
	dialing  bool
	failedAt time.Time // last failed dial; the next waits relayRedial
	lastErr  error     // the last dial's error
	// dialDone is closed when the dial in progress ends (nil: none).
	dialDone chan struct{}
	// dropped: the target left the upstream (DNS re-resolution); its
	// connections are closing and it takes no new dial.
	dropped bool
}

// relayRedial is how long after a failed dial the relay tries again;
// meanwhile calls take the net/http path, which reports the failure.
const relayRedial = time.Second

// relayDialTimeout bounds one dial, TLS handshake and SETTINGS exchange.
const relayDialTimeout = 10 * time.Second

// RelayConn returns a connection to target that can take a new stream
// now, or nil. It never blocks: when no connection is ready it starts
// dialing one in the background (at most one dial per target at a time,
// and not within a second of a failed dial), and the caller serves this
// call another way. A connection is added when every one is at the
// server's stream limit or going away. It is safe for concurrent use.
func (u *Upstream) RelayConn(target string) *h2.ClientConn {
	cc, _, _ := u.relayConn(target)
	return cc
}

// relayConn is RelayConn that also returns, when it found no connection,
// the channel closed when the target's dial in progress ends (nil when
// none is in progress) and the last dial's error. It looks and starts
// the dial under one lock, so a dial that ends meanwhile is not missed.
func (u *Upstream) relayConn(target string) (*h2.ClientConn, chan struct{}, error) {
	r := &u.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, errors.New("upstream closed")
	}
	if r.targets == nil {
		r.targets = map[string]*targetConns{}
	}
	t := r.targets[target]
	if t == nil {
		t = &targetConns{}
		r.targets[target] = t
	}
	live := t.conns[:0]
	var found *h2.ClientConn
	for _, cc := range t.conns {
		select {
		case <-cc.Done():
			continue // closed: drop it
		default:
		}
		live = append(live, cc)
		if found == nil && cc.Available() {
			found = cc
		}
	}
	clear(t.conns[len(live):])
	t.conns = live
	if found != nil {
		return found, nil, nil
	}
	if !t.dialing && time.Since(t.failedAt) >= relayRedial {
		t.dialing = true
		t.dialDone = make(chan struct{})
		r.wg.Add(1)
		go u.dialRelay(target, t)
	}
	if t.dialing {
		return nil, t.dialDone, nil
	}
	err := t.lastErr
	if err == nil {
		err = errors.New("no connection takes new streams")
	}
	return nil, nil, err
}

// ConnFor returns a connection to target that can take a new stream,
// waiting (bounded by ctx) for a dial when none can. It fails at once,
// with the dial's error, within a second of a failed dial.
func (u *Upstream) ConnFor(ctx context.Context, target string) (*h2.ClientConn, error) {
	for range 3 {
		cc, wait, err := u.relayConn(target)
		if cc != nil {
			return cc, nil
		}
		if wait == nil {
			return nil, fmt.Errorf("connect to %s: %w", target, err)
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("connect to %s: no connection takes new streams", target)
}

func (u *Upstream) dialRelay(target string, t *targetConns) {
	r := &u.relay
	defer r.wg.Done()
	var tc *tls.Config
	if u.Config.TLS != nil {
		var err error
		if tc, err = ClientTLSConfig(u.Config.TLS); err != nil {
			r.mu.Lock()
			t.dialing, t.failedAt, t.lastErr = false, time.Now(), err
			if t.dialDone != nil {
				close(t.dialDone)
				t.dialDone = nil
			}
			r.mu.Unlock()
			return
		}
	}
	if tc != nil && tc.ServerName == "" {
		// A target resolved from a DNS name is checked against that name.
		tc.ServerName = u.ServerName(target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayDialTimeout)
	defer cancel()
	cc, err := h2.Dial(ctx, target, h2.ClientOptions{
		TLS: tc,
		Limits: h2.Limits{
			StreamWindow: 1 << 20,
			ConnWindow:   4 << 20,
		},
	})
	r.mu.Lock()
	t.dialing = false
	t.lastErr = err
	if t.dialDone != nil {
		close(t.dialDone)
		t.dialDone = nil
	}
	if err != nil {
		t.failedAt = time.Now()
		closed := r.closed
		r.mu.Unlock()
		if !closed {
			// Refused, unreachable or not answering: the target leaves
			// the pick until it takes connections again.
			u.ConnFailed(target)
		}
		return
	}
	if r.closed || t.dropped {
		r.mu.Unlock()
		_ = cc.Close()
		return
	}
	t.conns = append(t.conns, cc)
	r.wg.Add(1)
	r.mu.Unlock()
	u.ConnReady(target)
	go u.watchRelay(target, t, cc)
}

// relayIdle is how long a relay connection may carry no stream before
// it is closed (it is redialed on demand).
const relayIdle = 5 * time.Minute

// watchRelay follows one relay connection: it closes it after relayIdle
// without streams, and when the connection ends otherwise (the target
// closed it, went away or broke) it takes the target out of the pick
// until it answers again.
func (u *Upstream) watchRelay(target string, t *targetConns, cc *h2.ClientConn) {
	r := &u.relay
	defer r.wg.Done()
	tick := time.NewTicker(relayIdle / 2)
	defer tick.Stop()
	idleSince := time.Now()
	for {
		select {
		case <-cc.Done():
			r.mu.Lock()
			ours := r.closed || t.dropped
			r.mu.Unlock()
			if !ours {
				u.ConnFailed(target)
			}
			return
		case <-tick.C:
			if cc.Streams() > 0 {
				idleSince = time.Now()
				continue
			}
			if time.Since(idleSince) < relayIdle {
				continue
			}
			r.mu.Lock()
			t.conns = slices.DeleteFunc(t.conns, func(x *h2.ClientConn) bool { return x == cc })
			r.mu.Unlock()
			_ = cc.Close()
			return
		}
	}
}

// dropRelay retires the relay connections of a target that left the
// upstream: they take no new call, and each closes once the calls and
// streams in flight on it have ended (or the upstream closes).
func (u *Upstream) dropRelay(target string) {
	r := &u.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.targets[target]
	if t == nil {
		return
	}
	t.dropped = true
	delete(r.targets, target)
	if r.draining == nil {
		r.draining = map[*h2.ClientConn]struct{}{}
	}
	for _, cc := range t.conns {
		r.draining[cc] = struct{}{}
		r.wg.Add(1)
		go u.drainRelay(cc)
	}
	t.conns = nil
}

// drainRelayPoll is how often a draining connection is checked for
// streams.
const drainRelayPoll = 100 * time.Millisecond

// drainRelay closes cc once no stream is open on it.
func (u *Upstream) drainRelay(cc *h2.ClientConn) {
	r := &u.relay
	defer r.wg.Done()
	tick := time.NewTicker(drainRelayPoll)
	defer tick.Stop()
	for cc.Streams() > 0 {
		select {
		case <-cc.Done():
		case <-tick.C:
			continue
		}
		break
	}
	r.mu.Lock()
	delete(r.draining, cc)
	r.mu.Unlock()
	_ = cc.Close()
}

// closeRelay closes the relay connections; streams on them end.
func (u *Upstream) closeRelay() {
	r := &u.relay
	r.mu.Lock()
	r.closed = true
	var all []*h2.ClientConn
	for _, t := range r.targets {
		all = append(all, t.conns...)
	}
	for cc := range r.draining {
		all = append(all, cc)
	}
	r.mu.Unlock()
	for _, cc := range all {
		_ = cc.Close()
	}
	r.wg.Wait() // dials in flight and connection watchers
}
