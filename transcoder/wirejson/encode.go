package wirejson

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxDepth bounds message nesting, as protobuf-go's default recursion
// limit does.
const maxDepth = 10000

// AppendJSON appends the proto3 JSON form of the wire-format message wire
// to dst, as protojson.Marshal would write the message proto.Unmarshal
// reads from wire (without protojson's random spaces).
func (p *Plan) AppendJSON(dst, wire []byte) ([]byte, error) {
	e := encoders.Get().(*encoder)
	e.opts = &p.c.opts
	dst, err := e.message(dst, p, wire, "")
	e.recs, e.occs, e.oneofs, e.ents = e.recs[:0], e.occs[:0], e.oneofs[:0], e.ents[:0]
	e.depth, e.partial = 0, 0
	encoders.Put(e)
	return dst, err
}

var encoders = sync.Pool{New: func() any { return new(encoder) }}

// encoder holds the scratch space of one AppendJSON call. Nested messages
// use it as a stack.
type encoder struct {
	opts    *Options
	recs    []rec   // one per field of each message being written
	occs    []occ   // occurrences of fields on the wire
	oneofs  []int32 // per oneof: index+1 of the member set last
	ents    []entry // map entries being sorted
	scratch [][]byte
	depth   int
	partial int // inside Any: required fields are not checked
}

// rec lists the occurrences of one field in a message: indexes+1 into
// encoder.occs, 0 for none.
type rec struct{ head, tail int32 }

// occ is one occurrence of a field: the span of its value (the content of
// a length-delimited value or group) in the message bytes.
type occ struct {
	start, end int32
	typ        protowire.Type
	next       int32
}

// entry is one map entry, for sorting.
type entry struct {
	skey   []byte // string keys
	ikey   int64  // signed integer and bool keys
	ukey   uint64 // unsigned integer keys
	val    []byte
	valTyp protowire.Type
	hasVal bool
	seq    int
}

func (e *encoder) getScratch() []byte {
	if n := len(e.scratch); n > 0 {
		b := e.scratch[n-1]
		e.scratch = e.scratch[:n-1]
		return b[:0]
	}
	return make([]byte, 0, 256)
}

func (e *encoder) putScratch(b []byte) { e.scratch = append(e.scratch, b) }

// consumeTag is protowire.ConsumeTag that also rejects field numbers
// above the maximum, as protobuf-go's unmarshaler does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// wellFormed reports whether b is a sequence of well-formed fields.
func wellFormed(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
	}
	return true
}

// consumeValue returns the span of the value at the start of b (the
// content of a length-delimited value or group) and its total length.
func consumeValue(num protowire.Number, typ protowire.Type, b []byte) (int, int, int) {
	switch typ {
	case protowire.VarintType:
		_, n := protowire.ConsumeVarint(b)
		return 0, n, n
	case protowire.Fixed32Type:
		_, n := protowire.ConsumeFixed32(b)
		return 0, n, n
	case protowire.Fixed64Type:
		_, n := protowire.ConsumeFixed64(b)
		return 0, n, n
	case protowire.BytesType:
		v, n := protowire.ConsumeBytes(b)
		return n - len(v), n, n
	case protowire.StartGroupType:
		v, n := protowire.ConsumeGroup(num, b)
		return 0, len(v), n
	}
	return 0, -1, -1
}

var errWire = errorf("cannot parse invalid wire-format data")

// scan records the occurrences of p's fields in b, from e.recs[base:] and
// e.oneofs[obase:] on.
func (e *encoder) scan(p *Plan, b []byte, base, obase int) error {
	for off := 0; off < len(b); {
		num, typ, n := consumeTag(b[off:])
		if n < 0 {
			return errWire
		}
		off += n
		vs, ve, m := consumeValue(num, typ, b[off:])
		if m < 0 {
			return errWire
		}
		start, end := off+vs, off+ve
		off += m
		i := p.index(num)
		if i < 0 {
			continue
		}
		f := &p.fields[i]
		if typ != f.wtype && !(typ == protowire.BytesType && f.packable) {
			continue // a wire type mismatch is an unknown field
		}
		if f.utf8 && !f.isMap && !utf8.Valid(b[start:end]) {
			return &Error{Path: f.jsonName, Msg: fmt.Sprintf("string field contains invalid UTF-8: %s", f.fd.FullName())}
		}
		if f.oneof >= 0 {
			o := obase + f.oneof
			if last := e.oneofs[o]; last != int32(i+1) {
				if last != 0 {
					// The member this one replaces is dropped from the
					// output, but its bytes must still parse, as
					// proto.Unmarshal requires.
					if err := e.validateDropped(p, b, base, int(last)-1); err != nil {
						return err
					}
					e.recs[base+int(last)-1] = rec{}
				}
				e.recs[base+i] = rec{}
				e.oneofs[o] = int32(i + 1)
			}
		}
		e.occs = append(e.occs, occ{start: int32(start), end: int32(end), typ: typ})
		k := int32(len(e.occs))
		r := &e.recs[base+i]
		if r.tail != 0 {
			e.occs[r.tail-1].next = k
		} else {
			r.head = k
		}
		r.tail = k
	}
	return nil
}

