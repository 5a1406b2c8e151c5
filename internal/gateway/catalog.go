package gateway

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rosetta-gateway/rosetta/admin/openapi"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/portal"
)

// This file builds the developer portal's catalog from the current
// descriptors, route table and config: one API per service family, its
// versions side by side.

// versionSegment matches a proto package's version component: v1, v2,
// v1beta1, v2alpha.
var versionSegment = regexp.MustCompile(`^v\d+(?:(?:alpha|beta)\d*)?$`)

// apiOf splits a service's full name into its API key (the package
// without its version component, then the service name:
// "library.LibraryService" for "library.v1.LibraryService") and its
// version ("v1"; "" when the package has none).
func apiOf(svc protoreflect.FullName) (api, version string) {
	parts := strings.Split(string(svc), ".")
	kept := parts[:0:0]
	for _, p := range parts[:len(parts)-1] {
		if version == "" && versionSegment.MatchString(p) {
			version = p
			continue
		}
		kept = append(kept, p)
	}
	kept = append(kept, parts[len(parts)-1])
	return strings.Join(kept, "."), version
}

// titleOf turns a service name into words: "LibraryService" → "Library
// Service".
func titleOf(name string) string {
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) && !unicode.IsUpper(rune(name[i-1])) {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// catalog builds the portal's catalog of st.
func (g *Gateway) catalog(st *state) *portal.Catalog {
	gen := st.gen
	c := &portal.Catalog{Title: portalTitle(gen.cfg)}
	if st.snap == nil {
		c.APIs = g.httpAPIs(gen)
		return c
	}
	byAPI := map[string]*portal.API{}
	var order []string
	for _, svc := range st.snap.Services() {
		name, version := apiOf(svc.Desc.FullName())
		api := byAPI[name]
		if api == nil {
			api = &portal.API{Name: name, Title: titleOf(string(svc.Desc.Name()))}
			byAPI[name] = api
			order = append(order, name)
		}
		v := portal.Version{
			Version:     version,
			Service:     string(svc.Desc.FullName()),
			Description: openapi.Comments(svc.Desc),
			Upstream:    svc.Upstream,
		}
		methods := svc.Desc.Methods()
		var first *config.Route
		same := true
		for i := 0; i < methods.Len(); i++ {
			md := methods.Get(i)
			r := gen.selectorRoute(md)
			if i == 0 {
				first = r
			} else if r != first {
				same = false
			}
			v.Methods = append(v.Methods, g.catalogMethod(st, md, r))
		}
		if same && first != nil && strings.HasSuffix(first.Selector, "*") {
			// One route covers the whole service: its lifecycle is the
			// version's.
			v.Deprecated, v.Retired = lifecycleOf(first)
		}
		if api.Description == "" || v.Description != "" {
			api.Description = v.Description // the newest version's, when it has one
		}
		api.Versions = append(api.Versions, v)
	}
	sort.Strings(order)
	for _, name := range order {
		api := byAPI[name]
		sort.SliceStable(api.Versions, func(i, j int) bool { return api.Versions[i].Version < api.Versions[j].Version })
		c.APIs = append(c.APIs, *api)
	}
	c.APIs = append(c.APIs, g.httpAPIs(gen)...)
	return c
}

// httpAPIs are the plain HTTP upstreams that uri routes reach, one API
// each (in config order), a method per route: kind "http", its HTTP
// methods as bindings.
func (g *Gateway) httpAPIs(gen *generation) []portal.API {
	var apis []portal.API
	index := map[string]int{}
	for i := range gen.cfg.Routes {
		r := &gen.cfg.Routes[i]
		if r.URI == "" {
			continue
		}
		at, ok := index[r.Service]
		if !ok {
			at = len(apis)
			index[r.Service] = at
			apis = append(apis, portal.API{
				Name: r.Service, Title: r.Service,
				Description: "A plain HTTP service behind the gateway.",
				Versions:    []portal.Version{{Service: r.Service, Upstream: r.Service}},
			})
		}
		m := portal.Method{Name: r.URI, FullName: r.URI, Kind: "http"}
		for _, verb := range uriMethods(r) {
			m.HTTP = append(m.HTTP, portal.Binding{Method: verb, Path: r.URI})
		}
		if gen.pols != nil {
			m.Auth = gen.pols.ForURIRoute(i).AuthPlugins()
		}
		if ka := keyAuthOf(gen.cfg, r); ka != nil {
			m.AuthHeader, m.AuthQuery, m.AuthOptional = ka.Header, ka.Query, ka.Optional
			if m.AuthHeader == "" {
				m.AuthHeader = "apikey"
			}
		}
		m.Deprecated, m.Retired = lifecycleOf(r)
		apis[at].Versions[0].Methods = append(apis[at].Versions[0].Methods, m)
	}
	return apis
}

// uriMethods are the HTTP methods a uri route takes: its methods, else
// the usual five.
func uriMethods(r *config.Route) []string {
	if len(r.Methods) > 0 {
		out := make([]string, len(r.Methods))
		for i, m := range r.Methods {
			out[i] = strings.ToUpper(m)
		}
		return out
	}
	return []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
}

// uriOpenAPI is the OpenAPI 3.1 document of the uri routes to upstream
// (nil when none reaches it): an operation per route and method, whose
// answer is the upstream's; a prefix route "/web/*" is the path
// "/web/{path}".
func uriOpenAPI(cfg *config.Config, upstream string) ([]byte, error) {
	paths := map[string]map[string]any{}
	schemes := map[string]any{}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		if r.URI == "" || r.Service != upstream {
			continue
		}
		path, params := r.URI, []any{}
		if base, ok := strings.CutSuffix(r.URI, "/*"); ok {
			path = base + "/{path}"
			params = append(params, map[string]any{
				"name": "path", "in": "path", "required": true, "schema": map[string]any{"type": "string"},
				"description": "the rest of the path, sent to the upstream as it is",
			})
		}
		var security []any
		for _, p := range routePlugins(cfg, r) {
			switch {
			case p.KeyAuth != nil:
				header := p.KeyAuth.Header
				if header == "" {
					header = "apikey"
				}
				schemes["apiKey"] = map[string]any{"type": "apiKey", "in": "header", "name": header}
				security = append(security, map[string]any{"apiKey": []any{}})
			case p.JWTAuth != nil:
				schemes["bearer"] = map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
				security = append(security, map[string]any{"bearer": []any{}})
			}
		}
		item := paths[path]
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		for _, verb := range uriMethods(r) {
			op := map[string]any{
				"summary":     verb + " " + r.URI + " (upstream " + upstream + ")",
				"operationId": strings.ToLower(verb) + strings.NewReplacer("/", "_", "*", "any").Replace(r.URI),
				"parameters":  params,
				"responses":   map[string]any{"default": map[string]any{"description": "the upstream's answer"}},
			}
			if verb == "POST" || verb == "PUT" || verb == "PATCH" {
				op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{}}}}
			}
			if len(security) > 0 {
				op["security"] = security
			}
			if r.Deprecated != nil || r.Retired != nil {
				op["deprecated"] = true
			}
			item[strings.ToLower(verb)] = op
		}
	}
	if len(paths) == 0 {
		return nil, nil
	}
	doc := map[string]any{
		"openapi":    openapi.Version,
		"info":       map[string]any{"title": upstream, "version": "1"},
		"paths":      paths,
		"components": map[string]any{"securitySchemes": schemes},
	}
	return json.MarshalIndent(doc, "", "  ")
}

