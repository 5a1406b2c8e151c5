package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rosetta-gateway/rosetta/config"
)

// Upstream is one gRPC backend cluster: its targets' view (Cluster) and the
// connections every path shares. It is safe
// for concurrent use.
type Upstream struct {
	// Name is the upstream's name from the config.
	Name string
	// Config is the upstream's configuration.
	Config *config.Upstream

	// Cluster is the one view of the upstream's targets every path asks:
	// balancing, health, ejection, breakers, retries.
	*Cluster

	calls  *callConn  // see callconn.go
	relay  relayConns // see relay.go
	health healthConns
}

// DialOptions returns the grpc-go transport options for talking to an
// upstream: TLS credentials when cfg.TLS is set, otherwise plaintext h2c.
// The registry uses them for reflection, and health checks for theirs.
func DialOptions(cfg *config.Upstream) ([]grpc.DialOption, error) {
	if cfg.TLS == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	tc, err := ClientTLSConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, nil
}

// ClientTLSConfig builds a crypto/tls client config from the upstream TLS
// settings (see [config.ClientTLS.TLSConfig]).
func ClientTLSConfig(c *config.ClientTLS) (*tls.Config, error) {
	return c.TLSConfig("upstream")
}

// New creates one gRPC upstream: its cluster (balancer, health checks,
// breakers, retries) and its call connection. It does not dial:
// connections are made by the first calls, so a dead backend does not
// stop the gateway from starting. extra are grpc-go options for its
// health checks (tests).
func New(cfg *config.Upstream, extra ...grpc.DialOption) (*Upstream, error) {
	return newUpstream(cfg, nil, extra)
}

func newUpstream(cfg *config.Upstream, logger *slog.Logger, extra []grpc.DialOption) (*Upstream, error) {
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("upstream %s: no targets", cfg.Name)
	}
	if _, err := DialOptions(cfg); err != nil { // checks the TLS files
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	u := &Upstream{Name: cfg.Name, Config: cfg}
	u.health.extra = extra
	var err error
	u.Cluster, err = NewCluster(cfg, ClusterOptions{
		Logger:   logger,
		Check:    u.checkHealth,
		OnRemove: u.closeTarget,
	})
	if err != nil {
		return nil, err
	}
	u.calls = newCallConn(u)
	return u, nil
}

// Close closes the upstream's connection and the idle connections of its
// HTTP/2 transport.
func (u *Upstream) Close() error {
	u.Cluster.Close()
	u.closeRelay()
	u.health.close()
	return nil
}

// Set is every gRPC upstream of one config, by name.
type Set struct {
	byName map[string]*Upstream
	// pending are the target updates of carried-over upstreams, applied
	// by Commit once the set serves.
	pending []func()
}

// Commit applies the target changes of the upstreams s carried over from
// the previous set (SetOptions.Previous): call it once s serves, so that
// a reload refused after NewSetOptions leaves the running upstreams as
// they were. It is nil-safe.
func (s *Set) Commit() {
	if s == nil {
		return
	}
	for _, f := range s.pending {
		f()
	}
	s.pending = nil
}

// NewSet creates a connection for every gRPC upstream in ups. On error the
// connections already made are closed.
func NewSet(ups map[string]*config.Upstream, extra ...grpc.DialOption) (*Set, error) {
	return NewSetOptions(ups, SetOptions{DialOptions: extra})
}

// SetOptions are the inputs of [NewSetOptions] besides the config.
type SetOptions struct {
	// Logger receives target state changes: health, reachability, DNS
	// (nil: discard).
	Logger *slog.Logger
	// DialOptions are added to every upstream's grpc-go options (tests).
	DialOptions []grpc.DialOption
	// Previous is the set a config reload replaces: an upstream whose
	// config is unchanged is taken over as it is, with its connections,
	// health state and counters; one whose targets alone changed is
	// taken over and its targets updated (connections to the targets it
	// keeps are reused).
	Previous *Set
}

// NewSetOptions is [NewSet] with options.
func NewSetOptions(ups map[string]*config.Upstream, o SetOptions) (*Set, error) {
	extra := o.DialOptions
	s := &Set{byName: make(map[string]*Upstream, len(ups))}
	names := make([]string, 0, len(ups))
	for name := range ups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cfg := ups[name]
		if cfg.Kind != "" && !strings.EqualFold(cfg.Kind, "grpc") {
			continue
		}
		if old, ok := o.Previous.take(cfg); ok {
			s.byName[name] = old
			if old.targetsChanged(cfg) {
				s.pending = append(s.pending, func() { old.UpdateTargets(cfg) })
			}
			continue
		}
		u, err := newUpstream(cfg, o.Logger, extra)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.byName[name] = u
	}
	return s, nil
}

// take returns the upstream of s that cfg can carry over: the same
// config, or the same but for its targets (updated in place by
// [Set.Commit]). The upstream keeps its Config, which calls in flight
// read; its cluster follows the targets.
func (s *Set) take(cfg *config.Upstream) (*Upstream, bool) {
	if s == nil {
		return nil, false
	}
	old, ok := s.byName[cfg.Name]
	if !ok || !sameButTargets(old.Config, cfg) {
		return nil, false
	}
	return old, true
}

// sameButTargets reports whether two configs of an upstream differ at
// most in their targets.
func sameButTargets(a, b *config.Upstream) bool {
	x, y := *a, *b
	x.Targets, y.Targets = nil, nil
	x.DNSRefresh, y.DNSRefresh = 0, 0
	return reflect.DeepEqual(x, y)
}

// Retire closes the upstreams of s that next (the set of a newer config)
// does not carry over, each once no call is in flight on it any more
// (calls and streams that started on the old config finish on it). It
// returns at once; done runs when every one is closed.
func (s *Set) Retire(next *Set, done func()) {
	var gone []*Upstream
	for name, u := range s.byName {
		if n, ok := next.byName[name]; !ok || n != u {
			gone = append(gone, u)
		}
	}
	go func() {
		for _, u := range gone {
			u.Cluster.waitIdle()
			_ = u.Close()
		}
		if done != nil {
			done()
		}
	}()
}

// CloseNew closes the upstreams of s that prev does not hold (those a
// failed reload created), leaving carried-over ones open.
func (s *Set) CloseNew(prev *Set) error {
	var errs []error
	for name, u := range s.byName {
		if prev != nil && prev.byName[name] == u {
			continue
		}
		errs = append(errs, u.Close())
	}
	return errors.Join(errs...)
}

// Get returns the upstream of the given name.
func (s *Set) Get(name string) (*Upstream, bool) {
	u, ok := s.byName[name]
	return u, ok
}

// Close closes every connection and returns the errors joined.
func (s *Set) Close() error {
	var errs []error
	for _, u := range s.byName {
		if err := u.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
