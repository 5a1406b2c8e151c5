package gateway

import (
	"context"
	"net/http"
	"sync"

	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/websocket"
)

// wsSockets tracks the open WebSockets of a gateway. Hijacked connections
// outlive http.Server.Shutdown, so the gateway ends them itself: canceling
// ctx closes every socket with 1001, and wg waits for their handlers. The
// zero value is ready to use.
type wsSockets struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool // set by close: handlers that start later are not waited for
}

// enter counts a socket's handler in, unless close has begun (its
// context is canceled then, so the socket closes at once); it reports
// whether it did, and then the handler calls leave when it ends.
// Counting in under mu keeps a wg.Add from racing close's Wait.
func (s *wsSockets) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// leave counts out a handler that enter counted in.
func (s *wsSockets) leave() { s.wg.Done() }

func (s *wsSockets) context() context.Context {
	s.once.Do(func() { s.ctx, s.cancel = context.WithCancel(context.Background()) })
	return s.ctx
}

// close ends every open socket and waits for their handlers, at most until
// ctx ends. Sockets opened after it are closed at once.
func (s *wsSockets) close(ctx context.Context) {
	s.context()
	s.cancel()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// newWebSocket builds the WebSocket bridge of one snapshot.
func (gen *generation) newWebSocket(snap *registry.Snapshot, table *router.Table) *websocket.Bridge {
	return websocket.New(websocket.Params{
		Params: transcoder.Params{
			Snapshot:    snap,
			Table:       table,
			Backends:    gen.backend,
			Transcoding: gen.cfg.Transcoding,
			Policies:    gen.policies(),
			Logger:      gen.g.logger.With("component", "transcoder.websocket"),
		},
		WebSocket: gen.cfg.WebSocket,
		Context:   gen.g.ws.context(),
	})
}

// serveWebSocket bridges a WebSocket upgrade to a gRPC method, refreshing
// descriptors once when the path names a method the snapshot lacks.
func (g *Gateway) serveWebSocket(w http.ResponseWriter, r *http.Request, st *state) {
	t, err := st.websocket.Match(r)
	if err != nil && transcoder.IsNotFound(err) && looksLikeMethodPath(r.URL.Path) {
		if _, found := st.gen.reg.RefreshMissing(r.Context(), r.URL.Path); found {
			st = g.refreshed(st)
			t, err = st.websocket.Match(r)
		}
	}
	if err != nil {
		st.rest.WriteError(w, r, err)
		return
	}
	if g.ws.enter() {
		defer g.ws.leave()
	}
	st.websocket.Serve(w, r, t)
}
