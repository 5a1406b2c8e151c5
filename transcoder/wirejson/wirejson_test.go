package wirejson

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

var everything = (&testingv1.Everything{}).ProtoReflect().Descriptor()

func wire(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendJSONWireSemantics(t *testing.T) {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	var b []byte
	// A singular scalar twice: the last wins.
	b = append(b, tag(3, protowire.VarintType)...)
	b = protowire.AppendVarint(b, 1)
	// A singular message twice: merged.
	b = append(b, tag(17, protowire.BytesType)...)
	b = protowire.AppendBytes(b, wire(t, &testingv1.Nested{Name: "a"}))
	b = append(b, tag(3, protowire.VarintType)...)
	b = protowire.AppendVarint(b, 2)
	b = append(b, tag(17, protowire.BytesType)...)
	b = protowire.AppendBytes(b, wire(t, &testingv1.Nested{N: 5}))
	// A repeated scalar packed, then unpacked.
	b = append(b, tag(21, protowire.BytesType)...)
	b = protowire.AppendBytes(b, protowire.AppendVarint(protowire.AppendVarint(nil, 1), 2))
	b = append(b, tag(21, protowire.VarintType)...)
	b = protowire.AppendVarint(b, 3)
	// A oneof member, then another: the last member wins.
	b = append(b, tag(26, protowire.BytesType)...)
	b = protowire.AppendString(b, "text")
	b = append(b, tag(27, protowire.VarintType)...)
	b = protowire.AppendVarint(b, 0)
	// A map key twice: the last entry wins; keys sorted.
	for _, kv := range [][2]string{{"b", "1"}, {"a", "2"}, {"b", "3"}} {
		e := protowire.AppendString(tag(1, protowire.BytesType), kv[0])
		e = protowire.AppendString(append(e, tag(2, protowire.BytesType)...), kv[1])
		b = append(b, tag(24, protowire.BytesType)...)
		b = protowire.AppendBytes(b, e)
	}
	// An unknown field and a field with the wrong wire type are ignored.
	b = append(b, tag(999, protowire.Fixed32Type)...)
	b = protowire.AppendFixed32(b, 7)
	b = append(b, tag(14, protowire.VarintType)...)
	b = protowire.AppendVarint(b, 7)
	got, err := Compile(everything, Options{}).AppendJSON(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"int32Value":2,"nested":{"name":"a","n":5},"ints":[1,2,3],"labels":{"a":"2","b":"3"},"number":"0"}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	checkAppendJSON(t, everything, Options{}, b)
}

func TestAppendJSONOptions(t *testing.T) {
	m := &testingv1.Everything{
		Int64Value: -5, Uint64Value: 1 << 63, Fixed64Value: 1, Color: 7, Colors: []testingv1.Color{1, 9},
		Int64Wrapper: nil, ById: map[int32]*testingv1.Nested{-1: {}}, StringValue: "<&>\u2028",
		Choice: &testingv1.Everything_Number{Number: 3},
	}
	b := wire(t, m)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Int64AsNumbers: true}, `{"int64Value":-5,"uint64Value":9223372036854775808,"fixed64Value":1,"stringValue":"<&>` + "\u2028" + `","color":7,"colors":["COLOR_RED",9],"byId":{"-1":{}},"number":3}`},
		{Options{UseEnumNumbers: true, UseProtoNames: true}, `{"int64_value":"-5","uint64_value":"9223372036854775808","fixed64_value":"1","string_value":"<&>` + "\u2028" + `","color":7,"colors":[1,9],"by_id":{"-1":{}},"number":"3"}`},
	} {
		got, err := Compile(everything, tc.opts).AppendJSON(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("%+v:\ngot  %s\nwant %s", tc.opts, got, tc.want)
		}
	}
	for _, opts := range []Options{{}, {EmitUnpopulated: true}, {UseProtoNames: true, UseEnumNumbers: true}} {
		checkAppendJSON(t, everything, opts, b)
		checkAppendJSON(t, everything, opts, nil)
		checkAppendJSON(t, p2Desc, opts, nil)
	}
}

func TestAppendJSONErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    proto.Message
	}{
		{"timestamp out of range", &testingv1.Everything{Ts: timestampOutOfRange}},
		{"NaN Value", &testingv1.Everything{Val: structNaN}},
		{"empty Value", &testingv1.Everything{List: listWithEmpty}},
		{"unresolvable Any", &testingv1.Everything{Any: anyUnknown}},
		{"bad field mask", &testingv1.Everything{Mask: maskBad}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(everything, Options{}).AppendJSON(nil, wire(t, tc.m)); err == nil {
				t.Errorf("no error")
			}
			if _, err := protojson.Marshal(tc.m); err == nil {
				t.Errorf("protojson: no error")
			}
		})
	}
	if _, err := Compile(everything, Options{}).AppendJSON(nil, []byte{0x0a, 0x05}); err == nil {
		t.Errorf("truncated wire: no error")
	}
	if _, err := Compile(everything, Options{}).AppendJSON(nil, append(protowire.AppendTag(nil, 14, protowire.BytesType), 1, 0xff)); err == nil {
		t.Errorf("invalid UTF-8: no error")
	}
}

