package openapi

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rosetta-gateway/rosetta/router"
)

func TestPathOfTemplate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		template string
		path     string
		vars     []TemplateVar
		slashes  []string // parameters that carry raw slashes
	}{
		{"/v1/shelves", "/v1/shelves", nil, nil},
		{"/v1/{name=shelves/*/books/*}", "/v1/shelves/{shelf}/books/{book}",
			[]TemplateVar{{Field: "name", Template: "shelves/{shelf}/books/{book}", Parameters: []string{"shelf", "book"}}}, nil},
		{"/v1/{name=shelves/*/books/*}:publish", "/v1/shelves/{shelf}/books/{book}:publish",
			[]TemplateVar{{Field: "name", Template: "shelves/{shelf}/books/{book}", Parameters: []string{"shelf", "book"}}}, nil},
		{"/v1/{parent=shelves/*}/books", "/v1/shelves/{shelf}/books",
			[]TemplateVar{{Field: "parent", Template: "shelves/{shelf}", Parameters: []string{"shelf"}}}, nil},
		{"/v1/echo/{id}", "/v1/echo/{id}",
			[]TemplateVar{{Field: "id", Template: "{id}", Parameters: []string{"id"}}}, nil},
		{"/v1/echo/nested/{nested.name}/{nested.n}", "/v1/echo/nested/{nested.name}/{nested.n}",
			[]TemplateVar{
				{Field: "nested.name", Template: "{nested.name}", Parameters: []string{"nested.name"}},
				{Field: "nested.n", Template: "{nested.n}", Parameters: []string{"nested.n"}},
			}, nil},
		{"/v1/echo/{name=things/*/parts/**}", "/v1/echo/things/{thing}/parts/{part}",
			[]TemplateVar{{Field: "name", Template: "things/{thing}/parts/{part}", Parameters: []string{"thing", "part"}}}, []string{"part"}},
		{"/v1/{name=**}", "/v1/{name}",
			[]TemplateVar{{Field: "name", Template: "{name}", Parameters: []string{"name"}}}, []string{"name"}},
		{"/v1/{name=*/books/*}", "/v1/{name1}/books/{book}",
			[]TemplateVar{{Field: "name", Template: "{name1}/books/{book}", Parameters: []string{"name1", "book"}}}, nil},
		{"/v1/{a=*/*}", "/v1/{a1}/{a2}",
			[]TemplateVar{{Field: "a", Template: "{a1}/{a2}", Parameters: []string{"a1", "a2"}}}, nil},
		{"/v1/{name=projects/*/locations/*/policies/*}", "/v1/projects/{project}/locations/{location}/policies/{policy}",
			[]TemplateVar{{Field: "name", Template: "projects/{project}/locations/{location}/policies/{policy}", Parameters: []string{"project", "location", "policy"}}}, nil},
		{"/v1/{a=boxes/*}/{b=boxes/*}", "/v1/boxes/{box}/boxes/{box2}",
			[]TemplateVar{
				{Field: "a", Template: "boxes/{box}", Parameters: []string{"box"}},
				{Field: "b", Template: "boxes/{box2}", Parameters: []string{"box2"}},
			}, nil},
		{"/v1/files/*/**", "/v1/files/{file}/{segment2}",
			[]TemplateVar{
				{Template: "{file}", Parameters: []string{"file"}},
				{Template: "{segment2}", Parameters: []string{"segment2"}},
			}, []string{"segment2"}},
		{"/v1/{x=a%2Fb/*}", "/v1/a%2Fb/{x}",
			[]TemplateVar{{Field: "x", Template: "a%2Fb/{x}", Parameters: []string{"x"}}}, nil},
	} {
		t.Run(tc.template, func(t *testing.T) {
			pt, err := parseTemplate(router.MustParseTemplate(tc.template))
			if err != nil {
				t.Fatal(err)
			}
			sh := shapeOf(pt)
			if got := sh.path(); got != tc.path {
				t.Errorf("path: got %q; want %q", got, tc.path)
			}
			if diff := cmp.Diff(tc.vars, sh.templateVars()); diff != "" {
				t.Errorf("variables (-want +got):\n%s", diff)
			}
			var slashes []string
			for _, w := range sh.wild {
				if w.multi {
					slashes = append(slashes, w.name)
				}
			}
			if diff := cmp.Diff(tc.slashes, slashes); diff != "" {
				t.Errorf("raw-slash parameters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSingular(t *testing.T) {
	t.Parallel()
	for lit, want := range map[string]string{
		"shelves":      "shelf",
		"books":        "book",
		"policies":     "policy",
		"boxes":        "box",
		"addresses":    "address",
		"branches":     "branch",
		"statuses":     "status",
		"data":         "data",
		"dataSources":  "dataSource",
		"access":       "access",
		"v1":           "v1",
		"a%2Fb":        "",
		"1things":      "",
		"billing.info": "",
	} {
		if got := singular(lit); got != want {
			t.Errorf("singular(%q): got %q; want %q", lit, got, want)
		}
	}
}

// TestSharedShapeNames checks that templates of one shape share the
// parameter names of the first, so that they make one OpenAPI path.
func TestSharedShapeNames(t *testing.T) {
	t.Parallel()
	first := shapeOf(mustParse(t, "/v1/{name=shelves/*}"))
	other := shapeOf(mustParse(t, "/v1/shelves/{shelf_id}"))
	if first.key != other.key {
		t.Fatalf("keys differ: %q and %q", first.key, other.key)
	}
	other.adopt(first)
	if got, want := other.path(), "/v1/shelves/{shelf}"; got != want {
		t.Errorf("path: got %q; want %q", got, want)
	}
	want := []TemplateVar{{Field: "shelf_id", Template: "{shelf}", Parameters: []string{"shelf"}}}
	if diff := cmp.Diff(want, other.templateVars()); diff != "" {
		t.Errorf("variables (-want +got):\n%s", diff)
	}
}

func mustParse(t *testing.T, s string) parsedTemplate {
	t.Helper()
	pt, err := parseTemplate(router.MustParseTemplate(s))
	if err != nil {
		t.Fatal(err)
	}
	return pt
}
