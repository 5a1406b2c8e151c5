package router

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
)

// Source says where a route's HTTP binding came from.
type Source uint8

const (
	// SourceAnnotation is a google.api.http option in the method's .proto,
	// or one of its additional_bindings.
	SourceAnnotation Source = iota + 1
	// SourceConfig is a rule of the config's http.rules section; it
	// replaces the method's annotation.
	SourceConfig
	// SourceDefault is the POST /pkg.Service/Method binding with body "*"
	// given to a method that has no other binding when
	// [Params.DefaultBindings] is set.
	SourceDefault
)

// String returns "annotation", "config" or "default".
func (s Source) String() string {
	switch s {
	case SourceAnnotation:
		return "annotation"
	case SourceConfig:
		return "config"
	case SourceDefault:
		return "default"
	}
	return fmt.Sprintf("Source(%d)", uint8(s))
}

// Route is one HTTP binding of one RPC method: what [Table.Match] returns
// and what `rosetta routes` lists. A Route is immutable once built.
type Route struct {
	// Method is the RPC method the binding calls.
	Method protoreflect.MethodDescriptor
	// Upstream is the name of the upstream serving Method's service.
	Upstream string
	// HTTPMethod is GET, PUT, POST, DELETE, PATCH, a custom kind
	// upper-cased (e.g. HEAD), or "*" for a custom binding that accepts
	// every HTTP method.
	HTTPMethod string
	// Pattern is the path template as written in the binding.
	Pattern string
	// Template is Pattern parsed.
	Template *Template
	// Body is "" (no request body), "*" (every field not bound by the path
	// comes from the body) or the name of a top-level request field.
	Body string
	// BodyField is the request field named by Body, or nil when Body is
	// "" or "*".
	BodyField protoreflect.FieldDescriptor
	// ResponseBody is "" (the whole response is the body) or the name of a
	// top-level response field sent as the body.
	ResponseBody string
	// ResponseBodyField is the response field named by ResponseBody, or nil.
	ResponseBodyField protoreflect.FieldDescriptor
	// Vars are the path variables, in template order.
	Vars []Var
	// Source says where the binding came from.
	Source Source
	// Config is the first config route whose selector matches Method, or
	// nil when none does.
	Config *config.Route
}

// Var is one path variable and the request fields it binds.
type Var struct {
	// FieldPath is the variable's field path as written, e.g. "book.shelf_id".
	FieldPath string
	// Fields is FieldPath resolved from the request message: for
	// "book.shelf_id", the field book then the field shelf_id of its
	// message. The last field is singular and is a scalar, an enum or one
	// of the well-known types with a string form (wrappers, Timestamp,
	// Duration, FieldMask).
	Fields []protoreflect.FieldDescriptor
}

// Params are the config inputs of [Build].
type Params struct {
	// Rules are HTTP rules in the gRPC service-config form. A rule
	// replaces the google.api.http annotation of the method its selector
	// names; when several rules name one method, the last one wins, as
	// google/api/http.proto specifies.
	Rules []config.HTTPRule
	// Routes tune methods by selector: a method's full name, a prefix
	// ending in ".*" (e.g. "library.v1.*"), or "*" for every method. Each
	// [Route] gets the first config route that selects its method.
	Routes []config.Route
	// DefaultBindings gives every method without any binding
	// POST /<pkg.Service>/<Method> with body "*".
	DefaultBindings bool
}

