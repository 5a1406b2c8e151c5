package policy

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

// Env is what a plugin constructor may use besides its own settings.
type Env struct {
	// Config is the whole validated config (consumers, redis,
	// trusted_proxies).
	Config *config.Config
	// Route names the route the plugin is built for: a selector, a uri,
	// or "" for the top-level plugins.
	Route string
	// Shared holds what outlives a config snapshot (rate-limit counters,
	// key caches, Redis clients).
	Shared *Shared
	// Logger is the plugin's logger.
	Logger *slog.Logger
	// Now is the clock of plugins that read calendar time (the plan
	// plugin's quota periods); nil means [time.Now]. [Build] sets it
	// from [WithClock], for tests.
	Now func() time.Time
}

// Clock returns e.Now, or [time.Now] when it is nil.
func (e Env) Clock() func() time.Time {
	if e.Now != nil {
		return e.Now
	}
	return time.Now
}

// Constructor builds a plugin from one plugins-list entry (whose field
// for the plugin's name is set). Errors name what to fix.
type Constructor func(env Env, spec config.Plugin) (Plugin, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Constructor{}
)

// Register makes a plugin kind known under name (its config key, such as
// "jwt-auth"). Plugin packages call it from init. It panics when name is
// registered twice.
func Register(name string, c Constructor) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("policy: plugin %q registered twice", name))
	}
	registry[name] = c
}

// Lookup returns the constructor registered under name.
func Lookup(name string) (Constructor, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	c, ok := registry[name]
	return c, ok
}

// PlanPlugin is the name of the implicit plan plugin, which enforces
// the config's plans (quotas and rates) on every authenticated chain. It
// is not a plugins-list name: [Build] adds it by itself when the config
// has plans, with the constructor given to [RegisterPlan].
const PlanPlugin = "plan"

var planConstructor func(env Env) (Plugin, error)

// RegisterPlan makes c the constructor of the implicit plan plugin
// ([PlanPlugin]). Package policy/quota calls it from init. It panics
// when called twice.
func RegisterPlan(c func(env Env) (Plugin, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if planConstructor != nil {
		panic("policy: plan plugin registered twice")
	}
	planConstructor = c
}

// lookupPlan returns the constructor given to RegisterPlan, or nil.
func lookupPlan() func(env Env) (Plugin, error) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return planConstructor
}

// Registered returns the registered plugin names, sorted.
func Registered() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Shared holds values that outlive config snapshots, by key: a plugin
// built for a new snapshot with the same settings finds the counters and
// caches of the previous one. It is safe for concurrent use. Values that
// implement io.Closer are closed by [Shared.Close].
type Shared struct {
	mu   sync.Mutex
	vals map[string]any
}

// Get returns the value stored under key, creating it with create when
// absent.
func (s *Shared) Get(key string, create func() (any, error)) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vals[key]; ok {
		return v, nil
	}
	v, err := create()
	if err != nil {
		return nil, err
	}
	if s.vals == nil {
		s.vals = map[string]any{}
	}
	s.vals[key] = v
	return v, nil
}

// Close closes every stored value that has a Close method.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for k, v := range s.vals {
		if c, ok := v.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil && first == nil {
				first = err
			}
		}
		delete(s.vals, k)
	}
	return first
}
