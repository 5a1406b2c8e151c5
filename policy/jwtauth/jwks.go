package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"

	"github.com/rosetta-gateway/rosetta/config"
)

// Limits of a JWKS fetch.
const (
	// fetchTimeout bounds one fetch, connection and body included.
	fetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds the JWKS document.
	maxJWKSBytes = 1 << 20
	// retryEmpty is the least time between two fetches while no keys are
	// loaded (the first fetches failed).
	retryEmpty = time.Second
)

var (
	// errLimited is returned by fetch when its rate limit forbids a new
	// fetch.
	errLimited = errors.New("JWKS refetch rate-limited")
	// errClosed is returned by fetch after Close.
	errClosed = errors.New("JWKS source closed")
)

// fetchKind says why a fetch is wanted; each kind has its own limit.
type fetchKind int

const (
	// fetchScheduled is the start and every refresh interval; it also
	// re-arms the immediate unknown-kid refetch.
	fetchScheduled fetchKind = iota
	// fetchUnknownKID is a token naming a kid the set lacks: at once for
	// the first one after a scheduled fetch, then at most once per
	// minRefresh.
	fetchUnknownKID
	// fetchEmpty is a call that finds no keys loaded yet: at most once
	// per retryEmpty while fetches fail.
	fetchEmpty
)

// jwks is a JSON Web Key Set fetched over HTTP(S) and kept fresh: fetched
// at start and every refresh interval, and refetched when a token names
// a kid it lacks (see [fetchUnknownKID]). A fetch that brings different
// keys replaces the set (a removed key stops verifying) and bumps its
// generation. Only one fetch runs at a time; callers that want one join
// it. It is safe for concurrent use; Close stops it.
//
// It is written here rather than taken from keyfunc/v3: keyfunc's
// unknown-kid refresh waits on a rate.Limiter (blocking the call up to a
// minute instead of refusing at once), cannot tell without I/O whether a
// kid would trigger a fetch (which TryCheck needs), and has no way to
// learn that the key set changed (which the token cache needs). JWK
// parsing is jwkset's, the library keyfunc builds on.
type jwks struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	now        func() time.Time
	logger     *slog.Logger

	set atomic.Pointer[keySet]

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	inflight  *flight
	unknownAt time.Time // an unknown kid may cause a fetch from this time on
	retryAt   time.Time // with no keys, a fetch may start from this time on
	lastErr   error     // of the last fetch, while no keys are loaded
	closed    bool
}

// flight is one fetch; done is closed when err is set.
type flight struct {
	done chan struct{}
	err  error
	// rearm is set when a scheduled fetch started or joined the flight:
	// its success lets the next unknown kid refetch at once. It is set
	// under jwks.mu and applied with the result, in the same critical
	// section, so no later unknown-kid limit is undone.
	rearm bool
}

// jwksParams configures startJWKS.
type jwksParams struct {
	url                 string
	refresh, minRefresh time.Duration
	client              *http.Client
	now                 func() time.Time
	logger              *slog.Logger
	// ticks, when set, replaces the refresh ticker (tests).
	ticks <-chan time.Time
}

// startJWKS starts keeping the key set at p.url: the first fetch begins
// at once, in the background.
func startJWKS(p jwksParams) *jwks {
	ctx, cancel := context.WithCancel(context.Background())
	j := &jwks{
		url:        p.url,
		client:     p.client,
		minRefresh: p.minRefresh,
		now:        p.now,
		logger:     p.logger,
		ctx:        ctx,
		cancel:     cancel,
	}
	ticks, stop := p.ticks, func() {}
	if ticks == nil {
		t := time.NewTicker(p.refresh)
		ticks, stop = t.C, t.Stop
	}
	j.wg.Add(1)
	go j.loop(ticks, stop)
	return j
}

// current returns the keys held now, nil before the first successful
// fetch.
func (j *jwks) current() *keySet { return j.set.Load() }

// loop runs the scheduled fetches until Close.
func (j *jwks) loop(ticks <-chan time.Time, stop func()) {
	defer j.wg.Done()
	defer stop()
	j.scheduled()
	for {
		select {
		case <-j.ctx.Done():
			return
		case <-ticks:
			j.scheduled()
		}
	}
}