// Build compiles the HTTP bindings of every method in snap into a [Table].
//
// Bindings come from each method's google.api.http option (with its
// additional_bindings), replaced by p.Rules for the methods they select, or
// from the default binding (see [Params]). Streaming methods are bound
// too; the protocol adapter decides what it serves. Each invalid binding
// (bad template, unresolvable path variable or body field, conflict with
// another binding of the same HTTP method and template shape) is reported
// as a Problem that names the method, the pattern and what to fix, and is
// skipped; other bindings are kept. When two methods bind the same HTTP
// method and shape, the first by full name wins. Problems are in method
// name order. Build never fails: a nil snap gives an empty table.
func Build(snap *registry.Snapshot, p Params) (*Table, []registry.Problem) {
	b := &builder{p: p, t: &Table{byMethod: make(map[protoreflect.FullName][]*Route)}}
	var methods []rpc
	if snap != nil {
		for _, svc := range snap.Services() {
			ms := svc.Desc.Methods()
			for i := 0; i < ms.Len(); i++ {
				methods = append(methods, rpc{md: ms.Get(i), upstream: svc.Upstream})
			}
		}
	}
	slices.SortFunc(methods, func(a, c rpc) int { return cmp.Compare(a.md.FullName(), c.md.FullName()) })

	rules := make(map[protoreflect.FullName]*config.HTTPRule)
	for i := range p.Rules {
		r := &p.Rules[i]
		var md protoreflect.MethodDescriptor
		if snap != nil && !strings.HasPrefix(r.Selector, "/") {
			md, _, _ = snap.Method(r.Selector)
		}
		if md == nil {
			b.problem("", "%shttp rule selector %q names no known method (want a method's full name, e.g. \"pkg.Service.Method\")",
				posPrefix(r.Pos), r.Selector)
			continue
		}
		rules[md.FullName()] = r
	}

	for _, m := range methods {
		var bs []binding
		declared := false
		if r := rules[m.md.FullName()]; r != nil {
			declared = true
			bs = b.fromConfig(m, r, false)
		} else {
			rule, err := httpRule(m.md)
			if err != nil {
				b.problem(m.upstream, "%s: google.api.http: decode option: %v", m.md.FullName(), err)
			}
			if rule != nil {
				declared = true
				bs = b.fromAnnotation(m, rule, false)
			}
		}
		if !declared && p.DefaultBindings {
			bs = []binding{{
				httpMethod: "POST",
				pattern:    "/" + string(m.md.Parent().FullName()) + "/" + string(m.md.Name()),
				body:       "*",
				source:     SourceDefault,
			}}
		}
		for _, bd := range bs {
			b.add(m, bd)
		}
	}
	slices.SortFunc(b.t.routes, func(x, y *Route) int {
		return cmp.Or(
			strings.Compare(x.Template.String(), y.Template.String()),
			strings.Compare(x.HTTPMethod, y.HTTPMethod),
			cmp.Compare(x.Method.FullName(), y.Method.FullName()),
		)
	})
	return b.t, b.problems
}

// rpc is one method and the upstream of its service.
type rpc struct {
	md       protoreflect.MethodDescriptor
	upstream string
}

// binding is one HTTP rule before validation, whatever its source.
type binding struct {
	httpMethod   string
	pattern      string
	body         string
	responseBody string
	source       Source
	pos          config.Pos
}

type builder struct {
	p        Params
	t        *Table
	problems []registry.Problem
}

func (b *builder) problem(upstream, format string, args ...any) {
	b.problems = append(b.problems, registry.Problem{Upstream: upstream, Msg: fmt.Sprintf(format, args...)})
}

// upstreamOf is the Upstream of a Problem about a binding of m: empty for
// config rules, whose problems start with their position in the config.
func upstreamOf(m rpc, source Source) string {
	if source == SourceConfig {
		return ""
	}
	return m.upstream
}

// where names a binding's method and origin, for Problems.
func where(m rpc, source Source, pos config.Pos) string {
	switch source {
	case SourceConfig:
		return fmt.Sprintf("%shttp rule %s", posPrefix(pos), m.md.FullName())
	case SourceDefault:
		return fmt.Sprintf("%s: default binding", m.md.FullName())
	}
	return fmt.Sprintf("%s: google.api.http", m.md.FullName())
}

