package wirejson

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var base64Std = base64.StdEncoding

const (
	maxDurationSeconds  = 315576000000
	maxTimestampSeconds = 253402300799
	minTimestampSeconds = -62135596800
	maxNanos            = 999999999
)

// last returns the wire bytes of the last occurrence of field i.
func (e *encoder) last(b []byte, base, i int) ([]byte, bool) {
	r := e.recs[base+i]
	if r.tail == 0 {
		return nil, false
	}
	o := e.occs[r.tail-1]
	return b[o.start:o.end], true
}

// varintField returns the last value of varint field i, 0 when unset.
func (e *encoder) varintField(b []byte, base, i int) uint64 {
	v, ok := e.last(b, base, i)
	if !ok {
		return 0
	}
	x, _ := protowire.ConsumeVarint(v)
	return x
}

// fieldIndex returns the index of field number num of p, or -1.
func fieldIndex(p *Plan, num protowire.Number) int { return p.index(num) }

// wellKnown writes the special JSON form of a well-known type whose
// fields were recorded from b.
func (e *encoder) wellKnown(dst []byte, p *Plan, b []byte, base, obase int) ([]byte, error) {
	switch p.wkt {
	case wktTimestamp:
		secs := int64(e.varintField(b, base, fieldIndex(p, 1)))
		nanos := int64(int32(e.varintField(b, base, fieldIndex(p, 2))))
		if secs < minTimestampSeconds || secs > maxTimestampSeconds {
			return dst, errorf(fmt.Sprintf("google.protobuf.Timestamp: seconds out of range %v", secs))
		}
		if nanos < 0 || nanos > maxNanos {
			return dst, errorf(fmt.Sprintf("google.protobuf.Timestamp: nanos out of range %v", nanos))
		}
		dst = append(dst, '"')
		dst = time.Unix(secs, nanos).UTC().AppendFormat(dst, "2006-01-02T15:04:05")
		dst = appendNanos(dst, nanos)
		return append(dst, 'Z', '"'), nil
	case wktDuration:
		secs := int64(e.varintField(b, base, fieldIndex(p, 1)))
		nanos := int64(int32(e.varintField(b, base, fieldIndex(p, 2))))
		if secs < -maxDurationSeconds || secs > maxDurationSeconds {
			return dst, errorf(fmt.Sprintf("google.protobuf.Duration: seconds out of range %v", secs))
		}
		if nanos < -maxNanos || nanos > maxNanos {
			return dst, errorf(fmt.Sprintf("google.protobuf.Duration: nanos out of range %v", nanos))
		}
		if (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
			return dst, errorf("google.protobuf.Duration: signs of seconds and nanos do not match")
		}
		dst = append(dst, '"')
		if secs < 0 || nanos < 0 {
			dst = append(dst, '-')
			secs, nanos = -secs, -nanos
		}
		dst = strconv.AppendInt(dst, secs, 10)
		dst = appendNanos(dst, nanos)
		return append(dst, 's', '"'), nil
	case wktWrapper:
		f := &p.fields[fieldIndex(p, 1)]
		if v, ok := e.last(b, base, fieldIndex(p, 1)); ok {
			return e.scalar(dst, f, v)
		}
		return e.zero(dst, f), nil
	case wktStruct, wktListValue:
		i := fieldIndex(p, 1)
		f := &p.fields[i]
		r := e.recs[base+i]
		var ok bool
		var err error
		mark := len(dst)
		if r.tail != 0 {
			if f.isMap {
				dst, ok, err = e.mapValue(dst, f, b, r)
			} else {
				dst, ok, err = e.listValue(dst, f, b, r)
			}
		}
		if err != nil || ok {
			return dst, err
		}
		dst = dst[:mark]
		if f.isMap {
			return append(dst, "{}"...), nil
		}
		return append(dst, "[]"...), nil
	case wktValue:
		set := int(e.oneofs[obase])
		if set == 0 {
			return dst, errorf("google.protobuf.Value: none of the oneof fields is set")
		}
		f := &p.fields[set-1]
		r := e.recs[base+set-1]
		switch f.num {
		case 1:
			return append(dst, "null"...), nil
		case 2:
			v, _ := e.last(b, base, set-1)
			x, _ := protowire.ConsumeFixed64(v)
			if n := math.Float64frombits(x); math.IsNaN(n) || math.IsInf(n, 0) {
				return dst, errorf(fmt.Sprintf("google.protobuf.Value.number_value: invalid %v value", n))
			}
		case 5, 6:
			return e.messageValue(dst, f, b, r)
		}
		v, _ := e.last(b, base, set-1)
		return e.scalar(dst, f, v)
	case wktFieldMask:
		return e.fieldMask(dst, p, b, base)
	case wktAny:
		return e.any(dst, p, b, base)
	}
	return dst, errorf("unknown well-known type " + string(p.md.FullName()))
}

