package transcoder

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/rosetta-gateway/rosetta/call"
)

const (
	metadataHeaderPrefix  = "Grpc-Metadata-"
	metadataTrailerPrefix = "Grpc-Trailer-"
)

// unary calls a unary method and writes its response.
// req is a *dynamicpb.Message, or wire bytes (*[]byte) on the fast path.
func (h *REST) unary(ctx context.Context, w http.ResponseWriter, r *http.Request, p *plan, be Backend, req any) {
	resp := p.newResponse()
	var hdr, trl metadata.MD
	var err error
	if p.fast != nil {
		err = be.Conn.Invoke(ctx, p.fullMethod, req, resp, rawCall, grpc.Header(&hdr), grpc.Trailer(&trl))
	} else {
		err = be.Conn.Invoke(ctx, p.fullMethod, req, resp, grpc.Header(&hdr), grpc.Trailer(&trl))
	}
	setResponseMetadata(w.Header(), metadataHeaderPrefix, hdr)
	trailers := acceptsTrailers(r)
	if !trailers {
		// The response is complete before it is written, so trailers can
		// travel as headers for clients that do not accept trailers.
		setResponseMetadata(w.Header(), metadataTrailerPrefix, trl)
	}
	if trailers {
		// Declared trailers make net/http send the body chunked, so the
		// trailers can follow it.
		declareTrailers(w.Header(), trl)
		defer setResponseMetadata(w.Header(), metadataTrailerPrefix, trl)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeMessage(w, r, p, resp)
}

// writeMessage answers 200 with one whole response message (a unary
// call's, or a client stream's single answer) as the HTTP body.
func (h *REST) writeMessage(w http.ResponseWriter, r *http.Request, p *plan, resp any) {
	buf := jsonBuffers.Get().(*[]byte)
	defer jsonBuffers.Put(buf)
	ct, body, err := p.encodeAny((*buf)[:0], resp, p.int64Numbers || wantsInt64Numbers(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	if cap(body) <= maxPooledBuffer {
		*buf = body[:0]
	}
}

// maxPooledBuffer bounds the buffers kept for reuse.
const maxPooledBuffer = 64 << 10

// jsonBuffers holds response JSON buffers (*[]byte) for reuse.
var jsonBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// newResponse returns what a response message is received into: wire
// bytes (*[]byte) on the fast path, else a dynamicpb message.
func (p *plan) newResponse() any {
	if p.fast != nil {
		return new([]byte)
	}
	return dynamicpb.NewMessage(p.output)
}

// encodeAny is [plan.encode] for a response from [plan.newResponse]; the
// fast path appends the JSON to dst.
func (p *plan) encodeAny(dst []byte, resp any, int64Numbers bool) (string, []byte, error) {
	if b, ok := resp.(*[]byte); ok {
		out, err := p.encodeWire(dst, *b, int64Numbers)
		return "application/json", out, err
	}
	return p.encode(resp.(protoreflect.Message), int64Numbers)
}

// declareTrailers announces the Grpc-Trailer-* trailers of md in the
// Trailer header.
func declareTrailers(h http.Header, md metadata.MD) {
	tmp := http.Header{}
	setResponseMetadata(tmp, metadataTrailerPrefix, md)
	for k := range tmp {
		h.Add("Trailer", k)
	}
}

// encode renders a response message (or its response_body field) as the
// HTTP body: JSON, or raw bytes for google.api.HttpBody.
func (p *plan) encode(resp protoreflect.Message, int64Numbers bool) (string, []byte, error) {
	fd := p.route.ResponseBodyField
	if p.respRaw {
		m := resp
		if fd != nil {
			m = resp.Get(fd).Message()
		}
		ct, data := httpBodyOf(m)
		if ct == "" {
			ct = "application/octet-stream"
		}
		return ct, data, nil
	}
	var b []byte
	var err error
	switch {
	case fd == nil:
		b, err = p.marshal.Marshal(resp.Interface())
		if err == nil && int64Numbers {
			b, err = int64AsNumbers(b, resp.Descriptor(), p.resolver)
		}
	case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
		sub := resp.Get(fd).Message()
		b, err = p.marshal.Marshal(sub.Interface())
		if err == nil && int64Numbers {
			b, err = int64AsNumbers(b, sub.Descriptor(), p.resolver)
		}
	default:
		b, err = marshalField(p.marshal, resp, fd)
		if err == nil && int64Numbers {
			// Convert the field inside a one-key object, then unwrap it.
			wrapped := append(append([]byte(`{"`+string(fd.Name())+`":`), b...), '}')
			if b, err = int64AsNumbers(wrapped, resp.Descriptor(), p.resolver); err == nil {
				b = b[len(fd.Name())+4 : len(b)-1]
			}
		}
	}
	if err != nil {
		return "", nil, call.Errorf(codes.Internal, "encode response: %v", err).WithCause(err)
	}
	return "application/json", b, nil
}

// marshalField renders one non-message field (scalar, repeated or map) of
// m as JSON, with its default value when unset.
func marshalField(mo protojson.MarshalOptions, m protoreflect.Message, fd protoreflect.FieldDescriptor) ([]byte, error) {
	tmp := dynamicpb.NewMessage(m.Descriptor())
	if m.Has(fd) {
		tmp.Set(fd, m.Get(fd))
	}
	mo.EmitUnpopulated = true
	b, err := mo.Marshal(tmp)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	key := fd.JSONName()
	if mo.UseProtoNames {
		key = string(fd.Name())
	}
	return obj[key], nil
}

// fillFieldMask sets the request's update mask from the JSON keys of the
// body when the client sent none.
func fillFieldMask(msg *dynamicpb.Message, p *plan, body []byte) error {
	fd := p.maskField
	if msg.Has(fd) {
		paths := msg.Get(fd).Message()
		if pf := paths.Descriptor().Fields().ByName("paths"); pf != nil && paths.Get(pf).List().Len() > 0 {
			return nil
		}
	}
	sub := msg.Get(p.route.BodyField).Message().Interface()
	fm, err := runtime.FieldMaskFromRequestBody(bytes.NewReader(body), sub)
	if err != nil {
		return call.BadField(string(p.route.BodyField.Name()), "derive update mask from body: "+err.Error())
	}
	mask := msg.Mutable(fd).Message()
	list := mask.Mutable(mask.Descriptor().Fields().ByName("paths")).List()
	for _, path := range fm.GetPaths() {
		list.Append(protoreflect.ValueOfString(path))
	}
	return nil
}