// validateDropped checks the occurrences of field i of p (recorded from
// e.recs[base:]) when a later oneof member replaces it: a message member's
// bytes must still be a valid message of its type.
func (e *encoder) validateDropped(p *Plan, b []byte, base, i int) error {
	f := &p.fields[i]
	if f.msg == nil {
		return nil
	}
	for k := e.recs[base+i].head; k != 0; {
		o := e.occs[k-1]
		if err := e.validate(f.msg, b[o.start:o.end]); err != nil {
			return withField(err, f.jsonName)
		}
		k = o.next
	}
	return nil
}

// validate reports whether b is a valid message of plan p, by encoding it
// into a scratch buffer that is then dropped.
func (e *encoder) validate(p *Plan, b []byte) error {
	scratch := e.getScratch()
	scratch, err := e.message(scratch, p, b, "")
	e.putScratch(scratch)
	return err
}

// message appends the JSON form of the message of plan p encoded in b. A
// non-empty typeURL is written first as "@type" (for Any).
func (e *encoder) message(dst []byte, p *Plan, b []byte, typeURL string) ([]byte, error) {
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return dst, errorf("exceeded maximum recursion depth")
	}
	base, obase, occBase := len(e.recs), len(e.oneofs), len(e.occs)
	e.recs = slices.Grow(e.recs, len(p.fields))[:base+len(p.fields)]
	clear(e.recs[base:])
	e.oneofs = slices.Grow(e.oneofs, p.nOneofs)[:obase+p.nOneofs]
	clear(e.oneofs[obase:])
	defer func() { e.recs, e.oneofs, e.occs = e.recs[:base], e.oneofs[:obase], e.occs[:occBase] }()
	if err := e.scan(p, b, base, obase); err != nil {
		return dst, err
	}
	if e.partial == 0 {
		for _, i := range p.required {
			if e.recs[base+int(i)].tail == 0 {
				return dst, errorf(fmt.Sprintf("required field %v not set", p.fields[i].fd.FullName()))
			}
		}
	}
	if p.wkt != wktNone && p.wkt != wktEmpty {
		return e.wellKnown(dst, p, b, base, obase)
	}
	dst = append(dst, '{')
	comma := false
	if typeURL != "" {
		dst = append(dst, `"@type":`...)
		var ok bool
		if dst, ok = appendString(dst, typeURL); !ok {
			return dst, errorf("invalid UTF-8 in Any type URL")
		}
		comma = true
	}
	for i := range p.fields {
		f := &p.fields[i]
		if f.oneof >= 0 && e.oneofs[obase+f.oneof] != int32(i+1) {
			continue
		}
		r := e.recs[base+i]
		mark := len(dst)
		if comma {
			dst = append(dst, ',')
		}
		dst = append(dst, f.outName...)
		var err error
		var ok bool
		switch {
		case r.tail == 0:
			ok = false
		case f.isMap:
			dst, ok, err = e.mapValue(dst, f, b, r)
		case f.list:
			dst, ok, err = e.listValue(dst, f, b, r)
		case f.msg != nil:
			dst, err = e.messageValue(dst, f, b, r)
			ok = true
		default:
			o := e.occs[r.tail-1]
			v := b[o.start:o.end]
			if ok = f.presence || !isZero(f, v); ok {
				dst, err = e.scalar(dst, f, v)
			}
		}
		if err != nil {
			return dst, withField(err, f.jsonName)
		}
		if !ok {
			dst = dst[:mark]
			if !e.opts.EmitUnpopulated || f.oneof >= 0 {
				continue
			}
			if comma {
				dst = append(dst, ',')
			}
			dst = append(dst, f.outName...)
			dst = e.unpopulated(dst, f)
		}
		comma = true
	}
	return append(dst, '}'), nil
}

