package connect

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Handler serves the Connect protocol (connectrpc.com/docs/protocol):
// unary POST with application/proto or application/json bodies, unary GET
// for side-effect-free methods, and the streaming protocol
// (application/connect+proto and +json) for server, client and bidi
// streams. Protobuf messages are forwarded to the backend as raw bytes;
// JSON is converted with the snapshot's descriptors.
//
// A Connect is built once per snapshot, is immutable, and is safe for
// concurrent use.
type Handler struct {
	rpc.Base
}

// New builds the Connect adapter of one snapshot. It uses
// p.Snapshot, p.Table (for route timeouts), p.Backends, p.Transcoding.JSON
// (discard_unknown) and p.Logger.
func New(p transcoder.Params) *Handler {
	return &Handler{Base: rpc.NewBase(p)}
}

// ServeHTTP serves one Connect call routed by its "/pkg.Service/Method"
// path. An unknown method answers 404 with code "unimplemented".
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "application/connect+") {
		h.serveStream(w, r)
		return
	}
	if v := r.Header.Get("Connect-Protocol-Version"); v != "" && v != "1" {
		h.writeError(w, r, call.Errorf(codes.InvalidArgument, "unsupported Connect-Protocol-Version %q: the gateway speaks version 1", v), 0)
		return
	}
	switch r.Method {
	case http.MethodPost:
		h.servePost(w, r)
	case http.MethodGet:
		h.serveGet(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		writeHTTPError(w, http.StatusMethodNotAllowed, "Connect unary calls are POST (or GET for side-effect-free methods), not "+r.Method)
	}
}

// unaryTarget resolves a unary method; unknown methods are a 404.
func (h *Handler) unaryTarget(w http.ResponseWriter, r *http.Request) (*rpc.Target, bool) {
	t, ce := h.Resolve(r.URL.Path)
	if ce != nil {
		status := 0
		if ce.Code == codes.Unimplemented {
			status = http.StatusNotFound
		}
		h.writeError(w, r, ce, status)
		return nil, false
	}
	if t.Method.IsStreamingClient() || t.Method.IsStreamingServer() {
		h.writeError(w, r, call.Errorf(codes.Unimplemented, "method %s streams: call it with the Connect streaming protocol (Content-Type application/connect+proto or application/connect+json)", t.Method.FullName()), http.StatusUnsupportedMediaType)
		return nil, false
	}
	ce = h.Admit(r, t, call.Connect)
	t.Adm.SetHeaders(w.Header(), false)
	if ce != nil {
		h.writeError(w, r, ce, 0)
		return nil, false
	}
	return t, true
}

// servePost serves a unary POST.
func (h *Handler) servePost(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	var codec string
	switch strings.ToLower(mt) {
	case "application/proto":
		codec = "proto"
	case "application/json":
		codec = "json"
	default:
		w.Header().Set("Accept-Post", "application/json, application/proto")
		writeHTTPError(w, http.StatusUnsupportedMediaType, "unsupported Content-Type "+strconv.Quote(ct)+": send application/proto or application/json")
		return
	}
	t, ok := h.unaryTarget(w, r)
	if !ok {
		return
	}
	defer t.Adm.Done()
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(t.Max)+1))
	if err != nil {
		h.writeError(w, r, call.FromError(rpc.ReadError(err, "request body")), 0)
		return
	}
	if len(body) > t.Max {
		h.writeError(w, r, call.Errorf(codes.ResourceExhausted, "request message is larger than the limit of %d bytes", t.Max), 0)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		if body, err = rpc.Decompress(enc, body, t.Max); err != nil {
			h.writeError(w, r, call.FromError(err), 0)
			return
		}
	}
	h.unary(w, r, t, codec, body)
}

