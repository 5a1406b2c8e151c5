package wirejson

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// wellKnown reads the special JSON form of a well-known type and appends
// the fields of the message.
func (d *decoder) wellKnown(dst []byte, p *Plan) ([]byte, error) {
	switch p.wkt {
	case wktAny:
		return d.anyValue(dst, p)
	case wktTimestamp:
		tok, err := d.read()
		if err != nil {
			return dst, err
		}
		if tok.kind != tokString {
			return dst, d.unexpectedToken(tok)
		}
		s := unsafeString(tok.str)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return dst, d.newError(tok.pos, "invalid google.protobuf.Timestamp value %s", tok.raw)
		}
		secs := t.Unix()
		if secs < minTimestampSeconds || secs > maxTimestampSeconds {
			return dst, d.newError(tok.pos, "google.protobuf.Timestamp value out of range: %s", tok.raw)
		}
		i := strings.LastIndexByte(s, '.')
		j := strings.LastIndexAny(s, "Z-+")
		if i >= 0 && j >= i && j-i > len(".999999999") {
			return dst, d.newError(tok.pos, "invalid google.protobuf.Timestamp value %s", tok.raw)
		}
		return appendSecondsNanos(dst, secs, int32(t.Nanosecond())), nil
	case wktDuration:
		tok, err := d.read()
		if err != nil {
			return dst, err
		}
		if tok.kind != tokString {
			return dst, d.unexpectedToken(tok)
		}
		secs, nanos, ok := parseDuration(tok.str)
		if !ok {
			return dst, d.newError(tok.pos, "invalid google.protobuf.Duration value %s", tok.raw)
		}
		if secs < -maxDurationSeconds || secs > maxDurationSeconds {
			return dst, d.newError(tok.pos, "google.protobuf.Duration value out of range: %s", tok.raw)
		}
		return appendSecondsNanos(dst, secs, nanos), nil
	case wktWrapper:
		f := &p.fields[p.index(1)]
		tok, err := d.read()
		if err != nil {
			return dst, err
		}
		mark := len(dst)
		dst = append(dst, f.tag...)
		dst, ok, _ := d.scalar(dst, f, tok)
		if !ok {
			return dst[:mark], d.invalidValue(f, tok)
		}
		if zeroWire(f, dst[mark+len(f.tag):]) {
			dst = dst[:mark]
		}
		return dst, nil
	case wktStruct:
		return d.mapField(dst, &p.fields[p.index(1)])
	case wktListValue:
		return d.list(dst, &p.fields[p.index(1)])
	case wktValue:
		return d.knownValue(dst, p)
	case wktFieldMask:
		tok, err := d.read()
		if err != nil {
			return dst, err
		}
		if tok.kind != tokString {
			return dst, d.unexpectedToken(tok)
		}
		str := bytes.TrimSpace(tok.str)
		if len(str) == 0 {
			return dst, nil
		}
		var path []byte
		for _, s0 := range bytes.Split(str, []byte(",")) {
			path = appendSnake(path[:0], s0)
			if bytes.IndexByte(s0, '_') >= 0 || !protoreflect.FullName(path).IsValid() {
				return dst, d.newError(tok.pos, "google.protobuf.FieldMask.paths contains invalid path: %q", s0)
			}
			dst = protowire.AppendTag(dst, 1, protowire.BytesType)
			dst = protowire.AppendBytes(dst, path)
		}
		return dst, nil
	}
	return dst, errorf("unknown well-known type " + string(p.md.FullName()))
}

func appendSecondsNanos(dst []byte, secs int64, nanos int32) []byte {
	if secs != 0 {
		dst = protowire.AppendTag(dst, 1, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(secs))
	}
	if nanos != 0 {
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(nanos)))
	}
	return dst
}

