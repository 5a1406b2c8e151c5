package router

import (
	"testing"
)

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"/v1/shelves",
		"/v1/{name=shelves/*/books/*}",
		"/v1/{book.shelf_id}/{book.name}",
		"/files/{path=**}",
		"/v1/{name=**}:download",
		"/v1/*:publish",
		"/v1/%7euser/a%2fb",
		"/v1/{name=shelves/*",
		"/v1/**/x",
		"/library.v1.Library/GetBook",
		"/v1/a=b,c;d@e!$&'()+",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTemplate(s)
		if err != nil {
			te, ok := err.(*TemplateError)
			if !ok {
				t.Fatalf("ParseTemplate(%q) error %T; want *TemplateError", s, err)
			}
			if te.Offset < 0 || te.Offset > len(s) {
				t.Fatalf("ParseTemplate(%q) offset %d out of range", s, te.Offset)
			}
			return
		}
		again, err := ParseTemplate(tp.String())
		if err != nil {
			t.Fatalf("ParseTemplate(%q).String() = %q does not parse: %v", s, tp.String(), err)
		}
		if again.String() != tp.String() {
			t.Fatalf("round trip of %q: got %q; want %q", s, again.String(), tp.String())
		}
		if got, want := len(again.Vars()), len(tp.Vars()); got != want {
			t.Fatalf("round trip of %q: got %d vars; want %d", s, got, want)
		}
	})
}

func FuzzMatch(f *testing.F) {
	tab := newTable(f, testRules)
	for _, s := range []string{
		"/v1/shelves", "/v1/shelves/s1/books/b1:publish", "/files/a/b%2Fc", "/v1/things/a:b",
		"/v1/docs:download", "/v1/shelves/", "", "/", "/v1/%zz", "/v2/shelves/a/books/b",
	} {
		f.Add("GET", s)
	}
	f.Add("POST", "/v1/shelves/s1/books/b1:publish")
	f.Fuzz(func(t *testing.T, method, path string) {
		m, allow, ok := tab.Match(method, path)
		if ok {
			if m.Route == nil || allow != nil {
				t.Fatalf("Match(%q, %q) ok with route %v, allow %v", method, path, m.Route, allow)
			}
			if len(m.Values) != len(m.Route.Vars) {
				t.Fatalf("Match(%q, %q): %d values for %d vars", method, path, len(m.Values), len(m.Route.Vars))
			}
			return
		}
		if m.Route != nil || m.Values != nil {
			t.Fatalf("Match(%q, %q) not ok but returned %v", method, path, m)
		}
	})
}