func (j *jwks) scheduled() {
	if err := j.fetch(j.ctx, fetchScheduled); err != nil && j.ctx.Err() == nil {
		j.logger.Warn("JWKS fetch failed; keeping the keys held", "url", j.url, "error", err)
	}
}

// unknownMayFetch reports whether a token naming an unknown kid would
// make fetch(fetchUnknownKID) fetch (or join a fetch) now. It never
// blocks on I/O.
func (j *jwks) unknownMayFetch() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return !j.closed && (j.inflight != nil || !j.now().Before(j.unknownAt))
}

// fetch starts a fetch of kind (or joins the one in flight) and waits
// for it, bounded by ctx. It returns errLimited when the kind's limit
// forbids a new fetch. The fetch itself is bounded by fetchTimeout and
// Close, not by ctx, so that one caller giving up does not fail the
// others.
func (j *jwks) fetch(ctx context.Context, kind fetchKind) error {
	j.mu.Lock()
	f := j.inflight
	if f == nil {
		if j.closed {
			j.mu.Unlock()
			return errClosed
		}
		now := j.now()
		switch kind {
		case fetchUnknownKID:
			if now.Before(j.unknownAt) {
				j.mu.Unlock()
				return errLimited
			}
			j.unknownAt = now.Add(j.minRefresh)
		case fetchEmpty:
			if now.Before(j.retryAt) {
				err := j.lastErr
				j.mu.Unlock()
				if err == nil {
					err = errLimited
				}
				return err
			}
		}
		f = &flight{done: make(chan struct{})}
		j.inflight = f
		j.wg.Add(1)
		go j.run(f)
	}
	if kind == fetchScheduled {
		f.rearm = true
	}
	j.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run performs flight f and installs what it brought.
func (j *jwks) run(f *flight) {
	defer j.wg.Done()
	ctx, cancel := context.WithTimeout(j.ctx, fetchTimeout)
	ks, err := j.get(ctx)
	cancel()
	j.mu.Lock()
	old := j.set.Load()
	switch {
	case err == nil && !sameKeys(old, ks):
		ks.gen = 1
		if old != nil {
			ks.gen = old.gen + 1
		}
		j.set.Store(ks)
		j.lastErr = nil
		j.logger.Info("JWKS keys loaded", "url", j.url, "keys", len(ks.all), "generation", ks.gen)
	case err != nil && old == nil:
		j.lastErr = err
		j.retryAt = j.now().Add(retryEmpty)
	}
	if err == nil && f.rearm {
		j.unknownAt = time.Time{}
	}
	f.err = err
	j.inflight = nil
	j.mu.Unlock()
	close(f.done)
}

// get fetches and parses the key set.
func (j *jwks) get(ctx context.Context) (*keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", j.url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: status %s", j.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS %s: %w", j.url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("read JWKS %s: document larger than %d bytes", j.url, maxJWKSBytes)
	}
	return j.parse(body)
}

// parse turns a JWKS document into verification keys. Keys for
// encryption, symmetric keys (a JWKS never vouches for an HMAC secret),
// keys of unsupported types and malformed keys are skipped; a key's
// "alg", when present, narrows what it verifies.
func (j *jwks) parse(body []byte) (*keySet, error) {
	var doc jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode JWKS %s: %w", j.url, err)
	}
	var keys []*verifyKey
	skipped := 0
	for _, m := range doc.Keys {
		if (m.USE != "" && m.USE != jwkset.UseSig) || m.KTY == jwkset.KtyOct {
			skipped++
			continue
		}
		m.X5U = "" // never fetched
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			j.logger.Debug("JWKS key skipped", "url", j.url, "kid", m.KID, "error", err)
			skipped++
			continue
		}
		algs := config.KeyAlgorithms(jwk.Key())
		if alg := string(m.ALG); alg != "" {
			if !slices.Contains(algs, alg) {
				skipped++
				continue
			}
			algs = []string{alg}
		}
		if len(algs) == 0 {
			skipped++
			continue
		}
		keys = append(keys, &verifyKey{kid: m.KID, key: jwk.Key(), algs: algs})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s has no usable signing key (%d skipped)", j.url, skipped)
	}
	return newKeySet(0, keys), nil
}

// Close stops the refresh loop and waits for fetches in flight. It is
// idempotent.
func (j *jwks) Close() error {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.cancel()
	j.wg.Wait()
	return nil
}

var _ keySource = (*jwks)(nil)
