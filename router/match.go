package router

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Match is the result of a successful [Table.Match].
type Match struct {
	// Route is the matched route.
	Route *Route
	// Values holds the percent-decoded value of each path variable:
	// Values[i] belongs to Route.Vars[i]. A variable that spans one segment
	// is fully decoded ("%2F" becomes "/"); a multi-segment variable keeps
	// "%2F" and "%2f" as they are, as google/api/http.proto specifies.
	Values []string
}

// Table is an immutable routing table built by [Build] from one registry
// snapshot and config. It is safe for concurrent use; a new snapshot or
// config builds a new Table, which callers swap in atomically.
type Table struct {
	root     *node
	hasVerbs bool
	routes   []*Route
	byMethod map[protoreflect.FullName][]*Route
}

// node is one trie node; every node sits at a fixed segment depth.
type node struct {
	litIdx map[string]*node // by decoded literal
	lits   []litEdge        // the same edges, for segments holding escapes
	star   *node
	dstar  []*leaf // templates whose "**" starts here, one leaf per verb
	leaves []*leaf // templates that end here, one leaf per verb
}

type litEdge struct {
	key string
	n   *node
}

// leaf holds the routes of one template shape, one per HTTP method.
type leaf struct {
	verb   string   // decoded verb; "" for templates without one
	routes []*Route // by HTTPMethod, sorted
	any    *Route   // custom kind "*": any HTTP method
	allow  []string // sorted HTTP methods of routes (and "*" when any is set)
}

func (n *node) lit(seg string) *node {
	if len(n.lits) == 0 {
		return nil
	}
	if strings.IndexByte(seg, '%') < 0 {
		return n.litIdx[seg]
	}
	for _, e := range n.lits {
		if literalEqual(e.key, seg) {
			return e.n
		}
	}
	return nil
}

// insert adds r under its template. It returns the route already bound to
// the same HTTP method and template shape, if any, and then adds nothing.
func (t *Table) insert(r *Route) *Route {
	if t.root == nil {
		t.root = &node{}
	}
	n := t.root
	tp := r.Template
	leaves := &n.leaves
	for _, s := range tp.segs {
		switch s.kind {
		case segLiteral:
			c := n.litIdx[s.key]
			if c == nil {
				c = &node{}
				if n.litIdx == nil {
					n.litIdx = make(map[string]*node)
				}
				n.litIdx[s.key] = c
				n.lits = append(n.lits, litEdge{key: s.key, n: c})
			}
			n = c
		case segStar:
			if n.star == nil {
				n.star = &node{}
			}
			n = n.star
		case segDoubleStar: // always last
			leaves = &n.dstar
		}
		if s.kind != segDoubleStar {
			leaves = &n.leaves
		}
	}
	if tp.vkey != "" {
		t.hasVerbs = true
	}
	var l *leaf
	for _, x := range *leaves {
		if x.verb == tp.vkey {
			l = x
		}
	}
	if l == nil {
		l = &leaf{verb: tp.vkey}
		*leaves = append(*leaves, l)
	}
	if r.HTTPMethod == "*" {
		if l.any != nil {
			return l.any
		}
		l.any = r
	} else {
		for _, x := range l.routes {
			if x.HTTPMethod == r.HTTPMethod {
				return x
			}
		}
		l.routes = append(l.routes, r)
		slices.SortFunc(l.routes, func(a, b *Route) int { return strings.Compare(a.HTTPMethod, b.HTTPMethod) })
	}
	l.allow = l.allow[:0]
	for _, x := range l.routes {
		l.allow = append(l.allow, x.HTTPMethod)
	}
	if l.any != nil {
		l.allow = append(l.allow, "*")
	}
	return nil
}

// Match finds the route for an HTTP method and an escaped request path
// (r.URL.EscapedPath(), without the query). It returns:
//
//   - ok: the route and the decoded variable values;
//   - !ok with a non-empty allow list: the path matches templates bound to
//     other HTTP methods only; answer 405 with an Allow header listing them
//     (sorted and deduplicated; a new slice the caller owns);
//   - !ok with a nil allow list: nothing matches; answer 404.
//
// Matching follows google/api/http.proto on the escaped path split at "/":
// at each segment a literal beats "*", which beats "**", backtracking when
// a branch leads nowhere. A path whose last segment holds ":" is first
// tried with the text after the last ":" as custom verb against templates
// with that verb, then with the whole segment as it is, so "/v1/things/a:b"
// still reaches "/v1/things/{id}" when no template has the verb "b".
//
// The HTTP method must match exactly: HEAD does not match a GET binding
// (an adapter that wants HEAD-as-GET retries with GET itself), and a
// custom binding with kind "*" matches every method. A trailing slash
// makes a different path ("/v1/shelves/" does not match "/v1/shelves"),
// "*" and single-segment variables never match an empty segment, and an
// empty path, a path not starting with "/" or one holding a malformed
// percent-escape never matches. Match allocates only Values (and decoded
// values that held escapes); use [Table.MatchInto] to reuse a slice. A nil
// Table matches nothing.
func (t *Table) Match(method, escapedPath string) (m Match, allow []string, ok bool) {
	return t.MatchInto(nil, method, escapedPath)
}

