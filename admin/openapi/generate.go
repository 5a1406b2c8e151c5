package openapi

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

// Options tune [Generate]. The zero value describes every upstream with
// the default JSON options and no security.
type Options struct {
	// Title is info.title. Default "Rosetta gateway", or
	// "Rosetta gateway: <upstream>" with Upstream.
	Title string
	// Version is info.version. Default: the snapshot's version, as
	// "snapshot-<n>".
	Version string
	// Description is info.description.
	Description string
	// Servers are the base URLs of the listeners clients call, e.g.
	// "https://api.example.com". None: clients resolve paths against the
	// document's own URL, which is right only when the document is served
	// on the listener that serves the API.
	Servers []string
	// Upstream restricts the document to the routes of one upstream. Empty:
	// every upstream.
	Upstream string
	// Service restricts the document to the routes of one service
	// ("pkg.v1.Service"), for the developer portal's per-API pages.
	// Empty: every service.
	Service string
	// JSON are the gateway-wide JSON options (the config's
	// transcoding.json); each route's own options (its config route's
	// json) are merged over them, as the gateway does.
	JSON config.JSONOptions
	// Security returns the ways a caller may authenticate to a method, any
	// one of which is enough; nil or an empty answer: none. See
	// [SecurityFromConfig].
	Security func(method protoreflect.FullName) []Security
}

// ErrUnknownUpstream is returned by [Generate] when [Options.Upstream]
// names no upstream of the snapshot.
var ErrUnknownUpstream = errors.New("unknown upstream")

const statusSchema = "google.rpc.Status"

// Generate builds the OpenAPI 3.1 document of the REST bindings of table,
// built from snap: one operation per route (see the package doc for the
// paths), with the schemas of every message the operations reach. A nil
// snap or table gives a document without paths.
func Generate(snap *registry.Snapshot, table *router.Table, opts Options) (*Document, error) {
	g := &generator{
		opts:    opts,
		base:    styleOf(opts.JSON),
		doc:     &Document{OpenAPI: Version, Paths: map[string]*PathItem{}},
		schemes: map[string]*SecurityScheme{},
	}
	g.schemas = newSchemas(g.base)
	if opts.Upstream != "" && !hasUpstream(snap, opts.Upstream) {
		return nil, fmt.Errorf("%w %q", ErrUnknownUpstream, opts.Upstream)
	}
	g.info(snap)
	g.errorSchema()
	if err := g.routes(table); err != nil {
		return nil, err
	}
	g.doc.Components.Schemas = g.schemas.comps
	if len(g.schemes) > 0 {
		g.doc.Components.SecuritySchemes = g.schemes
	}
	return g.doc, nil
}

func hasUpstream(snap *registry.Snapshot, name string) bool {
	if snap == nil {
		return false
	}
	for _, svc := range snap.Services() {
		if svc.Upstream == name {
			return true
		}
	}
	return false
}

type generator struct {
	opts    Options
	base    style
	doc     *Document
	schemas *schemas
	schemes map[string]*SecurityScheme
	tags    map[protoreflect.FullName]string // service → tag name
}

func (g *generator) info(snap *registry.Snapshot) {
	o := g.opts
	title := o.Title
	if title == "" {
		title = "Rosetta gateway"
		if o.Upstream != "" {
			title += ": " + o.Upstream
		}
	}
	version := o.Version
	if version == "" {
		var n uint64
		if snap != nil {
			n = snap.Version
		}
		version = "snapshot-" + strconv.FormatUint(n, 10)
	}
	g.doc.Info = Info{Title: title, Version: version, Description: o.Description}
	for _, u := range o.Servers {
		g.doc.Servers = append(g.doc.Servers, Server{URL: u})
	}
}

// errorSchema adds google.rpc.Status, the body of every error answer.
func (g *generator) errorSchema() {
	md := (&status.Status{}).ProtoReflect().Descriptor()
	s := g.schemas.message(md, g.base)
	if c := g.schemas.comps[strings.TrimPrefix(s.Ref, refPrefix)]; c != nil && c.Description == "" {
		c.Description = "The error of a failed call (google.rpc.Status): its gRPC code number, a message for developers, and details such as google.rpc.BadRequest."
	}
}