// appendSnake is protobuf's JSONSnakeCase.
func appendSnake(dst, s []byte) []byte {
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			dst = append(dst, '_')
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// parseDuration is protojson's: a decimal number of seconds with at most
// nine fractional digits and an "s" suffix.
func parseDuration(b []byte) (int64, int32, bool) {
	size := len(b)
	if size < 2 || b[size-1] != 's' {
		return 0, 0, false
	}
	b = b[:size-1]
	neg := false
	switch b[0] {
	case '-':
		neg = true
		b = b[1:]
	case '+':
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, 0, false
	}
	var intp []byte
	switch {
	case b[0] == '0':
		b = b[1:]
	case '1' <= b[0] && b[0] <= '9':
		n := 1
		for n < len(b) && '0' <= b[n] && b[n] <= '9' {
			n++
		}
		intp, b = b[:n], b[n:]
	case b[0] == '.':
	default:
		return 0, 0, false
	}
	hasFrac := false
	var frac [9]byte
	if len(b) > 0 {
		if b[0] != '.' {
			return 0, 0, false
		}
		b = b[1:]
		n := 0
		for len(b) > 0 && n < 9 && '0' <= b[0] && b[0] <= '9' {
			frac[n] = b[0]
			n++
			b = b[1:]
		}
		if len(b) > 0 {
			return 0, 0, false
		}
		for i := n; i < 9; i++ {
			frac[i] = '0'
		}
		hasFrac = true
	}
	var secs int64
	if len(intp) > 0 {
		var err error
		if secs, err = strconv.ParseInt(unsafeString(intp), 10, 64); err != nil {
			return 0, 0, false
		}
	}
	var nanos int64
	if hasFrac {
		if nb := bytes.TrimLeft(frac[:], "0"); len(nb) > 0 {
			var err error
			if nanos, err = strconv.ParseInt(string(nb), 10, 32); err != nil {
				return 0, 0, false
			}
		}
	}
	if neg {
		if secs > 0 {
			secs = -secs
		}
		if nanos > 0 {
			nanos = -nanos
		}
	}
	return secs, int32(nanos), true
}

// knownValue reads any JSON value as a google.protobuf.Value.
func (d *decoder) knownValue(dst []byte, p *Plan) ([]byte, error) {
	tok, err := d.peek()
	if err != nil {
		return dst, err
	}
	switch tok.kind {
	case tokNull:
		_, _ = d.read()
		return append(dst, 1<<3|byte(protowire.VarintType), 0), nil
	case tokBool:
		_, _ = d.read()
		v := byte(0)
		if tok.boo {
			v = 1
		}
		return append(dst, 4<<3|byte(protowire.VarintType), v), nil
	case tokNumber:
		_, _ = d.read()
		x, err := strconv.ParseFloat(unsafeString(tok.raw), 64)
		if err != nil {
			return dst, d.newError(tok.pos, "invalid google.protobuf.Value: %s", tok.raw)
		}
		dst = append(dst, 2<<3|byte(protowire.Fixed64Type))
		return protowire.AppendFixed64(dst, math.Float64bits(x)), nil
	case tokString:
		_, _ = d.read()
		dst = append(dst, 3<<3|byte(protowire.BytesType))
		return protowire.AppendBytes(dst, tok.str), nil
	case tokObjectOpen:
		return d.messageField(dst, &p.fields[p.index(5)])
	case tokArrayOpen:
		return d.messageField(dst, &p.fields[p.index(6)])
	}
	return dst, d.newError(tok.pos, "invalid google.protobuf.Value: %s", tok.raw)
}

var (
	errEmptyObject = errors.New("empty object")
	errMissingType = errors.New(`missing "@type" field`)
)

// anyValue reads a google.protobuf.Any: its "@type" is looked for first
// (anywhere in the object), then the object is read as the payload type.
func (d *decoder) anyValue(dst []byte, p *Plan) ([]byte, error) {
	start, err := d.peek()
	if err != nil {
		return dst, err
	}
	if start.kind != tokObjectOpen {
		return dst, d.unexpectedToken(start)
	}
	typeTok, err := d.findTypeURL()
	switch err {
	case nil:
	case errEmptyObject:
		_, _ = d.read()
		_, _ = d.read()
		return dst, nil
	case errMissingType:
		if d.opts.DiscardUnknown {
			return dst, d.skipValue()
		}
		return dst, d.newError(start.pos, `missing "@type" field`)
	default:
		return dst, err
	}
	url := string(typeTok.str)
	em, err := p.c.byURL(url)
	if err != nil {
		return dst, d.newError(typeTok.pos, "unable to resolve %s: %q", typeTok.raw, trimProto(err))
	}
	var payload []byte
	d.partial++
	defer func() { d.partial-- }()
	if em.wkt != wktNone {
		payload, err = d.anyWellKnown(nil, em)
	} else {
		payload, err = d.message(nil, em, true)
	}
	if err != nil {
		return dst, err
	}
	// protojson writes the payload with deterministic marshaling: field
	// number order and sorted map entries.
	var m proto.Message
	if em.mt != nil {
		m = em.mt.New().Interface()
	} else {
		m = dynamicpb.NewMessage(em.md)
	}
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(payload, m); err != nil {
		return dst, d.newError(start.pos, "error in marshaling Any.value field: %v", err)
	}
	payload, err = proto.MarshalOptions{AllowPartial: true, Deterministic: true}.Marshal(m)
	if err != nil {
		return dst, d.newError(start.pos, "error in marshaling Any.value field: %v", err)
	}
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, url)
	if len(payload) > 0 {
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendBytes(dst, payload)
	}
	return dst, nil
}

