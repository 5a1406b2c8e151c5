package router

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// segKind is the kind of one template segment.
type segKind uint8

const (
	segLiteral    segKind = iota // matches one segment equal to the literal
	segStar                      // "*": matches one non-empty segment
	segDoubleStar                // "**": matches zero or more segments; always last
)

// segment is one parsed template segment.
type segment struct {
	kind segKind
	lit  string // canonical literal text (escapes of unreserved bytes decoded, hex upper-cased)
	key  string // literal fully percent-decoded: what a path segment must decode to
}

// tmplVar is one variable of a template and the segments it spans.
type tmplVar struct {
	path  string // field path, e.g. "book.shelf_id"
	start int    // index of the first segment it spans
	end   int    // one past its last segment
	multi bool   // spans several segments or "**": %2F stays encoded
	toEnd bool   // ends in "**": at match time it spans to the end of the path
}

// Template is a parsed HTTP path template in the syntax of google/api/http.proto:
//
//	Template = "/" Segments [ Verb ] ;
//	Segments = Segment { "/" Segment } ;
//	Segment  = "*" | "**" | LITERAL | Variable ;
//	Variable = "{" FieldPath [ "=" Segments ] "}" ;
//	FieldPath = IDENT { "." IDENT } ;
//	Verb     = ":" LITERAL ;
//
// A LITERAL is a non-empty run of RFC 3986 path characters other than ":"
// and "*"; other characters must be percent-encoded. "**" may appear only
// as the last segment, variables do not nest, and "{var}" means "{var=*}".
// A Template is immutable and safe for concurrent use.
type Template struct {
	segs  []segment
	vars  []tmplVar
	verb  string // canonical verb literal, without ":"; "" when none
	vkey  string // verb fully percent-decoded
	canon string
}

// TemplateError reports a syntax error in a path template. Offset is the
// byte offset in Template where the problem was found.
type TemplateError struct {
	Template string
	Offset   int
	Msg      string
}

// Error formats e as `parse "<template>": <msg> at offset <n>`.
func (e *TemplateError) Error() string {
	return fmt.Sprintf("parse %q: %s", e.Template, e.Detail())
}

// Detail is the message without the template: `<msg> at offset <n>`.
func (e *TemplateError) Detail() string {
	return fmt.Sprintf("%s at offset %d", e.Msg, e.Offset)
}

// ParseTemplate parses a path template such as
// "/v1/{name=shelves/*/books/*}:publish". A syntax error is a
// [*TemplateError] that says what is wrong and at which byte offset.
func ParseTemplate(s string) (*Template, error) {
	p := parser{s: s}
	t, err := p.parse()
	if err != nil {
		return nil, err
	}
	t.canon = t.format()
	return t, nil
}

// MustParseTemplate is like [ParseTemplate] but panics on error. It is meant
// for templates that are constants in code and tests.
func MustParseTemplate(s string) *Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the canonical form of t: "{var=*}" is written "{var}",
// percent-escapes of unreserved characters are decoded and other escapes
// use upper-case hex. Parsing the canonical form gives an equal Template.
func (t *Template) String() string { return t.canon }

// Vars returns the field paths of t's variables in template order. The
// caller may modify the returned slice.
func (t *Template) Vars() []string {
	out := make([]string, len(t.vars))
	for i, v := range t.vars {
		out[i] = v.path
	}
	return out
}

// Verb returns t's custom verb without the ":" (canonical form), or "".
func (t *Template) Verb() string { return t.verb }

func (t *Template) format() string {
	var sb strings.Builder
	vi := 0
	for i := 0; i < len(t.segs); i++ {
		sb.WriteByte('/')
		if vi < len(t.vars) && t.vars[vi].start == i {
			v := t.vars[vi]
			vi++
			sb.WriteByte('{')
			sb.WriteString(v.path)
			if !(v.end-v.start == 1 && t.segs[i].kind == segStar) {
				sb.WriteByte('=')
				for j := v.start; j < v.end; j++ {
					if j > v.start {
						sb.WriteByte('/')
					}
					sb.WriteString(t.segs[j].text())
				}
			}
			sb.WriteByte('}')
			i = v.end - 1
			continue
		}
		sb.WriteString(t.segs[i].text())
	}
	if t.verb != "" {
		sb.WriteByte(':')
		sb.WriteString(t.verb)
	}
	return sb.String()
}

