package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/jsonschema/v6"
	"github.com/pb33f/libopenapi"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/openapi_vocabulary"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"
)

// metaSchema is the OpenAPI 3.1 specification's JSON Schema, compiled
// once for the whole test binary (compiling it is the most expensive
// part of validating a small document).
var metaSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	return helpers.NewCompiledSchema("openapi-3.1", []byte(datamodel.OpenAPI31SchemaData), config.NewValidationOptions())
})

// validateDocument validates an OpenAPI 3.1 document with libopenapi and
// libopenapi-validator, failing t on any error:
//
//   - libopenapi parses it and builds its OpenAPI 3 model, which resolves
//     every $ref (a dangling reference is an error);
//   - libopenapi-validator validates it against the OpenAPI 3.1
//     specification's schema (ValidateOpenAPIDocument, with that schema
//     compiled once);
//   - every schema of the document (components and those inline in
//     parameters, bodies and responses) is compiled as JSON Schema 2020-12
//     with the validator's OpenAPI vocabulary, in one compilation, which
//     checks each against the meta-schema and compiles its patterns.
//
// The last step stands in for what validator.NewValidator does when it
// warms its caches: that compiles each operation's schemas separately,
// each against a fresh copy of the whole document when a schema is
// recursive, which is quadratic in the document's size (minutes for the
// Google APIs). Request and response validation, which needs a
// Validator, is left to the end-to-end test.
func validateDocument(t testing.TB, b []byte) {
	t.Helper()
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		t.Fatalf("libopenapi.NewDocument: %v", err)
	}
	if got := doc.GetSpecInfo().SpecFormat; got != datamodel.OAS31 {
		t.Fatalf("libopenapi reads the document as %q; want %q", got, datamodel.OAS31)
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Fatalf("BuildV3Model: %v", err)
	}
	meta, err := metaSchema()
	if err != nil {
		t.Fatalf("compile the OpenAPI 3.1 schema: %v", err)
	}
	if ok, verrs := schema_validation.ValidateOpenAPIDocumentWithPrecompiled(doc, meta); !ok {
		for i, e := range verrs {
			if i == 20 {
				t.Errorf("... and %d more", len(verrs)-20)
				break
			}
			var reasons []string
			for _, f := range e.SchemaValidationErrors {
				reasons = append(reasons, fmt.Sprintf("%s: %s", f.FieldPath, f.Reason))
			}
			t.Errorf("invalid document: %s: %s %v", e.Message, e.Reason, reasons)
		}
		t.FailNow()
	}
	if err := compileSchemas(b); err != nil {
		t.Fatalf("schemas: %v", err)
	}
}

// compileSchemas compiles every schema of an OpenAPI document: the
// components and the inline schemas of the operations, as the $defs of
// one JSON Schema resource (so that references between them resolve),
// each compiled by the compiler libopenapi-validator uses for OpenAPI 3.1.
func compileSchemas(b []byte) error {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	defs := map[string]json.RawMessage{}
	for name, s := range doc.Components.Schemas {
		defs[name] = s
	}
	type mediaTypes map[string]struct {
		Schema     json.RawMessage `json:"schema"`
		ItemSchema json.RawMessage `json:"x-rosetta-item-schema"`
	}
	var inline []string // where each inline-<i> schema is
	add := func(where string, s json.RawMessage) {
		if len(s) > 0 {
			defs[fmt.Sprintf("inline-%d", len(inline))] = s
			inline = append(inline, where)
		}
	}
	for path, item := range doc.Paths {
		for method, raw := range item {
			var op struct {
				Parameters []struct {
					Name   string          `json:"name"`
					In     string          `json:"in"`
					Schema json.RawMessage `json:"schema"`
				} `json:"parameters"`
				RequestBody *struct {
					Content mediaTypes `json:"content"`
				} `json:"requestBody"`
				Responses map[string]struct {
					Content mediaTypes `json:"content"`
				} `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return fmt.Errorf("%s %s: %w", method, path, err)
			}
			where := method + " " + path
			for _, p := range op.Parameters {
				add(where+" "+p.In+" "+p.Name, p.Schema)
			}
			if op.RequestBody != nil {
				for mt, m := range op.RequestBody.Content {
					add(where+" request "+mt, m.Schema)
					add(where+" request item "+mt, m.ItemSchema)
				}
			}
			for code, r := range op.Responses {
				for mt, m := range r.Content {
					add(where+" "+code+" "+mt, m.Schema)
					add(where+" "+code+" item "+mt, m.ItemSchema)
				}
			}
		}
	}
	root, err := json.Marshal(map[string]any{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"$defs":   defs,
	})
	if err != nil {
		return err
	}
	// Component references become references into $defs (component
	// names need no escaping: the generator writes no "/", "~" or "%").
	root = []byte(strings.ReplaceAll(string(root), `"#/components/schemas/`, `"#/$defs/`))
	res, err := jsonschema.UnmarshalJSON(bytes.NewReader(root))
	if err != nil {
		return err
	}
	// The compiler libopenapi-validator uses for OpenAPI 3.1 schemas.
	c := helpers.NewCompilerWithOptions(config.NewValidationOptions())
	c.RegisterVocabulary(openapi_vocabulary.NewOpenAPIVocabulary(openapi_vocabulary.Version31))
	c.AssertVocabs()
	if err := c.AddResource("schemas.json", res); err != nil {
		return err
	}
	// One Compile per definition: the compiler keeps what it compiled,
	// and one Compile of everything at once would be quadratic (each
	// call searches its work queue linearly).
	names := make([]string, 0, len(defs))
	for n := range defs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := c.Compile("schemas.json#/$defs/" + n); err != nil {
			where := "component " + n
			if i, ok := strings.CutPrefix(n, "inline-"); ok {
				k, _ := strconv.Atoi(i)
				where = inline[k]
			}
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}
