package upstream

import (
	"context"
	"crypto/tls"
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
}

type targetConns struct {
	conns    []*h2.ClientConn
	dialing  bool
	failedAt time.Time // last failed dial; the next waits relayRedial
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
	r := &u.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
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
		return found
	}
	if !t.dialing && time.Since(t.failedAt) >= relayRedial {
		t.dialing = true
		r.wg.Add(1)
		go u.dialRelay(target, t)
	}
	return nil
}

func (u *Upstream) dialRelay(target string, t *targetConns) {
	r := &u.relay
	defer r.wg.Done()
	var tc *tls.Config
	if u.Config.TLS != nil {
		var err error
		if tc, err = ClientTLSConfig(u.Config.TLS); err != nil {
			r.mu.Lock()
			t.dialing, t.failedAt = false, time.Now()
			r.mu.Unlock()
			return
		}
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
	defer r.mu.Unlock()
	t.dialing = false
	if err != nil {
		t.failedAt = time.Now()
		return
	}
	if r.closed {
		_ = cc.Close()
		return
	}
	t.conns = append(t.conns, cc)
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
	r.mu.Unlock()
	r.wg.Wait()
	for _, cc := range all {
		_ = cc.Close()
	}
}