func (s segment) text() string {
	switch s.kind {
	case segStar:
		return "*"
	case segDoubleStar:
		return "**"
	}
	return s.lit
}

// parser is a recursive-descent parser over one template string.
type parser struct {
	s     string
	i     int
	segs  []segment
	vars  []tmplVar
	inVar bool
	dstar int // offset of a "**" segment, or -1 before one is seen
}

func (p *parser) errf(off int, format string, args ...any) error {
	return &TemplateError{Template: p.s, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// char returns the character at p.i (a whole UTF-8 sequence), for errors.
func (p *parser) char() string {
	_, n := utf8.DecodeRuneInString(p.s[p.i:])
	return p.s[p.i : p.i+n]
}

func (p *parser) parse() (*Template, error) {
	p.dstar = -1
	if p.s == "" || p.s[0] != '/' {
		return nil, p.errf(0, `template must start with "/"`)
	}
	p.i = 1
	if err := p.segments(); err != nil {
		return nil, err
	}
	t := &Template{segs: p.segs, vars: p.vars}
	if p.i < len(p.s) && p.s[p.i] == ':' {
		p.i++
		start := p.i
		lit, key, err := p.literal()
		if err != nil {
			return nil, err
		}
		if lit == "" {
			return nil, p.errf(start, "empty verb")
		}
		t.verb, t.vkey = lit, key
		if p.i < len(p.s) {
			return nil, p.errf(p.i, "unexpected %q after verb", p.char())
		}
	}
	if p.i < len(p.s) {
		return nil, p.errf(p.i, "unexpected %q", p.char())
	}
	return t, nil
}

// segments parses Segment { "/" Segment }.
func (p *parser) segments() error {
	for {
		if err := p.segment(); err != nil {
			return err
		}
		if p.i < len(p.s) && p.s[p.i] == '/' {
			p.i++
			continue
		}
		return nil
	}
}

func (p *parser) segment() error {
	start := p.i
	if p.dstar >= 0 {
		return p.errf(p.dstar, `"**" must be the last segment`)
	}
	if p.i == len(p.s) {
		return p.errf(start, "empty segment")
	}
	switch c := p.s[p.i]; c {
	case '/', ':':
		return p.errf(start, "empty segment")
	case '}':
		if p.inVar {
			return p.errf(start, "empty segment")
		}
		return p.errf(start, `unexpected "}"`)
	case '{':
		return p.variable()
	case '*':
		kind := segStar
		p.i++
		if p.i < len(p.s) && p.s[p.i] == '*' {
			kind = segDoubleStar
			p.i++
		}
		if p.i < len(p.s) && !strings.ContainsRune("/:}", rune(p.s[p.i])) {
			return p.errf(start, `"*" must be a whole segment`)
		}
		if kind == segDoubleStar {
			p.dstar = start
		}
		p.segs = append(p.segs, segment{kind: kind})
		return nil
	}
	lit, key, err := p.literal()
	if err != nil {
		return err
	}
	if lit == "" {
		// literal stops without consuming only at a byte it cannot hold.
		return p.errf(start, "empty segment")
	}
	p.segs = append(p.segs, segment{kind: segLiteral, lit: lit, key: key})
	return nil
}

// variable parses "{" FieldPath [ "=" Segments ] "}".
func (p *parser) variable() error {
	open := p.i
	if p.inVar {
		return p.errf(open, "nested variable")
	}
	p.i++
	path, err := p.fieldPath()
	if err != nil {
		return err
	}
	for _, v := range p.vars {
		if v.path == path {
			return p.errf(open, "variable %q appears twice", path)
		}
	}
	v := tmplVar{path: path, start: len(p.segs)}
	if p.i < len(p.s) && p.s[p.i] == '=' {
		p.i++
		p.inVar = true
		err := p.segments()
		p.inVar = false
		if err != nil {
			return err
		}
	} else {
		p.segs = append(p.segs, segment{kind: segStar})
	}
	if p.i == len(p.s) {
		return p.errf(p.i, `missing "}"`)
	}
	if p.s[p.i] != '}' {
		return p.errf(p.i, `unexpected %q in variable (want "/" or "}")`, p.char())
	}
	p.i++
	v.end = len(p.segs)
	v.toEnd = p.segs[v.end-1].kind == segDoubleStar
	v.multi = v.end-v.start > 1 || v.toEnd
	p.vars = append(p.vars, v)
	return nil
}

// fieldPath parses IDENT { "." IDENT }.
func (p *parser) fieldPath() (string, error) {
	start := p.i
	for {
		identStart := p.i
		for p.i < len(p.s) && isIdentByte(p.s[p.i], p.i == identStart) {
			p.i++
		}
		if p.i == identStart {
			if p.i == len(p.s) {
				if p.i == start {
					return "", p.errf(p.i, "missing field path")
				}
				return "", p.errf(p.i, `missing "}"`)
			}
			if p.i == start && p.s[p.i] == '}' {
				return "", p.errf(p.i, "missing field path")
			}
			return "", p.errf(p.i, "invalid character %q in field path", p.char())
		}
		if p.i < len(p.s) && p.s[p.i] == '.' {
			p.i++
			continue
		}
		return p.s[start:p.i], nil
	}
}

func isIdentByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

// literal parses a possibly empty LITERAL and returns its canonical text
// and its decoded key. It stops at "/", ":", "}" or the end.
func (p *parser) literal() (lit, key string, err error) {
	start := p.i
	var canon, dec strings.Builder
	escaped := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '/' || c == ':' || c == '}':
			return p.finishLiteral(start, escaped, &canon, &dec)
		case c == '%':
			if p.i+2 >= len(p.s) || !isHex(p.s[p.i+1]) || !isHex(p.s[p.i+2]) {
				end := min(p.i+3, len(p.s))
				return "", "", p.errf(p.i, "invalid percent-escape %q", p.s[p.i:end])
			}
			b := unhex(p.s[p.i+1])<<4 | unhex(p.s[p.i+2])
			if !escaped {
				escaped = true
				canon.WriteString(p.s[start:p.i])
				dec.WriteString(p.s[start:p.i])
			}
			if isUnreserved(b) {
				canon.WriteByte(b)
			} else {
				canon.WriteByte('%')
				canon.WriteByte(upperHex[b>>4])
				canon.WriteByte(upperHex[b&15])
			}
			dec.WriteByte(b)
			p.i += 3
		case c == '*':
			return "", "", p.errf(p.i, `"*" must be a whole segment`)
		case c == '{':
			return "", "", p.errf(p.i, `"{" must start a segment`)
		case isLiteralByte(c):
			if escaped {
				canon.WriteByte(c)
				dec.WriteByte(c)
			}
			p.i++
		default:
			return "", "", p.errf(p.i, "invalid character %q (percent-encode it)", p.char())
		}
	}
	return p.finishLiteral(start, escaped, &canon, &dec)
}

func (p *parser) finishLiteral(start int, escaped bool, canon, dec *strings.Builder) (string, string, error) {
	if !escaped {
		s := p.s[start:p.i]
		return s, s, nil
	}
	return canon.String(), dec.String(), nil
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// isUnreserved reports RFC 3986 unreserved bytes.
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isLiteralByte reports the bytes a LITERAL may hold unescaped: RFC 3986
// pchar without ":" (it starts the verb) and "*" (a wildcard).
func isLiteralByte(c byte) bool {
	if isUnreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '+', ',', ';', '=', '@':
		return true
	}
	return false
}
