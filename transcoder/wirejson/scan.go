package wirejson

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file is a JSON tokenizer that follows protojson's internal one
// (google.golang.org/protobuf/internal/encoding/json) token for token, so
// that what is accepted, where an error is reported and how it is worded
// are the same. Strings are returned as slices of the input when they have
// no escapes, so reading a token does not allocate.

type kind uint16

const (
	tokInvalid kind = 0
	tokEOF     kind = 1 << iota
	tokNull
	tokBool
	tokNumber
	tokString
	tokName
	tokObjectOpen
	tokObjectClose
	tokArrayOpen
	tokArrayClose
	tokComma

	tokScalar = tokNull | tokBool | tokNumber | tokString
)

type token struct {
	kind kind
	pos  int
	raw  []byte
	str  []byte // the decoded string of a string or name
	boo  bool
}

// scanner reads tokens. A zero scanner is not usable; see reset.
type scanner struct {
	orig, in []byte
	peeked   bool
	last     token
	lastErr  error
	stack    []kind
	strbuf   []byte // decoded strings with escapes
}

func (s *scanner) reset(b []byte) {
	s.orig, s.in = b, b
	s.peeked = false
	s.last = token{}
	s.lastErr = nil
	s.stack = s.stack[:0]
	s.strbuf = s.strbuf[:0]
}

func (s *scanner) peek() (token, error) {
	if !s.peeked {
		s.last, s.lastErr = s.next()
		s.peeked = true
	}
	return s.last, s.lastErr
}

func (s *scanner) read() (token, error) {
	if s.peeked {
		s.peeked = false
		return s.last, s.lastErr
	}
	return s.next()
}

// next is protojson's Decoder.Read.
func (s *scanner) next() (token, error) {
	for {
		tok, err := s.parseNext()
		if err != nil {
			return token{}, err
		}
		switch tok.kind {
		case tokEOF:
			// protojson's condition, operator precedence included: only an
			// open object or array makes EOF unexpected.
			if len(s.stack) != 0 {
				return token{}, errUnexpectedEOF
			}
		case tokNull, tokBool, tokNumber:
			if !s.isValueNext() {
				return token{}, s.syntaxError(tok.pos, "unexpected token %s", tok.raw)
			}
		case tokString:
			if s.isValueNext() {
				break
			}
			if s.last.kind&(tokObjectOpen|tokComma) == 0 {
				return token{}, s.syntaxError(tok.pos, "unexpected token %s", tok.raw)
			}
			if len(s.in) == 0 {
				return token{}, errUnexpectedEOF
			}
			if c := s.in[0]; c != ':' {
				return token{}, s.syntaxError(s.currPos(), `unexpected character %s, missing ":" after field name`, string(c))
			}
			tok.kind = tokName
			s.consume(1)
		case tokObjectOpen, tokArrayOpen:
			if !s.isValueNext() {
				return token{}, s.syntaxError(tok.pos, "unexpected token %s", tok.raw)
			}
			s.stack = append(s.stack, tok.kind)
		case tokObjectClose:
			if len(s.stack) == 0 || s.last.kind&(tokName|tokComma) != 0 || s.stack[len(s.stack)-1] != tokObjectOpen {
				return token{}, s.syntaxError(tok.pos, "unexpected token %s", tok.raw)
			}
			s.stack = s.stack[:len(s.stack)-1]
		case tokArrayClose:
			if len(s.stack) == 0 || s.last.kind == tokComma || s.stack[len(s.stack)-1] != tokArrayOpen {
				return token{}, s.syntaxError(tok.pos, "unexpected token %s", tok.raw)
			}
			s.stack = s.stack[:len(s.stack)-1]
		case tokComma:
			if len(s.stack) == 0 || s.last.kind&(tokScalar|tokObjectClose|tokArrayClose) == 0 {
				return token{}, s.syntaxError(tok.pos, "unexpected token %s", tok.raw)
			}
		}
		s.last = tok
		if tok.kind != tokComma {
			return tok, nil
		}
	}
}

func (s *scanner) isValueNext() bool {
	if len(s.stack) == 0 {
		return s.last.kind == 0
	}
	switch s.stack[len(s.stack)-1] {
	case tokObjectOpen:
		return s.last.kind&tokName != 0
	case tokArrayOpen:
		return s.last.kind&(tokArrayOpen|tokComma) != 0
	}
	return false
}

var errRegexp = regexp.MustCompile(`^([-+._a-zA-Z0-9]{1,32}|.)`)

