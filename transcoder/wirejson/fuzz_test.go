package wirejson

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

// proto2File is a proto2 schema for what proto3 lacks: closed enums,
// groups, explicit presence with defaults, strings without UTF-8 checks
// and required fields.
const proto2File = `
name: "wirejson_test.proto" package: "wirejson.test" syntax: "proto2"
enum_type { name: "E" value { name: "E_ZERO" number: 0 } value { name: "E_ONE" number: 1 } value { name: "E_NEG" number: -2 } }
message_type {
  name: "P2"
  field { name: "a" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 default_value: "7" }
  field { name: "e" number: 2 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".wirejson.test.E" }
  field { name: "es" number: 3 label: LABEL_REPEATED type: TYPE_ENUM type_name: ".wirejson.test.E" }
  field { name: "eps" number: 4 label: LABEL_REPEATED type: TYPE_ENUM type_name: ".wirejson.test.E" options { packed: true } }
  field { name: "g" number: 5 label: LABEL_OPTIONAL type: TYPE_GROUP type_name: ".wirejson.test.P2.G" }
  field { name: "me" number: 6 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".wirejson.test.P2.MeEntry" }
  field { name: "child" number: 7 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".wirejson.test.P2" }
  field { name: "s" number: 8 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "u64" number: 9 label: LABEL_REPEATED type: TYPE_UINT64 }
  field { name: "custom_json" number: 10 label: LABEL_OPTIONAL type: TYPE_SINT64 json_name: "cj\"x" }
  field { name: "req" number: 11 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".wirejson.test.R" }
  nested_type { name: "G" field { name: "x" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 } }
  nested_type { name: "MeEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_INT64 }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".wirejson.test.E" } }
}
message_type { name: "R" field { name: "must" number: 1 label: LABEL_REQUIRED type: TYPE_STRING } }
`

var p2Desc = func() protoreflect.MessageDescriptor {
	var fdp descriptorpb.FileDescriptorProto
	if err := prototext.Unmarshal([]byte(proto2File), &fdp); err != nil {
		panic(err)
	}
	fd, err := protodesc.NewFile(&fdp, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	return fd.Messages().ByName("P2")
}()

// testTypes are the message types the differential tests draw from.
var testTypes = []protoreflect.MessageDescriptor{
	(&testingv1.Everything{}).ProtoReflect().Descriptor(),
	(&testingv1.Nested{}).ProtoReflect().Descriptor(),
	(&testingv1.UpdateThingRequest{}).ProtoReflect().Descriptor(),
	(&testingv1.MetadataResponse{}).ProtoReflect().Descriptor(),
	p2Desc,
	(&structpb.Struct{}).ProtoReflect().Descriptor(),
	(&structpb.Value{}).ProtoReflect().Descriptor(),
	(&anypb.Any{}).ProtoReflect().Descriptor(),
	(&timestamppb.Timestamp{}).ProtoReflect().Descriptor(),
	(&durationpb.Duration{}).ProtoReflect().Descriptor(),
	(&fieldmaskpb.FieldMask{}).ProtoReflect().Descriptor(),
	(&wrapperspb.Int64Value{}).ProtoReflect().Descriptor(),
	(&emptypb.Empty{}).ProtoReflect().Descriptor(),
	(&structpb.ListValue{}).ProtoReflect().Descriptor(),
}

func optionsOf(bits uint8) Options {
	return Options{
		UseProtoNames:   bits&1 != 0,
		EmitUnpopulated: bits&2 != 0,
		UseEnumNumbers:  bits&4 != 0,
		DiscardUnknown:  bits&8 != 0,
	}
}

// newMessage returns an empty message of md, generated when it is linked
// in (so that protojson resolves Any payloads the same way), else dynamic.
func newMessage(md protoreflect.MessageDescriptor) proto.Message {
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
		return mt.New().Interface()
	}
	return dynamicpb.NewMessage(md)
}

