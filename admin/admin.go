package admin

import (
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
)

// Backend is what the admin API asks of the running gateway. Its methods
// are called concurrently and must not block long.
type Backend interface {
	// Live reports whether the process serves (false while it shuts
	// down).
	Live() bool
	// Ready reports whether the gateway takes traffic, and if not why:
	// every upstream's descriptors loaded and the listeners up.
	Ready() (bool, string)
	// Config returns the running config, normalized, secrets redacted
	// (JSON).
	Config() ([]byte, error)
	// ConfigStatus describes the last (re)load of the config file.
	ConfigStatus() ConfigStatus
	// RouteTable returns the route table (REST bindings and uri routes).
	RouteTable() []Route
	// Upstreams returns the upstreams with their targets' state.
	Upstreams() []Upstream
	// Descriptors returns the services of the current snapshot.
	Descriptors() Descriptors
	// Reload rereads the config file and swaps it in when valid, as
	// SIGHUP does; the status says how it went.
	Reload() ConfigStatus
	// PurgeCache drops cached answers: every one, or those of route
	// (a selector or uri). It reports how many entries went, and an
	// error when there is no cache.
	PurgeCache(route string) (int, error)
}

// ConfigStatus is the outcome of the latest load or reload of the config.
type ConfigStatus struct {
	File        string    `json:"file,omitempty"`
	Version     uint64    `json:"version"`
	LoadedAt    time.Time `json:"loaded_at"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	Diagnostics []string  `json:"diagnostics,omitempty"`
	// LastAttempt is when the file was last read (a failed reload keeps
	// Version and LoadedAt of the config that still serves).
	LastAttempt time.Time `json:"last_attempt"`
	Reloads     uint64    `json:"reloads"`
	Failures    uint64    `json:"failures"`
}

// Route is one row of the route table.
type Route struct {
	Verb     string `json:"verb"`
	Path     string `json:"path"`
	RPC      string `json:"rpc"`
	Upstream string `json:"upstream"`
	Source   string `json:"source"`
}

// Upstream is one upstream and its targets.
type Upstream struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Balance string   `json:"balance"`
	Targets []Target `json:"targets"`
	// Panic is true while no target is available and calls are spread
	// over all of them.
	Panic     bool   `json:"panic"`
	Ejections uint64 `json:"ejections"`
	// Breaker is the upstream circuit breaker's state, when it has one.
	Breaker *Breaker `json:"circuit_breaker,omitempty"`
}

// Target is one target of an upstream.
type Target struct {
	Address      string     `json:"address"`
	Weight       uint32     `json:"weight"`
	Healthy      bool       `json:"healthy"`
	Connected    bool       `json:"connected"`
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	InFlight     int64      `json:"in_flight"`
	// LatencyMS is how fast the target answers gRPC calls relayed to it,
	// in milliseconds: an estimate that queueing moves little (the one
	// least_request uses to keep calls that arrive together on one
	// target); absent before the first answer.
	LatencyMS float64 `json:"latency_ms,omitempty"`
}

// Breaker is a circuit breaker's counts.
type Breaker struct {
	InFlight int64  `json:"in_flight"`
	Waiting  int64  `json:"waiting"`
	Rejected uint64 `json:"rejected"`
}

// Descriptors are the services of the current descriptor snapshot.
type Descriptors struct {
	Version  uint64    `json:"version"`
	Services []Service `json:"services"`
	Problems []string  `json:"problems,omitempty"`
}

// Service is one service and where its descriptors came from.
type Service struct {
	Name     string   `json:"name"`
	Upstream string   `json:"upstream"`
	Source   string   `json:"source"`
	File     string   `json:"file"`
	Methods  []string `json:"methods"`
}

// Options configure [New].
type Options struct {
	// Token is the bearer token every path but /healthz and /readyz
	// requires. Empty: none (the listener then binds loopback only,
	// which config validation enforces).
	Token string
	// Metrics serves /metrics (nil: 404).
	Metrics http.Handler
	// OpenAPI serves /openapi.json (nil: 404).
	OpenAPI http.Handler
	// Analytics serves /analytics and /analytics/deprecated (nil: 404).
	Analytics http.Handler
	// Usage serves /usage, the usage export (nil: 404).
	Usage http.Handler
	// Logger receives one line per reload and purge.
	Logger *slog.Logger
}

// New returns the admin API's handler.
func New(b Backend, o Options) http.Handler {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &server{b: b, token: o.Token, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /config", s.auth(s.config))
	mux.Handle("GET /config/status", s.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.ConfigStatus()) }))
	mux.Handle("GET /routes", s.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.RouteTable()) }))
	mux.Handle("GET /upstreams", s.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.Upstreams()) }))
	mux.Handle("GET /descriptors", s.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.Descriptors()) }))
	mux.Handle("POST /reload", s.auth(s.reload))
	mux.Handle("POST /cache/purge", s.auth(s.purge))
	if o.Metrics != nil {
		mux.Handle("GET /metrics", s.auth(o.Metrics.ServeHTTP))
	}
	if o.OpenAPI != nil {
		mux.Handle("GET /openapi.json", s.auth(o.OpenAPI.ServeHTTP))
	}
	if o.Analytics != nil {
		mux.Handle("GET /analytics", s.auth(o.Analytics.ServeHTTP))
		mux.Handle("GET /analytics/deprecated", s.auth(o.Analytics.ServeHTTP))
	}
	if o.Usage != nil {
		mux.Handle("GET /usage", s.auth(o.Usage.ServeHTTP))
	}
	// Go's profiles, for an operator chasing CPU or memory: /debug/pprof/
	// (index, heap, goroutine, ...), profile?seconds=N, trace, symbol.
	mux.Handle("GET /debug/pprof/", s.auth(pprof.Index))
	mux.Handle("GET /debug/pprof/cmdline", s.auth(pprof.Cmdline))
	mux.Handle("GET /debug/pprof/profile", s.auth(pprof.Profile))
	mux.Handle("GET /debug/pprof/symbol", s.auth(pprof.Symbol))
	mux.Handle("GET /debug/pprof/trace", s.auth(pprof.Trace))
	mux.Handle("/", s.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no admin endpoint "+r.Method+" "+r.URL.Path+
			": see GET /healthz, /readyz, /config, /config/status, /routes, /upstreams, /descriptors, /metrics, /openapi.json; POST /reload, /cache/purge")
	}))
	return mux
}

type server struct {
	b      Backend
	token  string
	logger *slog.Logger
}

// auth requires "Authorization: Bearer <token>" (compared in constant
// time) when a token is set.
func (s *server) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="rosetta-admin"`)
				msg := "missing admin token: send Authorization: Bearer <admin.token>"
				if ok {
					msg = "wrong admin token"
				}
				writeError(w, http.StatusUnauthorized, msg)
				return
			}
		}
		h(w, r)
	})
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.b.Live() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stopping"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	if ok, why := s.b.Ready(); !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": why})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *server) config(w http.ResponseWriter, _ *http.Request) {
	b, err := s.b.Config()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "render config: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (s *server) reload(w http.ResponseWriter, _ *http.Request) {
	st := s.b.Reload()
	code := http.StatusOK
	if !st.OK {
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, st)
}

func (s *server) purge(w http.ResponseWriter, r *http.Request) {
	route := r.URL.Query().Get("route")
	n, err := s.b.PurgeCache(route)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	s.logger.Info("cache purged", "route", route, "entries", n)
	writeJSON(w, http.StatusOK, map[string]any{"purged": n, "route": route})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // "<admin.token>" as written, not \u003c...\u003e
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
