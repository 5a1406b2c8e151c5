package openapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

// Handler returns an http.Handler that serves the OpenAPI document of the
// current snapshot and route table, as current returns them (the gateway's
// latest; current is called once per request and must be safe for
// concurrent use).
//
// The document is generated on the first request after the snapshot or
// the table changes (a descriptor refresh or a config reload), then served
// from memory, with an ETag (If-None-Match gets 304). A request may ask
// for one upstream's document with ?upstream=NAME unless opts.Upstream
// fixes it; an unknown upstream is a 404. Only GET and HEAD are allowed.
// Errors are google.rpc.Status JSON.
func Handler(current func() (*registry.Snapshot, *router.Table), opts Options) http.Handler {
	return &handler{current: current, opts: opts}
}

type handler struct {
	current func() (*registry.Snapshot, *router.Table)
	opts    Options

	mu    sync.Mutex
	snap  *registry.Snapshot
	table *router.Table
	docs  map[string]*cachedDoc // by upstream ("" = every upstream)
}

// cachedDoc is one generated document; once makes concurrent first
// requests generate it once.
type cachedDoc struct {
	once sync.Once
	body []byte
	etag string
	err  error
}

// ServeHTTP serves the document (see [Handler]).
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, http.StatusMethodNotAllowed, 12, "method "+r.Method+" is not allowed (allowed: GET, HEAD)")
		return
	}
	opts := h.opts
	if opts.Upstream == "" {
		opts.Upstream = r.URL.Query().Get("upstream")
	}
	snap, table := h.current()
	if opts.Upstream != "" && !hasUpstream(snap, opts.Upstream) {
		// Not cached: made-up names must not grow the cache.
		writeStatus(w, http.StatusNotFound, 5, ErrUnknownUpstream.Error()+" "+strconv.Quote(opts.Upstream))
		return
	}
	d := h.doc(snap, table, opts.Upstream)
	d.once.Do(func() {
		doc, err := Generate(snap, table, opts)
		if err != nil {
			d.err = err
			return
		}
		if d.body, d.err = json.Marshal(doc); d.err == nil {
			sum := sha256.Sum256(d.body)
			d.etag = `"` + hex.EncodeToString(sum[:12]) + `"`
		}
	})
	if d.err != nil {
		writeStatus(w, http.StatusInternalServerError, 13, "generate OpenAPI document: "+d.err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", d.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, d.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(d.body)
	}
}

// doc returns the cache entry of one upstream's document for snap and
// table, dropping every entry of an older snapshot or table.
func (h *handler) doc(snap *registry.Snapshot, table *router.Table, upstream string) *cachedDoc {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.docs == nil || h.snap != snap || h.table != table {
		h.snap, h.table = snap, table
		h.docs = map[string]*cachedDoc{}
	}
	d := h.docs[upstream]
	if d == nil {
		d = &cachedDoc{}
		h.docs[upstream] = d
	}
	return d
}

func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || strings.TrimPrefix(v, "W/") == etag {
			return true
		}
	}
	return false
}

// writeStatus writes a google.rpc.Status JSON error.
func writeStatus(w http.ResponseWriter, status, code int, msg string) {
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