// op is one route on its way into the document.
type op struct {
	rt    *router.Route
	index int // the route's position among its method's bindings
	shape *pathShape
}

func (g *generator) routes(table *router.Table) error {
	var ops []*op
	services := map[protoreflect.FullName]protoreflect.ServiceDescriptor{}
	for _, rt := range table.Routes() {
		if g.opts.Upstream != "" && rt.Upstream != g.opts.Upstream {
			continue
		}
		if g.opts.Service != "" && string(rt.Method.Parent().FullName()) != g.opts.Service {
			continue
		}
		pt, err := parseTemplate(rt.Template)
		if err != nil {
			return err
		}
		index := slices.Index(table.RouteFor(rt.Method.FullName()), rt)
		ops = append(ops, &op{rt: rt, index: index, shape: shapeOf(pt)})
		svc := rt.Method.Parent().(protoreflect.ServiceDescriptor)
		services[svc.FullName()] = svc
	}
	g.tagServices(services)
	// Templates of one shape share the names of the first (routes come
	// sorted by canonical template, then HTTP method, then RPC name).
	firstOfKey := map[string]*pathShape{}
	for _, o := range ops {
		if f, ok := firstOfKey[o.shape.key]; ok {
			o.shape.adopt(f)
		} else {
			firstOfKey[o.shape.key] = o.shape
		}
	}
	for _, o := range ops {
		g.add(o)
	}
	return nil
}

// tagServices gives each service a tag: its simple name, or its full name
// when two services share a simple name.
func (g *generator) tagServices(services map[protoreflect.FullName]protoreflect.ServiceDescriptor) {
	count := map[protoreflect.Name]int{}
	for _, s := range services {
		count[s.Name()]++
	}
	g.tags = map[protoreflect.FullName]string{}
	for full, s := range services {
		name := string(s.Name())
		if count[s.Name()] > 1 {
			name = string(full)
		}
		g.tags[full] = name
		g.doc.Tags = append(g.doc.Tags, Tag{Name: name, Description: comments(s)})
	}
	slices.SortFunc(g.doc.Tags, func(a, b Tag) int { return cmp.Compare(a.Name, b.Name) })
}

// add writes one route's operation into its path item.
func (g *generator) add(o *op) {
	rt := o.rt
	md := rt.Method
	omit := func(reason string) {
		g.doc.Omitted = append(g.doc.Omitted, Omitted{Method: string(md.FullName()), HTTPMethod: rt.HTTPMethod, HTTPRule: rt.Pattern, Reason: reason})
	}
	path := o.shape.path()
	item := g.doc.Paths[path]
	if item == nil {
		item = &PathItem{}
	}
	slot := item.slot(rt.HTTPMethod)
	switch {
	case rt.HTTPMethod == "*":
		omit(`custom binding for every HTTP method ("*"): OpenAPI has one operation per method`)
		return
	case slot == nil:
		omit(fmt.Sprintf("HTTP method %s has no OpenAPI 3.1 operation field", rt.HTTPMethod))
		return
	case *slot != nil:
		omit(fmt.Sprintf("path %s already has a %s operation (%s)", path, rt.HTTPMethod, (*slot).Method))
		return
	}
	*slot = g.operation(o)
	g.doc.Paths[path] = item
}

