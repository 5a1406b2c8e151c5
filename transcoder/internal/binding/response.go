package binding

import (
	"bytes"
	"encoding/json"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rosetta-gateway/rosetta/call"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// NewResponse returns what a response message is received into: wire
// bytes (*[]byte) on the fast path, else a dynamicpb message.
func (p *Plan) NewResponse() any {
	if p.Fast != nil {
		return new([]byte)
	}
	return dynamicpb.NewMessage(p.Output)
}

// EncodeAny is [plan.encode] for a response from [plan.newResponse]; the
// fast path appends the JSON to dst.
func (p *Plan) EncodeAny(dst []byte, resp any, int64Numbers bool) (string, []byte, error) {
	if b, ok := resp.(*[]byte); ok {
		out, err := p.EncodeWire(dst, *b, int64Numbers)
		return "application/json", out, err
	}
	return p.Encode(resp.(protoreflect.Message), int64Numbers)
}

// Encode renders a response message (or its response_body field) as the
// HTTP body: JSON, or raw bytes for google.api.HttpBody.
func (p *Plan) Encode(resp protoreflect.Message, int64Numbers bool) (string, []byte, error) {
	fd := p.Route.ResponseBodyField
	if p.RespRaw {
		m := resp
		if fd != nil {
			m = resp.Get(fd).Message()
		}
		ct, data := HTTPBodyOf(m)
		if ct == "" {
			ct = "application/octet-stream"
		}
		return ct, data, nil
	}
	var b []byte
	var err error
	switch {
	case fd == nil:
		b, err = p.Marshal.Marshal(resp.Interface())
		if err == nil && int64Numbers {
			b, err = Int64AsNumbers(b, resp.Descriptor(), p.Resolver)
		}
	case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
		sub := resp.Get(fd).Message()
		b, err = p.Marshal.Marshal(sub.Interface())
		if err == nil && int64Numbers {
			b, err = Int64AsNumbers(b, sub.Descriptor(), p.Resolver)
		}
	default:
		b, err = marshalField(p.Marshal, resp, fd)
		if err == nil && int64Numbers {
			// Convert the field inside a one-key object, then unwrap it.
			wrapped := append(append([]byte(`{"`+string(fd.Name())+`":`), b...), '}')
			if b, err = Int64AsNumbers(wrapped, resp.Descriptor(), p.Resolver); err == nil {
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
func fillFieldMask(msg *dynamicpb.Message, p *Plan, body []byte) error {
	fd := p.MaskField
	if msg.Has(fd) {
		paths := msg.Get(fd).Message()
		if pf := paths.Descriptor().Fields().ByName("paths"); pf != nil && paths.Get(pf).List().Len() > 0 {
			return nil
		}
	}
	sub := msg.Get(p.Route.BodyField).Message().Interface()
	fm, err := runtime.FieldMaskFromRequestBody(bytes.NewReader(body), sub)
	if err != nil {
		return call.BadField(string(p.Route.BodyField.Name()), "derive update mask from body: "+err.Error())
	}
	mask := msg.Mutable(fd).Message()
	list := mask.Mutable(mask.Descriptor().Fields().ByName("paths")).List()
	for _, path := range fm.GetPaths() {
		list.Append(protoreflect.ValueOfString(path))
	}
	return nil
}
