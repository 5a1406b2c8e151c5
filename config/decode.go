package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits that keep hostile documents (alias bombs, alias cycles, deep
// nesting) cheap to reject. Real configs are far below them: the schema
// is 10 levels deep, and aliases rarely add more than a few hundred nodes.
const (
	maxAliasVisits = 100_000 // node visits allowed beyond the document's own nodes
	maxDepth       = 20
)

// Load reads the config file at path and parses it with [Parse], expanding
// ${VAR} references from the process environment. On failure the error is
// [Diagnostics].
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = "read config: " + pe.Err.Error()
		}
		return nil, Diagnostics{{File: path, Msg: msg}}
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse decodes data, the contents of the config file named file, into a
// [Config]. Decoding is strict: unknown keys, wrong types and bad values
// are errors. ${VAR} and ${VAR:-default} in scalar values are expanded
// with lookupEnv (nil means no variable is set) and "$$" is a literal "$".
//
// On success the Config has defaults applied, Warnings listing settings
// that are accepted but have no effect, File set to file, every
// Upstream.Name set, the Pos of every [HTTPRule] and [Route] filled, and
// relative paths (descriptor files, protos, import paths, TLS files)
// resolved against the directory of file. Otherwise the error is
// [Diagnostics] listing every problem found, sorted by position.
//
// Parse reads the files the config refers to only to check that they
// exist; it does not open listeners or dial upstreams.
func Parse(file string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	d := &decoder{
		file:   file,
		env:    lookupEnv,
		index:  &posIndex{file: file, val: map[string]Pos{}, key: map[string]Pos{}},
		bad:    map[string]bool{},
		zero:   map[string]bool{},
		active: map[*yaml.Node]bool{},
	}
	c := &Config{File: file}
	root := d.parse(data)
	if root == nil && len(d.diags) > 0 {
		// Unreadable YAML: anything validation said would be noise.
		return nil, d.diags.err()
	}
	if root != nil {
		d.decode(root, reflect.ValueOf(c).Elem(), "")
	}
	if d.halted {
		// The document was cut short; validating the rest would only
		// report values that were never read.
		return nil, d.diags.err()
	}
	c.setDefaults()
	base := baseDir(file)
	v := &validator{c: c, index: d.index, base: base, bad: d.bad, zero: d.zero}
	v.run()
	diags := append(d.diags, v.diags...)
	if err := diags.err(); err != nil {
		return nil, err
	}
	c.resolvePaths(base)
	v.warns.sort()
	c.Warnings = v.warns
	return c, nil
}

// baseDir is the absolute directory relative paths in file are resolved
// against.
func baseDir(file string) string {
	dir := filepath.Dir(file)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// posIndex remembers where each key path was found in the file.
type posIndex struct {
	file string
	val  map[string]Pos // path → position of its value
	key  map[string]Pos // path → position of its key
}

// lookup returns the position of path's key (when key is set and known)
// or value; for a path that is not in the file (a missing key) it returns
// the position of the closest enclosing value.
func (x *posIndex) lookup(path string, key bool) Pos {
	if x == nil {
		return Pos{}
	}
	if key {
		if p, ok := x.key[path]; ok {
			return p
		}
	}
	for {
		if p, ok := x.val[path]; ok {
			return p
		}
		if path == "" {
			return Pos{File: x.file}
		}
		path = parentPath(path)
	}
}

// parentPath strips the last element from a key path: "a.b[2]" → "a.b",
// "a.b" → "a", `a["x.y"]` → "a", "a" → "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			// Quoted keys may contain "[": search for the opening `["`.
			if j := strings.LastIndex(p, `["`); j >= 0 && strings.HasSuffix(p, `"]`) {
				i = j
			}
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinKey appends a map key or struct field to a key path, quoting keys
// that would make the path ambiguous.
func joinKey(path, key string) string {
	if !plainKey.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// decoder turns yaml.Nodes into Go values, collecting diagnostics.
type decoder struct {
	file      string
	env       func(string) (string, bool)
	diags     Diagnostics
	index     *posIndex
	bad       map[string]bool // paths whose decoding failed
	zero      map[string]bool // paths of numbers written as 0 (or "0s")
	active    map[*yaml.Node]bool
	visits    int
	maxVisits int
	depth     int
	halted    bool
	secret    int // > 0 while decoding a field tagged redact:"true"
}

func (d *decoder) pos(n *yaml.Node) Pos {
	return Pos{File: d.file, Line: n.Line, Col: n.Column}
}

// report records a diagnostic at node n for path and marks path as bad so
// that validation does not report it a second time.
func (d *decoder) report(n *yaml.Node, path, msg, hint string) {
	d.bad[path] = true
	dg := Diagnostic{File: d.file, Path: path, Msg: msg, Hint: hint}
	if n != nil {
		dg.Line, dg.Col = n.Line, n.Column
	}
	d.diags = append(d.diags, dg)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse returns the root node of the single document in data, or nil when
// the document is empty or broken (then a diagnostic says why).
func (d *decoder) parse(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 reports syntax errors as values, but it is third-party
		// code fed untrusted input: never let it crash a reload.
		if r := recover(); r != nil {
			root = nil
			d.report(nil, "", fmt.Sprintf("invalid YAML: %v", r), "")
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: validation reports what is missing
		}
		d.syntaxError(err)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil
	default:
		d.report(&extra, "", "more than one YAML document", `keep the whole config in one document, without a second "---"`)
		return nil
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root = doc.Content[0]
	d.maxVisits = countNodes(root) + maxAliasVisits
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	return root
}

// countNodes returns the number of nodes in the tree under n, not
// following aliases.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	dg := Diagnostic{File: d.file}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		dg.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	dg.Msg = "invalid YAML: " + msg
	d.diags = append(d.diags, dg)
}

// decode stores node n into v. path is n's key path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.halted {
		return
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.report(n, path, fmt.Sprintf("unknown alias *%s", n.Value), "")
			return
		}
		n = n.Alias
	}
	if d.active[n] {
		d.report(n, path, "alias refers to a value that contains it", "")
		return
	}
	d.visits++
	d.depth++
	defer func() { d.depth-- }()
	if d.visits > d.maxVisits || d.depth > maxDepth {
		d.report(n, path, "document is too large or too deeply nested (check for alias loops)", "")
		d.halted = true
		return
	}
	d.active[n] = true
	defer delete(d.active, n)

	if _, ok := d.index.val[path]; !ok {
		d.index.val[path] = d.pos(n)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // null leaves the zero value: "unset"
	}
	d.value(n, v, path)
}