// isZero reports whether a scalar wire value is its type's zero value,
// which a field without presence does not hold.
func isZero(f *field, v []byte) bool {
	switch f.wtype {
	case protowire.VarintType:
		x, _ := protowire.ConsumeVarint(v)
		switch f.kind {
		case protoreflect.Int32Kind, protoreflect.Uint32Kind, protoreflect.Sint32Kind, protoreflect.EnumKind:
			return uint32(x) == 0
		}
		return x == 0
	case protowire.Fixed32Type:
		x, _ := protowire.ConsumeFixed32(v)
		return x == 0
	case protowire.Fixed64Type:
		x, _ := protowire.ConsumeFixed64(v)
		return x == 0
	}
	return len(v) == 0
}

// unpopulated writes the value EmitUnpopulated shows for an unset field.
func (e *encoder) unpopulated(dst []byte, f *field) []byte {
	switch {
	case f.isMap:
		return append(dst, "{}"...)
	case f.list:
		return append(dst, "[]"...)
	case f.presence:
		return append(dst, "null"...)
	}
	return e.zero(dst, f)
}

// zero writes the zero value of a scalar field.
func (e *encoder) zero(dst []byte, f *field) []byte {
	switch f.kind {
	case protoreflect.BoolKind:
		return append(dst, "false"...)
	case protoreflect.StringKind, protoreflect.BytesKind:
		return append(dst, `""`...)
	case protoreflect.EnumKind:
		return e.enumValue(dst, f, int32(f.def.Enum()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if e.opts.Int64AsNumbers {
			return append(dst, '0')
		}
		return append(dst, `"0"`...)
	}
	return append(dst, '0')
}

func (e *encoder) enumValue(dst []byte, f *field, n int32) []byte {
	if f.nullEnum {
		return append(dst, "null"...)
	}
	if !e.opts.UseEnumNumbers {
		if name := f.enum.name(n); name != "" {
			return append(dst, name...)
		}
	}
	return strconv.AppendInt(dst, int64(n), 10)
}

// scalar writes one scalar value v of f (its wire bytes, or the content
// of a length-delimited value).
func (e *encoder) scalar(dst []byte, f *field, v []byte) ([]byte, error) {
	switch f.wtype {
	case protowire.VarintType:
		x, _ := protowire.ConsumeVarint(v)
		return e.varint(dst, f, x), nil
	case protowire.Fixed32Type:
		x, _ := protowire.ConsumeFixed32(v)
		return e.fixed32(dst, f, x), nil
	case protowire.Fixed64Type:
		x, _ := protowire.ConsumeFixed64(v)
		return e.fixed64(dst, f, x), nil
	}
	if f.kind == protoreflect.BytesKind {
		dst = append(dst, '"')
		dst = base64Std.AppendEncode(dst, v)
		return append(dst, '"'), nil
	}
	dst, ok := appendBytesString(dst, v)
	if !ok {
		return dst, errorf(fmt.Sprintf("field %v contains invalid UTF-8", f.fd.FullName()))
	}
	return dst, nil
}

func (e *encoder) varint(dst []byte, f *field, x uint64) []byte {
	switch f.kind {
	case protoreflect.BoolKind:
		if x != 0 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case protoreflect.Int32Kind:
		return strconv.AppendInt(dst, int64(int32(x)), 10)
	case protoreflect.Uint32Kind:
		return strconv.AppendUint(dst, uint64(uint32(x)), 10)
	case protoreflect.Sint32Kind:
		return strconv.AppendInt(dst, int64(int32(protowire.DecodeZigZag(x&math.MaxUint32))), 10)
	case protoreflect.EnumKind:
		return e.enumValue(dst, f, int32(x))
	case protoreflect.Int64Kind:
		return e.int64(dst, int64(x))
	case protoreflect.Sint64Kind:
		return e.int64(dst, protowire.DecodeZigZag(x))
	}
	return e.uint64(dst, x) // Uint64Kind
}

func (e *encoder) fixed32(dst []byte, f *field, x uint32) []byte {
	switch f.kind {
	case protoreflect.FloatKind:
		return appendFloat(dst, float64(math.Float32frombits(x)), 32)
	case protoreflect.Sfixed32Kind:
		return strconv.AppendInt(dst, int64(int32(x)), 10)
	}
	return strconv.AppendUint(dst, uint64(x), 10)
}

func (e *encoder) fixed64(dst []byte, f *field, x uint64) []byte {
	switch f.kind {
	case protoreflect.DoubleKind:
		return appendFloat(dst, math.Float64frombits(x), 64)
	case protoreflect.Sfixed64Kind:
		return e.int64(dst, int64(x))
	}
	return e.uint64(dst, x)
}

func (e *encoder) int64(dst []byte, n int64) []byte {
	if e.opts.Int64AsNumbers {
		return strconv.AppendInt(dst, n, 10)
	}
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '"')
}

func (e *encoder) uint64(dst []byte, n uint64) []byte {
	if e.opts.Int64AsNumbers {
		return strconv.AppendUint(dst, n, 10)
	}
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, n, 10)
	return append(dst, '"')
}

