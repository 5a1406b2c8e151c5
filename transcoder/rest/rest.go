package rest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Handler serves REST/JSON requests by google.api.http rules. A Handler is built
// once per snapshot (all per-route work is precomputed then) and is
// immutable and safe for concurrent use.
type Handler struct {
	table    *router.Table
	backends func(string) (transcoder.Backend, bool)
	plans    map[*router.Route]*binding.Plan
	resolver *transcoder.TypeResolver
	logger   *slog.Logger
	strict   bool
	forward  transcoder.HeaderAllowList
	policies transcoder.Policies
	// bindings compiles the plans of the snapshot's routes.
	bindings *binding.Builder
}

// New builds the REST adapter of one snapshot.
func New(p transcoder.Params) *Handler {
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		table:    p.Table,
		backends: p.Backends,
		plans:    make(map[*router.Route]*binding.Plan),
		resolver: transcoder.NewTypeResolver(p.Snapshot),
		logger:   logger,
		strict:   p.Transcoding.StrictQuery,
		policies: p.Policies,
		forward:  transcoder.NewHeaderAllowList(p.Transcoding.ForwardHeaders),
	}
	h.bindings = binding.NewBuilder(h.resolver)
	for _, rt := range p.Table.Routes() {
		h.plans[rt] = h.bindings.Plan(rt, p.Transcoding.JSON)
	}
	return h
}

// Match resolves a request to a route. It returns a 404 or a 405 (with the
// allowed methods) as an error when nothing matches.
func (h *Handler) Match(r *http.Request) (router.Match, error) {
	m, allow, ok := h.table.Match(r.Method, r.URL.EscapedPath())
	if ok {
		return m, nil
	}
	if len(allow) > 0 {
		return m, &transcoder.HTTPError{
			Err:    call.Errorf(codes.Unimplemented, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")),
			Status: http.StatusMethodNotAllowed,
			Allow:  allow,
		}
	}
	return m, &transcoder.HTTPError{Err: call.Errorf(codes.NotFound, "no route matches %s %s", r.Method, r.URL.Path), Status: http.StatusNotFound}
}

// ServeHTTP matches the request and serves it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, err := h.Match(r)
	if err != nil {
		h.WriteError(w, r, err)
		return
	}
	h.Serve(w, r, m)
}

// WriteError writes err the way the REST adapter writes every error: a
// google.rpc.Status JSON body with the mapped HTTP status.
func (h *Handler) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	h.writeError(w, r, err)
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	transcoder.WriteJSONError(w, r, err, h.resolver, h.logger)
}

// Serve serves a request already matched to a route.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, m router.Match) {
	p := h.plans[m.Route]
	if p == nil {
		h.writeError(w, r, call.Errorf(codes.Internal, "route %s %s has no plan", m.Route.HTTPMethod, m.Route.Pattern))
		return
	}
	md := m.Route.Method
	// The policy seam: the call is described and the chain decides
	// before the body is read or the upstream is asked.
	protocol := call.REST
	if md.IsStreamingServer() && framingFor(r, p) == framingSSE {
		protocol = call.SSE
	}
	adm, cerr := transcoder.Admit(r.Context(), h.policies, protocol, md, m.Route.Upstream, r, "")
	adm.SetHeaders(w.Header(), true)
	defer adm.Done()
	if cerr != nil {
		h.writeError(w, r, cerr)
		return
	}
	adm.StripCredentialQuery(r)
	be, ok := h.backends(m.Route.Upstream)
	if !ok {
		h.writeError(w, r, call.Errorf(codes.Unavailable, "upstream %q is not available", m.Route.Upstream))
		return
	}
	// A client stream's messages are read from the body as the call runs;
	// any other call's single request is built first.
	var req any
	var err error
	switch {
	case md.IsStreamingClient():
		err = checkJSONContentType(r.Header.Get("Content-Type"))
	case p.Fast != nil:
		req, err = h.decodeWireRequest(r, p, m.Values)
	default:
		req, err = h.decodeRequest(r, p, m.Values)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if req != nil && !md.IsStreamingServer() && h.serveCacheHit(w, r, p, be, adm, req) {
		return
	}
	ctx, cancel, err := h.callContext(r, p, be, adm)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer cancel()
	if md.IsStreamingClient() || md.IsStreamingServer() {
		h.stream(ctx, w, r, p, be, m.Values, req)
		return
	}
	h.unary(ctx, w, r, p, be, req)
}