var durationType = reflect.TypeFor[Duration]()

// value stores non-null, non-alias node n into v.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.special(n, v, path) {
		return
	}
	if v.Type() == durationType {
		d.duration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.list(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		d.boolean(n, v, path)
	case reflect.Int, reflect.Int64, reflect.Int32:
		d.integer(n, v, path)
	case reflect.Float64:
		d.float(n, v, path) // observe.go
	case reflect.Uint32:
		// Listener.MaxConcurrentStreams: decode as an int64, then store.
		var i int64
		iv := reflect.ValueOf(&i).Elem()
		d.integer(n, iv, path)
		if v.OverflowUint(uint64(i)) {
			d.report(n, path, fmt.Sprintf("integer %d is too large", i), "")
			return
		}
		v.SetUint(uint64(i))
	default:
		// Unreachable with the Config types; a new field type needs a case.
		panic(fmt.Sprintf("config: cannot decode into %s", v.Type()))
	}
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		s := n.Value
		if len(s) > 40 {
			s = s[:37] + "..."
		}
		return strconv.Quote(s)
	}
	return "an unsupported YAML node"
}

// scalar returns the env-expanded text of scalar node n.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.report(n, path, fmt.Sprintf("expected %s, got %s", want, describe(n)), "")
		return "", false
	}
	s, problems := expandEnv(n.Value, d.env)
	for _, p := range problems {
		if d.secret > 0 {
			p.msg = redactIn(p.msg, n.Value)
		}
		d.report(n, path, p.msg, p.hint)
	}
	return s, len(problems) == 0
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "true or false")
	if !ok {
		return
	}
	switch s {
	case "true", "True", "TRUE":
		v.SetBool(true)
	case "false", "False", "FALSE":
		v.SetBool(false)
	default:
		d.report(n, path, fmt.Sprintf("expected true or false, got %q", s), "")
	}
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "an integer")
	if !ok {
		return
	}
	i, err := strconv.ParseInt(s, 0, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange), err == nil && v.OverflowInt(i):
		d.report(n, path, fmt.Sprintf("integer %s is too large", s), "")
	case err != nil:
		hint := ""
		if strings.HasSuffix(path, "_bytes") {
			hint = "sizes are plain byte counts, e.g. 1048576"
		}
		d.report(n, path, fmt.Sprintf("expected an integer, got %q", s), hint)
	case i < 0:
		d.report(n, path, fmt.Sprintf("must not be negative, got %d", i), "")
	default:
		if i == 0 {
			d.zero[path] = true
		}
		v.SetInt(i)
	}
}

