package transcoder

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// wantsInt64Numbers reports whether the client asked for 64-bit integers
// as JSON numbers with an Accept media-type parameter:
// "Accept: application/json; int64=number".
func wantsInt64Numbers(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && (mt == "application/json" || mt == "application/x-ndjson") && params["int64"] == "number" {
				return true
			}
		}
	}
	return false
}

// int64AsNumbers rewrites the proto3 JSON of a message of type md so that
// 64-bit integer fields (int64, uint64, sint64, fixed64, sfixed64 and
// their wrappers, also in maps, lists and Any) are JSON numbers instead of
// strings, for clients whose JSON parsers handle big numbers. Object keys
// come out sorted.
func int64AsNumbers(js []byte, md protoreflect.MessageDescriptor, res *typeResolver) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v = numbersInMessage(v, md, res)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

func numbersInMessage(v any, md protoreflect.MessageDescriptor, res *typeResolver) any {
	switch md.FullName() {
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return toNumber(v)
	case "google.protobuf.Any":
		obj, ok := v.(map[string]any)
		if !ok {
			return v
		}
		url, _ := obj["@type"].(string)
		mt, err := res.FindMessageByURL(url)
		if err != nil {
			return v
		}
		inner := mt.Descriptor()
		if _, wkt := obj["value"]; wkt && isWellKnownJSON(inner) {
			obj["value"] = numbersInMessage(obj["value"], inner, res)
			return obj
		}
		for k, fv := range obj {
			if k != "@type" {
				obj[k] = numbersInField(inner, k, fv, res)
			}
		}
		return obj
	}
	if isWellKnownJSON(md) {
		return v
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, fv := range obj {
		obj[k] = numbersInField(md, k, fv, res)
	}
	return obj
}

func numbersInField(md protoreflect.MessageDescriptor, key string, v any, res *typeResolver) any {
	fd := md.Fields().ByJSONName(key)
	if fd == nil {
		fd = md.Fields().ByName(protoreflect.Name(key))
	}
	if fd == nil {
		return v
	}
	switch {
	case fd.IsMap():
		if m, ok := v.(map[string]any); ok {
			for k, mv := range m {
				m[k] = numbersInValue(fd.MapValue(), mv, res)
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

func numbersInValue(fd protoreflect.FieldDescriptor, v any, res *typeResolver) any {
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
