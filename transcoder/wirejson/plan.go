package wirejson

import (
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Options are the JSON options of a [Plan]. They mirror protojson's
// MarshalOptions and UnmarshalOptions.
type Options struct {
	// UseProtoNames writes proto field names instead of lowerCamelCase
	// JSON names. Decoding accepts both forms either way.
	UseProtoNames bool
	// EmitUnpopulated writes fields that are not set with their default
	// values (null for fields with presence), as protojson does.
	EmitUnpopulated bool
	// UseEnumNumbers writes enum values as numbers instead of names.
	UseEnumNumbers bool
	// Int64AsNumbers writes 64-bit integers (and their wrappers) as JSON
	// numbers instead of strings. Decoding accepts both forms either way.
	Int64AsNumbers bool
	// DiscardUnknown ignores unknown JSON fields and unknown enum names
	// instead of rejecting them.
	DiscardUnknown bool
	// Resolver finds the types named by google.protobuf.Any type URLs.
	// Nil means protoregistry.GlobalTypes.
	Resolver protoregistry.MessageTypeResolver
}

// wkt names the well-known types that have a special JSON form.
type wkt uint8

const (
	wktNone wkt = iota
	wktAny
	wktTimestamp
	wktDuration
	wktWrapper
	wktStruct
	wktListValue
	wktValue
	wktFieldMask
	wktEmpty // no special JSON form, but a special form inside Any
)

// Plan is the compiled JSON⇄wire mapping of one message type. It is
// immutable and safe for concurrent use.
type Plan struct {
	c        *compiler
	md       protoreflect.MessageDescriptor
	mt       protoreflect.MessageType // for Any payloads; nil otherwise
	wkt      wkt
	fields   []field // in declaration order, which is protojson's output order
	byNum    []int32 // index+1 by field number, for small numbers
	numMap   map[protowire.Number]int32
	byName   map[string]int32
	nOneofs  int
	required []int32
}

// field is the compiled form of one field.
type field struct {
	fd       protoreflect.FieldDescriptor
	num      protowire.Number
	kind     protoreflect.Kind
	wtype    protowire.Type // wire type of one element
	jsonName string
	outName  []byte // `"name":` as written by AppendJSON
	list     bool
	isMap    bool
	packable bool // a repeated scalar that may be packed on the wire
	packed   bool // written packed by AppendProto
	presence bool // explicit presence (messages, oneofs, optional, proto2)
	utf8     bool // strings must be valid UTF-8 on the wire
	oneof    int  // index of the containing oneof (real or synthetic), or -1
	required bool
	msg      *Plan     // message and group fields
	enum     *enumPlan // enum fields
	key, val *field    // map fields
	def      protoreflect.Value
	tag      []byte // tag of one element
	ptag     []byte // tag of a packed list
	nullEnum bool   // google.protobuf.NullValue
	value    bool   // google.protobuf.Value
}

// enumPlan maps an enum's numbers and names. Unknown numbers, of closed
// enums too, are written as numbers, as protojson does for dynamicpb
// messages.
type enumPlan struct {
	dense  []string // quoted names by number, for numbers 0..len-1 ("" when none)
	sparse map[int32]string
	byName map[string]int32
}

// name returns the quoted JSON name of number n, or "" when it has none.
func (e *enumPlan) name(n int32) string {
	if n >= 0 && int(n) < len(e.dense) {
		return e.dense[n]
	}
	return e.sparse[n]
}

// compiler holds the plans compiled from one root and the options they
// share. Plans for Any payloads are added lazily, under mu.
type compiler struct {
	opts  Options
	mu    sync.Mutex
	plans map[protoreflect.FullName]*Plan
	enums map[protoreflect.FullName]*enumPlan
	urls  sync.Map // type URL → *Plan
}

// Compile compiles the plan of md with opts. Plans of nested message types
// are compiled with it and shared, so recursive types are fine. Compile
// once per descriptor snapshot and reuse the plan; [Compiler] shares plans
// between several roots.
func Compile(md protoreflect.MessageDescriptor, opts Options) *Plan {
	return NewCompiler(opts).Compile(md)
}

// Compiler compiles plans that share options and nested plans, for
// example all the request and response types of one descriptor snapshot.
// It is safe for concurrent use.
type Compiler struct{ c *compiler }

// NewCompiler returns a compiler of plans with opts.
func NewCompiler(opts Options) *Compiler {
	if opts.Resolver == nil {
		opts.Resolver = protoregistry.GlobalTypes
	}
	return &Compiler{c: &compiler{opts: opts, plans: map[protoreflect.FullName]*Plan{}, enums: map[protoreflect.FullName]*enumPlan{}}}
}

// Compile returns the plan of md, compiling it (and the plans of the
// message types it uses) unless done before.
func (c *Compiler) Compile(md protoreflect.MessageDescriptor) *Plan {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	return c.c.plan(md)
}

// Descriptor returns the message descriptor the plan was compiled for.
func (p *Plan) Descriptor() protoreflect.MessageDescriptor { return p.md }

// Options returns the options the plan was compiled with.
func (p *Plan) Options() Options { return p.c.opts }

// Field returns the plan of the message-typed field fd of p's message (the
// plan of fd.Message(), compiled with the same options), or nil when fd is
// not a singular message field of it.
func (p *Plan) Field(fd protoreflect.FieldDescriptor) *Plan {
	i := p.index(fd.Number())
	if i < 0 || p.fields[i].fd != fd || p.fields[i].list || p.fields[i].msg == nil {
		return nil
	}
	return p.fields[i].msg
}

// plan returns the plan of md, compiling it when needed. c.mu is held.
func (c *compiler) plan(md protoreflect.MessageDescriptor) *Plan {
	if p := c.plans[md.FullName()]; p != nil {
		return p
	}
	p := &Plan{c: c, md: md, wkt: wktOf(md.FullName()), byName: map[string]int32{}, nOneofs: md.Oneofs().Len()}
	c.plans[md.FullName()] = p
	fds := md.Fields()
	p.fields = make([]field, fds.Len())
	maxSmall := protowire.Number(0)
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		c.field(&p.fields[i], fd)
		if fd.Number() < 1024 && fd.Number() > maxSmall {
			maxSmall = fd.Number()
		}
		if fd.Cardinality() == protoreflect.Required {
			p.required = append(p.required, int32(i))
		}
	}
	p.byNum = make([]int32, maxSmall+1)
	for i := range p.fields {
		f := &p.fields[i]
		if f.num <= maxSmall {
			p.byNum[f.num] = int32(i + 1)
		} else {
			if p.numMap == nil {
				p.numMap = map[protowire.Number]int32{}
			}
			p.numMap[f.num] = int32(i + 1)
		}
	}
	// protojson looks a name up as a JSON name first, then as a text name.
	for i := range p.fields {
		p.byName[p.fields[i].fd.TextName()] = int32(i)
	}
	for i := range p.fields {
		p.byName[p.fields[i].jsonName] = int32(i)
	}
	return p
}