// trimProto returns the text of err without protobuf's "proto: " prefix,
// as protojson writes nested errors.
func trimProto(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "proto:"); ok {
		rest = strings.TrimPrefix(rest, " ")
		rest = strings.TrimPrefix(rest, "\u00a0")
		return rest
	}
	return s
}

// findTypeURL scans the object ahead (without moving d) for its "@type".
func (d *decoder) findTypeURL() (token, error) {
	c := &decoder{scanner: *d.scanner.clone(), opts: d.opts, depth: d.depth}
	var typeTok token
	found := false
	fields := 0
	_, _ = c.read()
	for {
		tok, err := c.read()
		if err != nil {
			return token{}, err
		}
		switch tok.kind {
		case tokObjectClose:
			if !found {
				if fields > 0 {
					return token{}, errMissingType
				}
				return token{}, errEmptyObject
			}
			return typeTok, nil
		case tokName:
			fields++
			if string(tok.str) != "@type" {
				if err := c.skipValue(); err != nil {
					return token{}, err
				}
				continue
			}
			if found {
				return token{}, c.newError(tok.pos, `duplicate "@type" field`)
			}
			tok, err := c.read()
			if err != nil {
				return token{}, err
			}
			if tok.kind != tokString {
				return token{}, c.newError(tok.pos, `@type field value is not a string: %s`, tok.raw)
			}
			if len(tok.str) == 0 {
				return token{}, c.newError(tok.pos, `@type field contains empty value`)
			}
			typeTok, found = tok, true
		}
	}
}

// anyWellKnown reads the object of an Any whose payload is a well-known
// type: its "value" key holds the payload.
func (d *decoder) anyWellKnown(dst []byte, em *Plan) ([]byte, error) {
	_, _ = d.read()
	found := false
	for {
		tok, err := d.read()
		if err != nil {
			return dst, err
		}
		switch tok.kind {
		case tokObjectClose:
			if !found && em.wkt != wktEmpty {
				return dst, d.newError(tok.pos, `missing "value" field`)
			}
			return dst, nil
		case tokName:
			switch string(tok.str) {
			case "@type":
				if _, err := d.read(); err != nil {
					return dst, err
				}
			case "value":
				if found {
					return dst, d.newError(tok.pos, `duplicate "value" field`)
				}
				var err error
				if em.wkt == wktEmpty {
					dst, err = d.message(dst, em, false)
				} else {
					dst, err = d.wellKnown(dst, em)
				}
				if err != nil {
					return dst, withField(err, "value")
				}
				found = true
			default:
				if d.opts.DiscardUnknown {
					if err := d.skipValue(); err != nil {
						return dst, err
					}
					continue
				}
				return dst, withField(d.newError(tok.pos, "unknown field %s", tok.raw), string(tok.str))
			}
		}
	}
}
