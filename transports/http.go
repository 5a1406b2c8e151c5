package transports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

// Server is one HTTP listener serving HTTP/1.1 and h2c.
type Server struct {
	cfg    config.Listener
	srv    *http.Server
	ln     net.Listener
	logger *slog.Logger
	done   chan error
}

// NewServer prepares a server for one listener config. It does not listen
// yet; see [Server.Listen].
func NewServer(cfg config.Listener, h http.Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           limitBody(h, cfg.MaxBodyBytes),
		ReadHeaderTimeout: time.Duration(cfg.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(cfg.ReadTimeout),
		WriteTimeout:      time.Duration(cfg.WriteTimeout),
		IdleTimeout:       time.Duration(cfg.IdleTimeout),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		Protocols:         &protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      1000,
			MaxReceiveBufferPerStream: 1 << 20,
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return &Server{cfg: cfg, srv: srv, logger: logger, done: make(chan error, 1)}
}

// limitBody caps request bodies at max bytes (413 from the adapters when
// exceeded). gRPC requests are streams limited per message instead, so
// they are left alone.
func limitBody(h http.Handler, max int64) http.Handler {
	if max <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		h.ServeHTTP(w, r)
	})
}

// Listen binds the listener's address.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Address, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts connections until Shutdown. It returns at once; the serve
// loop runs in its own goroutine.
func (s *Server) Serve() {
	go func() {
		err := s.srv.Serve(s.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
}

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if s.ln != nil {
		if serr := <-s.done; serr != nil && err == nil {
			err = serr
		}
	}
	return err
}
