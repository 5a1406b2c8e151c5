package openapi

import (
	"fmt"

	"github.com/rosetta-gateway/rosetta/router"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxQueryDepth bounds how deep query parameters follow nested messages.
const maxQueryDepth = 8

// queryParams lists the query parameters of a request message: every
// field that the path and the body leave free, as the gateway reads them
// (transcoder/internal/binding): nested message fields by dotted names,
// repeated scalars as repeated keys (form, explode), maps as
// name[key]=value (deepObject), enums by name, and the well-known types
// with a text form (Timestamp, Duration, FieldMask, wrappers) as one
// value. Repeated messages, maps of messages and the JSON-only
// well-known types (Struct, Value, ListValue, Any) cannot be set from a
// query string and are left out; a message type already on the path of
// names is not expanded again (recursive messages).
func (g *generator) queryParams(md protoreflect.MessageDescriptor, bound [][]protoreflect.FieldDescriptor, st style) []*Parameter {
	var out []*Parameter
	var walk func(md protoreflect.MessageDescriptor, prefix string, path []protoreflect.FieldDescriptor, seen []protoreflect.FullName)
	walk = func(md protoreflect.MessageDescriptor, prefix string, path []protoreflect.FieldDescriptor, seen []protoreflect.FullName) {
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			fp := append(path[:len(path):len(path)], fd)
			covered, inside := boundState(fp, bound)
			if covered {
				continue
			}
			name := prefix + st.fieldName(fd)
			desc := comments(fd)
			if of := fd.ContainingOneof(); of != nil && !of.IsSynthetic() {
				desc = joinText(desc, fmt.Sprintf("Member of oneof %s: at most one of its fields may be set.", of.Name()))
			}
			p := &Parameter{Name: name, In: "query", Deprecated: deprecated(fd.Options())}
			switch {
			case fd.IsMap():
				if inside || !queryable(fd.MapValue()) {
					continue
				}
				p.Style = "deepObject"
				p.Explode = ptr(true)
				p.Schema = &Schema{Type: "object", AdditionalProperties: g.queryValue(fd.MapValue(), st)}
				desc = joinText(desc, fmt.Sprintf("Set entries as %s[key]=value.", name))
			case fd.IsList():
				if inside || !queryable(fd) {
					continue
				}
				p.Style = "form"
				p.Explode = ptr(true)
				p.Schema = &Schema{Type: "array", Items: g.queryValue(fd, st)}
			case fd.Message() != nil && !router.HasTextForm(fd.Message()):
				sub := fd.Message()
				if isJSONOnly(sub) || isHTTPBody(sub) || len(path) >= maxQueryDepth || contains(seen, sub.FullName()) {
					continue
				}
				walk(sub, name+".", fp, append(seen[:len(seen):len(seen)], sub.FullName()))
				continue
			default:
				if inside {
					continue
				}
				p.Schema = g.queryValue(fd, st)
			}
			p.Description = desc
			out = append(out, p)
		}
	}
	walk(md, "", nil, []protoreflect.FullName{md.FullName()})
	return out
}

func ptr[T any](v T) *T { return &v }

func contains(list []protoreflect.FullName, n protoreflect.FullName) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// boundState compares a field path with the paths bound by the path and
// the body: covered when a bound path is a prefix of it (or equal), inside
// when it is a strict prefix of a bound path (only its other sub-fields
// remain free).
func boundState(fp []protoreflect.FieldDescriptor, bound [][]protoreflect.FieldDescriptor) (covered, inside bool) {
	for _, b := range bound {
		n := min(len(b), len(fp))
		same := true
		for i := 0; i < n; i++ {
			if b[i].FullName() != fp[i].FullName() {
				same = false
				break
			}
		}
		if !same {
			continue
		}
		if len(b) <= len(fp) {
			return true, false
		}
		inside = true
	}
	return false, inside
}

// queryable reports whether one value of fd's type can be written in a
// query string.
func queryable(fd protoreflect.FieldDescriptor) bool {
	md := fd.Message()
	return md == nil || router.HasTextForm(md)
}

// queryValue is the schema of one query or path value of fd's type.
func (g *generator) queryValue(fd protoreflect.FieldDescriptor, st style) *Schema {
	if md := fd.Message(); md != nil {
		if wk := g.schemas.wellKnown(md, st); wk != nil {
			return wk
		}
	}
	if fd.Kind() == protoreflect.EnumKind && fd.Enum().FullName() != "google.protobuf.NullValue" {
		return g.schemas.enum(fd.Enum(), style{enumNumbers: false})
	}
	return g.schemas.value(fd, st)
}
