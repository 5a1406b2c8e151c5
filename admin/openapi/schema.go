package openapi

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/config"
)

// style is the part of the JSON options that changes what a message
// looks like in JSON.
type style struct {
	protoNames      bool // field names as in the .proto, not lowerCamelCase
	enumNumbers     bool // enums as numbers, not names
	int64Numbers    bool // 64-bit integers as numbers, not strings
	emitUnpopulated bool // unset fields with presence written as null
}

func styleOf(o config.JSONOptions) style {
	return style{
		protoNames:      isSet(o.UseProtoNames),
		enumNumbers:     isSet(o.UseEnumNumbers),
		int64Numbers:    isSet(o.Int64AsNumbers),
		emitUnpopulated: isSet(o.EmitUnpopulated),
	}
}

func isSet(b *bool) bool { return b != nil && *b }

// suffix names how st differs from base, for component names: "" when
// they are equal, else "-" and the differing choices, e.g.
// "-proto_names-int64_numbers". enumOnly looks at the enum choice alone
// (enum schemas depend on nothing else).
func (st style) suffix(base style, enumOnly bool) string {
	var parts []string
	add := func(differs, on bool, yes, no string) {
		if !differs {
			return
		}
		if on {
			parts = append(parts, yes)
		} else {
			parts = append(parts, no)
		}
	}
	if !enumOnly {
		add(st.protoNames != base.protoNames, st.protoNames, "proto_names", "json_names")
	}
	add(st.enumNumbers != base.enumNumbers, st.enumNumbers, "enum_numbers", "enum_names")
	if !enumOnly {
		add(st.int64Numbers != base.int64Numbers, st.int64Numbers, "int64_numbers", "int64_strings")
		add(st.emitUnpopulated != base.emitUnpopulated, st.emitUnpopulated, "emit_unpopulated", "omit_unpopulated")
	}
	if len(parts) == 0 {
		return ""
	}
	return "-" + strings.Join(parts, "-")
}

// fieldName is fd's JSON key in style st.
func (st style) fieldName(fd protoreflect.FieldDescriptor) string {
	if st.protoNames {
		return string(fd.Name())
	}
	return fd.JSONName()
}

const refPrefix = "#/components/schemas/"

// schemas builds the component schemas of one document: one per message
// and enum reached, per JSON style.
type schemas struct {
	base  style
	comps map[string]*Schema
}

func newSchemas(base style) *schemas {
	return &schemas{base: base, comps: map[string]*Schema{}}
}

func ref(name string) *Schema { return &Schema{Ref: refPrefix + name} }

func float(f float64) *float64 { return &f }

// message returns the schema of a message-typed value: an inline schema
// for the well-known types with a JSON form of their own, else a $ref to
// the message's component, built on first use.
func (s *schemas) message(md protoreflect.MessageDescriptor, st style) *Schema {
	if wk := s.wellKnown(md, st); wk != nil {
		return wk
	}
	name := string(md.FullName()) + st.suffix(s.base, false)
	if _, ok := s.comps[name]; !ok {
		s.comps[name] = &Schema{} // placeholder: recursive messages refer to it
		s.comps[name] = s.messageSchema(md, st)
	}
	return ref(name)
}

// messageSchema is the component schema of a message: an object with one
// property per field.
func (s *schemas) messageSchema(md protoreflect.MessageDescriptor, st style) *Schema {
	out := &Schema{
		Type:        "object",
		Title:       string(md.Name()),
		Description: comments(md),
		Deprecated:  deprecated(md.Options()),
		Properties:  map[string]*Schema{},
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		p := s.field(fd, st)
		desc := comments(fd)
		if of := fd.ContainingOneof(); of != nil && !of.IsSynthetic() {
			note := fmt.Sprintf("Member of oneof %s: at most one of %s may be set.", of.Name(), s.oneofMembers(of, st, ", "))
			desc = joinText(desc, note)
		}
		p = describe(p, desc)
		if deprecated(fd.Options()) {
			p.Deprecated = true
		}
		if fd.Cardinality() == protoreflect.Required {
			out.Required = append(out.Required, st.fieldName(fd))
		}
		out.Properties[st.fieldName(fd)] = p
	}
	oneofs := md.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		of := oneofs.Get(i)
		if of.IsSynthetic() {
			continue
		}
		if out.Oneofs == nil {
			out.Oneofs = map[string][]string{}
		}
		out.Oneofs[string(of.Name())] = strings.Split(s.oneofMembers(of, st, ","), ",")
	}
	return out
}

