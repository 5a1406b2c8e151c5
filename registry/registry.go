package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Defaults of [Params].
const (
	// DefaultMissRefreshMinInterval is the default of
	// Params.MissRefreshMinInterval.
	DefaultMissRefreshMinInterval = 5 * time.Second
	// DefaultLoadTimeout is the default of Params.LoadTimeout.
	DefaultLoadTimeout = 10 * time.Second
)

// ErrClosed is returned by the loading methods of a [Registry] after
// [Registry.Close].
var ErrClosed = errors.New("registry closed")

// UpstreamSpec says where one upstream's descriptors come from. An upstream
// may combine sources; they are read in the order descriptor sets, .proto
// sources, reflection, and when two sources provide the same file
// differently the earlier one is kept (and the difference is a [Problem]).
type UpstreamSpec struct {
	// Name identifies the upstream in snapshots and problems. Required and
	// unique.
	Name string
	// Targets are the upstream's host:port addresses. With Reflection, each
	// target is asked; the first one (in this order) that answers provides
	// the descriptors, and the others are checked for schema drift.
	Targets []string
	// DialOptions are used to connect to Targets for reflection; they must
	// include transport credentials (insecure or TLS).
	DialOptions []grpc.DialOption
	// Reflection loads descriptors by gRPC server reflection (v1, falling
	// back to v1alpha).
	Reflection bool
	// RefreshInterval is how often [Registry.Run] reloads this upstream by
	// reflection. Zero disables periodic refresh.
	RefreshInterval time.Duration
	// Files are binary FileDescriptorSet files (see [LoadDescriptorSet]).
	// Every service they define is served.
	Files []string
	// Protos are .proto files compiled at load time (see [CompileProtos]).
	// Every service defined in these files (not in their imports) is served.
	Protos []string
	// ImportPaths are the directories Protos and their imports are
	// resolved against.
	ImportPaths []string
	// Services, when not empty, restricts the upstream to these
	// fully-qualified service names.
	Services []string
}

// Params configures a [Registry].
type Params struct {
	// Upstreams lists every upstream. Upstreams are merged in name order:
	// when two define the same name differently, the first wins.
	Upstreams []UpstreamSpec
	// Logger receives a Warn line the first time each problem appears. Nil
	// discards.
	Logger *slog.Logger
	// MissRefreshMinInterval is the least time between two refreshes caused
	// by [Registry.RefreshMissing]. Default [DefaultMissRefreshMinInterval].
	MissRefreshMinInterval time.Duration
	// LoadTimeout bounds each load of descriptors (all upstreams load in
	// parallel). Default [DefaultLoadTimeout].
	LoadTimeout time.Duration
}

// Registry loads descriptors from every upstream, merges them into
// immutable, versioned [Snapshot]s and keeps them fresh. All methods are
// safe for concurrent use. Loads are serialized: at most one runs at a
// time.
type Registry struct {
	logger      *slog.Logger
	missMin     time.Duration
	loadTimeout time.Duration
	upstreams   []*upstream // sorted by name

	// baseCtx ends at Close, which cancels every load in progress.
	baseCtx context.Context
	cancel  context.CancelFunc
	bg      sync.WaitGroup // RefreshMissing's background refreshes

	current  atomic.Pointer[Snapshot]
	problems atomic.Pointer[[]Problem]
	// loads and failed count loads and the upstream loads in them that
	// did not complete (Stats).
	loads, failed atomic.Uint64

	loadMu sync.Mutex
	closed atomic.Bool // set under missMu
	loaded bool
	hash   [32]byte
	seen   map[string]bool // problems of the last load

	notifyMu sync.Mutex // held while subscribers run, taken before loadMu is released
	subMu    sync.Mutex
	subs     []func(*Snapshot)

	missMu   sync.Mutex
	missLast time.Time
	missCall chan struct{} // closed when the shared on-demand refresh ends
}

