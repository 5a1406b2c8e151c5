package openapi

import "encoding/json"

// Version is the OpenAPI version of the documents [Generate] writes.
const Version = "3.1.0"

// Document is an OpenAPI 3.1 document: the subset of the specification's
// objects that generated documents use, marshalled with encoding/json
// (map keys sorted, so the output is deterministic).
type Document struct {
	// OpenAPI is the OpenAPI version, [Version].
	OpenAPI string `json:"openapi"`
	// Info is the info object: title and version.
	Info Info `json:"info"`
	// Servers are the base URLs the paths are relative to.
	Servers []Server `json:"servers,omitempty"`
	// Tags are the gRPC services, one tag each.
	Tags []Tag `json:"tags,omitempty"`
	// Paths holds the operations by OpenAPI path.
	Paths map[string]*PathItem `json:"paths"`
	// Components holds the schemas and security schemes.
	Components Components `json:"components"`
	// Omitted lists the bindings that have no OpenAPI form (a custom HTTP
	// method OpenAPI 3.1 cannot name, a path that another binding of the
	// same HTTP method already takes once parameters are named), as the
	// x-rosetta-omitted extension.
	Omitted []Omitted `json:"x-rosetta-omitted,omitempty"`
}

// JSON returns d as indented JSON followed by a newline.
func (d *Document) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Info is the document's info object.
type Info struct {
	// Title is info.title.
	Title string `json:"title"`
	// Version is info.version.
	Version string `json:"version"`
	// Description is info.description.
	Description string `json:"description,omitempty"`
}

// Server is one server object: a base URL the paths are relative to.
type Server struct {
	// URL is the base URL.
	URL string `json:"url"`
	// Description describes the server.
	Description string `json:"description,omitempty"`
}

// Tag groups the operations of one gRPC service.
type Tag struct {
	// Name is the service's simple name, or its full name when two
	// services share the simple name.
	Name string `json:"name"`
	// Description is the service's comment.
	Description string `json:"description,omitempty"`
}

// PathItem holds the operations of one path, by HTTP method.
type PathItem struct {
	// Get is the GET operation.
	Get *Operation `json:"get,omitempty"`
	// Put is the PUT operation.
	Put *Operation `json:"put,omitempty"`
	// Post is the POST operation.
	Post *Operation `json:"post,omitempty"`
	// Delete is the DELETE operation.
	Delete *Operation `json:"delete,omitempty"`
	// Options is the OPTIONS operation.
	Options *Operation `json:"options,omitempty"`
	// Head is the HEAD operation.
	Head *Operation `json:"head,omitempty"`
	// Patch is the PATCH operation.
	Patch *Operation `json:"patch,omitempty"`
	// Trace is the TRACE operation.
	Trace *Operation `json:"trace,omitempty"`
}

// slot returns the field of p for an upper-case HTTP method, or nil when
// OpenAPI 3.1 has no field for it.
func (p *PathItem) slot(method string) **Operation {
	switch method {
	case "GET":
		return &p.Get
	case "PUT":
		return &p.Put
	case "POST":
		return &p.Post
	case "DELETE":
		return &p.Delete
	case "OPTIONS":
		return &p.Options
	case "HEAD":
		return &p.Head
	case "PATCH":
		return &p.Patch
	case "TRACE":
		return &p.Trace
	}
	return nil
}

// Operations returns p's operations by upper-case HTTP method.
func (p *PathItem) Operations() map[string]*Operation {
	out := map[string]*Operation{}
	for _, m := range []string{"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"} {
		if op := *p.slot(m); op != nil {
			out[m] = op
		}
	}
	return out
}