func posPrefix(p config.Pos) string {
	switch {
	case p.Line <= 0:
		return ""
	case p.File == "":
		return fmt.Sprintf("%d:%d: ", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d: ", p.File, p.Line, p.Col)
}

const patternHint = "set exactly one of get, put, post, delete, patch or custom"

// fromConfig turns a config rule and its additional bindings into bindings.
func (b *builder) fromConfig(m rpc, r *config.HTTPRule, nested bool) []binding {
	var out []binding
	var set []string
	bd := binding{body: r.Body, responseBody: r.ResponseBody, source: SourceConfig, pos: r.Pos}
	for _, c := range []struct{ name, path string }{
		{"get", r.Get}, {"put", r.Put}, {"post", r.Post}, {"delete", r.Delete}, {"patch", r.Patch},
	} {
		if c.path != "" {
			set = append(set, c.name)
			bd.httpMethod, bd.pattern = strings.ToUpper(c.name), c.path
		}
	}
	if r.Custom != nil {
		set = append(set, "custom")
		bd.httpMethod, bd.pattern = strings.ToUpper(r.Custom.Kind), r.Custom.Path
	}
	switch len(set) {
	case 0:
		b.problem("", "%s: no HTTP method and path (%s)", where(m, SourceConfig, r.Pos), patternHint)
	case 1:
		out = append(out, bd)
	default:
		b.problem("", "%s: sets %s (%s)", where(m, SourceConfig, r.Pos), strings.Join(set, " and "), patternHint)
	}
	if len(r.AdditionalBindings) > 0 && nested {
		b.problem("", "%s: additional_bindings inside additional_bindings are ignored (nesting may only be one level deep)",
			where(m, SourceConfig, r.Pos))
		return out
	}
	for i := range r.AdditionalBindings {
		out = append(out, b.fromConfig(m, &r.AdditionalBindings[i], true)...)
	}
	return out
}

// fromAnnotation turns a google.api.http option and its additional
// bindings into bindings.
func (b *builder) fromAnnotation(m rpc, r *annotations.HttpRule, nested bool) []binding {
	var out []binding
	bd := binding{body: r.GetBody(), responseBody: r.GetResponseBody(), source: SourceAnnotation}
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		bd.httpMethod, bd.pattern = "GET", p.Get
	case *annotations.HttpRule_Put:
		bd.httpMethod, bd.pattern = "PUT", p.Put
	case *annotations.HttpRule_Post:
		bd.httpMethod, bd.pattern = "POST", p.Post
	case *annotations.HttpRule_Delete:
		bd.httpMethod, bd.pattern = "DELETE", p.Delete
	case *annotations.HttpRule_Patch:
		bd.httpMethod, bd.pattern = "PATCH", p.Patch
	case *annotations.HttpRule_Custom:
		bd.httpMethod, bd.pattern = strings.ToUpper(p.Custom.GetKind()), p.Custom.GetPath()
	}
	if r.GetPattern() == nil {
		b.problem(m.upstream, "%s: no HTTP method and path (%s)", where(m, SourceAnnotation, config.Pos{}), patternHint)
	} else {
		out = append(out, bd)
	}
	if len(r.GetAdditionalBindings()) > 0 && nested {
		b.problem(m.upstream, "%s: additional_bindings inside additional_bindings are ignored (nesting may only be one level deep)",
			where(m, SourceAnnotation, config.Pos{}))
		return out
	}
	for _, ab := range r.GetAdditionalBindings() {
		out = append(out, b.fromAnnotation(m, ab, true)...)
	}
	return out
}

// add validates one binding and, when it is valid, adds its route.
func (b *builder) add(m rpc, bd binding) {
	label := bd.httpMethod
	if !isToken(label) && label != "*" {
		label = "custom"
	}
	fail := func(format string, args ...any) {
		b.problem(upstreamOf(m, bd.source), "%s: %s %q: %s", where(m, bd.source, bd.pos), label, bd.pattern, fmt.Sprintf(format, args...))
	}
	if label == "custom" {
		fail(`custom kind %q is not an HTTP method (want a token such as HEAD, or "*" for any method)`, bd.httpMethod)
		return
	}
	tp, err := ParseTemplate(bd.pattern)
	if err != nil {
		fail("%s", err.(*TemplateError).Detail())
		return
	}
	req, resp := m.md.Input(), m.md.Output()
	r := &Route{
		Method:       m.md,
		Upstream:     m.upstream,
		HTTPMethod:   bd.httpMethod,
		Pattern:      bd.pattern,
		Template:     tp,
		Body:         bd.body,
		ResponseBody: bd.responseBody,
		Source:       bd.source,
		Config:       config.SelectorRoute(b.p.Routes, string(m.md.FullName())),
	}
	for _, v := range tp.vars {
		fds, msg := resolveVar(req, v.path)
		if msg != "" {
			fail("path variable %q: %s", v.path, msg)
			return
		}
		r.Vars = append(r.Vars, Var{FieldPath: v.path, Fields: fds})
	}
	if bd.body != "" && bd.body != "*" {
		r.BodyField = req.Fields().ByName(protoreflect.Name(bd.body))
		if r.BodyField == nil {
			fail(`body %q: request message %s has no top-level field %q (set body to "", "*" or one of its fields)`,
				bd.body, req.FullName(), bd.body)
			return
		}
		for _, v := range tp.vars {
			if v.path == bd.body {
				fail("path variable %q is also the body field (bind the field in the path or in the body, not both)", v.path)
				return
			}
		}
	}
	if bd.responseBody != "" {
		r.ResponseBodyField = resp.Fields().ByName(protoreflect.Name(bd.responseBody))
		if r.ResponseBodyField == nil {
			fail(`response_body %q: response message %s has no top-level field %q (omit response_body to send the whole response, or name one of its fields)`,
				bd.responseBody, resp.FullName(), bd.responseBody)
			return
		}
	}
	if prev := b.t.insert(r); prev != nil {
		fail("conflicts with %s %q of %s (the first method by full name keeps it; change one of the paths)",
			prev.HTTPMethod, prev.Pattern, prev.Method.FullName())
		return
	}
	b.t.routes = append(b.t.routes, r)
	b.t.byMethod[m.md.FullName()] = append(b.t.byMethod[m.md.FullName()], r)
}

// HasTextForm reports whether md is one of the well-known types with a
// string form in the proto3 JSON mapping (wrappers, Timestamp, Duration,
// FieldMask): a path variable or query parameter may bind it, and its
// fields are not addressed by dotted paths.
func HasTextForm(md protoreflect.MessageDescriptor) bool { return pathWKT[md.FullName()] }

// pathWKT are the message types a path variable may bind: they have a
// string form in the proto3 JSON mapping.
var pathWKT = map[protoreflect.FullName]bool{
	"google.protobuf.DoubleValue": true,
	"google.protobuf.FloatValue":  true,
	"google.protobuf.Int64Value":  true,
	"google.protobuf.UInt64Value": true,
	"google.protobuf.Int32Value":  true,
	"google.protobuf.UInt32Value": true,
	"google.protobuf.BoolValue":   true,
	"google.protobuf.StringValue": true,
	"google.protobuf.BytesValue":  true,
	"google.protobuf.Timestamp":   true,
	"google.protobuf.Duration":    true,
	"google.protobuf.FieldMask":   true,
}

// resolveVar resolves a path variable's field path from msg. On failure it
// returns a message saying what is wrong.
func resolveVar(msg protoreflect.MessageDescriptor, path string) ([]protoreflect.FieldDescriptor, string) {
	names := strings.Split(path, ".")
	fds := make([]protoreflect.FieldDescriptor, 0, len(names))
	for i, name := range names {
		fd := msg.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return nil, fmt.Sprintf("message %s has no field %q", msg.FullName(), name)
		}
		fds = append(fds, fd)
		switch {
		case fd.IsMap():
			return nil, fmt.Sprintf("field %s is a map (path variables must bind a singular field)", name)
		case fd.IsList():
			return nil, fmt.Sprintf("field %s is repeated (path variables must bind a singular field)", name)
		}
		sub := fd.Message()
		if i < len(names)-1 {
			if sub == nil {
				return nil, fmt.Sprintf("field %s has type %s, not a message", name, fd.Kind())
			}
			msg = sub
			continue
		}
		if sub != nil && !pathWKT[sub.FullName()] {
			hint := "bind one of its scalar fields"
			if s := firstScalar(sub); s != "" {
				hint += fmt.Sprintf(`, e.g. "%s.%s"`, path, s)
			}
			return nil, fmt.Sprintf("field %s is a message (%s); %s", name, sub.FullName(), hint)
		}
	}
	return fds, ""
}