func TestAppendProtoErrors(t *testing.T) {
	for _, tc := range []struct{ js, path, msg string }{
		{`{"nesteds": [{}, {"child": {"n": "x"}}]}`, "nesteds[1].child.n", `(line 1:34): invalid value for int32 field n: "x"`},
		{`{"int32Value": "abc"}`, "int32Value", `(line 1:16): invalid value for int32 field int32Value: "abc"`},
		{`{"nope": 1}`, "nope", `(line 1:2): unknown field "nope"`},
		{`{"color": "PURPLE"}`, "color", `(line 1:11): invalid value for enum field color: "PURPLE"`},
		{`{"labels": {"k": 1}}`, "labels.k", `(line 1:18): invalid value for string field value: 1`},
		{`{"ints": [1, "x"]}`, "ints[1]", `(line 1:14): invalid value for int32 field ints: "x"`},
		{`{"int32Value": 1, "int32_value": 2}`, "int32_value", `(line 1:19): duplicate field "int32_value"`},
		{`{"text": "a", "item": {}}`, "item", `(line 1:15): error parsing "item", oneof rosetta.testing.v1.Everything.choice is already set`},
		{`[1]`, "", `syntax error (line 1:1): unexpected token [`},
		{`{"stringValue": `, "stringValue", `unexpected EOF`},
	} {
		_, err := Compile(everything, Options{}).AppendProto(nil, []byte(tc.js))
		var e *Error
		if !errors.As(err, &e) || e.Path != tc.path || e.Msg != tc.msg {
			t.Errorf("%s: got %#v, want path %q msg %q", tc.js, err, tc.path, tc.msg)
		}
		checkAppendProto(t, everything, Options{}, []byte(tc.js))
	}
}

func TestAppendProtoAccepts(t *testing.T) {
	for _, js := range protoSeeds {
		for _, opts := range []Options{{}, {DiscardUnknown: true}} {
			checkAppendProto(t, everything, opts, []byte(js))
		}
	}
	// Large bodies need multi-byte lengths for nested messages.
	long := strings.Repeat("x", 300)
	checkAppendProto(t, everything, Options{}, []byte(fmt.Sprintf(`{"nested": {"name": %q, "child": {"name": %q}}, "labels": {%q: %q}}`, long, long, long, long)))
	checkAppendProto(t, p2Desc, Options{}, []byte(`{"req": {}}`))
	checkAppendProto(t, p2Desc, Options{}, []byte(`{"G": {"x": 1}, "cj\"x": "-3", "me": {"1": "E_NEG", "2": 5}, "eps": ["E_ONE", -2]}`))
}

func TestRecursiveAndShared(t *testing.T) {
	c := NewCompiler(Options{})
	p := c.Compile(everything)
	nested := c.Compile((&testingv1.Nested{}).ProtoReflect().Descriptor())
	if p.Field(everything.Fields().ByName("nested")) != nested {
		t.Errorf("nested plans are not shared")
	}
	if nested.Field(nested.Descriptor().Fields().ByName("child")) != nested {
		t.Errorf("recursive plan is not itself")
	}
}

// BenchmarkAppendJSON compares wire → JSON with proto.Unmarshal into a
// dynamicpb message + protojson.Marshal.
func BenchmarkAppendJSON(b *testing.B) {
	msg := dynamicpb.NewMessage(everything)
	if err := protojson.Unmarshal([]byte(benchJSON), msg); err != nil {
		b.Fatal(err)
	}
	w := wire(b, msg)
	b.Run("wirejson", func(b *testing.B) {
		p := Compile(everything, Options{})
		var buf []byte
		b.SetBytes(int64(len(w)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = p.AppendJSON(buf[:0], w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.SetBytes(int64(len(w)))
		b.ReportAllocs()
		for b.Loop() {
			m := dynamicpb.NewMessage(everything)
			if err := proto.Unmarshal(w, m); err != nil {
				b.Fatal(err)
			}
			if _, err := protojson.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendProto compares JSON → wire with protojson.Unmarshal into
// a dynamicpb message + proto.Marshal.
func BenchmarkAppendProto(b *testing.B) {
	js := []byte(benchJSON)
	b.Run("wirejson", func(b *testing.B) {
		p := Compile(everything, Options{})
		var buf []byte
		b.SetBytes(int64(len(js)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = p.AppendProto(buf[:0], js); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		b.ReportAllocs()
		for b.Loop() {
			m := dynamicpb.NewMessage(everything)
			if err := protojson.Unmarshal(js, m); err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchJSON is the ~1 KB request of the transcoder benchmarks.
var benchJSON = func() string {
	var b strings.Builder
	b.WriteString(`{"stringValue":"The quick brown fox jumps over the lazy dog","int64Value":"1234567890123","doubleValue":3.14159,`)
	b.WriteString(`"boolValue":true,"color":"COLOR_GREEN","ts":"2024-05-06T07:08:09.123Z","strings":["alpha","beta","gamma","delta"],`)
	b.WriteString(`"labels":{"team":"platform","env":"production","region":"eu-west-1"},"nesteds":[`)
	for i := 0; i < 8; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"nested item number %d with some text","n":%d,"child":{"name":"child %d","n":%d}}`, i, i*7, i, i)
	}
	b.WriteString(`]}`)
	return b.String()
}()

var (
	timestampOutOfRange = &timestamppb.Timestamp{Seconds: 1 << 40}
	structNaN           = &structpb.Value{Kind: &structpb.Value_NumberValue{NumberValue: math.NaN()}}
	listWithEmpty       = &structpb.ListValue{Values: []*structpb.Value{{}}}
	anyUnknown          = &anypb.Any{TypeUrl: "type.googleapis.com/x.Unknown"}
	maskBad             = &fieldmaskpb.FieldMask{Paths: []string{"a__b"}}
)