// New validates p and prepares the reflection connections (which connect
// lazily). It loads nothing: call [Registry.Load].
func New(p Params) (*Registry, error) {
	var errs []error
	names := map[string]bool{}
	for i, spec := range p.Upstreams {
		switch {
		case spec.Name == "":
			errs = append(errs, fmt.Errorf("upstreams[%d]: name is empty", i))
		case names[spec.Name]:
			errs = append(errs, fmt.Errorf("upstream %s: name is used twice", spec.Name))
		}
		names[spec.Name] = true
		if spec.Reflection && len(spec.Targets) == 0 {
			errs = append(errs, fmt.Errorf("upstream %s: reflection needs at least one target", spec.Name))
		}
		if !spec.Reflection && len(spec.Files) == 0 && len(spec.Protos) == 0 {
			errs = append(errs, fmt.Errorf("upstream %s: no descriptor source (reflection, files or protos)", spec.Name))
		}
		if spec.RefreshInterval < 0 {
			errs = append(errs, fmt.Errorf("upstream %s: refresh interval %v is negative", spec.Name, spec.RefreshInterval))
		}
		for _, s := range spec.Services {
			if !protoreflect.FullName(s).IsValid() {
				errs = append(errs, fmt.Errorf("upstream %s: services: %q is not a fully-qualified service name", spec.Name, s))
			}
		}
	}
	if p.MissRefreshMinInterval < 0 || p.LoadTimeout < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("registry: %w", errors.Join(errs...))
	}

	r := &Registry{
		logger:      p.Logger,
		missMin:     p.MissRefreshMinInterval,
		loadTimeout: p.LoadTimeout,
		seen:        map[string]bool{},
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.missMin == 0 {
		r.missMin = DefaultMissRefreshMinInterval
	}
	if r.loadTimeout == 0 {
		r.loadTimeout = DefaultLoadTimeout
	}
	for _, spec := range p.Upstreams {
		u := &upstream{spec: spec}
		if len(spec.Services) > 0 {
			u.filter = map[protoreflect.FullName]bool{}
			for _, s := range spec.Services {
				u.filter[protoreflect.FullName(s)] = true
			}
		}
		if spec.Reflection {
			for _, addr := range spec.Targets {
				conn, err := grpc.NewClient(addr, spec.DialOptions...)
				if err != nil {
					errs = append(errs, fmt.Errorf("upstream %s: dial %s: %w", spec.Name, addr, err))
					continue
				}
				u.targets = append(u.targets, &reflectionTarget{addr: addr, conn: conn})
			}
		}
		r.upstreams = append(r.upstreams, u)
	}
	slices.SortFunc(r.upstreams, func(a, b *upstream) int {
		switch {
		case a.spec.Name < b.spec.Name:
			return -1
		case a.spec.Name > b.spec.Name:
			return 1
		}
		return 0
	})
	r.baseCtx, r.cancel = context.WithCancel(context.Background())
	r.current.Store(NewSnapshot(0, new(protoregistry.Files), new(protoregistry.Types), nil, nil))
	if len(errs) > 0 {
		_ = r.Close()
		return nil, fmt.Errorf("registry: %w", errors.Join(errs...))
	}
	return r, nil
}

// Load loads every upstream and swaps in the first snapshot (version 1),
// which it returns. An upstream that fails to load does not fail Load: the
// failure is a [Problem] of the snapshot. Load returns an error only when
// ctx ends first or the registry is closed. Calling Load again is the same
// as [Registry.Refresh].
func (r *Registry) Load(ctx context.Context) (*Snapshot, error) {
	return r.reload(ctx, nil)
}

// Current returns the current snapshot. It is never nil: before the first
// Load it is an empty snapshot of version 0. Current does not block.
func (r *Registry) Current() *Snapshot { return r.current.Load() }