// MatchInto is [Table.Match] but stores the values in values[:0], growing
// it only when its capacity is too small, so that a caller can reuse one
// slice across requests.
func (t *Table) MatchInto(values []string, method, escapedPath string) (m Match, allow []string, ok bool) {
	if t == nil || t.root == nil || escapedPath == "" || escapedPath[0] != '/' || !validEscapes(escapedPath) {
		return Match{}, nil, false
	}
	var segBuf [32]string
	var offBuf [32]int
	segs, offs := splitPath(escapedPath, segBuf[:0], offBuf[:0])
	last := segs[len(segs)-1]
	s := search{method: method, segs: segs}
	if r := s.run(t, last); r != nil {
		return Match{Route: r, Values: varValues(r, escapedPath, segs, offs, values)}, nil, true
	}
	var allowed []string
	s.allow = &allowed
	s.run(t, last)
	if len(allowed) == 0 {
		return Match{}, nil, false
	}
	slices.Sort(allowed)
	return Match{}, slices.Compact(allowed), false
}

// search is the state of one match. It lives on MatchInto's stack, and
// nothing derived from it is stored through it, so that the segment
// buffers it points to stay on that stack.
type search struct {
	method  string
	segs    []string  // segments of the path; the last one without its verb while hasVerb
	verb    string    // escaped verb, when hasVerb
	hasVerb bool      // the last segment was split at its last ":"
	allow   *[]string // when set, gather allowed methods instead of returning a route
}

// run tries the verb split of last (the last segment) first, then the path
// as it is. When it returns a route, s.segs is the split that matched.
func (s *search) run(t *Table, last string) *Route {
	if c := strings.LastIndexByte(last, ':'); t.hasVerbs && c >= 0 && c < len(last)-1 {
		s.verb, s.hasVerb = last[c+1:], true
		s.segs[len(s.segs)-1] = last[:c]
		if r := s.walk(t.root, 0); r != nil {
			return r
		}
		s.segs[len(s.segs)-1] = last
		s.verb, s.hasVerb = "", false
	}
	return s.walk(t.root, 0)
}

func (s *search) walk(n *node, i int) *Route {
	if i == len(s.segs) {
		if r := s.leaf(n.leaves); r != nil {
			return r
		}
		return s.leaf(n.dstar)
	}
	seg := s.segs[i]
	if c := n.lit(seg); c != nil {
		if r := s.walk(c, i+1); r != nil {
			return r
		}
	}
	if n.star != nil && seg != "" {
		if r := s.walk(n.star, i+1); r != nil {
			return r
		}
	}
	return s.leaf(n.dstar)
}

// leaf picks, among the leaves of one node, the one with the request's verb
// and returns its route for the request's method.
func (s *search) leaf(ls []*leaf) *Route {
	for _, l := range ls {
		if s.hasVerb {
			if l.verb == "" || !literalEqual(l.verb, s.verb) {
				continue
			}
		} else if l.verb != "" {
			continue
		}
		if s.allow != nil {
			*s.allow = append(*s.allow, l.allow...)
			return nil
		}
		for _, r := range l.routes {
			if r.HTTPMethod == s.method {
				return r
			}
		}
		return l.any
	}
	return nil
}

// varValues extracts and decodes r's variables from the matched path,
// split into segs at offs. It is not a method of search so that the
// segment buffers on MatchInto's stack do not escape.
func varValues(r *Route, path string, segs []string, offs []int, dst []string) []string {
	vars := r.Template.vars
	if len(vars) == 0 {
		return dst[:0]
	}
	if cap(dst) < len(vars) {
		dst = make([]string, 0, len(vars))
	}
	dst = dst[:0]
	for _, v := range vars {
		end := v.end
		if v.toEnd {
			end = len(segs)
		}
		if !v.multi {
			dst = append(dst, unescape(segs[v.start], false))
			continue
		}
		if end <= v.start {
			dst = append(dst, "")
			continue
		}
		raw := path[offs[v.start] : offs[end-1]+len(segs[end-1])]
		dst = append(dst, unescape(raw, true))
	}
	return dst
}

// splitPath splits path (which starts with "/") into its segments and
// their offsets, appending to the given slices.
func splitPath(path string, segs []string, offs []int) ([]string, []int) {
	start := 1
	for {
		i := strings.IndexByte(path[start:], '/')
		if i < 0 {
			return append(segs, path[start:]), append(offs, start)
		}
		segs = append(segs, path[start:start+i])
		offs = append(offs, start)
		start += i + 1
	}
}

// validEscapes reports whether every "%" in s starts a %XX escape.
func validEscapes(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0; {
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		j := strings.IndexByte(s[i+3:], '%')
		if j < 0 {
			return true
		}
		i += 3 + j
	}
	return true
}

// literalEqual reports whether the escaped path text raw decodes to key.
// raw holds only valid escapes.
func literalEqual(key, raw string) bool {
	k := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		if k >= len(key) || key[k] != c {
			return false
		}
		k++
	}
	return k == len(key)
}

// unescape decodes every %XX in s (which holds only valid escapes), except
// %2F and %2f when keepSlash is set.
func unescape(s string, keepSlash bool) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		d := unhex(s[i+1])<<4 | unhex(s[i+2])
		if d == '/' && keepSlash {
			b = append(b, s[i:i+3]...)
		} else {
			b = append(b, d)
		}
		i += 2
	}
	return string(b)
}

// Routes returns every route, sorted by canonical template, then HTTP
// method, then RPC method name. The caller must not modify the slice.
func (t *Table) Routes() []*Route {
	if t == nil {
		return nil
	}
	return t.routes
}

// RouteFor returns the routes of one RPC method, in binding order (the
// primary binding first, then additional_bindings). The caller must not
// modify the slice.
func (t *Table) RouteFor(method protoreflect.FullName) []*Route {
	if t == nil {
		return nil
	}
	return t.byMethod[method]
}