// appendNanos writes the fraction of a second with 0, 3, 6 or 9 digits.
func appendNanos(dst []byte, nanos int64) []byte {
	if nanos == 0 {
		return dst
	}
	digits := 9
	for _, d := range [2]int64{1000, 1000} {
		if nanos%d != 0 {
			break
		}
		nanos /= d
		digits -= 3
	}
	dst = append(dst, '.')
	var buf [9]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + nanos%10)
		nanos /= 10
	}
	return append(dst, buf[:digits]...)
}

func (e *encoder) fieldMask(dst []byte, p *Plan, b []byte, base int) ([]byte, error) {
	out := e.getScratch()
	defer func() { e.putScratch(out) }()
	r := e.recs[base+fieldIndex(p, 1)]
	first := true
	for k := r.head; k != 0; k = e.occs[k-1].next {
		o := e.occs[k-1]
		path := b[o.start:o.end]
		if !protoreflect.FullName(unsafeString(path)).IsValid() {
			return dst, errorf(fmt.Sprintf("google.protobuf.FieldMask.paths contains invalid path: %q", path))
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		start := len(out)
		out = appendCamel(out, path)
		if !isSnakeOf(path, out[start:]) {
			return dst, errorf(fmt.Sprintf("google.protobuf.FieldMask.paths contains irreversible value %q", path))
		}
	}
	dst, _ = appendBytesString(dst, out)
	return dst, nil
}

// appendCamel is protobuf's JSONCamelCase.
func appendCamel(dst, s []byte) []byte {
	under := false
	for _, c := range s {
		if c != '_' {
			if under && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
		}
		under = c == '_'
	}
	return dst
}

// isSnakeOf reports whether protobuf's JSONSnakeCase of cc is s.
func isSnakeOf(s, cc []byte) bool {
	j := 0
	for _, c := range cc {
		if 'A' <= c && c <= 'Z' {
			if j >= len(s) || s[j] != '_' {
				return false
			}
			j++
			c += 'a' - 'A'
		}
		if j >= len(s) || s[j] != c {
			return false
		}
		j++
	}
	return j == len(s)
}

func (e *encoder) any(dst []byte, p *Plan, b []byte, base int) ([]byte, error) {
	url, hasURL := e.last(b, base, fieldIndex(p, 1))
	val, _ := e.last(b, base, fieldIndex(p, 2))
	if len(url) == 0 {
		if len(val) == 0 {
			return append(dst, "{}"...), nil
		}
		return dst, errorf("google.protobuf.Any: type_url is not set")
	}
	_ = hasURL
	typeURL := string(url)
	em, err := p.c.byURL(typeURL)
	if err != nil {
		return dst, errorf(fmt.Sprintf("google.protobuf.Any: unable to resolve %q: %v", typeURL, err))
	}
	e.partial++
	defer func() { e.partial-- }()
	if em.wkt == wktNone || em.wkt == wktEmpty {
		return e.message(dst, em, val, typeURL)
	}
	dst = append(dst, `{"@type":`...)
	dst, _ = appendString(dst, typeURL)
	dst = append(dst, `,"value":`...)
	dst, err = e.message(dst, em, val, "")
	if err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}
