package openapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vconfig "github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/content"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/rosetta-gateway/rosetta/admin/openapi"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway"
	"github.com/rosetta-gateway/rosetta/internal/gateway/gatewaytest"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/router"
)

// expectedErrors are the operations whose sample request cannot succeed,
// by operationId: the HTTP status the backend's answer maps to, and why.
// Their answer must still be the documented error (the default
// response, a google.rpc.Status).
var expectedErrors = map[string]struct {
	status int
	why    string
}{
	// POST /rosetta.examples.library.v1.LibraryService/MoveBook, the
	// default binding of a method without an annotation: its body is the
	// whole request, and the sample "name" names no book.
	"LibraryService_MoveBook": {http.StatusBadRequest, `INVALID_ARGUMENT: the sample name "sample" is not a book name`},
	// Fail answers the status its request asks for: the sample code 1,
	// CANCELLED.
	"EchoService_Fail": {499, "CANCELLED, as the sample request asks"},
}

// TestEndToEnd runs a real gateway in front of a real backend (the
// library example, from a descriptor set with source info, and the
// echo test service, by reflection; key-auth on every route), serves
// the document with Handler as the gateway serves it, validates it, and
// then calls every GET and POST operation of the document through the
// gateway with a request built from the document alone:
//
//   - each path parameter is "1" (the sample data's shelves/1/books/1),
//     or the first value of its enum;
//   - no query parameter (they are all optional);
//   - the API key of the operation's security requirement, in the header
//     its scheme names;
//   - a JSON body built from the request body's schema: every property
//     with a value of its type (the first member of each oneof; a
//     recursive message once; google.protobuf.Any and Value left out), or
//     raw bytes for a */* body.
//
// Each request is validated against the document before it is sent.
// The call must succeed (2xx), but for the operations of
// expectedErrors, whose sample request the backend refuses: they must
// answer the documented error. Every response is validated against the
// document with libopenapi-validator: the whole body, or for a stream its
// first message (an NDJSON line, validated against the response's
// application/x-ndjson schema), after which the call is cancelled (a
// watch never ends). Then the README's GET and POST examples (query
// parameters, a stream as a JSON array, a 404) go the same way, and
// answers and requests that break the document are shown to fail
// validation, so that the checks are not vacuous.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	be := testkit.StartBackend(t)
	set := openapi.CompileSet(t, []string{"../../proto"}, "rosetta/examples/library/v1/library.proto")
	libraryFile := openapi.WriteSet(t, set)
	yaml := fmt.Sprintf(`
listeners:
  - address: "127.0.0.1:0"
upstreams:
  library:
    targets: [%q]
    descriptors:
      files: [%q]
  test:
    targets: [%q]
    descriptors:
      services: [rosetta.testing.v1.EchoService]
consumers:
  - {name: alice, keys: [alice-key]}
plugins:
  - key-auth: {header: x-api-key}
`, be.Addr, libraryFile, be.Addr)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "rosetta.yaml"), []byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	base := gatewaytest.URL(g)

	// The document as the gateway serves it: Handler over the gateway's
	// current snapshot and the route table the gateway builds from it.
	h := openapi.Handler(tableOf(g, cfg), openapi.Options{
		Servers:  []string{base},
		JSON:     cfg.Transcoding.JSON,
		Security: openapi.SecurityFromConfig(cfg),
	})
	docServer := httptest.NewServer(h)
	t.Cleanup(docServer.Close)
	resp, err := docServer.Client().Get(docServer.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %v: %s", resp.StatusCode, err, raw)
	}
	openapi.ValidateDocument(t, raw)
	var doc openapi.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	openapi.CheckPaths(t, &doc)
	if len(doc.Omitted) > 0 {
		t.Errorf("omitted bindings: %+v", doc.Omitted)
	}
	// Comments from the library's source info.
	if !slices.Contains(doc.Tags, openapi.Tag{Name: "LibraryService", Description: "LibraryService manages shelves and the books on them."}) {
		t.Errorf("tags %+v: no LibraryService with its comment", doc.Tags)
	}
	if s := doc.Components.Schemas["rosetta.examples.library.v1.Book"]; s == nil || s.Description != "Book is a book on a shelf." {
		t.Errorf("Book schema without its comment: %+v", s)
	}

	c := newChecker(t, raw)
	s := &sampler{schemas: doc.Components.Schemas, schemes: doc.Components.SecuritySchemes, keys: map[string]string{"x-api-key": "alice-key"}}
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	calls := map[string]int{}
	for _, p := range paths {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			op := doc.Paths[p].Operations()[m]
			if op == nil {
				continue
			}
			calls[strings.SplitN(op.Method, "/", 3)[1]]++
			t.Run(op.OperationID, func(t *testing.T) {
				call(t, client, c, s, base, m, p, op)
			})
		}
	}
	// Every GET and POST binding of both services (the library's
	// annotated methods and MoveBook's default binding; the echo
	// service's), and nothing else.
	want := map[string]int{"rosetta.examples.library.v1.LibraryService": 10, "rosetta.testing.v1.EchoService": 17}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("GET and POST operations by service: %v; want %v", calls, want)
	}

	// The README's GET and POST examples, with their query parameters
	// and Accept headers, against the document's paths.
	key := http.Header{"X-Api-Key": {"alice-key"}}
	for _, ex := range []struct {
		method, target, path, body, accept string
		status                             int
	}{
		{"GET", "/v1/shelves", "/v1/shelves", "", "", 200},
		{"GET", "/v1/shelves/1/books/1", "/v1/shelves/{shelf}/books/{book}", "", "", 200},
		{"POST", "/v1/shelves", "/v1/shelves", `{"theme": "Poetry"}`, "", 200},
		{"POST", "/v1/shelves/2/books/2:publish", "/v1/shelves/{shelf}/books/{book}:publish", `{}`, "", 200},
		{"GET", "/v1/shelves/1/books?pageSize=1", "/v1/shelves/{shelf}/books", "", "", 200},
		// Book 1 is on shelves/2 as well: ALREADY_EXISTS.
		{"POST", "/rosetta.examples.library.v1.LibraryService/MoveBook", "/rosetta.examples.library.v1.LibraryService/MoveBook",
			`{"name": "shelves/1/books/1", "otherShelf": "shelves/2"}`, "", 409},
		{"GET", "/v1/shelves/1/books:watch?replayOnly=true", "/v1/shelves/{shelf}/books:watch", "", "", 200},
		// The same stream as one JSON array.
		{"GET", "/v1/shelves/1/books:watch?replayOnly=true", "/v1/shelves/{shelf}/books:watch", "", "application/json", 200},
		{"GET", "/v1/shelves/9", "/v1/shelves/{shelf}", "", "", 404},
	} {
		t.Run("README "+ex.method+" "+ex.target+" "+ex.accept, func(t *testing.T) {
			h := key.Clone()
			var body []byte
			if ex.body != "" {
				body = []byte(ex.body)
				h.Set("Content-Type", "application/json")
			}
			if ex.accept != "" {
				h.Set("Accept", ex.accept)
			}
			if status, got := exchange(t, client, c, ex.method, base+ex.target, ex.path, body, h); status != ex.status {
				t.Errorf("status %d; want %d: %s", status, ex.status, got)
			}
		})
	}

	// The checks are not vacuous: answers that break the document fail.
	for _, bad := range []struct{ path, contentType, body string }{
		{"/v1/shelves/{shelf}", "application/json", `{"name": 1}`},
		{"/v1/shelves/{shelf}/books:watch", "application/x-ndjson", `{"type": "TYPE_EXPLODED"}`},
		{"/v1/shelves/{shelf}/books:watch", "application/json", `{"type": "TYPE_CREATED"}`},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/shelves/1", nil)
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {bad.contentType}}, Body: io.NopCloser(strings.NewReader(bad.body))}
		item := c.model.Paths.PathItems.GetOrZero(bad.path)
		if ok, _ := c.v.GetResponseBodyValidator().ValidateResponseBodyWithPathItem(req, resp, item, bad.path); ok {
			t.Errorf("GET %s answering %s %s validates", bad.path, bad.contentType, bad.body)
		}
	}
	for _, target := range []string{"/v1/shelves/1/books?pageSize=ten", "/v1/shelves/1/books:watch?replayOnly=maybe"} {
		req, _ := http.NewRequest(http.MethodGet, base+target, nil)
		req.Header = key.Clone()
		if ok, _ := c.v.ValidateHttpRequest(req); ok {
			t.Errorf("GET %s validates", target)
		}
	}
}

