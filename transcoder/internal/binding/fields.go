package binding

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/router"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// SetFieldPath sets the (possibly nested) field chain fields of msg to the
// text value, converting it as the proto3 JSON mapping does for scalars.
// name is the field path as the client wrote it, for error messages.
func SetFieldPath(msg protoreflect.Message, fields []protoreflect.FieldDescriptor, name string, values []string) *call.Error {
	for _, fd := range fields[:len(fields)-1] {
		msg = msg.Mutable(fd).Message()
	}
	return setField(msg, fields[len(fields)-1], name, values)
}

// setField sets one field of msg from text values: every value is appended
// to a repeated field; a singular field takes exactly one.
func setField(msg protoreflect.Message, fd protoreflect.FieldDescriptor, name string, values []string) *call.Error {
	if of := fd.ContainingOneof(); of != nil && !of.IsSynthetic() {
		if set := msg.WhichOneof(of); set != nil && set != fd {
			return call.BadField(name, fmt.Sprintf("field %q cannot be set: oneof %q already has %q set", name, of.Name(), set.Name()))
		}
	}
	if err := checkValueCount(fd, name, values); err != nil {
		return err
	}
	if fd.IsList() {
		list := msg.Mutable(fd).List()
		for _, s := range values {
			v, err := parseFieldValue(fd, name, s)
			if err != nil {
				return err
			}
			list.Append(v)
		}
		return nil
	}
	v, err := parseFieldValue(fd, name, values[0])
	if err != nil {
		return err
	}
	msg.Set(fd, v)
	return nil
}

// checkValueCount checks that fd may be set from len(values) text values.
func checkValueCount(fd protoreflect.FieldDescriptor, name string, values []string) *call.Error {
	switch {
	case fd.IsMap():
		return call.BadField(name, fmt.Sprintf("map field %q must be set as %s[key]=value", name, name))
	case fd.IsList():
		return nil
	case len(values) != 1:
		return call.BadField(name, fmt.Sprintf("field %q takes one value, got %d", name, len(values)))
	}
	return nil
}

// parseFieldValue is [parseValue] with the 400 a client gets for a bad
// value.
func parseFieldValue(fd protoreflect.FieldDescriptor, name, s string) (protoreflect.Value, *call.Error) {
	v, err := parseValue(fd, s)
	if err != nil {
		return v, call.BadField(name, fmt.Sprintf("invalid value %q for field %q: %v", s, name, err))
	}
	return v, nil
}

// parseValue converts text from a path or query parameter to a field value.
func parseValue(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return parseMessageValue(fd, s)
	}
	return parseScalar(fd, s)
}

func parseScalar(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(s) {
			return protoreflect.Value{}, fmt.Errorf("not valid UTF-8")
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		switch s {
		case "true", "True", "TRUE", "1":
			return protoreflect.ValueOfBool(true), nil
		case "false", "False", "FALSE", "0":
			return protoreflect.ValueOfBool(false), nil
		}
		return protoreflect.Value{}, fmt.Errorf("want true or false")
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ev := ed.Values().ByName(protoreflect.Name(s)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("not a value of enum %s", ed.FullName())
		}
		if ed.IsClosed() && ed.Values().ByNumber(protoreflect.EnumNumber(n)) == nil {
			return protoreflect.Value{}, fmt.Errorf("not a value of enum %s", ed.FullName())
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, numErr(err)
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return protoreflect.Value{}, numErr(err)
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, numErr(err)
		}
		return protoreflect.ValueOfUint32(uint32(n)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return protoreflect.Value{}, numErr(err)
		}
		return protoreflect.ValueOfUint64(n), nil
	case protoreflect.FloatKind:
		f, err := parseFloat(s, 32)
		if err != nil {
			return protoreflect.Value{}, err
		}
		return protoreflect.ValueOfFloat32(float32(f)), nil
	case protoreflect.DoubleKind:
		f, err := parseFloat(s, 64)
		if err != nil {
			return protoreflect.Value{}, err
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.BytesKind:
		b, err := transcoder.DecodeBase64(s)
		if err != nil {
			return protoreflect.Value{}, err
		}
		return protoreflect.ValueOfBytes(b), nil
	}
	return protoreflect.Value{}, fmt.Errorf("unsupported field kind %s", fd.Kind())
}

func numErr(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		if ne.Err == strconv.ErrRange {
			return fmt.Errorf("out of range")
		}
		return fmt.Errorf("not a number")
	}
	return err
}