// messageValue writes a singular message field: its occurrences merged.
func (e *encoder) messageValue(dst []byte, f *field, b []byte, r rec) ([]byte, error) {
	o := e.occs[r.head-1]
	if o.next == 0 {
		return e.message(dst, f.msg, b[o.start:o.end], "")
	}
	merged := e.getScratch()
	for k := r.head; k != 0; k = e.occs[k-1].next {
		o := e.occs[k-1]
		chunk := b[o.start:o.end]
		if !wellFormed(chunk) {
			// Each occurrence must parse on its own: a field may not
			// straddle two of them.
			e.putScratch(merged)
			return dst, errWire
		}
		merged = append(merged, chunk...)
	}
	dst, err := e.message(dst, f.msg, merged, "")
	e.putScratch(merged)
	return dst, err
}

// listValue writes a repeated field; ok is false when it has no elements.
func (e *encoder) listValue(dst []byte, f *field, b []byte, r rec) ([]byte, bool, error) {
	dst = append(dst, '[')
	n := 0
	var err error
	for k := r.head; k != 0; k = e.occs[k-1].next {
		o := e.occs[k-1]
		v := b[o.start:o.end]
		if o.typ == protowire.BytesType && f.packable {
			for len(v) > 0 {
				var m int
				var elem []byte
				switch f.wtype {
				case protowire.VarintType:
					_, m = protowire.ConsumeVarint(v)
				case protowire.Fixed32Type:
					_, m = protowire.ConsumeFixed32(v)
				default:
					_, m = protowire.ConsumeFixed64(v)
				}
				if m < 0 {
					return dst, false, errWire
				}
				elem, v = v[:m], v[m:]
				if dst, err = e.element(dst, f, elem, &n); err != nil {
					return dst, false, err
				}
			}
			continue
		}
		if dst, err = e.element(dst, f, v, &n); err != nil {
			return dst, false, err
		}
	}
	return append(dst, ']'), n > 0, nil
}

func (e *encoder) element(dst []byte, f *field, v []byte, n *int) ([]byte, error) {
	if *n > 0 {
		dst = append(dst, ',')
	}
	var err error
	if f.msg != nil {
		dst, err = e.message(dst, f.msg, v, "")
	} else {
		dst, err = e.scalar(dst, f, v)
	}
	if err != nil {
		return dst, withIndex(err, *n)
	}
	*n++
	return dst, nil
}