func (g *generator) operation(o *op) *Operation {
	rt := o.rt
	md := rt.Method
	svc := md.Parent().(protoreflect.ServiceDescriptor)
	st := g.base
	if rt.Config != nil {
		st = styleOf(g.opts.JSON.Merge(rt.Config.JSON))
	}
	tag := g.tags[svc.FullName()]
	id := strings.ReplaceAll(tag, ".", "_") + "_" + string(md.Name())
	if o.index > 0 {
		id += "_" + strconv.Itoa(o.index)
	}
	desc := comments(md)
	out := &Operation{
		OperationID: id,
		Tags:        []string{tag},
		Summary:     summary(desc),
		Description: desc,
		Deprecated:  deprecated(md.Options()),
		Responses:   map[string]*Response{},
		Method:      "/" + string(svc.FullName()) + "/" + string(md.Name()),
		Streaming:   streaming(md),
		Template: &TemplateInfo{
			HTTPRule:     rt.Pattern,
			Source:       rt.Source.String(),
			Body:         rt.Body,
			ResponseBody: rt.ResponseBody,
			Variables:    o.shape.templateVars(),
		},
	}
	if out.Summary == out.Description {
		out.Summary = ""
	}
	out.Parameters = g.pathParams(o, st)
	if rt.Body != "*" {
		var bound [][]protoreflect.FieldDescriptor
		for _, v := range rt.Vars {
			bound = append(bound, v.Fields)
		}
		if rt.BodyField != nil {
			bound = append(bound, []protoreflect.FieldDescriptor{rt.BodyField})
		}
		out.Parameters = append(out.Parameters, g.queryParams(md.Input(), bound, st)...)
	}
	out.RequestBody = g.requestBody(rt, st)
	out.Responses["200"] = g.response(rt, st)
	out.Responses["default"] = &Response{
		Description: "An error: a google.rpc.Status with the HTTP status mapped from its code (NOT_FOUND → 404, INVALID_ARGUMENT → 400, UNAVAILABLE → 503, ...).",
		Content:     map[string]*MediaType{"application/json": {Schema: ref(statusSchema + g.base.suffix(g.base, false))}},
	}
	if g.opts.Security != nil {
		for _, s := range g.opts.Security(md.FullName()) {
			if _, ok := g.schemes[s.Name]; !ok {
				def := s.Scheme
				g.schemes[s.Name] = &def
			}
			scopes := s.Scopes
			if scopes == nil {
				scopes = []string{}
			}
			out.Security = append(out.Security, map[string][]string{s.Name: scopes})
		}
	}
	return out
}

func streaming(md protoreflect.MethodDescriptor) string {
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return "bidi"
	case md.IsStreamingClient():
		return "client"
	case md.IsStreamingServer():
		return "server"
	}
	return ""
}

// pathParams returns the path parameters of a route, one per wildcard.
func (g *generator) pathParams(o *op, st style) []*Parameter {
	rt := o.rt
	fields := map[string][]protoreflect.FieldDescriptor{}
	for _, v := range rt.Vars {
		fields[v.FieldPath] = v.Fields
	}
	var out []*Parameter
	for _, w := range o.shape.wild {
		p := &Parameter{Name: w.name, In: "path", Required: true}
		fds := fields[w.field]
		switch {
		case w.field == "":
			p.Schema = &Schema{Type: "string"}
			p.Description = "A path segment the binding matches but does not bind to a request field."
			if w.multi {
				p.Schema = &Schema{Type: "string"}
				p.Description = "The rest of the path, matched but not bound to a request field; it may hold \"/\", sent unencoded."
				p.RawSlashes = true
			}
		case w.single && len(fds) > 0:
			leaf := fds[len(fds)-1]
			p.Schema = g.queryValue(leaf, st)
			p.Description = joinText(comments(leaf), fmt.Sprintf("Binds %s. The value is percent-decoded, so any character may be sent percent-encoded (a \"/\" as %%2F).", w.field))
			p.Deprecated = deprecated(leaf.Options())
		case w.multi:
			p.Schema = &Schema{Type: "string"}
			p.Description = fmt.Sprintf("The part of %s matched by \"**\": the rest of the path, any number of segments (%s = %s). Send its \"/\" unencoded: the gateway keeps %%2F in multi-segment variables as is, so an encoded slash reaches the backend as the three characters %%2F.",
				w.field, w.field, o.shape.varTemplate(w))
			p.RawSlashes = true
		default:
			p.Schema = &Schema{Type: "string", Pattern: "^[^/]+$"}
			p.Description = fmt.Sprintf("One segment of %s, which the gateway assembles as %s; it must not hold \"/\".", w.field, o.shape.varTemplate(w))
		}
		out = append(out, p)
	}
	return out
}

const (
	ndjson      = "application/x-ndjson"
	eventStream = "text/event-stream"
	jsonType    = "application/json"
	anyType     = "*/*"
)

func binary() *Schema { return &Schema{Type: "string", Format: "binary"} }

