package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/rosetta-gateway/rosetta/admin"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/transports"
)

var errShuttingDown = errors.New("the gateway is shutting down")

// reloader serializes config reloads and remembers how the last one went.
type reloader struct {
	// loadMu makes each Reload read and apply the file whole before the
	// next reads it, so that reloads racing (a file change, SIGHUP and
	// POST /reload together) cannot apply an older read last.
	loadMu  sync.Mutex
	mu      sync.Mutex // one reload at a time; guards the fields below
	status  admin.ConfigStatus
	retired sync.WaitGroup // generations waiting for their calls to end
	stopCh  chan struct{}
	stopped bool
	watchWG sync.WaitGroup
	// runCtx is the parent of the background work (descriptor refresh)
	// of the generations reloads start; stop cancels it, before Shutdown
	// waits for that work.
	runCtx    context.Context
	runCancel context.CancelFunc
}

// runContext returns the context reloaded generations run under. Call it
// with mu held.
func (r *reloader) runContext() context.Context {
	if r.runCtx == nil {
		r.runCtx, r.runCancel = context.WithCancel(context.Background())
	}
	return r.runCtx
}

// configStatus describes gen after a (re)load that ended with err.
func (g *Gateway) configStatus(gen *generation, err error) admin.ConfigStatus {
	st := admin.ConfigStatus{File: gen.cfg.File, Version: gen.version, LoadedAt: time.Now(), OK: err == nil, LastAttempt: time.Now()}
	if err != nil {
		st.Error = err.Error()
	}
	return st
}

// ConfigStatus returns how the last load or reload of the config went.
func (g *Gateway) ConfigStatus() admin.ConfigStatus {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	return g.reload.status
}

// Reload rereads the config file and, when it is valid, swaps it in
// (ReloadConfig); when it is not, the running config keeps serving and
// the status holds the diagnostics. SIGHUP, the admin API's POST /reload
// and a change of the file call it.
func (g *Gateway) Reload() admin.ConfigStatus {
	g.reload.loadMu.Lock()
	defer g.reload.loadMu.Unlock()
	file := g.cur.Load().cfg.File
	if file == "" {
		return g.failReload(errors.New("the gateway was started without a config file: nothing to reload"), nil)
	}
	cfg, err := config.Load(file)
	if err != nil {
		var diags config.Diagnostics
		if errors.As(err, &diags) {
			lines := make([]string, len(diags))
			for i, d := range diags {
				lines[i] = d.String()
			}
			return g.failReload(fmt.Errorf("%s: invalid config (%d problems); the running config keeps serving", file, len(diags)), lines)
		}
		return g.failReload(err, nil)
	}
	if err := g.ReloadConfig(cfg); err != nil {
		return g.failReload(err, nil)
	}
	return g.ConfigStatus()
}

// failReload records and logs a reload that left the running config in
// place.
func (g *Gateway) failReload(err error, diags []string) admin.ConfigStatus {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	st := &g.reload.status
	st.OK, st.Error, st.Diagnostics, st.LastAttempt = false, err.Error(), diags, time.Now()
	st.Failures++
	attrs := []any{"error", err}
	for _, d := range diags {
		attrs = append(attrs, "diagnostic", d)
	}
	g.logger.Error("config reload refused", attrs...)
	return *st
}

// ReloadConfig swaps in cfg, a validated config: a new generation is
// built (upstreams whose config did not change are carried over with
// their connections; descriptors are reloaded only when their sources
// changed; rate-limit counters and token caches are kept), listeners are
// added and removed, and the swap is atomic. Calls in flight, open
// streams and WebSockets finish on the generation they started with,
// whose dropped upstreams close once nothing runs on them. On error the
// running config keeps serving.
func (g *Gateway) ReloadConfig(cfg *config.Config) error {
	g.reload.mu.Lock()
	defer g.reload.mu.Unlock()
	if g.reload.stopped || g.stopping.Load() {
		return errShuttingDown
	}
	prev := g.cur.Load()
	// Listeners are bound first: a config whose new address is taken is
	// refused before anything of the running one is touched (building a
	// generation updates carried-over upstreams).
	added, err := g.bindListeners(prev.cfg, cfg)
	if err != nil {
		return err
	}
	gen, err := g.newGeneration(cfg, prev)
	if err != nil {
		closeUnserved(added)
		return err
	}
	gen.version = prev.version + 1
	if gen.reg != prev.reg {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := gen.reg.Load(ctx)
		cancel()
		if err != nil {
			closeUnserved(added)
			g.discard(gen, prev)
			return fmt.Errorf("load descriptors of the new config: %w", err)
		}
	}
	removed, ok := g.swapListeners(cfg, added)
	if !ok {
		closeUnserved(added)
		g.discard(gen, prev)
		return errShuttingDown
	}
	// The swap: the new generation becomes current, then its first
	// state is installed (requests meanwhile use the previous state,
	// whole).
	g.cur.Store(gen)
	g.setRouteOf(gen) // observe.go
	// Carried-over upstreams take their new targets only now: a reload
	// refused before this point left them as they were.
	gen.ups.Commit()
	gen.uri.ups.Commit()
	if cfg.Admin != nil {
		g.adminToken(cfg.Admin.Token) // admin.go: a changed token applies at once
	}
	gen.install(gen.reg.Current())
	gen.reg.Subscribe(gen.install)
	if gen.reg != prev.reg {
		gen.run(g.reload.runContext())
	}
	for _, s := range added {
		s.Serve()
		g.logger.Info("listening", "address", s.Addr().String(), "protocols", s.Protocols())
	}
	g.retire(prev, gen, removed)
	st := &g.reload.status
	st.File, st.Version, st.LoadedAt, st.OK, st.Error, st.Diagnostics = cfg.File, gen.version, time.Now(), true, "", nil
	st.LastAttempt = st.LoadedAt
	st.Reloads++
	g.logger.Info("config reloaded", "file", cfg.File, "version", gen.version)
	return nil
}

