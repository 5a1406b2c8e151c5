package connect

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// serveStream serves the Connect streaming protocol. Once the method is
// known, the answer is HTTP 200 and every error travels in the
// end-of-stream message. Client and bidi streams are full duplex over
// HTTP/2 (and over HTTP/1.1 where net/http allows it); server streams read
// their one request message first.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	mt = strings.ToLower(mt)
	codec := strings.TrimPrefix(mt, "application/connect+")
	if codec != "proto" && codec != "json" {
		w.Header().Set("Accept-Post", "application/connect+proto, application/connect+json")
		writeHTTPError(w, http.StatusUnsupportedMediaType, "unsupported Content-Type "+strconv.Quote(ct)+": send application/connect+proto or application/connect+json")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeHTTPError(w, http.StatusMethodNotAllowed, "Connect streaming calls are POST requests, not "+r.Method)
		return
	}
	t, ce := h.Resolve(r.URL.Path)
	if ce != nil {
		status := 0
		if ce.Code == codes.Unimplemented {
			status = http.StatusNotFound
		}
		h.writeError(w, r, ce, status)
		return
	}
	out := &connectStreamWriter{
		w:           w,
		rc:          http.NewResponseController(w),
		contentType: mt,
		gzip:        rpc.AcceptsEncoding(r.Header.Values("Connect-Accept-Encoding"), "gzip"),
	}
	// A refusal ends the stream as any stream error does (HTTP 200 and
	// the error in the end-of-stream message), so clients read its code.
	ce = h.Admit(r, t, call.Connect)
	t.Adm.SetHeaders(w.Header(), false)
	defer t.Adm.Done()
	if ce != nil {
		h.end(out, r, ce, nil)
		return
	}
	timeout, ce := connectTimeout(r)
	if ce != nil {
		h.end(out, r, ce, nil)
		return
	}
	md, ce := rpc.RequestMetadata(r)
	if ce != nil {
		h.end(out, r, ce, nil)
		return
	}
	in := &rpc.EnvelopeReader{R: r.Body, Max: t.Max, Encoding: r.Header.Get("Connect-Content-Encoding"), What: "Connect envelope"}
	if enc := in.Encoding; enc != "" && enc != "identity" && enc != "gzip" {
		h.end(out, r, call.Errorf(codes.Unimplemented, "unsupported Connect-Content-Encoding %q: send gzip or identity", enc), nil)
		return
	}
	// Let HTTP/1.1 read the request while writing the response, as HTTP/2
	// always can; it fails harmlessly where it is not needed.
	defer transcoder.EnableFullDuplex(out.rc, r)()
	base, cancel := t.CallContext(r, timeout, md)
	defer cancel()
	ctx, abort := context.WithCancelCause(base)
	defer abort(nil)
	clientStreams := t.Method.IsStreamingClient()
	cs, err := t.Backend.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: clientStreams}, t.Path, transcoder.RawCall)
	if err != nil {
		h.end(out, r, call.FromError(err), nil)
		return
	}
	var pump *rpc.PumpDone
	if clientStreams {
		pump = h.StartPump(r, in, cs, t, codec, abort)
		defer pump.Wait()
	} else {
		req, err := h.ReadMessage(in, t, codec)
		if errors.Is(err, io.EOF) {
			err = call.Errorf(codes.Unimplemented, "the request has no message: method %s takes one", t.Method.FullName())
		}
		if err == nil {
			err = rpc.CheckNoMore(in, string(t.Method.FullName()))
		}
		if err != nil {
			h.end(out, r, call.FromError(err), nil)
			return
		}
		if err := cs.SendMsg(&req); err == nil {
			_ = cs.CloseSend()
		}
	}
	var msg []byte
	err = cs.RecvMsg(&msg)
	hdr, _ := cs.Header()
	out.start(hdr)
	for err == nil {
		if codec == "json" {
			js, cerr := h.ProtoToJSON(t.Method.Output(), msg)
			if cerr != nil {
				err = cerr
				break
			}
			msg = js
		}
		if werr := out.message(msg); werr != nil {
			return // the client went away; cancel ends the backend call
		}
		msg = nil
		err = cs.RecvMsg(&msg)
	}
	if errors.Is(err, io.EOF) {
		h.end(out, r, nil, cs.Trailer())
		return
	}
	// A request the gateway could not read aborted the call: report why.
	h.end(out, r, h.CallError(ctx, err), cs.Trailer())
}

// end logs 5xx-class errors and ends the stream with ce (nil: OK).
func (h *Handler) end(out *connectStreamWriter, r *http.Request, ce *call.Error, trl metadata.MD) {
	var id string
	if ce != nil {
		id = h.LogFailure(r, "connect", ce)
	}
	out.endWith(h.endMessage(ce, trl, id))
}

// endStream is the JSON of a Connect end-of-stream message.
type endStream struct {
	Error    *connectError       `json:"error,omitempty"`
	Metadata map[string][]string `json:"metadata,omitempty"`
}

func (h *Handler) endMessage(ce *call.Error, trl metadata.MD, errID string) []byte {
	es := endStream{Metadata: endStreamMetadata(trl, errID)}
	if ce != nil {
		es.Error = h.connectError(ce)
	}
	b, _ := json.Marshal(es)
	return b
}

// connectStreamWriter writes a Connect streaming response: headers, one
// envelope per message (gzip-compressed when the client accepts gzip and
// the message is large enough), and the end-of-stream message.
type connectStreamWriter struct {
	w           http.ResponseWriter
	rc          *http.ResponseController
	contentType string
	gzip        bool
	started     bool
	buf         []byte
}

// start writes the 200 response headers with the backend's header
// metadata.
func (o *connectStreamWriter) start(hdr metadata.MD) {
	h := o.w.Header()
	h.Set("Content-Type", o.contentType)
	h.Del("Content-Length")
	if o.gzip {
		h.Set("Connect-Content-Encoding", "gzip")
	}
	transcoder.SetResponseMetadata(h, "", hdr)
	o.w.WriteHeader(http.StatusOK)
	o.started = true
}

// message writes one message envelope and flushes it.
func (o *connectStreamWriter) message(payload []byte) error {
	var flags byte
	if o.gzip && len(payload) >= rpc.CompressMinBytes {
		payload = rpc.GzipBytes(payload)
		flags |= rpc.FlagCompressed
	}
	return o.write(flags, payload)
}

func (o *connectStreamWriter) write(flags byte, payload []byte) error {
	o.buf = rpc.AppendEnvelope(o.buf[:0], flags, payload)
	if _, err := o.w.Write(o.buf); err != nil {
		return err
	}
	return o.rc.Flush()
}

// endWith writes the end-of-stream message, starting the response first
// when nothing was written yet.
func (o *connectStreamWriter) endWith(msg []byte) {
	if !o.started {
		o.start(nil)
	}
	_ = o.write(rpc.FlagEndStream, msg)
}