// requestBody describes the body of a route: the message (body "*") or
// the field the binding names, raw bytes for google.api.HttpBody, and a
// sequence of JSON messages for client streams.
func (g *generator) requestBody(rt *router.Route, st style) *RequestBody {
	if rt.Body == "" {
		return nil
	}
	md := rt.Method
	var schema *Schema
	raw := false
	what := "The request message"
	switch {
	case rt.Body == "*":
		raw = isHTTPBody(md.Input())
		if !raw {
			schema = g.schemas.message(md.Input(), st)
		}
	default:
		fd := rt.BodyField
		raw = isHTTPBody(fd.Message()) && !fd.IsList()
		if !raw {
			schema = g.schemas.field(fd, st)
		}
		what = fmt.Sprintf("The request field %s", fd.Name())
	}
	rb := &RequestBody{}
	if raw {
		rb.Description = "Raw bytes of any media type: the gateway passes them and their Content-Type to the method as a google.api.HttpBody."
		rb.Content = map[string]*MediaType{anyType: {Schema: binary()}}
		return rb
	}
	var fromPath []string
	for _, v := range rt.Vars {
		fromPath = append(fromPath, v.FieldPath)
	}
	rb.Description = what + " as JSON."
	if len(fromPath) > 0 {
		rb.Description += fmt.Sprintf(" Values the path binds (%s) take precedence over the body's.", strings.Join(fromPath, ", "))
	}
	if md.IsStreamingClient() {
		// The gateway reads client-stream bodies as JSON values one after
		// another, under the Content-Type application/json (it answers 415
		// to application/x-ndjson).
		rb.Description = what + "s of the stream: JSON values one after another, newline-delimited (NDJSON), each sent to the method as soon as it is read; send them with Content-Type application/json. The schema is the schema of one message."
	}
	rb.Content = map[string]*MediaType{jsonType: {Schema: schema}}
	return rb
}

// response describes the 200 answer: one JSON message (or the
// response_body field), raw bytes for google.api.HttpBody, and for server
// streams NDJSON (the default), a JSON array (Accept: application/json)
// or Server-Sent Events (Accept: text/event-stream).
func (g *generator) response(rt *router.Route, st style) *Response {
	md := rt.Method
	var item *Schema
	raw := false
	what := "The response message"
	if fd := rt.ResponseBodyField; fd != nil {
		raw = isHTTPBody(fd.Message()) && !fd.IsList()
		if !raw {
			item = g.schemas.field(fd, st)
		}
		what = fmt.Sprintf("The response field %s", fd.Name())
	} else {
		raw = isHTTPBody(md.Output())
		if !raw {
			item = g.schemas.message(md.Output(), st)
		}
	}
	if raw {
		d := "Raw bytes, with the Content-Type the method set in its google.api.HttpBody."
		if md.IsStreamingServer() {
			d = "Raw bytes: the data of each google.api.HttpBody message of the stream, one after another, with the Content-Type of the first."
		}
		return &Response{Description: d, Content: map[string]*MediaType{anyType: {Schema: binary()}}}
	}
	if !md.IsStreamingServer() {
		return &Response{Description: what + ".", Content: map[string]*MediaType{jsonType: {Schema: item}}}
	}
	copyItem := func() *Schema { c := *item; c.Description = ""; return &c }
	return &Response{
		Description: what + "s of the stream, framed by the Accept header: " +
			"application/x-ndjson (the default) writes one JSON message per line, as each arrives, and a failure adds a last line {\"error\": <google.rpc.Status>}; " +
			"application/json writes one JSON array of the messages, streamed element by element, and a failure adds a last element {\"error\": <google.rpc.Status>}; " +
			"text/event-stream writes Server-Sent Events, one event per message (id: <n>, data: <JSON>), an error event whose data is a google.rpc.Status, and a final end event.",
		Content: map[string]*MediaType{
			ndjson:      {Schema: copyItem()},
			jsonType:    {Schema: &Schema{Type: "array", Items: copyItem()}},
			eventStream: {Schema: &Schema{Type: "string", Description: "Server-Sent Events; each event's data is one message (see x-rosetta-item-schema)."}, ItemSchema: copyItem()},
		},
	}
}