// tableOf returns the current function Handler takes for g: its
// snapshot, and the route table the gateway builds from it (with cfg's
// rules, routes and default bindings), built once per snapshot.
func tableOf(g *gateway.Gateway, cfg *config.Config) func() (*registry.Snapshot, *router.Table) {
	var mu sync.Mutex
	var last *registry.Snapshot
	var table *router.Table
	return func() (*registry.Snapshot, *router.Table) {
		snap := g.Snapshot()
		mu.Lock()
		defer mu.Unlock()
		if snap != last {
			last = snap
			table, _ = router.Build(snap, router.Params{
				Rules:           cfg.HTTP.Rules,
				Routes:          cfg.Routes,
				DefaultBindings: cfg.Transcoding.DefaultBindingsEnabled(),
			})
		}
		return last, table
	}
}

// checker validates requests and responses against a document with
// libopenapi-validator.
type checker struct {
	v     validator.Validator
	model *v3.Document
}

// newChecker returns the checker of a document. Its Validator reads
// application/x-ndjson bodies (one line of a stream) as JSON.
func newChecker(t *testing.T, raw []byte) *checker {
	t.Helper()
	d, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(d, vconfig.WithBodyDecoder("application/x-ndjson", content.JSONDecoder()))
	if len(errs) > 0 {
		t.Fatalf("NewValidator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Fatalf("ValidateDocument: %s", describe(verrs))
	}
	return &checker{v: v, model: &m.Model}
}

// request validates a request built for the operations of path. It
// names the path item explicitly, as the request's own: the validator's
// router does not find a custom verb's path such as
// /v1/shelves/{shelf}/books/{book}:publish when another path's template
// matches the same segments (/v1/shelves/{shelf}/books/{book}, whose
// {book} may hold ":publish"); it finds that one and answers that it
// has no such method. Both paths are valid OpenAPI, and the gateway
// routes them as the document says. Every other request must be routed
// by the validator itself to path.
func (c *checker) request(t *testing.T, req *http.Request, path string) {
	t.Helper()
	item := c.model.Paths.PathItems.GetOrZero(path)
	if ok, errs := c.v.ValidateHttpRequestWithPathItem(req, item, path); !ok {
		t.Errorf("request %s %s does not validate: %s", req.Method, req.URL, describe(errs))
	}
	if verb.MatchString(path) {
		return
	}
	if ok, errs := c.v.ValidateHttpRequest(req); !ok {
		t.Errorf("request %s %s: the validator's router: %s", req.Method, req.URL, describe(errs))
	}
}

// verb matches a path ending in a custom verb.
var verb = regexp.MustCompile(`:[^/]+$`)

// response validates the response to a request built for path.
func (c *checker) response(t *testing.T, req *http.Request, resp *http.Response, path string) {
	t.Helper()
	item := c.model.Paths.PathItems.GetOrZero(path)
	if ok, errs := c.v.GetResponseBodyValidator().ValidateResponseBodyWithPathItem(req, resp, item, path); !ok {
		t.Errorf("response of %s %s (%d) does not validate: %s", req.Method, req.URL, resp.StatusCode, describe(errs))
	}
}

// call sends the sample request of one operation and checks the answer.
func call(t *testing.T, client *http.Client, c *checker, s *sampler, base, method, path string, op *openapi.Operation) {
	u, body, header := s.request(t, path, op)
	status, got := exchange(t, client, c, method, base+u, path, body, header)
	if exp, ok := expectedErrors[op.OperationID]; ok {
		if status != exp.status {
			t.Errorf("%s %s: status %d; want %d (%s)", method, u, status, exp.status, exp.why)
		}
	} else if status/100 != 2 {
		t.Errorf("%s %s: status %d: %s", method, u, status, got)
	}
}

// exchange sends a request for an operation of path (a key of the
// document's paths), validating the request before it is sent and the
// response (the whole body, or the first message of an NDJSON stream,
// after which the call is cancelled) against the document. It returns
// the status and what it validated.
func exchange(t *testing.T, client *http.Client, c *checker, method, url, path string, body []byte, header http.Header) (int, []byte) {
	t.Helper()
	build := func(ctx context.Context) *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header.Clone()
		return req
	}
	c.request(t, build(context.Background()), path)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Do(build(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var got []byte
	stream := resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "application/x-ndjson"
	if stream {
		line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
		if err != nil && err != io.EOF {
			t.Fatalf("%s %s: read the stream: %v", method, url, err)
		}
		got = bytes.TrimSpace(line)
		cancel()
		var msg map[string]json.RawMessage
		if len(got) > 0 && json.Unmarshal(got, &msg) == nil && msg["error"] != nil {
			t.Errorf("%s %s: the stream failed: %s", method, url, got)
		}
	} else if got, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("%s %s: read the body: %v", method, url, err)
	}
	t.Logf("%s %s → %d %s: %.200s", method, url, resp.StatusCode, resp.Header.Get("Content-Type"), got)
	if stream && len(got) == 0 {
		return resp.StatusCode, got // an empty stream: nothing to validate
	}
	checked := &http.Response{
		StatusCode: resp.StatusCode,
		Header:     resp.Header.Clone(),
		Body:       io.NopCloser(bytes.NewReader(got)),
	}
	checked.Header.Del("Content-Length")
	c.response(t, build(context.Background()), checked, path)
	return resp.StatusCode, got
}

// describe formats validation errors.
func describe(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  %s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    %s: %s", f.FieldPath, f.Reason)
		}
	}
	return b.String()
}