const durationHint = `use a number with a unit, e.g. "5s", "250ms", "1m30s"`

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a duration")
	if !ok {
		return
	}
	t, err := time.ParseDuration(s)
	switch {
	case err != nil && strings.Contains(err.Error(), "missing unit"):
		d.report(n, path, fmt.Sprintf("invalid duration %q: missing unit", s), durationHint)
	case err != nil:
		d.report(n, path, fmt.Sprintf("invalid duration %q", s), durationHint)
	case t < 0:
		d.report(n, path, fmt.Sprintf("duration must not be negative, got %q", s), "")
	default:
		if t == 0 {
			d.zero[path] = true
		}
		v.SetInt(int64(t))
	}
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if et := v.Type().Elem(); n.Kind == yaml.ScalarNode && (et.Kind() == reflect.String || et == targetType) {
			hint = fmt.Sprintf("write a list, e.g. [%q]", n.Value)
		}
		d.report(n, path, fmt.Sprintf("expected a list, got %s", describe(n)), hint)
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

// pair is one key and value of a mapping.
type pair struct{ key, val *yaml.Node }

// pairs returns the entries of mapping n, with "<<" merge keys expanded
// (explicit keys win over merged ones) and duplicate keys reported.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.report(k, path, fmt.Sprintf("keys must be strings, got %s", describe(k)), "")
			continue
		}
		if k.Tag == "!!merge" {
			merged = append(merged, d.mergeSources(val, path)...)
			continue
		}
		if f, dup := first[k.Value]; dup {
			d.report(k, joinKey(path, k.Value), fmt.Sprintf("duplicate key %q (first at line %d)", k.Value, f.Line), "")
			continue
		}
		first[k.Value] = k
		own = append(own, pair{k, val})
	}
	for _, p := range merged {
		if _, ok := first[p.key.Value]; !ok {
			first[p.key.Value] = p.key
			own = append(own, p)
		}
	}
	return own
}

// mergeSources returns the pairs a "<<" value contributes, in precedence
// order.
func (d *decoder) mergeSources(n *yaml.Node, path string) []pair {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if d.active[n] {
		d.report(n, path, "merge refers to a value that contains it", "")
		return nil
	}
	d.active[n] = true
	defer delete(d.active, n)
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n, path)
	case yaml.SequenceNode:
		var out []pair
		for _, m := range n.Content {
			for m.Kind == yaml.AliasNode && m.Alias != nil {
				m = m.Alias
			}
			if m.Kind != yaml.MappingNode {
				d.report(m, path, fmt.Sprintf("merge value must be a mapping, got %s", describe(m)), "")
				continue
			}
			out = append(out, d.mergeSources(m, path)...)
		}
		return out
	}
	d.report(n, path, fmt.Sprintf("merge value must be a mapping or a list of mappings, got %s", describe(n)), "")
	return nil
}

// field is one decodable struct field.
type field struct {
	name  string
	index int
}

// fieldsOf returns the yaml-named fields of struct type t.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" || name == "" || !sf.IsExported() {
			continue
		}
		fs = append(fs, field{name, i})
	}
	return fs
}

var posType = reflect.TypeFor[Pos]()

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.report(n, path, fmt.Sprintf("expected a mapping, got %s", describe(n)), "")
		return
	}
	if f := v.FieldByName("Pos"); f.IsValid() && f.Type() == posType {
		f.Set(reflect.ValueOf(d.pos(n)))
	}
	fields := fieldsOf(v.Type())
	for _, p := range d.pairs(n, path) {
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == p.key.Value })
		child := joinKey(path, p.key.Value)
		if i < 0 {
			d.unknownKey(p.key, child, fields)
			continue
		}
		d.index.key[child] = d.pos(p.key)
		secret := redacted(v.Type().Field(fields[i].index))
		if secret {
			d.secret++
		}
		d.decode(p.val, v.Field(fields[i].index), child)
		if secret {
			d.secret--
		}
	}
}

func (d *decoder) unknownKey(k *yaml.Node, path string, fields []field) {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	slices.Sort(names)
	hint := ""
	if best := closest(k.Value, names); best != "" {
		hint = fmt.Sprintf("did you mean %q?", best)
	}
	d.report(k, path, fmt.Sprintf("unknown key %q (known: %s)", k.Value, strings.Join(names, ", ")), hint)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.report(n, path, fmt.Sprintf("expected a mapping, got %s", describe(n)), "")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	et := v.Type().Elem()
	for _, p := range d.pairs(n, path) {
		child := joinKey(path, p.key.Value)
		d.index.key[child] = d.pos(p.key)
		elem := reflect.New(et).Elem()
		if et.Kind() == reflect.Pointer {
			// An entry written as "name:" (null) still exists: validation
			// then says what it lacks.
			elem.Set(reflect.New(et.Elem()))
		}
		d.decode(p.val, elem, child)
		v.SetMapIndex(reflect.ValueOf(p.key.Value), elem)
	}
}

// closest returns the candidate within a small edit distance of s, or "".
func closest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if dist := editDistance(s, c); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