func firstScalar(md protoreflect.MessageDescriptor) string {
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		if fd := fs.Get(i); !fd.IsList() && !fd.IsMap() && fd.Message() == nil {
			return string(fd.Name())
		}
	}
	return ""
}

// isToken reports whether s is a non-empty RFC 9110 token (an HTTP method).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// httpTypes resolves the google.api.http extension when options are
// re-decoded.
var httpTypes = func() *protoregistry.Types {
	t := new(protoregistry.Types)
	if err := t.RegisterExtension(annotations.E_Http); err != nil {
		panic(err)
	}
	return t
}()

// httpRule returns md's google.api.http option, or nil. Descriptors loaded
// at run time carry the option as unknown fields or as a dynamic message,
// so the options are re-encoded and decoded with the generated extension
// type registered.
func httpRule(md protoreflect.MethodDescriptor) (*annotations.HttpRule, error) {
	opts := md.Options()
	if opts == nil {
		return nil, nil
	}
	raw, err := proto.Marshal(opts)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, nil
	}
	var mo descriptorpb.MethodOptions
	if err := (proto.UnmarshalOptions{Resolver: httpTypes}).Unmarshal(raw, &mo); err != nil {
		return nil, err
	}
	if !proto.HasExtension(&mo, annotations.E_Http) {
		return nil, nil
	}
	rule, _ := proto.GetExtension(&mo, annotations.E_Http).(*annotations.HttpRule)
	return rule, nil
}
