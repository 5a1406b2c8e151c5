package openapi

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rosetta-gateway/rosetta/router"
)

// elemKind is the kind of one element of a parsed template.
type elemKind uint8

const (
	elemLiteral    elemKind = iota
	elemStar                // "*": one segment
	elemDoubleStar          // "**": any number of segments, always last
	elemVariable            // "{path=...}"
)

// elem is one top-level element of a path template: a segment, or a
// variable spanning the segments in sub.
type elem struct {
	kind elemKind
	lit  string // elemLiteral: the canonical literal
	path string // elemVariable: the field path
	sub  []elem // elemVariable: its segments (literals and wildcards)
}

// parsedTemplate is a template split into elements and its verb.
type parsedTemplate struct {
	elems []elem
	verb  string
}

// parseTemplate splits the canonical form of a template (which the router
// has already validated) into its elements. router.Template does not
// export its segments, so its canonical String is parsed again here.
func parseTemplate(t *router.Template) (parsedTemplate, error) {
	s := t.String()
	var pt parsedTemplate
	if s == "" || s[0] != '/' {
		return pt, fmt.Errorf("template %q does not start with /", s)
	}
	i := 1
	for {
		if i < len(s) && s[i] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return pt, fmt.Errorf("template %q: missing }", s)
			}
			inner := s[i+1 : i+end]
			path, segs, ok := strings.Cut(inner, "=")
			if !ok {
				segs = "*"
			}
			v := elem{kind: elemVariable, path: path}
			for _, seg := range strings.Split(segs, "/") {
				v.sub = append(v.sub, segmentElem(seg))
			}
			pt.elems = append(pt.elems, v)
			i += end + 1
		} else {
			j := i
			for j < len(s) && s[j] != '/' && s[j] != ':' {
				j++
			}
			pt.elems = append(pt.elems, segmentElem(s[i:j]))
			i = j
		}
		if i >= len(s) {
			return pt, nil
		}
		if s[i] == ':' {
			pt.verb = s[i+1:]
			return pt, nil
		}
		i++ // "/"
	}
}

func segmentElem(seg string) elem {
	switch seg {
	case "*":
		return elem{kind: elemStar}
	case "**":
		return elem{kind: elemDoubleStar}
	}
	return elem{kind: elemLiteral, lit: seg}
}

// wildcard is one path parameter of a template: a "*" or "**" segment, or
// a one-segment variable.
type wildcard struct {
	name   string
	multi  bool   // "**": may span segments
	field  string // the variable it belongs to ("" outside variables)
	single bool   // the whole (one-segment) variable
	hint   string // the literal before it, if any
	varIdx int    // index of its variable in the template (-1 outside)
}

// pathShape is a template with its parameters named: what becomes one
// OpenAPI path.
type pathShape struct {
	key   string // the path with every parameter written "{}": templates with equal keys share one OpenAPI path
	parts []string
	wild  []*wildcard
	verb  string
	vars  []varShape
}

// varShape is one variable (or an unbound wildcard) and its wildcards.
type varShape struct {
	field string
	tmpl  []string // segments; wildcards as indexes into wild, written "\x00<i>"
}

// shapeOf names the wildcards of a parsed template: a wildcard after a
// literal inside its variable takes the literal's singular
// ("shelves/*" → shelf); a one-segment variable takes its field path; any
// other wildcard takes its variable's name, with its index when the
// variable has several, or "segment<i>" outside variables. Names repeat
// nowhere in one path.
func shapeOf(pt parsedTemplate) *pathShape {
	sh := &pathShape{verb: pt.verb}
	var key strings.Builder
	add := func(w *wildcard) string {
		sh.wild = append(sh.wild, w)
		return "\x00" + strconv.Itoa(len(sh.wild)-1)
	}
	prevLit := ""
	for _, e := range pt.elems {
		switch e.kind {
		case elemLiteral:
			sh.parts = append(sh.parts, e.lit)
			key.WriteString("/" + e.lit)
			prevLit = e.lit
		case elemStar, elemDoubleStar:
			w := &wildcard{multi: e.kind == elemDoubleStar, hint: prevLit, varIdx: -1}
			tok := add(w)
			sh.parts = append(sh.parts, tok)
			sh.vars = append(sh.vars, varShape{tmpl: []string{tok}})
			key.WriteString("/{}")
			prevLit = ""
		case elemVariable:
			vs := varShape{field: e.path}
			single := len(e.sub) == 1 && e.sub[0].kind == elemStar
			var inner []string
			lit := ""
			for _, s := range e.sub {
				if s.kind == elemLiteral {
					inner = append(inner, s.lit)
					vs.tmpl = append(vs.tmpl, s.lit)
					key.WriteString("/" + s.lit)
					lit = s.lit
					continue
				}
				w := &wildcard{multi: s.kind == elemDoubleStar, field: e.path, single: single, hint: lit, varIdx: len(sh.vars)}
				tok := add(w)
				inner = append(inner, tok)
				vs.tmpl = append(vs.tmpl, tok)
				key.WriteString("/{}")
				lit = ""
			}
			sh.parts = append(sh.parts, inner...)
			sh.vars = append(sh.vars, vs)
			prevLit = ""
		}
	}
	if pt.verb != "" {
		key.WriteString(":" + pt.verb)
	}
	sh.key = key.String()
	sh.name()
	return sh
}

