package binding

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/rosetta-gateway/rosetta/transcoder"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// WantsInt64Numbers reports whether the client asked for 64-bit integers
// as JSON numbers with an Accept media-type parameter:
// "Accept: application/json; int64=number".
func WantsInt64Numbers(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if !strings.Contains(v, "int64") {
			continue // the common case, without parsing
		}
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && (mt == "application/json" || mt == "application/x-ndjson") && params["int64"] == "number" {
				return true
			}
		}
	}
	return false
}

// Int64AsNumbers rewrites the proto3 JSON of a message of type md so that
// 64-bit integer fields (int64, uint64, sint64, fixed64, sfixed64 and
// their wrappers, also in maps, lists and Any) are JSON numbers instead of
// strings, for clients whose JSON parsers handle big numbers. Key order is
// kept. It serves the dynamicpb path; the fast path writes numbers
// directly.
func Int64AsNumbers(js []byte, md protoreflect.MessageDescriptor, res *transcoder.TypeResolver) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	v, err := decodeOrdered(dec)
	if err != nil {
		return nil, err
	}
	v = numbersInMessage(v, md, res)
	var out bytes.Buffer
	if err := encodeOrdered(&out, v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// orderedObject is a JSON object that remembers its key order.
type orderedObject struct {
	keys []string
	vals map[string]any
}

func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := &orderedObject{vals: map[string]any{}}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			obj.keys = append(obj.keys, k)
			obj.vals[k] = v
		}
		_, err := dec.Token()
		return obj, err
	case json.Delim('['):
		var list []any
		for dec.More() {
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err := dec.Token()
		if list == nil {
			list = []any{}
		}
		return list, err
	}
	return tok, nil
}

func encodeOrdered(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case *orderedObject:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeScalar(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := encodeOrdered(b, x.vals[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeOrdered(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		return encodeScalar(b, x)
	}
	return nil
}

func encodeScalar(b *bytes.Buffer, v any) error {
	if n, ok := v.(json.Number); ok {
		b.WriteString(string(n))
		return nil
	}
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

func numbersInMessage(v any, md protoreflect.MessageDescriptor, res *transcoder.TypeResolver) any {
	switch md.FullName() {
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return toNumber(v)
	case "google.protobuf.Any":
		obj, ok := v.(*orderedObject)
		if !ok {
			return v
		}
		url, _ := obj.vals["@type"].(string)
		mt, err := res.FindMessageByURL(url)
		if err != nil {
			return v
		}
		inner := mt.Descriptor()
		if _, wkt := obj.vals["value"]; wkt && isWellKnownJSON(inner) {
			obj.vals["value"] = numbersInMessage(obj.vals["value"], inner, res)
			return obj
		}
		for k, fv := range obj.vals {
			if k != "@type" {
				obj.vals[k] = numbersInField(inner, k, fv, res)
			}
		}
		return obj
	}
	if isWellKnownJSON(md) {
		return v
	}
	obj, ok := v.(*orderedObject)
	if !ok {
		return v
	}
	for k, fv := range obj.vals {
		obj.vals[k] = numbersInField(md, k, fv, res)
	}
	return obj
}

func numbersInField(md protoreflect.MessageDescriptor, key string, v any, res *transcoder.TypeResolver) any {
	fd := md.Fields().ByJSONName(key)
	if fd == nil {
		fd = md.Fields().ByName(protoreflect.Name(key))
	}
	if fd == nil {
		return v
	}
	switch {
	case fd.IsMap():
		if m, ok := v.(*orderedObject); ok {
			for k, mv := range m.vals {
				m.vals[k] = numbersInValue(fd.MapValue(), mv, res)
			}
		}
		return v
	case fd.IsList():
		if l, ok := v.([]any); ok {
			for i, e := range l {
				l[i] = numbersInValue(fd, e, res)
			}
		}
		return v
	}
	return numbersInValue(fd, v, res)
}

func numbersInValue(fd protoreflect.FieldDescriptor, v any, res *transcoder.TypeResolver) any {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return toNumber(v)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return numbersInMessage(v, fd.Message(), res)
	}
	return v
}

func toNumber(v any) any {
	if s, ok := v.(string); ok {
		return json.Number(s)
	}
	return v
}

// isWellKnownJSON reports whether md has a special JSON form in which
// 64-bit integers do not appear as strings (other than the two wrappers
// handled separately).
func isWellKnownJSON(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile() != nil && strings.HasPrefix(string(md.FullName()), "google.protobuf.") &&
		md.FullName() != "google.protobuf.Any"
}
