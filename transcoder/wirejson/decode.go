package wirejson

import (
	"bytes"
	"encoding/base64"
	"math"
	"strconv"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// AppendProto appends the wire form of the JSON message js to dst. It
// accepts exactly what protojson.Unmarshal accepts, with the same options,
// and its errors are *[Error]s worded as protojson's, with the path of the
// offending field. Fields are written in the order of the JSON document.
func (p *Plan) AppendProto(dst, js []byte) ([]byte, error) {
	d := decoders.Get().(*decoder)
	d.reset(js)
	d.opts = &p.c.opts
	d.depth = maxDepth
	d.keys = d.keys[:0]
	d.partial, d.missing = 0, nil
	out, err := d.message(dst, p, false)
	if err == nil {
		var tok token
		if tok, err = d.read(); err == nil && tok.kind != tokEOF {
			err = d.unexpectedToken(tok)
		}
	}
	if err == nil && d.missing != nil {
		err = d.missing
	}
	d.reset(nil)
	decoders.Put(d)
	if err != nil {
		return dst, err
	}
	return out, nil
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

type decoder struct {
	scanner
	opts  *Options
	depth int    // nesting levels left
	keys  []byte // keys of the maps being read, for duplicate checks
	seen  []uint64
	// partial counts the Any payloads being read: required fields are
	// not checked inside them.
	partial int
	// missing is the first required field found missing: protojson
	// reports it only once the whole document is read.
	missing error
}

// BeginLen reserves one byte for the length prefix of a length-delimited
// value about to be appended to dst; it returns dst and the start of the
// value, for [EndLen].
func BeginLen(dst []byte) ([]byte, int) {
	dst = append(dst, 0)
	return dst, len(dst)
}

// EndLen writes the length of dst[start:] into the byte [BeginLen]
// reserved, moving the value when the length needs more than one byte.
func EndLen(dst []byte, start int) []byte {
	n := len(dst) - start
	if n < 0x80 {
		dst[start-1] = byte(n)
		return dst
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	for i := 0; i < extra; i++ {
		dst = append(dst, 0)
	}
	copy(dst[start+extra:], dst[start:start+n])
	protowire.AppendVarint(dst[:start-1], uint64(n))
	return dst
}

// seenSet is a set of small integers backed by a word or by d.seen.
type seenSet struct {
	word uint64
	big  []uint64
}

func (s *seenSet) has(i int) bool {
	if s.big != nil {
		return s.big[i/64]&(1<<(i%64)) != 0
	}
	return s.word&(1<<i) != 0
}

func (s *seenSet) set(i int) {
	if s.big != nil {
		s.big[i/64] |= 1 << (i % 64)
		return
	}
	s.word |= 1 << i
}

func (d *decoder) newSet(n int) seenSet {
	if n <= 64 {
		return seenSet{}
	}
	words := (n + 63) / 64
	start := len(d.seen)
	for i := 0; i < words; i++ {
		d.seen = append(d.seen, 0)
	}
	return seenSet{big: d.seen[start : start+words : start+words]}
}

// message reads one JSON value as a message of plan p and appends its
// fields. skipType skips "@type" keys (the fields of an Any's payload).
func (d *decoder) message(dst []byte, p *Plan, skipType bool) ([]byte, error) {
	d.depth--
	defer func() { d.depth++ }()
	if d.depth < 0 {
		return dst, errorf("exceeded max recursion depth")
	}
	if p.wkt != wktNone && p.wkt != wktEmpty {
		return d.wellKnown(dst, p)
	}
	tok, err := d.read()
	if err != nil {
		return dst, err
	}
	if tok.kind != tokObjectOpen {
		return dst, d.unexpectedToken(tok)
	}
	seenLen := len(d.seen)
	defer func() { d.seen = d.seen[:seenLen] }()
	seen := d.newSet(len(p.fields))
	oneofs := d.newSet(p.nOneofs)
	var set seenSet
	if len(p.required) > 0 {
		set = d.newSet(len(p.fields))
	}
	for {
		tok, err := d.read()
		if err != nil {
			return dst, err
		}
		switch tok.kind {
		case tokObjectClose:
			for _, i := range p.required {
				if !set.has(int(i)) && d.partial == 0 && d.missing == nil {
					d.missing = errorf("required field " + string(p.fields[i].fd.FullName()) + " not set")
				}
			}
			return dst, nil
		case tokName:
		default:
			return dst, d.unexpectedToken(tok)
		}
		if skipType && string(tok.str) == "@type" {
			if _, err := d.read(); err != nil {
				return dst, err
			}
			continue
		}
		idx, ok := p.byName[string(tok.str)]
		if !ok {
			if d.opts.DiscardUnknown {
				if err := d.skipValue(); err != nil {
					return dst, err
				}
				continue
			}
			return dst, withField(d.newError(tok.pos, "unknown field %s", tok.raw), string(tok.str))
		}
		if seen.has(int(idx)) {
			return dst, withField(d.newError(tok.pos, "duplicate field %s", tok.raw), string(tok.str))
		}
		seen.set(int(idx))
		f := &p.fields[idx]
		if next, _ := d.peek(); next.kind == tokNull && !f.value && !f.nullEnum {
			_, _ = d.read()
			continue
		}
		switch {
		case f.list:
			dst, err = d.list(dst, f)
		case f.isMap:
			dst, err = d.mapField(dst, f)
		default:
			if f.oneof >= 0 {
				if oneofs.has(f.oneof) {
					od := f.fd.ContainingOneof()
					return dst, withField(d.newError(tok.pos, "error parsing %s, oneof %v is already set", tok.raw, od.FullName()), string(tok.str))
				}
				oneofs.set(f.oneof)
			}
			dst, err = d.singular(dst, f)
		}
		if err != nil {
			return dst, withField(err, string(tok.str))
		}
		set.set(int(idx))
	}
}

// singular reads the value of a non-repeated field and appends it.
func (d *decoder) singular(dst []byte, f *field) ([]byte, error) {
	if f.msg != nil {
		return d.messageField(dst, f)
	}
	tok, err := d.read()
	if err != nil {
		return dst, err
	}
	mark := len(dst)
	dst = append(dst, f.tag...)
	dst, ok, isSet := d.scalar(dst, f, tok)
	if !ok {
		return dst[:mark], d.invalidValue(f, tok)
	}
	if !isSet || (!f.presence && zeroWire(f, dst[mark+len(f.tag):])) {
		return dst[:mark], nil
	}
	return dst, nil
}

// zeroWire reports whether an encoded scalar value (with its length
// prefix, for strings and bytes) is the zero value.
func zeroWire(f *field, v []byte) bool {
	if f.wtype == protowire.BytesType {
		return len(v) == 1 && v[0] == 0
	}
	return isZero(f, v)
}

func (d *decoder) invalidValue(f *field, tok token) error {
	return d.newError(tok.pos, "invalid value for %v field %v: %s", f.kind, f.jsonName, tok.raw)
}

// messageField reads a message value (or group) and appends it with its
// tag.
func (d *decoder) messageField(dst []byte, f *field) ([]byte, error) {
	dst = append(dst, f.tag...)
	if f.kind == protoreflect.GroupKind {
		dst, err := d.message(dst, f.msg, false)
		return protowire.AppendTag(dst, f.num, protowire.EndGroupType), err
	}
	dst, start := BeginLen(dst)
	dst, err := d.message(dst, f.msg, false)
	return EndLen(dst, start), err
}

// scalar converts a scalar token to the wire value of f (without tag) and
// appends it. ok is false for a value of the wrong form; isSet is false
// for an unknown enum name that DiscardUnknown drops.
func (d *decoder) scalar(dst []byte, f *field, tok token) (out []byte, ok, isSet bool) {
	switch f.kind {
	case protoreflect.BoolKind:
		if tok.kind != tokBool {
			return dst, false, false
		}
		if tok.boo {
			return append(dst, 1), true, true
		}
		return append(dst, 0), true, true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		bits := 64
		if f.wtype != protowire.Fixed64Type && f.kind != protoreflect.Int64Kind && f.kind != protoreflect.Sint64Kind {
			bits = 32
		}
		raw, ok := numberRaw(tok)
		if !ok {
			return dst, false, false
		}
		n, ok := parseInt(raw, bits)
		if !ok {
			return dst, false, false
		}
		switch f.kind {
		case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
			return protowire.AppendVarint(dst, protowire.EncodeZigZag(n)), true, true
		case protoreflect.Sfixed32Kind:
			return protowire.AppendFixed32(dst, uint32(n)), true, true
		case protoreflect.Sfixed64Kind:
			return protowire.AppendFixed64(dst, uint64(n)), true, true
		}
		return protowire.AppendVarint(dst, uint64(n)), true, true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		bits := 64
		if f.kind == protoreflect.Uint32Kind || f.kind == protoreflect.Fixed32Kind {
			bits = 32
		}
		raw, ok := numberRaw(tok)
		if !ok {
			return dst, false, false
		}
		n, ok := parseUint(raw, bits)
		if !ok {
			return dst, false, false
		}
		switch f.kind {
		case protoreflect.Fixed32Kind:
			return protowire.AppendFixed32(dst, uint32(n)), true, true
		case protoreflect.Fixed64Kind:
			return protowire.AppendFixed64(dst, n), true, true
		}
		return protowire.AppendVarint(dst, n), true, true
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		bits := 64
		if f.kind == protoreflect.FloatKind {
			bits = 32
		}
		x, ok := parseFloatToken(tok, bits)
		if !ok {
			return dst, false, false
		}
		if bits == 32 {
			return protowire.AppendFixed32(dst, math.Float32bits(float32(x))), true, true
		}
		return protowire.AppendFixed64(dst, math.Float64bits(x)), true, true
	case protoreflect.StringKind:
		if tok.kind != tokString {
			return dst, false, false
		}
		return protowire.AppendBytes(dst, tok.str), true, true
	case protoreflect.BytesKind:
		if tok.kind != tokString {
			return dst, false, false
		}
		return appendBase64(dst, tok.str)
	case protoreflect.EnumKind:
		switch tok.kind {
		case tokString:
			if n, ok := f.enum.byName[string(tok.str)]; ok {
				return protowire.AppendVarint(dst, uint64(int64(n))), true, true
			}
			if d.opts.DiscardUnknown {
				return dst, true, false
			}
		case tokNumber:
			if n, ok := parseInt(tok.raw, 32); ok {
				return protowire.AppendVarint(dst, uint64(n)), true, true
			}
		case tokNull:
			if f.nullEnum {
				return append(dst, 0), true, true
			}
		}
	}
	return dst, false, false
}

// numberRaw returns the number of a number token, or of a string token
// holding exactly one number.
func numberRaw(tok token) ([]byte, bool) {
	switch tok.kind {
	case tokNumber:
		return tok.raw, true
	case tokString:
		return tok.str, numberInString(tok.str)
	}
	return nil, false
}

func parseFloatToken(tok token, bits int) (float64, bool) {
	var raw []byte
	switch tok.kind {
	case tokNumber:
		raw = tok.raw
	case tokString:
		switch string(tok.str) {
		case "NaN":
			return math.NaN(), true
		case "Infinity":
			return math.Inf(+1), true
		case "-Infinity":
			return math.Inf(-1), true
		}
		if !numberInString(tok.str) {
			return 0, false
		}
		raw = tok.str
	default:
		return 0, false
	}
	x, err := strconv.ParseFloat(unsafeString(raw), bits)
	return x, err == nil
}

// appendBase64 decodes standard or URL-safe base64, padded or not, as
// protojson does, and appends it as a length-delimited value.
func appendBase64(dst, s []byte) ([]byte, bool, bool) {
	enc := base64.StdEncoding
	if bytes.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	mark := len(dst)
	dst, start := BeginLen(dst)
	dst, err := enc.AppendDecode(dst, s)
	if err != nil {
		return dst[:mark], false, false
	}
	return EndLen(dst, start), true, true
}

// list reads a JSON array as the elements of a repeated field.
func (d *decoder) list(dst []byte, f *field) ([]byte, error) {
	tok, err := d.read()
	if err != nil {
		return dst, err
	}
	if tok.kind != tokArrayOpen {
		return dst, d.unexpectedToken(tok)
	}
	mark := len(dst)
	start := 0
	if f.packed {
		dst = append(dst, f.ptag...)
		dst, start = BeginLen(dst)
	}
	n := 0
	for i := 0; ; i++ {
		tok, err := d.peek()
		if err != nil {
			return dst[:mark], err
		}
		if tok.kind == tokArrayClose {
			_, _ = d.read()
			break
		}
		if f.msg != nil {
			if dst, err = d.messageField(dst, f); err != nil {
				return dst[:mark], withIndex(err, i)
			}
			n++
			continue
		}
		tok, _ = d.read()
		elem := len(dst)
		if !f.packed {
			dst = append(dst, f.tag...)
		}
		var ok, isSet bool
		if dst, ok, isSet = d.scalar(dst, f, tok); !ok {
			return dst[:mark], withIndex(d.invalidValue(f, tok), i)
		}
		if !isSet {
			dst = dst[:elem]
			continue
		}
		n++
	}
	if f.packed {
		if n == 0 {
			return dst[:mark], nil
		}
		dst = EndLen(dst, start)
	}
	return dst, nil
}

// mapField reads a JSON object as the entries of a map field.
func (d *decoder) mapField(dst []byte, f *field) ([]byte, error) {
	tok, err := d.read()
	if err != nil {
		return dst, err
	}
	if tok.kind != tokObjectOpen {
		return dst, d.unexpectedToken(tok)
	}
	keysBase := len(d.keys)
	defer func() { d.keys = d.keys[:keysBase] }()
	kf, vf := f.key, f.val
	var seen keySet
	seen.base = keysBase
	for {
		tok, err := d.read()
		if err != nil {
			return dst, err
		}
		switch tok.kind {
		case tokObjectClose:
			return dst, nil
		case tokName:
		default:
			return dst, d.unexpectedToken(tok)
		}
		mark := len(dst)
		dst = append(dst, f.tag...)
		var start int
		dst, start = BeginLen(dst)
		dst = append(dst, kf.tag...)
		keyStart := len(dst)
		var ok bool
		dst, ok = d.mapKey(dst, kf, tok.str)
		if !ok {
			return dst[:mark], withField(d.newError(tok.pos, "invalid value for %v key: %s", kf.kind, tok.raw), string(tok.str))
		}
		key := dst[keyStart:]
		if seen.has(d, key) {
			return dst[:mark], withField(d.newError(tok.pos, "duplicate map key %s", tok.raw), string(tok.str))
		}
		name := tok.str
		if vf.msg != nil {
			dst, err = d.messageField(dst, vf)
		} else {
			var v token
			if v, err = d.read(); err == nil {
				dst = append(dst, vf.tag...)
				var isSet bool
				if dst, ok, isSet = d.scalar(dst, vf, v); !ok {
					err = d.invalidValue(vf, v)
				} else if !isSet {
					dst = dst[:mark]
					continue
				}
			}
		}
		if err != nil {
			return dst[:mark], withField(err, string(name))
		}
		seen.add(d, dst[keyStart:keyStart+len(key)])
		dst = EndLen(dst, start)
	}
}

// keySet is the set of the keys of one JSON map: a list in d.keys while
// small, a Go map when large.
type keySet struct {
	base int // start of the list in d.keys
	n    int
	big  map[string]struct{}
}

func (s *keySet) has(d *decoder, k []byte) bool {
	if s.big != nil {
		_, ok := s.big[string(k)]
		return ok
	}
	for ks := d.keys[s.base:]; len(ks) > 0; {
		n, m := protowire.ConsumeVarint(ks)
		ks = ks[m:]
		if bytes.Equal(ks[:n], k) {
			return true
		}
		ks = ks[n:]
	}
	return false
}

func (s *keySet) add(d *decoder, k []byte) {
	s.n++
	switch {
	case s.big != nil:
		s.big[string(k)] = struct{}{}
	case s.n > 32:
		s.big = map[string]struct{}{string(k): {}}
		for ks := d.keys[s.base:]; len(ks) > 0; {
			n, m := protowire.ConsumeVarint(ks)
			ks = ks[m:]
			s.big[string(ks[:n])] = struct{}{}
			ks = ks[n:]
		}
	default:
		d.keys = protowire.AppendBytes(d.keys, k)
	}
}

// mapKey appends the wire value of a map key given as a JSON name.
func (d *decoder) mapKey(dst []byte, kf *field, s []byte) ([]byte, bool) {
	switch kf.kind {
	case protoreflect.StringKind:
		return protowire.AppendBytes(dst, s), true
	case protoreflect.BoolKind:
		switch string(s) {
		case "true":
			return append(dst, 1), true
		case "false":
			return append(dst, 0), true
		}
		return dst, false
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		bits := 64
		if kf.kind == protoreflect.Int32Kind || kf.kind == protoreflect.Sint32Kind || kf.kind == protoreflect.Sfixed32Kind {
			bits = 32
		}
		n, err := strconv.ParseInt(unsafeString(s), 10, bits)
		if err != nil {
			return dst, false
		}
		switch kf.kind {
		case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
			return protowire.AppendVarint(dst, protowire.EncodeZigZag(n)), true
		case protoreflect.Sfixed32Kind:
			return protowire.AppendFixed32(dst, uint32(n)), true
		case protoreflect.Sfixed64Kind:
			return protowire.AppendFixed64(dst, uint64(n)), true
		}
		return protowire.AppendVarint(dst, uint64(n)), true
	default:
		bits := 64
		if kf.kind == protoreflect.Uint32Kind || kf.kind == protoreflect.Fixed32Kind {
			bits = 32
		}
		n, err := strconv.ParseUint(unsafeString(s), 10, bits)
		if err != nil {
			return dst, false
		}
		switch kf.kind {
		case protoreflect.Fixed32Kind:
			return protowire.AppendFixed32(dst, uint32(n)), true
		case protoreflect.Fixed64Kind:
			return protowire.AppendFixed64(dst, n), true
		}
		return protowire.AppendVarint(dst, n), true
	}
}

// skipValue skips one JSON value (for DiscardUnknown).
func (d *decoder) skipValue() error {
	open := 0
	for {
		tok, err := d.read()
		if err != nil {
			return err
		}
		switch tok.kind {
		case tokObjectClose, tokArrayClose:
			open--
		case tokObjectOpen, tokArrayOpen:
			open++
			if open > d.depth {
				return errorf("exceeded max recursion depth")
			}
		case tokEOF:
			return errUnexpectedEOF
		}
		if open == 0 {
			return nil
		}
	}
}