// routePlugins are the plugins that apply to route r: its own, and the
// top-level ones it does not name.
func routePlugins(cfg *config.Config, r *config.Route) []config.Plugin {
	out := append([]config.Plugin(nil), r.Plugins...)
	named := map[string]bool{}
	for _, p := range r.Plugins {
		named[p.Name()] = true
	}
	for _, p := range cfg.Plugins {
		if !named[p.Name()] {
			out = append(out, p)
		}
	}
	return out
}

// catalogMethod describes one method: its bindings, authentication,
// request skeleton and lifecycle (from its config route r, nil: none).
func (g *Gateway) catalogMethod(st *state, md protoreflect.MethodDescriptor, r *config.Route) portal.Method {
	m := portal.Method{
		Name:        string(md.Name()),
		FullName:    "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
		Description: openapi.Comments(md),
		Kind:        methodKind(md),
	}
	if st.table != nil {
		for _, rt := range st.table.RouteFor(md.FullName()) {
			m.HTTP = append(m.HTTP, portal.Binding{Method: rt.HTTPMethod, Path: rt.Pattern, Body: rt.Body})
		}
	}
	if pols := st.gen.pols; pols != nil {
		chain, _ := pols.ForMethod(string(md.FullName()))
		m.Auth = chain.AuthPlugins()
	}
	if ka := keyAuthOf(st.gen.cfg, r); ka != nil {
		m.AuthHeader, m.AuthQuery, m.AuthOptional = ka.Header, ka.Query, ka.Optional
		if m.AuthHeader == "" {
			m.AuthHeader = "apikey"
		}
	}
	names := st.gen.cfg.Transcoding.JSON.Merge(routeJSON(r)).UseProtoNames
	m.RequestExample, _ = json.Marshal(skeleton(md.Input(), names != nil && *names, 0))
	if r != nil {
		m.Deprecated, m.Retired = lifecycleOf(r)
	}
	return m
}