// name gives every wildcard of sh its parameter name.
func (sh *pathShape) name() {
	perVar := map[int]int{}
	for _, w := range sh.wild {
		if w.varIdx >= 0 {
			perVar[w.varIdx]++
		}
	}
	used := map[string]bool{}
	seen := map[int]int{}
	for i, w := range sh.wild {
		var name string
		switch {
		case w.single:
			name = w.field
		case w.hint != "" && singular(w.hint) != "":
			name = singular(w.hint)
		case w.varIdx >= 0:
			seen[w.varIdx]++
			name = lastName(w.field)
			if perVar[w.varIdx] > 1 {
				name += strconv.Itoa(seen[w.varIdx])
			}
		default:
			name = "segment" + strconv.Itoa(i+1)
		}
		base := name
		for n := 2; used[name]; n++ {
			name = base + strconv.Itoa(n)
		}
		used[name] = true
		w.name = name
	}
}

// lastName is the last name of a field path.
func lastName(path string) string {
	return path[strings.LastIndexByte(path, '.')+1:]
}

// singular turns a collection literal into a parameter name:
// "shelves" → "shelf", "policies" → "policy", "boxes" → "box",
// "books" → "book". It returns "" for literals that are no identifier
// (escapes, punctuation other than "_" and "-").
func singular(lit string) string {
	for i := 0; i < len(lit); i++ {
		c := lit[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return ""
		}
	}
	if c := lit[0]; c >= '0' && c <= '9' {
		return ""
	}
	l := strings.ToLower(lit)
	switch {
	case len(l) > 3 && strings.HasSuffix(l, "ies"):
		return lit[:len(lit)-3] + "y"
	case len(l) > 3 && strings.HasSuffix(l, "ves"):
		return lit[:len(lit)-3] + "f"
	case strings.HasSuffix(l, "sses"), strings.HasSuffix(l, "shes"), strings.HasSuffix(l, "ches"),
		strings.HasSuffix(l, "xes"), strings.HasSuffix(l, "zes"), strings.HasSuffix(l, "uses"):
		return lit[:len(lit)-2]
	case strings.HasSuffix(l, "ss"), strings.HasSuffix(l, "us"), strings.HasSuffix(l, "is"):
		return lit
	case len(l) > 1 && strings.HasSuffix(l, "s"):
		return lit[:len(lit)-1]
	}
	return lit
}

// adopt renames sh's wildcards after those of first, a shape with the
// same key: OpenAPI paths that differ only in parameter names are one
// path, so every template of a key uses the names of the first.
func (sh *pathShape) adopt(first *pathShape) {
	for i, w := range sh.wild {
		w.name = first.wild[i].name
	}
}

// path returns the OpenAPI path of sh.
func (sh *pathShape) path() string {
	var b strings.Builder
	for _, p := range sh.parts {
		b.WriteByte('/')
		b.WriteString(sh.expand(p))
	}
	if sh.verb != "" {
		b.WriteByte(':')
		b.WriteString(sh.verb)
	}
	return b.String()
}

// expand writes a wildcard token as "{name}" and a literal as is.
func (sh *pathShape) expand(tok string) string {
	if strings.HasPrefix(tok, "\x00") {
		i, _ := strconv.Atoi(tok[1:])
		return "{" + sh.wild[i].name + "}"
	}
	return tok
}

// templateVars describes sh's variables for x-rosetta-template.
func (sh *pathShape) templateVars() []TemplateVar {
	var out []TemplateVar
	for _, v := range sh.vars {
		tv := TemplateVar{Field: v.field, Parameters: []string{}}
		parts := make([]string, len(v.tmpl))
		for i, tok := range v.tmpl {
			parts[i] = sh.expand(tok)
			if strings.HasPrefix(tok, "\x00") {
				n, _ := strconv.Atoi(tok[1:])
				tv.Parameters = append(tv.Parameters, sh.wild[n].name)
			}
		}
		tv.Template = strings.Join(parts, "/")
		out = append(out, tv)
	}
	return out
}

// varTemplate returns the template of the variable a wildcard belongs to.
func (sh *pathShape) varTemplate(w *wildcard) string {
	if w.varIdx < 0 {
		return ""
	}
	v := sh.vars[w.varIdx]
	parts := make([]string, len(v.tmpl))
	for i, tok := range v.tmpl {
		parts[i] = sh.expand(tok)
	}
	return strings.Join(parts, "/")
}
