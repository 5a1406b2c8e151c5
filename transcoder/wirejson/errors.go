package wirejson

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Error is an error of [Plan.AppendProto] or [Plan.AppendJSON].
type Error struct {
	// Path is the field path of the offending value in the JSON document
	// as the client wrote it ("nesteds[1].child.n", "labels.k"), or the
	// path of the field being written for AppendJSON; "" when the error
	// is about the document as a whole.
	Path string
	// Msg is protojson's wording of the error, with its "(line L:C)"
	// position for decoding errors, without the "proto: " prefix.
	Msg string
}

// Error returns Msg.
func (e *Error) Error() string { return e.Msg }

var errUnexpectedEOF = &Error{Msg: "unexpected EOF"}

func errorf(msg string) error { return &Error{Msg: msg} }

// withField prefixes the path of err with the object key name.
func withField(err error, name string) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	p := name
	if e.Path != "" {
		if e.Path[0] == '[' {
			p += e.Path
		} else {
			p += "." + e.Path
		}
	}
	return &Error{Path: p, Msg: e.Msg}
}

// withIndex prefixes the path of err with an array index.
func withIndex(err error, i int) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	p := "[" + strconv.Itoa(i) + "]"
	if e.Path != "" {
		if e.Path[0] == '[' {
			p += e.Path
		} else {
			p += "." + e.Path
		}
	}
	return &Error{Path: p, Msg: e.Msg}
}

// safeASCII marks the bytes that need no escaping in a JSON string.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string escaped as protojson does. It
// fails on invalid UTF-8 (what it appended is then incomplete).
func appendString(out []byte, s string) ([]byte, bool) {
	return appendBytesString(out, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// appendBytesString is [appendString] for a byte slice.
func appendBytesString(out, s []byte) ([]byte, bool) {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			out = append(out, s[start:i]...)
			out = append(out, '\\')
			switch c {
			case '"', '\\':
				out = append(out, c)
			case '\b':
				out = append(out, 'b')
			case '\f':
				out = append(out, 'f')
			case '\n':
				out = append(out, 'n')
			case '\r':
				out = append(out, 'r')
			case '\t':
				out = append(out, 't')
			default:
				out = append(out, 'u', '0', '0', hexDigit[c>>4], hexDigit[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			return out, false
		}
		i += n
	}
	out = append(out, s[start:]...)
	return append(out, '"'), true
}

const hexDigit = "0123456789abcdef"

// appendFloat writes a float as protojson does: NaN and infinities as
// strings, and the shortest representation, in exponent form for very
// large and very small magnitudes.
func appendFloat(out []byte, n float64, bits int) []byte {
	switch {
	case math.IsNaN(n):
		return append(out, `"NaN"`...)
	case math.IsInf(n, +1):
		return append(out, `"Infinity"`...)
	case math.IsInf(n, -1):
		return append(out, `"-Infinity"`...)
	}
	f := byte('f')
	if abs := math.Abs(n); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			f = 'e'
		}
	}
	out = strconv.AppendFloat(out, n, f, -1, bits)
	if f == 'e' {
		n := len(out)
		if n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return out
}