// checkAppendJSON compares AppendJSON with proto.Unmarshal + protojson.
func checkAppendJSON(t *testing.T, md protoreflect.MessageDescriptor, opts Options, wire []byte) {
	t.Helper()
	got, err := Compile(md, opts).AppendJSON(nil, wire)
	m := newMessage(md)
	panicked, refErr := unmarshalNoPanic(wire, m)
	if panicked {
		// proto.Unmarshal panics on some invalid map entries of dynamicpb
		// messages (protobuf-go v1.36.12); AppendJSON must just not panic.
		return
	}
	var want []byte
	if refErr == nil {
		want, refErr = protojson.MarshalOptions{UseProtoNames: opts.UseProtoNames, EmitUnpopulated: opts.EmitUnpopulated, UseEnumNumbers: opts.UseEnumNumbers}.Marshal(m)
	}
	if refErr != nil {
		if err == nil {
			t.Fatalf("%s %x: AppendJSON accepted %s; reference error: %v", md.FullName(), wire, got, refErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s %x: AppendJSON error %v; want %s", md.FullName(), wire, err, want)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, compact.Bytes()) {
		t.Fatalf("%s %x (%+v):\ngot  %s\nwant %s", md.FullName(), wire, opts, got, compact.Bytes())
	}
}

func unmarshalNoPanic(b []byte, m proto.Message) (panicked bool, err error) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	return false, proto.Unmarshal(b, m)
}

// checkAppendProto compares AppendProto with protojson.Unmarshal.
func checkAppendProto(t *testing.T, md protoreflect.MessageDescriptor, opts Options, js []byte) {
	t.Helper()
	wire, err := Compile(md, opts).AppendProto(nil, js)
	want := newMessage(md)
	refErr := protojson.UnmarshalOptions{DiscardUnknown: opts.DiscardUnknown}.Unmarshal(js, want)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("%s %q: AppendProto error %v; protojson error %v", md.FullName(), js, err, refErr)
	}
	if err != nil {
		if g, w := err.Error(), normalizeError(refErr); g != w {
			t.Fatalf("%s %q: error\ngot  %s\nwant %s", md.FullName(), js, g, w)
		}
		return
	}
	got := newMessage(md)
	if err := proto.Unmarshal(wire, got); err != nil {
		t.Fatalf("%s %q: AppendProto wrote %x that does not unmarshal: %v", md.FullName(), js, wire, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s %q:\ngot  %v\nwant %v", md.FullName(), js, got, want)
	}
}

// normalizeError drops protojson's "proto: " prefix (with its random
// non-breaking space).
func normalizeError(err error) string {
	s := strings.TrimPrefix(err.Error(), "proto:")
	if r, n := utf8.DecodeRuneInString(s); r == ' ' || r == '\u00a0' {
		s = s[n:]
	}
	return s
}

// FuzzAppendJSON feeds wire bytes (random messages as seeds, then random
// bytes) to AppendJSON and compares with protojson.
func FuzzAppendJSON(f *testing.F) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		which := i % len(testTypes)
		m := dynamicpb.NewMessage(testTypes[which])
		fill(r, m, 0)
		b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(which), uint8(i))
	}
	for _, s := range []string{"\x08\x01\x08\x00", "\x8a\x01\x02\x10\x05\x8a\x01\x02\x10\x06", "\xd0\x01\x05\xda\x01\x00", "\xa8\x01\x01\xa8\x01\x02\xaa\x01\x02\x03\x04"} {
		f.Add([]byte(s), uint8(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, wire []byte, which, opts uint8) {
		checkAppendJSON(t, testTypes[int(which)%len(testTypes)], optionsOf(opts&7), wire)
	})
}