// Operation is one HTTP binding of one RPC method.
type Operation struct {
	// OperationID is "<tag>_<Method>", with "_<n>" for the method's
	// n-th additional binding; unique in the document.
	OperationID string `json:"operationId"`
	// Tags holds the tag of the method's service.
	Tags []string `json:"tags,omitempty"`
	// Summary is the first sentence of the method's comment.
	Summary string `json:"summary,omitempty"`
	// Description is the method's comment.
	Description string `json:"description,omitempty"`
	// Deprecated is the method's deprecated option.
	Deprecated bool `json:"deprecated,omitempty"`
	// Parameters are the path parameters, then the query parameters.
	Parameters []*Parameter `json:"parameters,omitempty"`
	// RequestBody is the body the binding reads, if any.
	RequestBody *RequestBody `json:"requestBody,omitempty"`
	// Responses are "200" and "default" (the error).
	Responses map[string]*Response `json:"responses"`
	// Security lists the security requirements, any one of which is
	// enough ([Options.Security]).
	Security []map[string][]string `json:"security,omitempty"`
	// Method is the RPC's gRPC path, "/pkg.Service/Method"
	// (x-rosetta-method).
	Method string `json:"x-rosetta-method"`
	// Streaming is "client", "server" or "bidi" for streaming methods
	// (x-rosetta-streaming).
	Streaming string `json:"x-rosetta-streaming,omitempty"`
	// Template describes the HttpRule binding and how the path's
	// parameters make up its variables (x-rosetta-template).
	Template *TemplateInfo `json:"x-rosetta-template"`
}

// TemplateInfo is the x-rosetta-template extension of an operation: the
// binding as written and, for each path variable, which path parameters
// it is assembled from.
type TemplateInfo struct {
	// HTTPRule is the path template as written in the binding, e.g.
	// "/v1/{name=shelves/*/books/*}:publish".
	HTTPRule string `json:"httpRule"`
	// Source is where the binding comes from: annotation, config or
	// default.
	Source string `json:"source"`
	// Body is the binding's body.
	Body string `json:"body,omitempty"`
	// ResponseBody is the binding's response_body.
	ResponseBody string `json:"responseBody,omitempty"`
	// Variables are the template's variables and wildcards, in path
	// order.
	Variables []TemplateVar `json:"variables,omitempty"`
}

// TemplateVar maps one path variable (or a wildcard outside variables) to
// the path parameters it is made of.
type TemplateVar struct {
	// Field is the request field path the variable binds, e.g.
	// "book.name"; empty for a "*" or "**" outside any variable, whose
	// value the gateway matches but does not bind.
	Field string `json:"field,omitempty"`
	// Template is the variable's value in terms of the parameters, e.g.
	// "shelves/{shelf}/books/{book}".
	Template string `json:"template"`
	// Parameters are the path parameters, in order.
	Parameters []string `json:"parameters"`
}

// Omitted is a binding the document leaves out, and why.
type Omitted struct {
	// Method is the RPC's full name.
	Method string `json:"method"`
	// HTTPMethod is the binding's HTTP method.
	HTTPMethod string `json:"httpMethod"`
	// HTTPRule is the binding's path template.
	HTTPRule string `json:"httpRule"`
	// Reason says why the binding has no operation.
	Reason string `json:"reason"`
}

// Parameter is a path or query parameter.
type Parameter struct {
	// Name is the parameter's name: a path parameter's name in the path,
	// a query parameter's field path in JSON names ("filter.author").
	Name string `json:"name"`
	// In is "path" or "query".
	In string `json:"in"`
	// Description describes the parameter.
	Description string `json:"description,omitempty"`
	// Required is true for path parameters.
	Required bool `json:"required,omitempty"`
	// Deprecated is the field's deprecated option.
	Deprecated bool `json:"deprecated,omitempty"`
	// Style is "form" for repeated fields, "deepObject" for maps.
	Style string `json:"style,omitempty"`
	// Explode is set with Style.
	Explode *bool `json:"explode,omitempty"`
	// Schema is the schema of the value.
	Schema *Schema `json:"schema"`
	// RawSlashes marks a path parameter whose value may hold "/", sent
	// unencoded (x-rosetta-raw-slashes).
	RawSlashes bool `json:"x-rosetta-raw-slashes,omitempty"`
}

// RequestBody is an operation's request body.
type RequestBody struct {
	// Description describes the body.
	Description string `json:"description,omitempty"`
	// Required is requestBody.required.
	Required bool `json:"required,omitempty"`
	// Content holds the body's schema by media type.
	Content map[string]*MediaType `json:"content"`
}