// Problems returns the problems found by the most recent load. They can be
// newer than Current().Problems: a refresh that changes no descriptor (for
// example, one in which an upstream could not be reached and kept its
// previous descriptors) swaps in no snapshot. The caller must not modify
// the slice.
func (r *Registry) Problems() []Problem {
	if p := r.problems.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats are a registry's counters, for metrics.
type Stats struct {
	// Loads counts descriptor loads (the first, refreshes, on-demand
	// refreshes); FailedUpstreamLoads counts the upstream loads within
	// them that did not complete (the upstream kept its previous
	// descriptors).
	Loads, FailedUpstreamLoads uint64
}

// Stats returns the registry's counters.
func (r *Registry) Stats() Stats {
	return Stats{Loads: r.loads.Load(), FailedUpstreamLoads: r.failed.Load()}
}

// Subscribe registers fn to be called with each new snapshot after it is
// swapped in. Calls are serial and in version order. fn runs on the
// goroutine that performed the load and delays the next notification, so
// it should be quick; it must not call Load, Refresh or RefreshMissing
// synchronously.
func (r *Registry) Subscribe(fn func(*Snapshot)) {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	r.subs = append(r.subs, fn)
}

// Refresh reloads every upstream. It swaps in a new snapshot, with the next
// version, only if the descriptors or the service → upstream map changed;
// otherwise it returns the current snapshot. An upstream that fails to
// load keeps its previous descriptors. Refresh returns an error only when
// ctx ends first or the registry is closed.
func (r *Registry) Refresh(ctx context.Context) (*Snapshot, error) {
	return r.reload(ctx, nil)
}

// RefreshMissing is for a request that named a method the current snapshot
// lacks: it reloads the reflection upstreams, unless the previous such
// reload began less than MissRefreshMinInterval ago, and reports whether
// the method (a gRPC path "/pkg.Service/Method" or a full name) now exists.
// Concurrent callers share one reload. A caller whose ctx ends stops
// waiting; the reload goes on for the others.
func (r *Registry) RefreshMissing(ctx context.Context, method string) (*Snapshot, bool) {
	found := func() (*Snapshot, bool) {
		snap := r.Current()
		_, _, ok := snap.Method(method)
		return snap, ok
	}
	if snap, ok := found(); ok {
		return snap, true
	}
	var which []*upstream
	for _, u := range r.upstreams {
		if u.spec.Reflection {
			which = append(which, u)
		}
	}
	if len(which) == 0 {
		return found()
	}

	r.missMu.Lock()
	done := r.missCall
	if done == nil {
		if r.closed.Load() || (!r.missLast.IsZero() && time.Since(r.missLast) < r.missMin) {
			r.missMu.Unlock()
			return found()
		}
		r.missLast = time.Now()
		done = make(chan struct{})
		r.missCall = done
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			_, _ = r.reload(r.baseCtx, which)
			r.missMu.Lock()
			r.missCall = nil
			r.missMu.Unlock()
			close(done)
		}()
	}
	r.missMu.Unlock()

	select {
	case <-done:
	case <-ctx.Done():
	}
	return found()
}

// Run reloads each reflection upstream that has a RefreshInterval at that
// interval, until ctx ends or the registry is closed; then it returns. Run
// does the first Load itself if no Load happened yet when an interval
// first elapses.
func (r *Registry) Run(ctx context.Context) {
	type schedule struct {
		u    *upstream
		next time.Time
		// retry is the wait before the next try while the upstream has
		// never loaded (doubling from a second up to its refresh
		// interval); 0 once it has.
		retry time.Duration
	}
	var scheds []*schedule
	now := time.Now()
	for _, u := range r.upstreams {
		if u.spec.Reflection && u.spec.RefreshInterval > 0 {
			s := &schedule{u: u, next: now.Add(u.spec.RefreshInterval)}
			if !r.hasLoaded(u) {
				// Not loaded yet (its backend was down at start): try
				// again soon, so that readiness follows the backend.
				s.retry = time.Second
				s.next = now.Add(min(s.retry, u.spec.RefreshInterval))
			}
			scheds = append(scheds, s)
		}
	}
	if len(scheds) == 0 {
		select {
		case <-ctx.Done():
		case <-r.baseCtx.Done():
		}
		return
	}
	earliest := func() time.Duration {
		next := scheds[0].next
		for _, s := range scheds[1:] {
			if s.next.Before(next) {
				next = s.next
			}
		}
		return time.Until(next)
	}
	timer := time.NewTimer(earliest())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.baseCtx.Done():
			return
		case <-timer.C:
		}
		var which []*upstream
		var due []*schedule
		now := time.Now()
		for _, s := range scheds {
			if !s.next.After(now) {
				which = append(which, s.u)
				due = append(due, s)
			}
		}
		if len(which) > 0 {
			if _, err := r.reload(ctx, which); errors.Is(err, ErrClosed) {
				return
			}
		}
		for _, s := range due {
			wait := s.u.spec.RefreshInterval
			if s.retry > 0 {
				if r.hasLoaded(s.u) {
					s.retry = 0
				} else {
					s.retry = min(2*s.retry, s.u.spec.RefreshInterval)
					wait = s.retry
				}
			}
			s.next = time.Now().Add(wait)
		}
		timer.Reset(earliest())
	}
}