// callContext derives the backend call's context: a Grpc-Timeout request
// header's deadline capped by the route's (or the upstream's) timeout, or
// that timeout alone, enforced but not announced (see transcoder.CallDeadline); and
// the outgoing metadata.
func (h *Handler) callContext(r *http.Request, p *binding.Plan, be transcoder.Backend, adm *transcoder.Admission) (context.Context, context.CancelFunc, error) {
	limit := p.Timeout
	if limit == 0 && !p.Route.Method.IsStreamingServer() {
		limit = be.Timeout
	}
	var client time.Duration
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		d, err := transcoder.ParseGRPCTimeout(v)
		if err != nil {
			return nil, nil, call.BadField("Grpc-Timeout", fmt.Sprintf("invalid Grpc-Timeout header %q: %v", v, err))
		}
		client = d
	}
	md := transcoder.OutgoingMetadata(r, h.forward)
	adm.Metadata(md)
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	ctx := transcoder.WithUpstreamInfo(metadata.NewOutgoingContext(r.Context(), md), r, p.Route.Method, p.Route.Config, adm, get)
	c, cancel := transcoder.CallDeadline(ctx, limit, client)
	return c, cancel, nil
}

// decodeRequest builds the request message from the body, the path
// variables and the query string, in that order (path values win over the
// body, as grpc-gateway does).
func (h *Handler) decodeRequest(r *http.Request, p *binding.Plan, values []string) (*dynamicpb.Message, error) {
	var body []byte
	if p.Route.Body != "" {
		var err error
		body, err = readBody(r, p.BodyRaw)
		if err != nil {
			return nil, err
		}
	}
	return binding.BuildRequest(h.request(r), p, values, body)
}

// decodeWireRequest is [Handler.decodeRequest] for routes on the fast path:
// it returns the request as wire bytes (a *[]byte, for the raw codec).
func (h *Handler) decodeWireRequest(r *http.Request, p *binding.Plan, values []string) (*[]byte, error) {
	var body []byte
	if p.Route.Body != "" {
		var err error
		if body, err = readBody(r, false); err != nil {
			return nil, err
		}
	}
	b, err := binding.BuildWire(h.request(r), p, values, body, nil)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// request returns what r contributes to its request message.
func (h *Handler) request(r *http.Request) binding.Request {
	return binding.Request{RawQuery: r.URL.RawQuery, ContentType: r.Header.Get("Content-Type"), Strict: h.strict}
}

// readBody reads the whole request body, checking its Content-Type unless
// the body is raw (google.api.HttpBody takes any type).
func readBody(r *http.Request, raw bool) ([]byte, error) {
	if !raw {
		if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
			return nil, err
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &transcoder.HTTPError{
				Err:    call.Errorf(codes.ResourceExhausted, "request body is larger than the limit of %d bytes", mbe.Limit),
				Status: http.StatusRequestEntityTooLarge,
			}
		}
		return nil, call.Errorf(codes.InvalidArgument, "read request body: %v", err).WithCause(err)
	}
	return body, nil
}

// checkJSONContentType accepts application/json, any application/*+json
// type, and a missing Content-Type.
func checkJSONContentType(ct string) error {
	if ct == "" || ct == "application/json" || strings.HasPrefix(ct, "application/json;") {
		return nil // the common cases, without parsing
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil
	}
	return &transcoder.HTTPError{
		Err:    call.Errorf(codes.InvalidArgument, "unsupported Content-Type %q: send application/json", ct),
		Status: http.StatusUnsupportedMediaType,
	}
}