// parseFloat accepts decimal numbers and the JSON mapping's "NaN",
// "Infinity" and "-Infinity".
func parseFloat(s string, bits int) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, numErr(err)
	}
	return f, nil
}

// parseMessageValue handles the message types that have a text form: the
// wrappers, Timestamp, Duration and FieldMask.
func parseMessageValue(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	md := fd.Message()
	m := newMessageFor(fd)
	switch md.FullName() {
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		vfd := md.Fields().ByNumber(1)
		v, err := parseScalar(vfd, s)
		if err != nil {
			return protoreflect.Value{}, err
		}
		m.Set(vfd, v)
	case "google.protobuf.Timestamp":
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("want an RFC 3339 timestamp such as 2024-01-02T15:04:05Z")
		}
		if t.Year() < 1 || t.Year() > 9999 {
			return protoreflect.Value{}, fmt.Errorf("timestamp out of range")
		}
		m.Set(md.Fields().ByNumber(1), protoreflect.ValueOfInt64(t.Unix()))
		m.Set(md.Fields().ByNumber(2), protoreflect.ValueOfInt32(int32(t.Nanosecond())))
	case "google.protobuf.Duration":
		d, err := parseDuration(s)
		if err != nil {
			return protoreflect.Value{}, err
		}
		m.Set(md.Fields().ByNumber(1), protoreflect.ValueOfInt64(int64(d/time.Second)))
		m.Set(md.Fields().ByNumber(2), protoreflect.ValueOfInt32(int32(d%time.Second)))
	case "google.protobuf.FieldMask":
		list := m.Mutable(md.Fields().ByNumber(1)).List()
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list.Append(protoreflect.ValueOfString(camelToSnakePath(p)))
			}
		}
	default:
		return protoreflect.Value{}, fmt.Errorf("message type %s cannot be set from text; set its fields with dotted names", md.FullName())
	}
	return protoreflect.ValueOfMessage(m), nil
}

// newMessageFor returns a new, empty message of fd's message type, of the
// same implementation as its parent (dynamic or generated).
func newMessageFor(fd protoreflect.FieldDescriptor) protoreflect.Message {
	return dynamicpb.NewMessage(fd.Message())
}