// hasLoaded reports whether u's descriptors have loaded once.
func (r *Registry) hasLoaded(u *upstream) bool {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	return u.good != nil
}

// Close cancels any load in progress, waits for it, and closes the
// reflection connections. The current snapshot stays readable. Close is
// idempotent.
func (r *Registry) Close() error {
	r.missMu.Lock()
	already := r.closed.Swap(true)
	r.missMu.Unlock()
	if already {
		return nil
	}
	r.cancel()
	r.bg.Wait()
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	var errs []error
	for _, u := range r.upstreams {
		for _, t := range u.targets {
			if err := t.conn.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close connection to %s: %w", t.addr, err))
			}
		}
	}
	return errors.Join(errs...)
}

// reload loads the given upstreams (nil: all; all as well before the first
// load), merges them with the others' last loads, and swaps in a new
// snapshot if anything changed.
func (r *Registry) reload(ctx context.Context, which []*upstream) (*Snapshot, error) {
	r.loadMu.Lock()
	unlocked := false
	defer func() {
		if !unlocked {
			r.loadMu.Unlock()
		}
	}()
	if r.closed.Load() {
		return r.Current(), ErrClosed
	}
	if which == nil || !r.loaded {
		which = r.upstreams
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.baseCtx, cancel)
	defer stop()

	loadCtx, cancelLoad := context.WithTimeout(ctx, r.loadTimeout)
	loads := make([]*upstreamLoad, len(which))
	complete := make([]bool, len(which))
	var wg sync.WaitGroup
	for i, u := range which {
		wg.Go(func() { loads[i], complete[i] = u.load(loadCtx) })
	}
	wg.Wait()
	cancelLoad()
	if err := ctx.Err(); err != nil {
		if r.closed.Load() {
			return r.Current(), ErrClosed
		}
		return r.Current(), err
	}

	r.loads.Add(1)
	for i, u := range which {
		if !complete[i] {
			r.failed.Add(1)
		}
		switch {
		case complete[i]:
			u.good, u.used = loads[i], loads[i]
		case u.good != nil:
			kept := *u.good
			kept.problems = loads[i].problems
			u.used = &kept
		default:
			u.used = loads[i]
		}
	}
	var used []*upstreamLoad
	var problems []Problem
	for _, u := range r.upstreams {
		if u.used != nil {
			used = append(used, u.used)
			problems = append(problems, u.used.problems...)
		}
	}
	m := merge(used)
	problems = append(problems, m.problems...)
	r.problems.Store(&problems)
	r.logNew(problems)

	if r.loaded && m.hash == r.hash {
		return r.Current(), nil
	}
	snap := NewSnapshot(r.Current().Version+1, m.files, m.types, m.services, problems)
	r.loaded, r.hash = true, m.hash
	r.current.Store(snap)

	// Hand over from loadMu to notifyMu, so that the next load can start
	// while subscribers run, and its notification still comes after this
	// one.
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	unlocked = true
	r.loadMu.Unlock()
	r.subMu.Lock()
	subs := slices.Clone(r.subs)
	r.subMu.Unlock()
	for _, fn := range subs {
		fn(snap)
	}
	return snap, nil
}

// logNew logs, at Warn, each problem that the previous load did not have.
func (r *Registry) logNew(problems []Problem) {
	seen := make(map[string]bool, len(problems))
	for _, p := range problems {
		key := p.String()
		seen[key] = true
		if !r.seen[key] {
			r.logger.Warn("descriptor problem", "upstream", p.Upstream, "problem", p.Msg)
		}
	}
	r.seen = seen
}