// FuzzAppendProto feeds JSON (protojson's output of random messages and
// hand-written edge cases as seeds) to AppendProto and compares with
// protojson.Unmarshal.
func FuzzAppendProto(f *testing.F) {
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 200; i++ {
		which := i % len(testTypes)
		m := dynamicpb.NewMessage(testTypes[which])
		fill(r, m, 0)
		b, err := protojson.MarshalOptions{UseProtoNames: i%3 == 0, AllowPartial: true}.Marshal(m)
		if err != nil {
			continue
		}
		f.Add(string(b), uint8(which), uint8(i))
	}
	for _, s := range protoSeeds {
		f.Add(s, uint8(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, js string, which, opts uint8) {
		checkAppendProto(t, testTypes[int(which)%len(testTypes)], optionsOf(opts&9), []byte(js))
	})
}

// protoSeeds are JSON edge cases for Everything.
var protoSeeds = []string{
	`{"int32Value": 1e3, "uint32Value": "12", "int64Value": 1.0e1, "sint32Value": -0}`,
	`{"int32Value": 1.5}`, `{"int32Value": "1 "}`, `{"int32Value": 2147483648}`, `{"int64Value": "1e2"}`,
	`{"floatValue": "NaN", "doubleValue": "-Infinity"}`, `{"floatValue": 1e39}`, `{"doubleValue": "1.5"}`,
	`{"bytesValue": "AQID"}`, `{"bytesValue": "AQI"}`, `{"bytesValue": "-_8"}`, `{"bytesValue": "!"}`,
	`{"color": 7}`, `{"color": "NOPE"}`, `{"colors": ["COLOR_RED", 2, "X"]}`, `{"color": null}`,
	`{"text": "a", "number": 1}`, `{"text": null, "number": "1"}`, `{"item": {}}`,
	`{"a": 1}`, `{"int32Value": 1, "int32_value": 2}`, `{"nested": null, "nested": {}}`,
	`{"labels": {"a": "b", "a": "c"}}`, `{"byId": {"01": {}, "1": {}}}`, `{"byId": {"x": {}}}`, `{"labels": {"k": null}}`,
	`{"st": {"a": [1, "x", null, true, {"b": {}}]}, "val": null, "list": [null]}`, `{"val": 1e400}`,
	`{"ts": "2024-01-01T00:00:00.123456789Z", "dur": "-1.5s", "mask": "a.bC,d"}`, `{"mask": "a_b"}`,
	`{"ts": "2024-01-01T00:00:00+01:00"}`, `{"ts": "0000-01-01T00:00:00Z"}`, `{"dur": "315576000001s"}`, `{"dur": "1.0000000001s"}`,
	`{"any": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"}}`,
	`{"any": {"value": "1s", "@type": "type.googleapis.com/google.protobuf.Duration"}}`,
	`{"any": {"@type": "type.googleapis.com/rosetta.testing.v1.Nested", "name": "x", "child": {"n": 1}}}`,
	`{"any": {"@type": "type.googleapis.com/google.protobuf.Empty"}}`, `{"any": {"@type": "type.googleapis.com/x.Y"}}`,
	`{"any": {"a": 1}}`, `{"any": {}}`, `{"any": {"@type": 1}}`,
	`{"stringWrapper": "s", "int64Wrapper": "5", "boolWrapper": false, "bytesWrapper": ""}`, `{"uint32Wrapper": -1}`,
	`{"strings": "x"}`, `{"ints": [1, null]}`, `{"nesteds": [{}, null]}`, `{"maybe": 0}`, `{"empty": {}}`, `{"empty": {"a": 1}}`,
	`{"stringValue": "\u00e9\ud83d\ude00\n\"\\/"}`, `{"stringValue": "\ud800"}`, `{"stringValue": "a` + "\x01" + `"}`,
	`{"nested": {"child": {"child": {"n": "x"}}}}`, `{} x`, `{`, `{"a"`, `{"int32Value" 1}`, `{,}`, `[]`, ``, ` {} `,
	`{"int32Value": 1e}`, `{"int32Value": -}`, `{"int32Value": 01}`, `{"int32Value": tru}`, `{"boolValue": true}`,
}

// fill sets random fields of m.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	md := m.Descriptor()
	switch md.FullName() {
	case "google.protobuf.Any":
		if r.Intn(2) == 0 {
			n := &testingv1.Nested{Name: "n", N: r.Int31(), Child: &testingv1.Nested{N: 1}}
			a, _ := anypb.New(n)
			proto.Merge(m.Interface(), a)
		} else {
			a, _ := anypb.New(durationpb.New(1500000000))
			proto.Merge(m.Interface(), a)
		}
		return
	case "google.protobuf.Value":
		v := randValue(r, depth)
		proto.Merge(m.Interface(), v)
		return
	case "google.protobuf.FieldMask":
		paths := []string{"a", "foo_bar", "x.y_z", "b2"}
		for i := r.Intn(3); i > 0; i-- {
			m.Mutable(md.Fields().ByNumber(1)).List().Append(protoreflect.ValueOfString(paths[r.Intn(len(paths))]))
		}
		return
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		secs := r.Int63n(2e10) - 1e10
		nanos := int32(r.Intn(1e9))
		if r.Intn(2) == 0 {
			nanos = nanos / 1000000 * 1000000
		}
		if secs < 0 && md.Name() == "Duration" {
			nanos = -nanos
		}
		m.Set(md.Fields().ByNumber(1), protoreflect.ValueOfInt64(secs))
		m.Set(md.Fields().ByNumber(2), protoreflect.ValueOfInt32(nanos))
		return
	}
	fds := md.Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if r.Intn(3) != 0 || (fd.Message() != nil && depth > 3) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := r.Intn(4); j > 0; j-- {
				l.Append(scalarOrMessage(r, fd, l.NewElement, depth))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j := r.Intn(4); j > 0; j-- {
				k := scalarOrMessage(r, fd.MapKey(), nil, depth).MapKey()
				mp.Set(k, scalarOrMessage(r, fd.MapValue(), mp.NewValue, depth))
			}
		default:
			m.Set(fd, scalarOrMessage(r, fd, func() protoreflect.Value { return m.NewField(fd) }, depth))
		}
	}
}

