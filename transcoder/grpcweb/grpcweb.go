package grpcweb

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// Handler serves gRPC-Web (binary application/grpc-web[+proto|+json] and
// base64 application/grpc-web-text[+proto|+json]) for every kind of
// method. Protobuf messages go to the backend as raw bytes, without
// decoding; JSON messages are converted with the snapshot's descriptors.
// Client and bidi streams are full duplex over HTTP/2 and HTTP/3 (and
// over HTTP/1.1 where the client allows); browsers' gRPC-Web libraries
// only send unary and server-streaming calls, but other clients
// (connect-go, for one) stream requests too.
//
// A GRPCWeb is built once per snapshot, is immutable, and is safe for
// concurrent use. It works the same over HTTP/1.1, HTTP/2 and HTTP/3.
type Handler struct {
	rpc.Base
}

// New builds the gRPC-Web adapter of one snapshot. It uses
// p.Snapshot, p.Table (for route timeouts), p.Backends and p.Logger.
func New(p transcoder.Params) *Handler {
	return &Handler{Base: rpc.NewBase(p)}
}

// ServeHTTP serves one gRPC-Web call routed by its "/pkg.Service/Method"
// path. Errors before the first response message are "trailers-only":
// HTTP 200 with grpc-status, grpc-message and grpc-status-details-bin as
// headers and an empty body (as connect-go and Envoy answer); later errors
// travel in the trailer frame.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := newWebWriter(w, r.Header.Get("Content-Type"))
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(out, r, call.Errorf(codes.Unimplemented, "gRPC-Web calls are POST requests, not %s", r.Method), nil)
		return
	}
	if out.codec != "proto" && out.codec != "json" {
		h.fail(out, r, call.Errorf(codes.Unimplemented, "unsupported gRPC-Web codec %q: send application/grpc-web+proto or application/grpc-web+json", out.codec), nil)
		return
	}
	t, ce := h.Resolve(r.URL.Path)
	if ce != nil {
		h.fail(out, r, ce, nil)
		return
	}
	ce = h.Admit(r, t, call.GRPCWeb)
	t.Adm.SetHeaders(w.Header(), false)
	defer t.Adm.Done()
	if ce != nil {
		h.fail(out, r, ce, nil)
		return
	}
	var timeout time.Duration
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		d, err := transcoder.ParseGRPCTimeout(v)
		if err != nil {
			h.fail(out, r, call.Errorf(codes.InvalidArgument, "invalid grpc-timeout header %q: %v", v, err), nil)
			return
		}
		timeout = d
	}
	md, ce := rpc.RequestMetadata(r)
	if ce != nil {
		h.fail(out, r, ce, nil)
		return
	}
	var body io.Reader = r.Body
	if out.text {
		body = rpc.NewBase64Reader(body)
	}
	in := &rpc.EnvelopeReader{R: body, Max: t.Max, Encoding: r.Header.Get("Grpc-Encoding"), What: "gRPC-Web frame"}
	if enc := in.Encoding; enc != "" && enc != "identity" && enc != "gzip" {
		w.Header().Set("Grpc-Accept-Encoding", "gzip")
		h.fail(out, r, call.Errorf(codes.Unimplemented, "unsupported grpc-encoding %q: send gzip or identity", enc), nil)
		return
	}
	clientStreams := t.Method.IsStreamingClient()
	var req []byte
	if !clientStreams {
		var err error
		req, err = h.ReadMessage(in, t, out.codec)
		if errors.Is(err, io.EOF) {
			err = call.Errorf(codes.Unimplemented, "the request has no message: method %s takes one length-prefixed message", t.Method.FullName())
		}
		if err == nil {
			err = rpc.CheckNoMore(in, string(t.Method.FullName()))
		}
		if err != nil {
			h.fail(out, r, call.FromError(err), nil)
			return
		}
	} else {
		// Let HTTP/1.1 read the request while writing the response, as
		// HTTP/2 always can.
		defer transcoder.EnableFullDuplex(out.rc, r)()
	}
	base, cancel := t.CallContext(r, timeout, md)
	defer cancel()
	if !clientStreams && !t.Method.IsStreamingServer() {
		h.serveUnary(base, out, r, t, req)
		return
	}
	ctx, abort := context.WithCancelCause(base)
	defer abort(nil)
	cs, err := t.Backend.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: clientStreams}, t.Path, transcoder.RawCall)
	if err != nil {
		h.fail(out, r, call.FromError(err), nil)
		return
	}
	if clientStreams {
		defer h.StartPump(r, in, cs, t, out.codec, abort).Wait()
	} else if err := cs.SendMsg(&req); err == nil {
		// An io.EOF from SendMsg means the backend already ended the
		// call; RecvMsg returns its status.
		_ = cs.CloseSend()
	}
	var msg []byte
	err = cs.RecvMsg(&msg)
	hdr, _ := cs.Header()
	if err != nil && !errors.Is(err, io.EOF) && len(hdr) == 0 {
		h.fail(out, r, h.CallError(ctx, err), cs.Trailer())
		return
	}
	out.start(hdr)
	for err == nil {
		if out.codec == "json" {
			js, cerr := h.ProtoToJSON(t.Method.Output(), msg)
			if cerr != nil {
				err = cerr
				break
			}
			msg = js
		}
		if werr := out.frame(0, msg); werr != nil {
			return // the client went away; cancel ends the backend call
		}
		msg = nil
		err = cs.RecvMsg(&msg)
	}
	if errors.Is(err, io.EOF) {
		out.finish(nil, cs.Trailer(), "")
		return
	}
	h.fail(out, r, h.CallError(ctx, err), cs.Trailer())
}

