package router

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		canon string
		vars  []string
		verb  string
	}{
		{in: "/v1/shelves", canon: "/v1/shelves", vars: []string{}},
		{in: "/v1/{name}", canon: "/v1/{name}", vars: []string{"name"}},
		{in: "/v1/{name=*}", canon: "/v1/{name}", vars: []string{"name"}},
		{in: "/v1/{name=shelves/*/books/*}", canon: "/v1/{name=shelves/*/books/*}", vars: []string{"name"}},
		{in: "/v1/{book.shelf_id}/{book.name}", canon: "/v1/{book.shelf_id}/{book.name}", vars: []string{"book.shelf_id", "book.name"}},
		{in: "/files/{path=**}", canon: "/files/{path=**}", vars: []string{"path"}},
		{in: "/v1/**", canon: "/v1/**", vars: []string{}},
		{in: "/v1/*:publish", canon: "/v1/*:publish", vars: []string{}, verb: "publish"},
		{in: "/v1/{name=**}:download", canon: "/v1/{name=**}:download", vars: []string{"name"}, verb: "download"},
		{in: "/v1/{name=shelves/*}/books/{id}:cancel", canon: "/v1/{name=shelves/*}/books/{id}:cancel", vars: []string{"name", "id"}, verb: "cancel"},
		{in: "/v1/%7euser/a%2fb", canon: "/v1/~user/a%2Fb", vars: []string{}},
		{in: "/v1/x:%70ub", canon: "/v1/x:pub", vars: []string{}, verb: "pub"},
		{in: "/v1/a=b,c;d@e!$&'()+", canon: "/v1/a=b,c;d@e!$&'()+", vars: []string{}},
		{in: "/v1/{a=lit}", canon: "/v1/{a=lit}", vars: []string{"a"}},
		{in: "/library.v1.Library/GetBook", canon: "/library.v1.Library/GetBook", vars: []string{}},
		{in: "/v1:verb", canon: "/v1:verb", vars: []string{}, verb: "verb"},
		{in: "/{_x9.Y_}", canon: "/{_x9.Y_}", vars: []string{"_x9.Y_"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			tp, err := ParseTemplate(tt.in)
			if err != nil {
				t.Fatalf("ParseTemplate(%q) error: %v", tt.in, err)
			}
			if got := tp.String(); got != tt.canon {
				t.Errorf("String() = %q; want %q", got, tt.canon)
			}
			if diff := cmp.Diff(tt.vars, tp.Vars()); diff != "" {
				t.Errorf("Vars() mismatch (-want +got):\n%s", diff)
			}
			if got := tp.Verb(); got != tt.verb {
				t.Errorf("Verb() = %q; want %q", got, tt.verb)
			}
			again, err := ParseTemplate(tp.String())
			if err != nil {
				t.Fatalf("reparse %q: %v", tp.String(), err)
			}
			if again.String() != tp.String() {
				t.Errorf("reparse String() = %q; want %q", again.String(), tp.String())
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{"", `parse "": template must start with "/" at offset 0`},
		{"v1/shelves", `parse "v1/shelves": template must start with "/" at offset 0`},
		{"/", `parse "/": empty segment at offset 1`},
		{"/v1/", `parse "/v1/": empty segment at offset 4`},
		{"/v1//x", `parse "/v1//x": empty segment at offset 4`},
		{"/:verb", `parse "/:verb": empty segment at offset 1`},
		{"/v1/{name=shelves/*", `parse "/v1/{name=shelves/*": missing "}" at offset 19`},
		{"/v1/{name", `parse "/v1/{name": missing "}" at offset 9`},
		{"/v1/{name.", `parse "/v1/{name.": missing "}" at offset 10`},
		{"/v1/{", `parse "/v1/{": missing field path at offset 5`},
		{"/v1/{}", `parse "/v1/{}": missing field path at offset 5`},
		{"/v1/{1a}", `parse "/v1/{1a}": invalid character "1" in field path at offset 5`},
		{"/v1/{a.}", `parse "/v1/{a.}": invalid character "}" in field path at offset 7`},
		{"/v1/{a-b}", `parse "/v1/{a-b}": unexpected "-" in variable (want "/" or "}") at offset 6`},
		{"/v1/{a={b}}", `parse "/v1/{a={b}}": nested variable at offset 7`},
		{"/v1/{a=b{c}}", `parse "/v1/{a=b{c}}": "{" must start a segment at offset 8`},
		{"/v1/{a=}", `parse "/v1/{a=}": empty segment at offset 7`},
		{"/v1/{a=x:y}", `parse "/v1/{a=x:y}": unexpected ":" in variable (want "/" or "}") at offset 8`},
		{"/v1/{a}/{a}", `parse "/v1/{a}/{a}": variable "a" appears twice at offset 8`},
		{"/v1/**/x", `parse "/v1/**/x": "**" must be the last segment at offset 4`},
		{"/v1/{a=**}/x", `parse "/v1/{a=**}/x": "**" must be the last segment at offset 7`},
		{"/v1/{a=**/x}", `parse "/v1/{a=**/x}": "**" must be the last segment at offset 7`},
		{"/v1/a*", `parse "/v1/a*": "*" must be a whole segment at offset 5`},
		{"/v1/*a", `parse "/v1/*a": "*" must be a whole segment at offset 4`},
		{"/v1/***", `parse "/v1/***": "*" must be a whole segment at offset 4`},
		{"/v1/x:", `parse "/v1/x:": empty verb at offset 6`},
		{"/v1/a:b/c", `parse "/v1/a:b/c": unexpected "/" after verb at offset 7`},
		{"/v1/a:b:c", `parse "/v1/a:b:c": unexpected ":" after verb at offset 7`},
		{"/v1/a}", `parse "/v1/a}": unexpected "}" at offset 5`},
		{"/v1/}", `parse "/v1/}": unexpected "}" at offset 4`},
		{"/v1/a b", `parse "/v1/a b": invalid character " " (percent-encode it) at offset 5`},
		{"/v1/a?b", `parse "/v1/a?b": invalid character "?" (percent-encode it) at offset 5`},
		{"/v1/é", `parse "/v1/é": invalid character "é" (percent-encode it) at offset 4`},
		{"/v1/a%2", `parse "/v1/a%2": invalid percent-escape "%2" at offset 5`},
		{"/v1/a%zz", `parse "/v1/a%zz": invalid percent-escape "%zz" at offset 5`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			tp, err := ParseTemplate(tt.in)
			if err == nil {
				t.Fatalf("ParseTemplate(%q) = %q; want error %s", tt.in, tp, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("ParseTemplate(%q) error:\ngot  %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}