// Response is one response of an operation.
type Response struct {
	// Description describes the response.
	Description string `json:"description"`
	// Content holds the body's schema by media type.
	Content map[string]*MediaType `json:"content,omitempty"`
}

// MediaType is the schema of one media type of a body.
type MediaType struct {
	// Schema is the schema of the body.
	Schema *Schema `json:"schema,omitempty"`
	// ItemSchema is the schema of each message of a stream whose media
	// type the Schema cannot describe item by item (text/event-stream:
	// each event's data), as the x-rosetta-item-schema extension
	// (OpenAPI 3.2 calls it itemSchema).
	ItemSchema *Schema `json:"x-rosetta-item-schema,omitempty"`
}

// Components holds the reusable schemas and the security schemes.
type Components struct {
	// Schemas are the message and enum schemas, by full name (with a
	// suffix naming the JSON options, for a route whose options differ
	// from the gateway's, e.g. "pkg.Book-proto_names").
	Schemas map[string]*Schema `json:"schemas,omitempty"`
	// SecuritySchemes are the auth plugins' schemes, by [Security.Name].
	SecuritySchemes map[string]*SecurityScheme `json:"securitySchemes,omitempty"`
}

// Schema is a JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it). Type
// is a string or, for nullable values, a list of strings.
type Schema struct {
	// Ref is $ref: "#/components/schemas/<name>".
	Ref string `json:"$ref,omitempty"`
	// Type is a JSON type name, or a list of them.
	Type any `json:"type,omitempty"`
	// Format is int32, int64, uint64, float, double, byte, binary or
	// date-time.
	Format string `json:"format,omitempty"`
	// Title is a message's or enum's simple name.
	Title string `json:"title,omitempty"`
	// Description is the comment of the message, enum or field.
	Description string `json:"description,omitempty"`
	// Deprecated is the deprecated option.
	Deprecated bool `json:"deprecated,omitempty"`
	// Enum lists an enum's names (or numbers).
	Enum []any `json:"enum,omitempty"`
	// Pattern constrains strings: 64-bit integers, durations, map keys.
	Pattern string `json:"pattern,omitempty"`
	// Minimum is the least value of unsigned integers.
	Minimum *float64 `json:"minimum,omitempty"`
	// Maximum is the greatest value of 32-bit unsigned integers.
	Maximum *float64 `json:"maximum,omitempty"`
	// ContentEncoding is "base64" for bytes.
	ContentEncoding string `json:"contentEncoding,omitempty"`
	// Items is the schema of a repeated field's values.
	Items *Schema `json:"items,omitempty"`
	// Properties are a message's fields, by JSON name.
	Properties map[string]*Schema `json:"properties,omitempty"`
	// Required lists proto2 required fields.
	Required []string `json:"required,omitempty"`
	// AdditionalProperties is the schema of a map's values.
	AdditionalProperties *Schema `json:"additionalProperties,omitempty"`
	// PropertyNames constrains the keys of maps with non-string keys.
	PropertyNames *Schema `json:"propertyNames,omitempty"`
	// AnyOf makes a referenced message nullable: [$ref, null].
	AnyOf []*Schema `json:"anyOf,omitempty"`
	// Oneofs lists, by oneof name, the properties of which at most one
	// may be set (x-rosetta-oneofs).
	Oneofs map[string][]string `json:"x-rosetta-oneofs,omitempty"`
}

// SecurityScheme is a security scheme object.
type SecurityScheme struct {
	// Type is "http" or "apiKey".
	Type string `json:"type"`
	// Scheme is "bearer" for an http scheme.
	Scheme string `json:"scheme,omitempty"`
	// BearerFormat is "JWT" for jwt-auth.
	BearerFormat string `json:"bearerFormat,omitempty"`
	// Name is an apiKey's header, query parameter or cookie name.
	Name string `json:"name,omitempty"`
	// In is where an apiKey goes: header, query or cookie.
	In string `json:"in,omitempty"`
	// Description describes the scheme.
	Description string `json:"description,omitempty"`
}