// sampler builds requests from a document.
type sampler struct {
	schemas map[string]*openapi.Schema
	schemes map[string]*openapi.SecurityScheme
	keys    map[string]string // API keys by header name
}

// request returns the URL path (and query), body and header of the
// sample request of op.
func (s *sampler) request(t *testing.T, path string, op *openapi.Operation) (string, []byte, http.Header) {
	t.Helper()
	header := http.Header{}
	query := []string{}
	params := map[string]*openapi.Parameter{}
	for _, p := range op.Parameters {
		if p.In == "path" {
			params[p.Name] = p
		}
	}
	u := pathParamPattern.ReplaceAllStringFunc(path, func(m string) string {
		p := params[m[1:len(m)-1]]
		if p == nil {
			t.Fatalf("path parameter %s is not declared", m)
		}
		v := "1"
		if sc := s.resolve(p.Schema); sc != nil && len(sc.Enum) > 0 {
			v = fmt.Sprint(s.enumValue(sc))
		}
		return v
	})
	if len(op.Security) > 0 {
		for name := range op.Security[0] {
			sch := s.schemes[name]
			if sch == nil || sch.Type != "apiKey" || s.keys[strings.ToLower(sch.Name)] == "" {
				t.Fatalf("security scheme %s: %+v: no credential", name, sch)
			}
			switch sch.In {
			case "header":
				header.Set(sch.Name, s.keys[strings.ToLower(sch.Name)])
			case "query":
				query = append(query, sch.Name+"="+s.keys[strings.ToLower(sch.Name)])
			}
		}
	}
	if len(query) > 0 {
		u += "?" + strings.Join(query, "&")
	}
	rb := op.RequestBody
	if rb == nil {
		return u, nil, header
	}
	if mt := rb.Content["application/json"]; mt != nil {
		v, ok := s.value(mt.Schema, map[string]bool{})
		if !ok {
			v = map[string]any{}
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		header.Set("Content-Type", "application/json")
		return u, b, header
	}
	if rb.Content["*/*"] != nil {
		header.Set("Content-Type", "text/plain")
		return u, []byte("sample bytes"), header
	}
	t.Fatalf("request body %+v: no media type to send", rb)
	return "", nil, nil
}

var pathParamPattern = regexp.MustCompile(`\{[^{}]+\}`)

func (s *sampler) resolve(sc *openapi.Schema) *openapi.Schema {
	for sc != nil && sc.Ref != "" {
		sc = s.schemas[strings.TrimPrefix(sc.Ref, "#/components/schemas/")]
	}
	return sc
}

// enumValue is an enum's first value that is not its zero value
// (*_UNSPECIFIED), or its first.
func (s *sampler) enumValue(sc *openapi.Schema) any {
	for _, e := range sc.Enum {
		if str, ok := e.(string); ok && !strings.HasSuffix(str, "_UNSPECIFIED") {
			return e
		}
		if n, ok := e.(float64); ok && n != 0 {
			return e
		}
	}
	return sc.Enum[0]
}

// samplePatterns are the strings tried, in order, for a string schema
// with a pattern.
var samplePatterns = []string{"sample", "1", "1.5s", "true"}

// value returns a sample value of a schema; false when it leaves the
// value out (any JSON value, google.protobuf.Any, a message already on
// the way: recursion).
func (s *sampler) value(sc *openapi.Schema, seen map[string]bool) (any, bool) {
	if sc == nil {
		return nil, false
	}
	if sc.Ref != "" {
		name := strings.TrimPrefix(sc.Ref, "#/components/schemas/")
		if seen[name] {
			return nil, false
		}
		seen[name] = true
		defer delete(seen, name)
		return s.value(s.schemas[name], seen)
	}
	for _, a := range sc.AnyOf {
		if v, ok := s.value(a, seen); ok {
			return v, true
		}
	}
	if len(sc.Enum) > 0 {
		return s.enumValue(sc), true
	}
	typ, _ := sc.Type.(string)
	if list, ok := sc.Type.([]any); ok && len(list) > 0 {
		typ, _ = list[0].(string)
	}
	switch typ {
	case "boolean":
		return true, true
	case "integer":
		return 1, true
	case "number":
		return 1.5, true
	case "string":
		switch sc.Format {
		case "date-time":
			return "2026-01-02T15:04:05Z", true
		case "int64", "uint64":
			return "1", true
		case "byte":
			return "c2FtcGxl", true
		}
		if sc.Pattern != "" {
			re := regexp.MustCompile(sc.Pattern)
			for _, c := range samplePatterns {
				if re.MatchString(c) {
					return c, true
				}
			}
			return nil, false
		}
		return "sample", true
	case "array":
		if v, ok := s.value(sc.Items, seen); ok {
			return []any{v}, true
		}
		return []any{}, true
	case "object":
		if sc.Properties["@type"] != nil {
			return nil, false // google.protobuf.Any
		}
		out := map[string]any{}
		skip := map[string]bool{}
		for _, members := range sc.Oneofs {
			for _, m := range members[1:] {
				skip[m] = true
			}
		}
		for name, p := range sc.Properties {
			if skip[name] {
				continue
			}
			if v, ok := s.value(p, seen); ok {
				out[name] = v
			}
		}
		if ap := sc.AdditionalProperties; ap != nil && len(sc.Properties) == 0 {
			key := "key"
			if sc.PropertyNames != nil && sc.PropertyNames.Pattern != "" {
				re := regexp.MustCompile(sc.PropertyNames.Pattern)
				for _, c := range []string{"1", "true"} {
					if re.MatchString(c) {
						key = c
						break
					}
				}
			}
			if v, ok := s.value(ap, seen); ok {
				out[key] = v
			}
		}
		return out, true
	}
	return nil, false
}
