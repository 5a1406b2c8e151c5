package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// sseKeepAlive is how often an idle Server-Sent Events stream gets a
// comment line, so proxies do not close it.
const sseKeepAlive = 15 * time.Second

// stream calls a streaming method over REST. first is the request message
// of a server-streaming call; for client and bidi streaming it is nil and
// the request body is read as a sequence of JSON messages
// (newline-delimited or simply concatenated), each sent as it is decoded,
// full duplex where the protocol allows it.
//
// Responses of a server or bidi stream are framed by the Accept header
// (see [framingFor]); a client stream's single response is written like a
// unary one.
//
// On the fast path, first and the messages sent and received are wire
// bytes (*[]byte) and the call uses the raw codec.
func (h *Handler) stream(ctx context.Context, w http.ResponseWriter, r *http.Request, p *binding.Plan, be transcoder.Backend, values []string, first any) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	md := p.Route.Method
	desc := &grpc.StreamDesc{ServerStreams: md.IsStreamingServer(), ClientStreams: md.IsStreamingClient()}
	var opts []grpc.CallOption
	if p.Fast != nil {
		opts = append(opts, transcoder.RawCall)
	}
	cs, err := be.Conn.NewStream(ctx, desc, p.FullMethod, opts...)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var reqErr atomic.Pointer[error]
	var pumpDone chan struct{}
	if first != nil {
		if err := cs.SendMsg(first); err == nil {
			_ = cs.CloseSend()
		}
	} else {
		// Reading the body after the response has started needs full
		// duplex on HTTP/1.1; HTTP/2 and HTTP/3 always allow it.
		defer transcoder.EnableFullDuplex(http.NewResponseController(w), r)()
		pumpDone = make(chan struct{})
		go func() {
			defer close(pumpDone)
			if err := h.pumpRequests(r, p, values, cs); err != nil {
				reqErr.Store(&err)
				cancel()
			}
		}()
		defer func() { cancel(); <-pumpDone }()
	}
	// failure prefers the request-side error (a bad message) over the
	// cancellation it caused on the backend call.
	failure := func(err error) error {
		if e := reqErr.Load(); e != nil {
			return *e
		}
		return err
	}

	msg := p.NewResponse()
	err = cs.RecvMsg(msg)
	if !md.IsStreamingServer() {
		// Client streaming: one response, written like a unary one.
		if err == nil {
			err = cs.RecvMsg(p.NewResponse())
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		hdr, _ := cs.Header()
		transcoder.SetResponseMetadata(w.Header(), metadataHeaderPrefix, hdr)
		transcoder.SetResponseMetadata(w.Header(), metadataTrailerPrefix, cs.Trailer())
		if err != nil {
			h.writeError(w, r, failure(err))
			return
		}
		h.writeMessage(w, r, p, msg)
		return
	}

	hdr, _ := cs.Header()
	transcoder.SetResponseMetadata(w.Header(), metadataHeaderPrefix, hdr)
	if err != nil && !errors.Is(err, io.EOF) {
		h.writeError(w, r, failure(err))
		transcoder.SetResponseMetadata(w.Header(), http.TrailerPrefix+metadataTrailerPrefix, cs.Trailer())
		return
	}
	fr := framingFor(r, p)
	if fr == framingRaw && err == nil {
		ct, _, _ := p.EncodeAny(nil, msg, false)
		w.Header().Set("Content-Type", ct)
	} else {
		w.Header().Set("Content-Type", fr.contentType())
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if fr == framingSSE {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.WriteHeader(http.StatusOK)
	out := &flushWriter{w: w, rc: http.NewResponseController(w)}
	if fr == framingSSE {
		stop := out.keepAlive(sseKeepAlive)
		defer stop()
	}
	int64Numbers := p.Int64Numbers || binding.WantsInt64Numbers(r)
	var buf bytes.Buffer
	var jsonBuf []byte
	fr.begin(&buf)
	for seq := 1; err == nil; seq++ {
		_, b, encErr := p.EncodeAny(jsonBuf[:0], msg, int64Numbers)
		if encErr != nil {
			err = encErr
			break
		}
		fr.message(&buf, b, seq)
		jsonBuf = b
		if werr := out.write(buf.Bytes()); werr != nil {
			return // the client went away; ctx cancels the backend call
		}
		buf.Reset()
		msg = p.NewResponse()
		err = cs.RecvMsg(msg)
	}
	if !errors.Is(err, io.EOF) {
		ce := call.FromError(failure(err))
		call.ReportFrom(r.Context()).SetCode(ce.Code)
		fr.fail(&buf, transcoder.StatusJSON(ce, h.resolver))
	}
	fr.end(&buf)
	_ = out.write(buf.Bytes())
	transcoder.SetResponseMetadata(w.Header(), http.TrailerPrefix+metadataTrailerPrefix, cs.Trailer())
}

// pumpRequests reads JSON request messages from the body and sends each
// to the backend, then half-closes. A message that does not decode ends
// the call with a 400-class error naming the field.
func (h *Handler) pumpRequests(r *http.Request, p *binding.Plan, values []string, cs grpc.ClientStream) error {
	dec := json.NewDecoder(r.Body)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return &transcoder.HTTPError{Err: call.Errorf(codes.ResourceExhausted, "request body is larger than the limit of %d bytes", mbe.Limit), Status: http.StatusRequestEntityTooLarge}
			}
			return call.BadField("body", "invalid JSON in request stream: "+err.Error())
		}
		var msg any
		if p.Fast != nil {
			b, err := binding.BuildWire(h.request(r), p, values, raw, nil)
			if err != nil {
				return err
			}
			msg = &b
		} else {
			m, err := binding.BuildRequest(h.request(r), p, values, raw)
			if err != nil {
				return err
			}
			msg = m
		}
		if err := cs.SendMsg(msg); err != nil {
			// The backend ended the call; RecvMsg reports why.
			return nil
		}
	}
}

// flushWriter writes and flushes, serialised so that SSE keep-alive
// comments never interleave with events.
type flushWriter struct {
	mu sync.Mutex
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) write(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(b) > 0 {
		if _, err := f.w.Write(b); err != nil {
			return err
		}
	}
	return f.rc.Flush()
}

// keepAlive writes an SSE comment every interval until stop is called.
func (f *flushWriter) keepAlive(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if f.write([]byte(": keep-alive\n\n")) != nil {
					return
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