// parseDuration accepts the JSON mapping's form ("1.5s") and Go's
// ("1m30s").
func parseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "s") && !strings.ContainsAny(s[:len(s)-1], "hmsuµn") {
		f, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err == nil && math.Abs(f) <= 315576000000 {
			return time.Duration(f * float64(time.Second)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 1.5s")
	}
	return d, nil
}

// camelToSnakePath turns a FieldMask path in JSON form ("user.displayName")
// into proto form ("user.display_name"); proto-form paths are unchanged.
func camelToSnakePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			b.WriteRune(r + ('a' - 'A'))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// PopulateQuery sets msg's fields from the query string. Keys are field
// paths in proto or JSON names ("book.page_count", "book.pageCount"); map
// entries use "labels[key]=value"; a repeated field takes every value of its
// key. Keys naming fields bound by the path or the body are skipped (skip
// reports them). Unknown keys are ignored unless strict.
func PopulateQuery(msg protoreflect.Message, q url.Values, skip func([]protoreflect.FieldDescriptor) bool, strict bool) *call.Error {
	return walkQuery(msg.Descriptor(), q, skip, strict, messageSink{msg})
}

// querySink receives the fields a query string sets, resolved and
// checked by [walkQuery].
type querySink interface {
	// setField sets the field at the end of fields (a resolved path).
	setField(fields []protoreflect.FieldDescriptor, key string, values []string) *call.Error
	// setMapEntry sets one entry of the map field at the end of fields.
	setMapEntry(fields []protoreflect.FieldDescriptor, key, mapKey string, values []string) *call.Error
}

// messageSink sets query fields in a message.
type messageSink struct{ msg protoreflect.Message }

func (s messageSink) setField(fields []protoreflect.FieldDescriptor, key string, values []string) *call.Error {
	return SetFieldPath(s.msg, fields, key, values)
}

func (s messageSink) setMapEntry(fields []protoreflect.FieldDescriptor, key, mapKey string, values []string) *call.Error {
	return setMapEntry(s.msg, fields, key, mapKey, values)
}

// walkQuery resolves the keys of a query string against md and hands each
// field to sink (see [populateQuery]).
func walkQuery(md protoreflect.MessageDescriptor, q url.Values, skip func([]protoreflect.FieldDescriptor) bool, strict bool, sink querySink) *call.Error {
	for key, values := range q {
		path, mapKey := key, ""
		if i := strings.IndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
			path, mapKey = key[:i], key[i+1:len(key)-1]
		}
		fields, ok := resolvePath(md, path)
		if !ok {
			if strict {
				return call.BadField(key, fmt.Sprintf("unknown query parameter %q", key))
			}
			continue
		}
		if skip != nil && skip(fields) {
			continue
		}
		leaf := fields[len(fields)-1]
		if mapKey != "" || leaf.IsMap() {
			if !leaf.IsMap() {
				return call.BadField(key, fmt.Sprintf("query parameter %q uses [key] but field %q is not a map", key, path))
			}
			if mapKey == "" {
				return call.BadField(key, fmt.Sprintf("map field %q must be set as %s[key]=value", path, path))
			}
			if err := sink.setMapEntry(fields, key, mapKey, values); err != nil {
				return err
			}
			continue
		}
		if leaf.Kind() == protoreflect.MessageKind && leaf.IsList() {
			return call.BadField(key, fmt.Sprintf("repeated message field %q cannot be set from the query string", path))
		}
		if err := sink.setField(fields, key, values); err != nil {
			return err
		}
	}
	return nil
}

func setMapEntry(msg protoreflect.Message, fields []protoreflect.FieldDescriptor, key, mapKey string, values []string) *call.Error {
	for _, fd := range fields[:len(fields)-1] {
		msg = msg.Mutable(fd).Message()
	}
	fd := fields[len(fields)-1]
	k, v, err := parseMapEntry(fd, key, mapKey, values)
	if err != nil {
		return err
	}
	msg.Mutable(fd).Map().Set(k.MapKey(), v)
	return nil
}

// parseMapEntry parses the key and value of a map entry set from the
// query string.
func parseMapEntry(fd protoreflect.FieldDescriptor, key, mapKey string, values []string) (protoreflect.Value, protoreflect.Value, *call.Error) {
	if len(values) != 1 {
		return protoreflect.Value{}, protoreflect.Value{}, call.BadField(key, fmt.Sprintf("map entry %q takes one value, got %d", key, len(values)))
	}
	k, err := parseScalar(fd.MapKey(), mapKey)
	if err != nil {
		return protoreflect.Value{}, protoreflect.Value{}, call.BadField(key, fmt.Sprintf("invalid map key %q for field %q: %v", mapKey, key, err))
	}
	v, err := parseValue(fd.MapValue(), values[0])
	if err != nil {
		return protoreflect.Value{}, protoreflect.Value{}, call.BadField(key, fmt.Sprintf("invalid value %q for field %q: %v", values[0], key, err))
	}
	return k, v, nil
}

// resolvePath resolves a dotted field path of proto or JSON names. Only
// the last element may be a non-message or repeated field.
func resolvePath(md protoreflect.MessageDescriptor, path string) ([]protoreflect.FieldDescriptor, bool) {
	var out []protoreflect.FieldDescriptor
	for {
		name, rest, more := strings.Cut(path, ".")
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return nil, false
		}
		out = append(out, fd)
		if !more {
			return out, true
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() || router.HasTextForm(fd.Message()) {
			return nil, false
		}
		md, path = fd.Message(), rest
	}
}