// discard closes what a generation that will not be used made.
func (g *Gateway) discard(gen, prev *generation) {
	if gen.pols != nil {
		_ = gen.pols.Close()
	}
	gen.uri.ups.CloseNew(prev.uri.ups)
	if gen.reg != prev.reg {
		_ = gen.reg.Close()
	}
	_ = gen.ups.CloseNew(prev.ups)
	if gen.caches != prev.caches {
		gen.caches.close()
	}
}

// retire lets prev's calls finish, then closes what gen did not take
// over from it, and shuts down removed listeners (draining them).
func (g *Gateway) retire(prev, gen *generation, removed []*transports.Server) {
	if prev.reg != gen.reg {
		if prev.runCancel != nil {
			prev.runCancel()
		}
		_ = prev.reg.Close()
	}
	g.reload.retired.Add(1)
	stop := g.reload.runContext()
	go func() {
		defer g.reload.retired.Done()
		// Every call that acquired prev (gateway.go) serves on it to its
		// end: prev's dropped upstreams, policies and caches close once
		// the last one has ended (Shutdown cuts the wait short).
		prev.retired.Store(true)
		for prev.active.Load() > 0 {
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-stop.Done():
			}
			break
		}
		var pending sync.WaitGroup
		pending.Add(2)
		prev.ups.Retire(gen.ups, pending.Done)
		prev.uri.ups.Retire(gen.uri.ups, pending.Done)
		pending.Wait()
		// The old policies and caches served calls that have ended.
		_ = prev.pols.Close()
		if prev.caches != gen.caches {
			prev.caches.close()
		}
	}()
	for _, s := range removed {
		g.reload.retired.Add(1) // Shutdown waits for the drain
		go func() {
			defer g.reload.retired.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.Shutdown(ctx)
			g.logger.Info("listener removed", "address", s.Addr().String())
		}()
	}
}

// bindListeners binds the listeners cfg adds to old (not serving yet).
// A listener whose settings changed at the same address keeps its old
// settings until a restart (it cannot be rebound while it serves); that
// is logged.
func (g *Gateway) bindListeners(old, cfg *config.Config) (added []*transports.Server, err error) {
	oldBy := map[string]config.Listener{}
	for _, l := range old.Listeners {
		oldBy[l.Address] = l
	}
	for _, l := range cfg.Listeners {
		if o, ok := oldBy[l.Address]; ok {
			if !reflect.DeepEqual(o, l) {
				g.logger.Warn("listener settings changed; they apply after a restart", "address", l.Address)
			}
			continue
		}
		s, err := transports.NewServer(l, g.Handler(), g.logger.With("component", "transports.http", "listener", l.Address))
		if err == nil {
			err = s.Listen()
		}
		if err != nil {
			closeUnserved(added)
			return nil, fmt.Errorf("listener %s: %w", l.Address, err)
		}
		s.InterceptHTTP2(g.interceptGRPC)
		added = append(added, s)
	}
	return added, nil
}

// closeUnserved closes listeners that never served.
func closeUnserved(servers []*transports.Server) {
	for _, s := range servers {
		_ = s.Shutdown(context.Background())
	}
}

// swapListeners makes g.servers those of cfg: the kept ones, in place,
// then added (bound by bindListeners, in cfg's order). It returns the
// servers of the listeners cfg removes; ok is false, and nothing changed,
// once shutdown has begun (Shutdown takes the servers it drains under
// serversMu after it sets stopping, so none added here escapes it).
func (g *Gateway) swapListeners(cfg *config.Config, added []*transports.Server) (removed []*transports.Server, ok bool) {
	newBy := map[string]bool{}
	for _, l := range cfg.Listeners {
		newBy[l.Address] = true
	}
	g.serversMu.Lock()
	defer g.serversMu.Unlock()
	if g.stopping.Load() {
		return nil, false
	}
	oldBy := map[string]bool{}
	var kept []*transports.Server
	var keptAddrs []string
	for i, s := range g.servers {
		addr := g.listenAddrs[i]
		oldBy[addr] = true
		if !newBy[addr] {
			removed = append(removed, s)
			continue
		}
		kept = append(kept, s)
		keptAddrs = append(keptAddrs, addr)
	}
	kept = append(kept, added...)
	for _, l := range cfg.Listeners {
		if !oldBy[l.Address] {
			keptAddrs = append(keptAddrs, l.Address)
		}
	}
	g.servers, g.listenAddrs = kept, keptAddrs
	return removed, true
}