// serveGet serves a unary GET: ?connect=v1&encoding=json|proto&message=...
// [&base64=1][&compression=gzip]. Only methods whose options say
// idempotency_level = NO_SIDE_EFFECTS may be called with GET; others answer
// 405 with Allow: POST.
func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request) {
	t, ok := h.unaryTarget(w, r)
	if !ok {
		return
	}
	defer t.Adm.Done()
	if opts, _ := t.Method.Options().(*descriptorpb.MethodOptions); opts.GetIdempotencyLevel() != descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
		w.Header().Set("Allow", http.MethodPost)
		h.writeError(w, r, call.Errorf(codes.Unimplemented, "method %s may have side effects, so it is not served over GET: call it with POST (GET needs option idempotency_level = NO_SIDE_EFFECTS)", t.Method.FullName()), http.StatusMethodNotAllowed)
		return
	}
	q, err := transcoder.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.writeError(w, r, call.FromError(err), 0)
		return
	}
	if v := q.Get("connect"); v != "" && v != "v1" {
		h.writeError(w, r, call.Errorf(codes.InvalidArgument, "unsupported connect=%s query parameter: the gateway speaks v1", v), 0)
		return
	}
	codec := q.Get("encoding")
	if codec != "json" && codec != "proto" {
		h.writeError(w, r, call.BadField("encoding", "query parameter encoding must be json or proto"), 0)
		return
	}
	body := []byte(q.Get("message"))
	if q.Get("base64") == "1" {
		if body, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(string(body), "=")); err != nil {
			h.writeError(w, r, call.BadField("message", "query parameter message is not URL-safe base64 (base64=1)"), 0)
			return
		}
	}
	if enc := q.Get("compression"); enc != "" && enc != "identity" {
		if body, err = rpc.Decompress(enc, body, t.Max); err != nil {
			h.writeError(w, r, call.FromError(err), 0)
			return
		}
	}
	h.unary(w, r, t, codec, body)
}

// unary calls a unary method with a request message in codec ("proto" or
// "json") and writes the response: header metadata as headers, trailer
// metadata as Trailer-<key> headers.
func (h *Handler) unary(w http.ResponseWriter, r *http.Request, t *rpc.Target, codec string, body []byte) {
	timeout, ce := connectTimeout(r)
	if ce != nil {
		h.writeError(w, r, ce, 0)
		return
	}
	md, ce := rpc.RequestMetadata(r)
	if ce != nil {
		h.writeError(w, r, ce, 0)
		return
	}
	req := body
	if codec == "json" {
		var err error
		if req, err = h.JSONToProto(t.Method.Input(), body); err != nil {
			h.writeError(w, r, call.FromError(err), 0)
			return
		}
	}
	ctx, cancel := t.CallContext(r, timeout, md)
	defer cancel()
	var resp []byte
	var hdr, trl metadata.MD
	err := t.Backend.Conn.Invoke(ctx, t.Path, &req, &resp, transcoder.RawCall, grpc.Header(&hdr), grpc.Trailer(&trl))
	transcoder.SetCacheHeaders(w.Header(), ctx)
	transcoder.SetResponseMetadata(w.Header(), "", hdr)
	transcoder.SetResponseMetadata(w.Header(), "Trailer-", trl)
	if err != nil {
		h.writeError(w, r, call.FromError(err), 0)
		return
	}
	ct := "application/proto"
	if codec == "json" {
		ct = "application/json"
		if resp, err = h.ProtoToJSON(t.Method.Output(), resp); err != nil {
			h.writeError(w, r, call.FromError(err), 0)
			return
		}
	}
	if len(resp) >= rpc.CompressMinBytes && rpc.AcceptsEncoding(r.Header.Values("Accept-Encoding"), "gzip") {
		resp = rpc.GzipBytes(resp)
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp)
}

// connectTimeout parses the Connect-Timeout-Ms header (0: none).
func connectTimeout(r *http.Request) (time.Duration, *call.Error) {
	v := r.Header.Get("Connect-Timeout-Ms")
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 || len(v) > 10 {
		return 0, call.BadField("Connect-Timeout-Ms", "invalid Connect-Timeout-Ms header "+strconv.Quote(v)+": want a positive integer of at most 10 digits (milliseconds)")
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// writeError writes a unary Connect error: the error JSON with the HTTP
// status of its code, or status when not 0. 5xx-class errors are logged
// with an error ID sent in the Rosetta-Error-Id header.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, ce *call.Error, status int) {
	if id := h.LogFailure(r, "connect", ce); id != "" {
		w.Header().Set(transcoder.ErrorIDHeader, id)
	}
	if status == 0 {
		status = HTTPStatus(ce.Code)
	}
	body, _ := json.Marshal(h.connectError(ce))
	hdr := w.Header()
	hdr.Del("Content-Encoding")
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeHTTPError answers a request the Connect protocol cannot take at
// all (wrong HTTP method or media type) with the bare HTTP status and a
// plain-text explanation: no Connect error JSON, so that Connect clients
// derive the code from the status (unknown for 405 and 415), as the
// protocol and its conformance suite expect.
func writeHTTPError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

var _ http.Handler = (*Handler)(nil)