func (s *schemas) oneofMembers(of protoreflect.OneofDescriptor, st style, sep string) string {
	var names []string
	fs := of.Fields()
	for i := 0; i < fs.Len(); i++ {
		names = append(names, st.fieldName(fs.Get(i)))
	}
	return strings.Join(names, sep)
}

// describe returns p with description d (p itself when it is a fresh
// schema; schemas are never shared between properties).
func describe(p *Schema, d string) *Schema {
	if d == "" {
		return p
	}
	if p.Description == "" {
		p.Description = d
	} else {
		p.Description = joinText(d, p.Description)
	}
	return p
}

func joinText(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n\n" + b
}

// field returns the schema of one field's JSON value: an array for a
// repeated field, an object for a map, else the value's schema (nullable
// when the style writes unset fields with presence as null).
func (s *schemas) field(fd protoreflect.FieldDescriptor, st style) *Schema {
	switch {
	case fd.IsMap():
		out := &Schema{Type: "object", AdditionalProperties: s.value(fd.MapValue(), st)}
		if pat := mapKeyPattern(fd.MapKey()); pat != "" {
			out.PropertyNames = &Schema{Pattern: pat}
		}
		return out
	case fd.IsList():
		return &Schema{Type: "array", Items: s.value(fd, st)}
	}
	v := s.value(fd, st)
	if st.emitUnpopulated && fd.HasPresence() && fd.ContainingOneof() == nil {
		v = nullable(v)
	}
	return v
}

// mapKeyPattern is the pattern of a map's JSON keys for non-string key
// types.
func mapKeyPattern(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return "^(true|false)$"
	case protoreflect.StringKind:
		return ""
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "^[0-9]+$"
	}
	return "^-?[0-9]+$"
}

// nullable lets v also be JSON null.
func nullable(v *Schema) *Schema {
	switch t := v.Type.(type) {
	case string:
		if t != "null" {
			v.Type = []string{t, "null"}
		}
		if len(v.Enum) > 0 {
			v.Enum = append(v.Enum, nil)
		}
		return v
	case []string:
		return v
	}
	if v.Ref == "" {
		return v // no type: any value, null included
	}
	return &Schema{AnyOf: []*Schema{v, {Type: "null"}}}
}

// value returns the schema of one (singular) value of fd's type.
func (s *schemas) value(fd protoreflect.FieldDescriptor, st style) *Schema {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return s.message(fd.Message(), st)
	case protoreflect.EnumKind:
		return s.enum(fd.Enum(), st)
	}
	return scalar(fd.Kind(), st)
}

