package cache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rosetta-gateway/rosetta/call"
)

// HTTP answers a plain HTTP uri route may keep: 200, 203 and 204. (206
// depends on the Range asked for; other statuses are not worth the
// risk of pinning an error.)
func storableStatus(code int) bool {
	return code == http.StatusOK || code == http.StatusNonAuthoritativeInfo || code == http.StatusNoContent
}

// errPassThrough is a fetch's answer that could not be kept in memory
// (larger than max_entry_bytes, or a stream): every caller waiting on it
// asks the backend itself, uncached.
var errPassThrough = errors.New("cache: answer passed through")

// ServeHTTP answers a plain HTTP GET r, described by cl, from the cache
// under key k, or by next (the route's proxy) on a miss, storing next's
// answer when it may: see [Cache]. Besides, an answer is not stored when
// it sets cookies, or when its Vary names a field the key leaves out
// (the configured vary and Accept-Encoding are in it), or is "*". An
// answer larger than max_entry_bytes, or an event stream, is not buffered:
// the caller gets it from next directly. Answers carry X-Cache (HIT,
// MISS or STALE) and, from the cache, Age. The caller checked
// [Cache.Admits]; requests with Range or an upgrade are passed to next.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request, k *Key, next http.Handler) {
	if r.Header.Get("Range") != "" || r.Header.Get("Upgrade") != "" {
		next.ServeHTTP(w, r)
		return
	}
	res, ok := c.Lookup(r.Context(), k)
	var err error
	if !ok {
		res, err = c.Do(r.Context(), k, FetchFunc(func(ctx context.Context) (*Entry, bool, error) {
			return c.fetchHTTP(ctx, r, next)
		}))
	}
	if errors.Is(err, errPassThrough) {
		next.ServeHTTP(w, r)
		return
	}
	if err != nil {
		if r.Context().Err() != nil {
			w.WriteHeader(499) // the caller went away while it waited: no one reads this
			return
		}
		// The route's handler panicked on the fetch's goroutine.
		h := w.Header()
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"code":13,"message":"internal error"}`)
		return
	}
	e := res.Entry
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h.Set("X-Cache", res.Status.String())
	if res.Status != call.CacheMiss {
		h.Set("Age", strconv.FormatInt(res.Age, 10))
	}
	if e.Status != http.StatusNoContent {
		h.Set("Content-Length", strconv.Itoa(len(e.Body)))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(e.Body)
}

// fetchHTTP runs next on a copy of r (without a body, on ctx) into a
// buffer.
func (c *Cache) fetchHTTP(ctx context.Context, r *http.Request, next http.Handler) (*Entry, bool, error) {
	req := r.Clone(ctx)
	req.Body = http.NoBody
	rec := &recorder{header: http.Header{}, max: c.maxEntry}
	if err := serveInto(next, rec, req); err != nil {
		return nil, false, err
	}
	if rec.pass {
		return nil, false, errPassThrough
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	h := rec.header
	h.Del("Content-Length")
	h.Del("X-Cache")
	e := &Entry{Status: rec.status, Header: h, Body: rec.body}
	ok := storableStatus(rec.status) && len(h.Values("Set-Cookie")) == 0 && c.varyCovered(h.Values("Vary"))
	if ok {
		e.Control = ParseControl(h.Values("Cache-Control"))
		if a, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && a > 0 {
			e.Age = secondsDuration(a)
		}
		h.Del("Age")
	}
	return e, ok, nil
}

// serveInto runs next into rec. It runs on a fetch's goroutine, where a
// panic would take the process down: httputil.ReverseProxy aborts with
// http.ErrAbortHandler when a write fails (the recorder giving up), and
// any other panic becomes an Internal error for the waiting callers.
func serveInto(next http.Handler, rec *recorder, req *http.Request) (err error) {
	defer func() {
		switch v := recover(); {
		case v == nil:
		case v == http.ErrAbortHandler && rec.pass:
			err = errPassThrough
		default:
			err = status.Errorf(codes.Internal, "cache: the route's handler panicked: %v", v)
		}
	}()
	next.ServeHTTP(rec, req)
	return nil
}

func secondsDuration(n int64) time.Duration { return time.Duration(n) * time.Second }

// varyCovered reports whether every field a backend's Vary names is in
// the key: a configured vary header, or Accept-Encoding.
func (c *Cache) varyCovered(lines []string) bool {
	for _, line := range lines {
		for _, f := range strings.Split(line, ",") {
			f = strings.ToLower(strings.TrimSpace(f))
			switch {
			case f == "":
			case f == "*":
				return false
			case f == "accept-encoding":
			default:
				found := false
				for _, v := range c.vary {
					found = found || v == f
				}
				if !found {
					return false
				}
			}
		}
	}
	return true
}

// recorder buffers an answer of at most max body bytes; past that, or
// for an event stream, it gives up (pass) and fails the writes, which
// ends the proxying.
type recorder struct {
	header http.Header
	status int
	body   []byte
	max    int64
	pass   bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status != 0 || code < 200 {
		return
	}
	r.status = code
	if strings.HasPrefix(strings.ToLower(r.header.Get("Content-Type")), "text/event-stream") {
		r.pass = true
	}
	if n, err := strconv.ParseInt(r.header.Get("Content-Length"), 10, 64); err == nil && n > r.max {
		r.pass = true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if r.pass || int64(len(r.body)+len(b)) > r.max {
		r.pass = true
		return 0, errPassThrough
	}
	r.body = append(r.body, b...)
	return len(b), nil
}

// Flush does nothing: the answer is buffered whole.
func (r *recorder) Flush() {}