// routeJSON returns a config route's JSON options (none for nil).
func routeJSON(r *config.Route) config.JSONOptions {
	if r == nil {
		return config.JSONOptions{}
	}
	return r.JSON
}

// keyAuthOf returns the key-auth settings that apply to route r (its own
// plugin, else the top-level one), nil when none does.
func keyAuthOf(cfg *config.Config, r *config.Route) *config.KeyAuth {
	if r != nil {
		for i := range r.Plugins {
			if r.Plugins[i].KeyAuth != nil {
				return r.Plugins[i].KeyAuth
			}
		}
	}
	for i := range cfg.Plugins {
		if cfg.Plugins[i].KeyAuth != nil {
			return cfg.Plugins[i].KeyAuth
		}
	}
	return nil
}

// methodKind names a method's streaming shape.
func methodKind(md protoreflect.MethodDescriptor) string {
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return "bidi_stream"
	case md.IsStreamingServer():
		return "server_stream"
	case md.IsStreamingClient():
		return "client_stream"
	}
	return "unary"
}

// lifecycleOf returns a route's deprecation and retirement as the portal
// shows them.
func lifecycleOf(r *config.Route) (deprecated, retired *portal.Lifecycle) {
	if d := r.Deprecated; d != nil {
		deprecated = &portal.Lifecycle{Since: dateOf(d.Since), Sunset: dateOf(d.Sunset), Link: d.Link}
	}
	if rt := r.Retired; rt != nil {
		retired = &portal.Lifecycle{Link: rt.Link, Message: rt.Message}
	}
	return deprecated, retired
}

// dateOf returns the date part (YYYY-MM-DD) of a lifecycle time.
func dateOf(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// portalTitle is the portal's title (config default applied).
func portalTitle(cfg *config.Config) string {
	if cfg.Portal != nil && cfg.Portal.Title != "" {
		return cfg.Portal.Title
	}
	return "API portal"
}

// skeleton returns a JSON-encodable example of a message: every field
// with a placeholder of its type (nested messages to a depth of 3), in
// its JSON name (or proto name when protoNames).
func skeleton(md protoreflect.MessageDescriptor, protoNames bool, depth int) any {
	if v, ok := wellKnown(md); ok {
		return v
	}
	out := map[string]any{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := fd.JSONName()
		if protoNames {
			name = string(fd.Name())
		}
		switch {
		case fd.IsMap():
			out[name] = map[string]any{}
		case fd.IsList():
			out[name] = []any{}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if depth >= 3 {
				continue
			}
			out[name] = skeleton(fd.Message(), protoNames, depth+1)
		default:
			out[name] = scalarExample(fd)
		}
	}
	return out
}

// wellKnown returns the JSON form of well-known types that have one of
// their own (Timestamp, Duration, FieldMask, wrappers, Struct, Value,
// Any, Empty).
func wellKnown(md protoreflect.MessageDescriptor) (any, bool) {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return "1970-01-01T00:00:00Z", true
	case "google.protobuf.Duration":
		return "0s", true
	case "google.protobuf.FieldMask":
		return "", true
	case "google.protobuf.Struct", "google.protobuf.Empty":
		return map[string]any{}, true
	case "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any":
		return nil, true
	case "google.protobuf.StringValue", "google.protobuf.BytesValue":
		return "", true
	case "google.protobuf.BoolValue":
		return false, true
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return "0", true
	case "google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
		return 0, true
	}
	return nil, false
}

// scalarExample is the placeholder of a scalar or enum field, in its
// proto3 JSON form.
func scalarExample(fd protoreflect.FieldDescriptor) any {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return false
	case protoreflect.StringKind, protoreflect.BytesKind:
		return ""
	case protoreflect.EnumKind:
		if vals := fd.Enum().Values(); vals.Len() > 0 {
			return string(vals.Get(0).Name())
		}
		return 0
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "0" // 64-bit integers are strings in proto3 JSON
	}
	return 0
}