// mapValue writes a map field with its keys sorted as protojson sorts
// them; ok is false when it has no entries.
func (e *encoder) mapValue(dst []byte, f *field, b []byte, r rec) ([]byte, bool, error) {
	ebase := len(e.ents)
	defer func() { e.ents = e.ents[:ebase] }()
	kf, vf := f.key, f.val
	seq := 0
	for k := r.head; k != 0; k = e.occs[k-1].next {
		o := e.occs[k-1]
		ent := entry{seq: seq}
		seq++
		var key []byte
		merged := false
		for v := b[o.start:o.end]; len(v) > 0; {
			num, typ, n := consumeTag(v)
			if n < 0 {
				return dst, false, errWire
			}
			v = v[n:]
			vs, ve, m := consumeValue(num, typ, v)
			if m < 0 {
				return dst, false, errWire
			}
			val := v[vs:ve]
			v = v[m:]
			switch {
			case num == 1 && typ == kf.wtype:
				key = val
			case num == 2 && typ == vf.wtype:
				if vf.utf8 && !utf8.Valid(val) {
					return dst, false, &Error{Path: f.jsonName, Msg: fmt.Sprintf("string field contains invalid UTF-8: %s", vf.fd.FullName())}
				}
				if ent.hasVal && vf.msg != nil {
					// A repeated message value merges. Each occurrence must
					// parse on its own (a field may not straddle two of
					// them, as in messageValue); then the concatenated
					// bytes are the merge (rare: copy into a new buffer).
					if (!merged && !wellFormed(ent.val)) || !wellFormed(val) {
						return dst, false, withField(errWire, f.jsonName)
					}
					merged = true
					val = append(append(make([]byte, 0, len(ent.val)+len(val)), ent.val...), val...)
				}
				ent.val, ent.valTyp, ent.hasVal = val, typ, true
			}
		}
		switch kf.wtype {
		case protowire.BytesType:
			if kf.utf8 && !utf8.Valid(key) {
				return dst, false, &Error{Path: f.jsonName, Msg: fmt.Sprintf("string field contains invalid UTF-8: %s", kf.fd.FullName())}
			}
			ent.skey = key
		case protowire.VarintType:
			x, _ := protowire.ConsumeVarint(key)
			switch kf.kind {
			case protoreflect.BoolKind:
				ent.ikey = int64(min(x, 1))
			case protoreflect.Int32Kind:
				ent.ikey = int64(int32(x))
			case protoreflect.Sint32Kind:
				ent.ikey = int64(int32(protowire.DecodeZigZag(x & math.MaxUint32)))
			case protoreflect.Int64Kind:
				ent.ikey = int64(x)
			case protoreflect.Sint64Kind:
				ent.ikey = protowire.DecodeZigZag(x)
			case protoreflect.Uint32Kind:
				ent.ukey = uint64(uint32(x))
			default:
				ent.ukey = x
			}
		case protowire.Fixed32Type:
			x, _ := protowire.ConsumeFixed32(key)
			if kf.kind == protoreflect.Sfixed32Kind {
				ent.ikey = int64(int32(x))
			} else {
				ent.ukey = uint64(x)
			}
		case protowire.Fixed64Type:
			x, _ := protowire.ConsumeFixed64(key)
			if kf.kind == protoreflect.Sfixed64Kind {
				ent.ikey = int64(x)
			} else {
				ent.ukey = x
			}
		}
		e.ents = append(e.ents, ent)
	}
	ents := e.ents[ebase:]
	slices.SortFunc(ents, func(a, b entry) int {
		if c := bytes.Compare(a.skey, b.skey); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ikey, b.ikey); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ukey, b.ukey); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	dst = append(dst, '{')
	n := 0
	for i := range ents {
		ent := &ents[i]
		if i+1 < len(ents) && bytes.Equal(ent.skey, ents[i+1].skey) && ent.ikey == ents[i+1].ikey && ent.ukey == ents[i+1].ukey {
			// A later entry with the same key wins; this one's message
			// value must still parse, as proto.Unmarshal requires.
			if vf.msg != nil && ent.hasVal {
				if err := e.validate(vf.msg, ent.val); err != nil {
					return dst, false, withField(err, f.jsonName)
				}
			}
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		var ok bool
		switch {
		case kf.wtype == protowire.BytesType:
			if dst, ok = appendBytesString(dst, ent.skey); !ok {
				return dst, false, errorf("invalid UTF-8 in map key")
			}
		case kf.kind == protoreflect.BoolKind:
			dst = append(dst, '"')
			dst = strconv.AppendBool(dst, ent.ikey != 0)
			dst = append(dst, '"')
		case kf.kind == protoreflect.Int32Kind || kf.kind == protoreflect.Sint32Kind || kf.kind == protoreflect.Sfixed32Kind ||
			kf.kind == protoreflect.Int64Kind || kf.kind == protoreflect.Sint64Kind || kf.kind == protoreflect.Sfixed64Kind:
			dst = append(dst, '"')
			dst = strconv.AppendInt(dst, ent.ikey, 10)
			dst = append(dst, '"')
		default:
			dst = append(dst, '"')
			dst = strconv.AppendUint(dst, ent.ukey, 10)
			dst = append(dst, '"')
		}
		dst = append(dst, ':')
		var err error
		switch {
		case vf.msg != nil:
			dst, err = e.message(dst, vf.msg, ent.val, "")
		case ent.hasVal:
			dst, err = e.scalar(dst, vf, ent.val)
		default:
			dst = e.zero(dst, vf)
		}
		if err != nil {
			return dst, false, withField(err, string(ent.skey))
		}
	}
	return append(dst, '}'), n > 0, nil
}