// serveUnary serves a unary call with one Invoke, as Connect and REST
// serve theirs: the upstream sends it again as its retry policy allows
// (an idempotent call whose target broke goes to another), and a response
// cache in front of the upstream (transcoder.Cacheable) may answer it,
// with X-Cache and Age headers. Errors are trailers-only unless the
// backend sent header metadata first, as on the streaming path.
func (h *Handler) serveUnary(ctx context.Context, out *webWriter, r *http.Request, t *rpc.Target, req []byte) {
	var resp []byte
	var hdr, trl metadata.MD
	err := t.Backend.Conn.Invoke(ctx, t.Path, &req, &resp, transcoder.RawCall, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err == nil && out.codec == "json" {
		resp, err = h.ProtoToJSON(t.Method.Output(), resp)
	}
	if err != nil {
		if len(hdr) > 0 {
			transcoder.SetCacheHeaders(out.w.Header(), ctx)
			out.start(hdr)
		}
		h.fail(out, r, h.CallError(ctx, err), trl)
		return
	}
	transcoder.SetCacheHeaders(out.w.Header(), ctx)
	out.start(hdr)
	if err := out.frame(0, resp); err != nil {
		return // the client went away
	}
	out.finish(nil, trl, "")
}

// fail logs 5xx-class errors and writes ce as the call's final status.
func (h *Handler) fail(out *webWriter, r *http.Request, ce *call.Error, trl metadata.MD) {
	id := h.LogFailure(r, "grpc_web", ce)
	out.finish(ce, trl, id)
}

// webWriter writes a gRPC-Web response: headers, data frames, and the
// trailer frame, each base64-encoded on its own (padded) for the text
// variant.
type webWriter struct {
	w           http.ResponseWriter
	rc          *http.ResponseController
	text        bool
	codec       string
	contentType string
	started     bool
	buf         []byte
}

// newWebWriter parses the request's Content-Type: the response echoes its
// variant (binary or text, with or without +proto).
func newWebWriter(w http.ResponseWriter, ct string) *webWriter {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = "application/grpc-web"
	}
	mt = strings.ToLower(mt)
	ww := &webWriter{w: w, rc: http.NewResponseController(w), contentType: mt, codec: "proto"}
	base, codec, _ := strings.Cut(mt, "+")
	ww.text = base == "application/grpc-web-text"
	if codec != "" {
		ww.codec = codec
	}
	if base != "application/grpc-web" && base != "application/grpc-web-text" {
		ww.contentType = "application/grpc-web+proto"
	}
	return ww
}

// start writes the response headers: the Content-Type and the backend's
// header metadata.
func (ww *webWriter) start(hdr metadata.MD) {
	h := ww.w.Header()
	h.Set("Content-Type", ww.contentType)
	h.Del("Content-Length")
	transcoder.SetResponseMetadata(h, "", hdr)
	ww.w.WriteHeader(http.StatusOK)
	ww.started = true
}

// frame writes one frame and flushes it.
func (ww *webWriter) frame(flags byte, payload []byte) error {
	ww.buf = rpc.AppendEnvelope(ww.buf[:0], flags, payload)
	data := ww.buf
	if ww.text {
		data = base64.StdEncoding.AppendEncode(nil, ww.buf)
	}
	if _, err := ww.w.Write(data); err != nil {
		return err
	}
	return ww.rc.Flush()
}

// finish ends the response with the call's status (ce nil: OK) and trailer
// metadata: as headers of an empty response when nothing was written yet
// (trailers-only), otherwise as the trailer frame.
func (ww *webWriter) finish(ce *call.Error, trl metadata.MD, errID string) {
	pairs := statusTrailers(ce, trl, errID)
	if !ww.started {
		h := ww.w.Header()
		h.Set("Content-Type", ww.contentType)
		h.Del("Content-Length")
		for _, kv := range pairs {
			h.Add(kv[0], kv[1])
		}
		if errID != "" {
			h.Set(transcoder.ErrorIDHeader, errID)
		}
		status := http.StatusOK
		if h.Get("Allow") != "" {
			status = http.StatusMethodNotAllowed
		}
		ww.w.WriteHeader(status)
		ww.started = true
		return
	}
	var block strings.Builder
	for _, kv := range pairs {
		block.WriteString(kv[0])
		block.WriteString(": ")
		block.WriteString(kv[1])
		block.WriteString("\r\n")
	}
	_ = ww.frame(rpc.FlagTrailer, []byte(block.String()))
}

// statusTrailers lists the trailers of a gRPC response, lowercase and in a
// stable order: grpc-status, grpc-message (percent-encoded),
// grpc-status-details-bin (a base64 google.rpc.Status), the error ID, then
// the backend's trailer metadata (-bin values base64).
func statusTrailers(ce *call.Error, trl metadata.MD, errID string) [][2]string {
	if ce == nil {
		ce = &call.Error{Code: codes.OK}
	}
	out := transcoder.GRPCStatusFields(ce)
	if errID != "" {
		out = append(out, [2]string{strings.ToLower(transcoder.ErrorIDHeader), errID})
	}
	keys := make([]string, 0, len(trl))
	for k := range trl {
		if k == "content-type" || strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":") || !transcoder.ValidMetadataKey(k) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range trl[k] {
			if strings.HasSuffix(k, "-bin") {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

var _ http.Handler = (*Handler)(nil)