func (s *scanner) parseNext() (token, error) {
	s.consume(0)
	in := s.in
	if len(in) == 0 {
		return s.token(tokEOF, 0), nil
	}
	switch in[0] {
	case 'n':
		if n := matchWithDelim("null", in); n != 0 {
			return s.token(tokNull, n), nil
		}
	case 't':
		if n := matchWithDelim("true", in); n != 0 {
			t := s.token(tokBool, n)
			t.boo = true
			return t, nil
		}
	case 'f':
		if n := matchWithDelim("false", in); n != 0 {
			return s.token(tokBool, n), nil
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if n, ok := parseNumber(in); ok {
			return s.token(tokNumber, n), nil
		}
	case '"':
		str, n, err := s.parseString(in)
		if err != nil {
			return token{}, err
		}
		t := s.token(tokString, n)
		t.str = str
		return t, nil
	case '{':
		return s.token(tokObjectOpen, 1), nil
	case '}':
		return s.token(tokObjectClose, 1), nil
	case '[':
		return s.token(tokArrayOpen, 1), nil
	case ']':
		return s.token(tokArrayClose, 1), nil
	case ',':
		return s.token(tokComma, 1), nil
	}
	return token{}, s.syntaxError(s.currPos(), "invalid value %s", errRegexp.Find(in))
}

func (s *scanner) token(k kind, size int) token {
	t := token{kind: k, raw: s.in[:size], pos: len(s.orig) - len(s.in)}
	s.consume(size)
	return t
}

func (s *scanner) consume(n int) {
	s.in = s.in[n:]
	for len(s.in) > 0 {
		switch s.in[0] {
		case ' ', '\n', '\r', '\t':
			s.in = s.in[1:]
		default:
			return
		}
	}
}

func (s *scanner) currPos() int { return len(s.orig) - len(s.in) }

// clone returns a scanner that reads on from the same place without
// moving s.
func (s *scanner) clone() *scanner {
	c := *s
	c.stack = append([]kind(nil), s.stack...)
	c.strbuf = nil
	return &c
}

func matchWithDelim(lit string, b []byte) int {
	if len(b) < len(lit) || string(b[:len(lit)]) != lit {
		return 0
	}
	n := len(lit)
	if n < len(b) && isNotDelim(b[n]) {
		return 0
	}
	return n
}

func isNotDelim(c byte) bool {
	return c == '-' || c == '+' || c == '.' || c == '_' ||
		('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// parseString decodes the string starting at in[0] == '"'. The result
// aliases the input when there are no escapes.
func (s *scanner) parseString(in []byte) ([]byte, int, error) {
	in0 := in
	in = in[1:]
	i := indexNeedEscape(in)
	if i < len(in) && in[i] == '"' {
		return in[:i:i], i + 2, nil
	}
	start := len(s.strbuf)
	out := append(s.strbuf, in[:i]...)
	in = in[i:]
	for len(in) > 0 {
		switch r, n := utf8.DecodeRune(in); {
		case r == utf8.RuneError && n == 1:
			return nil, 0, s.syntaxError(s.currPos(), "invalid UTF-8 in string")
		case r < ' ':
			return nil, 0, s.syntaxError(s.currPos(), "invalid character %q in string", r)
		case r == '"':
			in = in[1:]
			s.strbuf = out
			return out[start:len(out):len(out)], len(in0) - len(in), nil
		case r == '\\':
			if len(in) < 2 {
				return nil, 0, errUnexpectedEOF
			}
			switch c := in[1]; c {
			case '"', '\\', '/':
				in, out = in[2:], append(out, c)
			case 'b':
				in, out = in[2:], append(out, '\b')
			case 'f':
				in, out = in[2:], append(out, '\f')
			case 'n':
				in, out = in[2:], append(out, '\n')
			case 'r':
				in, out = in[2:], append(out, '\r')
			case 't':
				in, out = in[2:], append(out, '\t')
			case 'u':
				if len(in) < 6 {
					return nil, 0, errUnexpectedEOF
				}
				v, err := strconv.ParseUint(unsafeString(in[2:6]), 16, 16)
				if err != nil {
					return nil, 0, s.syntaxError(s.currPos(), "invalid escape code %q in string", in[:6])
				}
				in = in[6:]
				r := rune(v)
				if utf16.IsSurrogate(r) {
					if len(in) < 6 {
						return nil, 0, errUnexpectedEOF
					}
					v, err := strconv.ParseUint(unsafeString(in[2:6]), 16, 16)
					r = utf16.DecodeRune(r, rune(v))
					if in[0] != '\\' || in[1] != 'u' || r == unicode.ReplacementChar || err != nil {
						return nil, 0, s.syntaxError(s.currPos(), "invalid escape code %q in string", in[:6])
					}
					in = in[6:]
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, 0, s.syntaxError(s.currPos(), "invalid escape code %q in string", in[:2])
			}
		default:
			i := indexNeedEscape(in[n:])
			in, out = in[n+i:], append(out, in[:n+i]...)
		}
	}
	return nil, 0, errUnexpectedEOF
}

// indexNeedEscape returns the index of the first byte of b that is a
// control character, '"', '\\' or the start of invalid UTF-8 (or of
// U+FFFD, as protojson's check does).
func indexNeedEscape(b []byte) int {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == '"' || c == '\\' {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError {
			return i
		}
		i += n
	}
	return len(b)
}

// position is protojson's line and column (in runes, 1-based) of a byte
// offset.
func (s *scanner) position(pos int) (int, int) {
	b := s.orig[:pos]
	line := bytes.Count(b, []byte("\n")) + 1
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return line, utf8.RuneCount(b) + 1
}

func (s *scanner) syntaxError(pos int, format string, args ...any) error {
	line, col := s.position(pos)
	return &Error{Msg: fmt.Sprintf("syntax error (line %d:%d): ", line, col) + fmt.Sprintf(format, args...)}
}

func (s *scanner) newError(pos int, format string, args ...any) error {
	line, col := s.position(pos)
	return &Error{Msg: fmt.Sprintf("(line %d:%d): ", line, col) + fmt.Sprintf(format, args...)}
}

func (s *scanner) unexpectedToken(t token) error {
	return s.syntaxError(t.pos, "unexpected token %s", t.raw)
}

// parseNumber is protojson's: the length of the JSON number at the start
// of input.
func parseNumber(input []byte) (int, bool) {
	var n int
	s := input
	if len(s) == 0 {
		return 0, false
	}
	if s[0] == '-' {
		s = s[1:]
		n++
		if len(s) == 0 {
			return 0, false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
		n++
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		n++
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
			n++
		}
	default:
		return 0, false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		n += 2
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
			n++
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		n++
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			n++
			if len(s) == 0 {
				return 0, false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
			n++
		}
	}
	if n < len(input) && isNotDelim(input[n]) {
		return 0, false
	}
	return n, true
}

// intString is protojson's integer reading of a number token: the decimal
// integer it denotes ("1e3" is "1000", "1.5" is not an integer).
func intString(raw []byte, buf []byte) ([]byte, bool) {
	s := raw
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	var intp, frac, exp []byte
	switch {
	case s[0] == '0':
		s = s[1:]
	default:
		n := 1
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		intp, s = s[:n], s[n:]
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		n := 2
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		frac, s = s[1:n], s[n:]
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		n := 0
		if s[0] == '+' || s[0] == '-' {
			if len(s) == 1 {
				return nil, false
			}
			n++
		}
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		exp = s[:n]
	}
	frac = bytes.TrimRight(frac, "0")
	if len(intp) == 0 && len(frac) == 0 {
		return append(buf, '0'), true
	}
	e := 0
	if len(exp) > 0 {
		i, err := strconv.ParseInt(unsafeString(exp), 10, 32)
		if err != nil {
			return nil, false
		}
		e = int(i)
	}
	if neg {
		buf = append(buf, '-')
	}
	if e >= 0 {
		if len(frac) > e || len(intp)+e > 20 {
			return nil, false
		}
		buf = append(buf, intp...)
		buf = append(buf, frac...)
		for i := 0; i < e-len(frac); i++ {
			buf = append(buf, '0')
		}
		return buf, true
	}
	if len(frac) > 0 {
		return nil, false
	}
	index := len(intp) + e
	if index < 0 {
		return nil, false
	}
	for i := index; i < len(intp); i++ {
		if intp[i] != '0' {
			return nil, false
		}
	}
	return append(buf, intp[:index]...), true
}

// parseInt reads a number token as a signed integer of the given size.
func parseInt(raw []byte, bits int) (int64, bool) {
	if n, ok := fastInt(raw); ok {
		if bits == 32 && int64(int32(n)) != n {
			return 0, false
		}
		return n, true
	}
	var buf [32]byte
	s, ok := intString(raw, buf[:0])
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(unsafeString(s), 10, bits)
	return n, err == nil
}

// parseUint reads a number token as an unsigned integer of the given size.
func parseUint(raw []byte, bits int) (uint64, bool) {
	var buf [32]byte
	s, ok := intString(raw, buf[:0])
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(unsafeString(s), 10, bits)
	return n, err == nil
}

// fastInt reads a plain decimal integer of at most 18 digits.
func fastInt(raw []byte) (int64, bool) {
	s := raw
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// numberInString reports whether s is exactly one JSON number token, as
// protojson requires of numbers sent as strings.
func numberInString(s []byte) bool {
	if len(s) == 0 || len(bytes.TrimSpace(s)) != len(s) {
		return false
	}
	n, ok := parseNumber(s)
	return ok && n == len(s)
}

// unsafeString views b as a string for a call that does not keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