// scalar returns the schema of a scalar kind under the proto3 JSON
// mapping: 64-bit integers are decimal strings (numbers with
// int64_as_numbers), bytes are base64.
func scalar(k protoreflect.Kind, st style) *Schema {
	switch k {
	case protoreflect.BoolKind:
		return &Schema{Type: "boolean"}
	case protoreflect.StringKind:
		return &Schema{Type: "string"}
	case protoreflect.BytesKind:
		return &Schema{Type: "string", Format: "byte", ContentEncoding: "base64"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return &Schema{Type: "integer", Format: "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return &Schema{Type: "integer", Format: "int64", Minimum: float(0), Maximum: float(4294967295)}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if st.int64Numbers {
			return &Schema{Type: "integer", Format: "int64"}
		}
		return &Schema{Type: "string", Format: "int64", Pattern: `^-?[0-9]+$`}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if st.int64Numbers {
			return &Schema{Type: "integer", Format: "uint64", Minimum: float(0)}
		}
		return &Schema{Type: "string", Format: "uint64", Pattern: `^[0-9]+$`}
	case protoreflect.FloatKind:
		return &Schema{Type: "number", Format: "float"}
	case protoreflect.DoubleKind:
		return &Schema{Type: "number", Format: "double"}
	}
	return &Schema{}
}

// enum returns a $ref to an enum's component (names, or numbers with
// use_enum_numbers); google.protobuf.NullValue is JSON null.
func (s *schemas) enum(ed protoreflect.EnumDescriptor, st style) *Schema {
	if ed.FullName() == "google.protobuf.NullValue" {
		return &Schema{Type: "null"}
	}
	name := string(ed.FullName()) + st.suffix(s.base, true)
	if _, ok := s.comps[name]; ok {
		return ref(name)
	}
	out := &Schema{Title: string(ed.Name()), Description: comments(ed), Deprecated: deprecated(ed.Options())}
	vals := ed.Values()
	var notes []string
	for i := 0; i < vals.Len(); i++ {
		v := vals.Get(i)
		if st.enumNumbers {
			out.Enum = append(out.Enum, int64(v.Number()))
		} else {
			out.Enum = append(out.Enum, string(v.Name()))
		}
		note := comments(v)
		if deprecated(v.Options()) {
			note = joinText(note, "Deprecated.")
		}
		if note != "" {
			notes = append(notes, fmt.Sprintf("- %s: %s", v.Name(), strings.ReplaceAll(note, "\n", " ")))
		}
	}
	if st.enumNumbers {
		out.Type = "integer"
		out.Format = "int32"
	} else {
		out.Type = "string"
	}
	if len(notes) > 0 {
		out.Description = joinText(out.Description, strings.Join(notes, "\n"))
	}
	s.comps[name] = out
	return ref(name)
}

// wellKnown returns a fresh inline schema for the well-known types that
// have a JSON form of their own, or nil.
func (s *schemas) wellKnown(md protoreflect.MessageDescriptor, st style) *Schema {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return &Schema{Type: "string", Format: "date-time", Description: "An RFC 3339 timestamp in UTC, e.g. 2024-01-02T15:04:05Z."}
	case "google.protobuf.Duration":
		return &Schema{Type: "string", Pattern: `^-?[0-9]+(\.[0-9]{1,9})?s$`, Description: `A duration in seconds with the suffix "s", e.g. "1.5s".`}
	case "google.protobuf.FieldMask":
		return &Schema{Type: "string", Description: `Field paths in lowerCamelCase, comma-separated, e.g. "title,author".`}
	case "google.protobuf.Struct":
		return &Schema{Type: "object", AdditionalProperties: &Schema{}}
	case "google.protobuf.Value":
		return &Schema{Description: "Any JSON value."}
	case "google.protobuf.ListValue":
		return &Schema{Type: "array", Items: &Schema{}}
	case "google.protobuf.Empty":
		return &Schema{Type: "object"}
	case "google.protobuf.Any":
		return &Schema{
			Type:                 "object",
			Description:          `A message of any type: "@type" names it ("type.googleapis.com/<full name>") and the other properties are that message's JSON; a type with its own JSON form is under "value".`,
			Properties:           map[string]*Schema{"@type": {Type: "string"}},
			AdditionalProperties: &Schema{},
		}
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue",
		"google.protobuf.BytesValue":
		// A wrapper is its value field's JSON (nullable, as every message).
		return scalar(md.Fields().ByNumber(1).Kind(), st)
	}
	return nil
}

// isJSONOnly reports the well-known types whose fields are not addressable
// one by one (in query strings).
func isJSONOnly(md protoreflect.MessageDescriptor) bool {
	switch md.FullName() {
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
		"google.protobuf.Any", "google.protobuf.Empty":
		return true
	}
	return false
}

const httpBodyName = "google.api.HttpBody"

func isHTTPBody(md protoreflect.MessageDescriptor) bool {
	return md != nil && md.FullName() == httpBodyName
}