func scalarOrMessage(r *rand.Rand, fd protoreflect.FieldDescriptor, newMsg func() protoreflect.Value, depth int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		v := newMsg()
		fill(r, v.Message(), depth+1)
		return v
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.Intn(2) == 0)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber([]int32{0, 1, 2, -2, 7}[r.Intn(5)]))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32([]int32{0, 1, -1, math.MaxInt32, math.MinInt32, r.Int31()}[r.Intn(6)])
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64([]int64{0, 1, -1, math.MaxInt64, math.MinInt64, r.Int63()}[r.Intn(6)])
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32([]uint32{0, 1, math.MaxUint32, r.Uint32()}[r.Intn(4)])
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64([]uint64{0, 1, math.MaxUint64, r.Uint64()}[r.Intn(4)])
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32([]float32{0, float32(math.Copysign(0, -1)), 1.5, float32(math.NaN()), float32(math.Inf(1)), 1e-7, 3e21, r.Float32()}[r.Intn(8)])
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64([]float64{0, math.Copysign(0, -1), 0.1, math.NaN(), math.Inf(-1), 1e-7, 1e21, 123456789.125, r.NormFloat64() * 1e10}[r.Intn(9)])
	case protoreflect.StringKind:
		return protoreflect.ValueOfString([]string{"", "a", "héllo", "\x00\x1f\"\\\u2028<>&", "😀", "a_b.c"}[r.Intn(6)])
	case protoreflect.BytesKind:
		b := make([]byte, r.Intn(6))
		r.Read(b)
		return protoreflect.ValueOfBytes(b)
	}
	panic(fd.Kind())
}

func randValue(r *rand.Rand, depth int) *structpb.Value {
	switch n := r.Intn(6); {
	case n == 0 || depth > 3:
		return structpb.NewNullValue()
	case n == 1:
		return structpb.NewNumberValue([]float64{0, 1.5, -1e22, 1e-9}[r.Intn(4)])
	case n == 2:
		return structpb.NewStringValue("s")
	case n == 3:
		return structpb.NewBoolValue(true)
	case n == 4:
		s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for i := r.Intn(3); i > 0; i-- {
			s.Fields[string(rune('a'+r.Intn(3)))] = randValue(r, depth+1)
		}
		return structpb.NewStructValue(s)
	}
	l := &structpb.ListValue{}
	for i := r.Intn(3); i > 0; i-- {
		l.Values = append(l.Values, randValue(r, depth+1))
	}
	return structpb.NewListValue(l)
}