// sameDescriptorSources reports whether two configs load descriptors
// from the same places (every gRPC upstream's targets, TLS and
// descriptors block), so a reload can keep the snapshot.
func sameDescriptorSources(a, b *config.Config) bool {
	type source struct {
		Targets     []config.Target
		TLS         *config.ClientTLS
		Descriptors config.Descriptors
	}
	pick := func(c *config.Config) map[string]source {
		m := map[string]source{}
		for name, u := range c.Upstreams {
			if u.Kind != "" && u.Kind != "grpc" {
				continue
			}
			m[name] = source{u.Targets, u.TLS, u.Descriptors}
		}
		return m
	}
	return reflect.DeepEqual(pick(a), pick(b))
}

// Watch reloads the config when its file changes (written in place,
// replaced by rename, or swapped through a symlink as Kubernetes updates
// a ConfigMap), debounced by 250 ms. It watches the file's directory. It
// returns once the watch is set up; Shutdown stops it.
func (g *Gateway) Watch() error {
	file := g.cur.Load().cfg.File
	if file == "" {
		return errors.New("no config file to watch")
	}
	last := fileStamp(file)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	if err := w.Add(filepath.Dir(file)); err != nil {
		_ = w.Close()
		return fmt.Errorf("watch config directory %s: %w", filepath.Dir(file), err)
	}
	g.reload.mu.Lock()
	if g.reload.stopped {
		g.reload.mu.Unlock()
		_ = w.Close()
		return errShuttingDown
	}
	if g.reload.stopCh == nil {
		g.reload.stopCh = make(chan struct{})
	}
	stop := g.reload.stopCh
	g.reload.watchWG.Add(1)
	g.reload.mu.Unlock()
	// The file as it was before the watch was added (last) is taken as
	// the running one; a change made meanwhile raised no event, so the
	// file is checked once at the start too.
	fire := make(chan struct{}, 1)
	fire <- struct{}{}
	names := watchedNames(file)
	go func() {
		defer g.reload.watchWG.Done()
		defer w.Close()
		var timer *time.Timer
		for {
			select {
			case <-stop:
				if timer != nil {
					timer.Stop()
				}
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !names.has(ev.Name) {
					continue // another file of the directory (a busy log must not postpone reloads)
				}
				if timer == nil {
					timer = time.AfterFunc(250*time.Millisecond, func() {
						select {
						case fire <- struct{}{}:
						default:
						}
					})
				} else {
					timer.Reset(250 * time.Millisecond)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				g.logger.Warn("config watch", "error", err)
			case <-fire:
				// Any change in the directory (an editor's rename, a
				// ConfigMap's symlink swap) counts when the file's content
				// changed.
				names = watchedNames(file)
				if now := fileStamp(file); now != last {
					last = now
					g.logger.Info("config file changed; reloading", "file", file)
					g.Reload()
				}
			}
		}
	}()
	return nil
}

// configNames are the names in the config file's directory whose events
// can change what the file holds.
type configNames struct{ file, link string }

// watchedNames returns them: the file's own name, and, when the file is
// a symbolic link, the first element of a relative target (a ConfigMap's
// "..data").
func watchedNames(file string) configNames {
	n := configNames{file: filepath.Base(file)}
	if target, err := os.Readlink(file); err == nil && !filepath.IsAbs(target) {
		n.link, _, _ = strings.Cut(filepath.ToSlash(target), "/")
	}
	return n
}

// has reports whether an event on path concerns the config: its own
// name, its link's, or a name starting with ".." (Kubernetes writes a
// ConfigMap's new content under "..<timestamp>" and swaps "..data").
func (n configNames) has(path string) bool {
	base := filepath.Base(path)
	return base == n.file || base == n.link && n.link != "" || strings.HasPrefix(base, "..")
}

// fileStamp identifies a file's current content cheaply: its resolved
// path, size and modification time.
func fileStamp(file string) string {
	real, err := filepath.EvalSymlinks(file)
	if err != nil {
		return "missing"
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%s|%d|%d", real, fi.Size(), fi.ModTime().UnixNano())
}

// stop ends the config watch and makes further reloads fail.
func (r *reloader) stop() {
	r.mu.Lock()
	r.stopped = true
	if r.stopCh != nil {
		close(r.stopCh)
		r.stopCh = nil
	}
	if r.runCancel != nil {
		r.runCancel()
	}
	r.mu.Unlock()
	r.watchWG.Wait()
}

// closeRetired waits (briefly) for retired generations to finish closing.
func (r *reloader) closeRetired() []error {
	done := make(chan struct{})
	go func() {
		r.retired.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return []error{errors.New("retired config generations still had calls in flight at shutdown")}
	}
	return nil
}