func (c *compiler) field(f *field, fd protoreflect.FieldDescriptor) {
	f.fd = fd
	f.num = fd.Number()
	f.kind = fd.Kind()
	f.wtype = wireType(f.kind)
	f.jsonName = fd.JSONName()
	name := f.jsonName
	if c.opts.UseProtoNames {
		name = fd.TextName()
	}
	f.outName, _ = appendString(nil, name)
	f.outName = append(f.outName, ':')
	f.list = fd.IsList()
	f.isMap = fd.IsMap()
	f.packable = f.list && f.wtype != protowire.BytesType && f.wtype != protowire.StartGroupType
	f.packed = f.packable && fd.IsPacked()
	f.presence = fd.HasPresence()
	f.utf8 = f.kind == protoreflect.StringKind && enforceUTF8(fd)
	f.oneof = -1
	if od := fd.ContainingOneof(); od != nil {
		f.oneof = od.Index()
	}
	f.required = fd.Cardinality() == protoreflect.Required
	f.tag = protowire.AppendTag(nil, f.num, f.wtype)
	f.ptag = protowire.AppendTag(nil, f.num, protowire.BytesType)
	if !f.list && !f.isMap && fd.Message() == nil {
		f.def = fd.Default()
	}
	switch {
	case f.isMap:
		f.key, f.val = new(field), new(field)
		c.field(f.key, fd.MapKey())
		c.field(f.val, fd.MapValue())
	case fd.Message() != nil:
		f.msg = c.plan(fd.Message())
		f.value = fd.Message().FullName() == "google.protobuf.Value"
	case fd.Enum() != nil:
		f.enum = c.enum(fd.Enum())
		f.nullEnum = fd.Enum().FullName() == "google.protobuf.NullValue"
	}
}

func (c *compiler) enum(ed protoreflect.EnumDescriptor) *enumPlan {
	if e := c.enums[ed.FullName()]; e != nil {
		return e
	}
	e := &enumPlan{byName: map[string]int32{}}
	vals := ed.Values()
	maxDense := int32(-1)
	for i := 0; i < vals.Len(); i++ {
		if n := int32(vals.Get(i).Number()); n >= 0 && n < 256 && n > maxDense {
			maxDense = n
		}
	}
	e.dense = make([]string, maxDense+1)
	for i := 0; i < vals.Len(); i++ {
		v := vals.Get(i)
		n := int32(v.Number())
		e.byName[string(v.Name())] = n
		if e.name(n) != "" {
			continue // an alias: protojson writes the first name
		}
		q := `"` + string(v.Name()) + `"`
		if n >= 0 && n <= maxDense {
			e.dense[n] = q
		} else {
			if e.sparse == nil {
				e.sparse = map[int32]string{}
			}
			e.sparse[n] = q
		}
	}
	c.enums[ed.FullName()] = e
	return e
}

// byURL resolves an Any type URL to the plan of its type.
func (c *compiler) byURL(url string) (*Plan, error) {
	if p, ok := c.urls.Load(url); ok {
		return p.(*Plan), nil
	}
	mt, err := c.opts.Resolver.FindMessageByURL(url)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	p := c.plan(mt.Descriptor())
	if p.mt == nil {
		p.mt = mt
	}
	c.mu.Unlock()
	c.urls.Store(url, p)
	return p, nil
}

// index returns the index of field number num, or -1.
func (p *Plan) index(num protowire.Number) int {
	if num >= 0 && int(num) < len(p.byNum) {
		return int(p.byNum[num]) - 1
	}
	if i, ok := p.numMap[num]; ok {
		return int(i) - 1
	}
	return -1
}

func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.VarintType
}

// enforceUTF8 reports whether the wire format requires valid UTF-8 in
// string field fd (as protobuf-go's unmarshaler decides it).
func enforceUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if x, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return x.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}

func wktOf(name protoreflect.FullName) wkt {
	if name.Parent() != "google.protobuf" {
		return wktNone
	}
	switch name.Name() {
	case "Any":
		return wktAny
	case "Timestamp":
		return wktTimestamp
	case "Duration":
		return wktDuration
	case "BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value",
		"FloatValue", "DoubleValue", "StringValue", "BytesValue":
		return wktWrapper
	case "Struct":
		return wktStruct
	case "ListValue":
		return wktListValue
	case "Value":
		return wktValue
	case "FieldMask":
		return wktFieldMask
	case "Empty":
		return wktEmpty
	}
	return wktNone
}
