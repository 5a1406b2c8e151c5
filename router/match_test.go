package router

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rosetta-gateway/rosetta/config"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	tab := newTable(t, testRules)
	tests := []struct {
		name   string
		method string
		path   string
		want   string // matched method name; "" when none
		values []string
		allow  []string
	}{
		{"literal/list", "GET", "/v1/shelves", "ListShelves", nil, nil},
		{"literal/post", "POST", "/v1/shelves", "CreateShelf", nil, nil},
		{"literal/escaped", "GET", "/v1/%73helves", "ListShelves", nil, nil},
		{"literal/escaped-space", "GET", "/v1/lit/a%20b", "Spaced", nil, nil},
		{"var/single", "GET", "/v1/shelves/s1", "GetShelf", []string{"s1"}, nil},
		{"precedence/literal-over-var", "GET", "/v1/shelves/special", "SpecialShelf", nil, nil},
		{"precedence/backtrack-to-var", "DELETE", "/v1/shelves/special", "DeleteShelf", []string{"special"}, nil},
		{"405/var", "PUT", "/v1/shelves/s1", "", nil, []string{"DELETE", "GET"}},
		{"405/union-literal-and-var", "PUT", "/v1/shelves/special", "", nil, []string{"DELETE", "GET"}},
		{"var/multi-segment", "GET", "/v1/shelves/s1/books/b1", "GetBook", []string{"shelves/s1/books/b1"}, nil},
		{"var/nested-field", "GET", "/v2/shelves/s1/books/b1", "GetBookNested", []string{"s1", "b1"}, nil},
		{"verb/match", "POST", "/v1/shelves/s1/books/b1:publish", "Publish", []string{"shelves/s1/books/b1"}, nil},
		{"verb/escaped", "POST", "/v1/shelves/s1/books/b1:%70ublish", "Publish", []string{"shelves/s1/books/b1"}, nil},
		{"verb/falls-back-to-literal-segment", "GET", "/v1/shelves/s1/books/b1:publish", "GetBook", []string{"shelves/s1/books/b1:publish"}, nil},
		{"verb/405", "PUT", "/v1/shelves/s1/books/b1:publish", "", nil, []string{"GET", "POST"}},
		{"verb/unknown-verb-is-literal-colon", "GET", "/v1/things/a:b", "GetThing", []string{"a:b"}, nil},
		{"verb/escaped-colon", "GET", "/v1/things/a%3Ab", "GetThing", []string{"a:b"}, nil},
		{"verb/trailing-colon", "GET", "/v1/things/a:", "GetThing", []string{"a:"}, nil},
		{"verb/doublestar", "GET", "/v1/docs/a/b:download", "Download", []string{"a/b"}, nil},
		{"verb/doublestar-zero-segments", "GET", "/v1/docs:download", "Download", []string{""}, nil},
		{"verb/missing", "GET", "/v1/docs/a", "", nil, nil},
		{"decode/single-%2F", "GET", "/v1/things/a%2Fb%20c", "GetThing", []string{"a/b c"}, nil},
		{"decode/single-%2f", "GET", "/v1/shelves/a%2fb", "GetShelf", []string{"a/b"}, nil},
		{"decode/multi-keeps-%2F", "GET", "/files/a/b%2Fc/d%20e%2f", "GetFile", []string{"a/b%2Fc/d e%2f"}, nil},
		{"decode/multi-fixed", "GET", "/v1/shelves/a%2Fb/books/%41", "GetBook", []string{"shelves/a%2Fb/books/A"}, nil},
		{"doublestar/zero", "GET", "/files", "GetFile", []string{""}, nil},
		{"doublestar/empty-segment", "GET", "/files/", "GetFile", []string{""}, nil},
		{"doublestar/empty-inner", "GET", "/files/a//b", "GetFile", []string{"a//b"}, nil},
		{"star/no-var", "GET", "/v1/any/foo/x", "AnyX", nil, nil},
		{"star/empty-segment", "GET", "/v1/any//x", "", nil, nil},
		{"trailing-slash", "GET", "/v1/shelves/", "", nil, nil},
		{"trailing-slash/var", "GET", "/v1/shelves/s1/", "", nil, nil},
		{"head/not-get", "HEAD", "/v1/shelves", "", nil, []string{"GET", "POST"}},
		{"head/custom", "HEAD", "/v1/heads/h1", "HeadThing", []string{"h1"}, nil},
		{"head/get-on-head-route", "GET", "/v1/heads/h1", "", nil, []string{"HEAD"}},
		{"custom-any/get", "GET", "/v1/wild", "Wild", nil, nil},
		{"custom-any/patch", "PATCH", "/v1/wild", "Wild", nil, nil},
		{"method/lower-case", "get", "/v1/shelves", "", nil, []string{"GET", "POST"}},
		{"404/unknown", "GET", "/nope", "", nil, nil},
		{"404/empty", "GET", "", "", nil, nil},
		{"404/relative", "GET", "v1/shelves", "", nil, nil},
		{"404/root", "GET", "/", "", nil, nil},
		{"404/bad-escape", "GET", "/v1/shelves/s%zz", "", nil, nil},
		{"404/truncated-escape", "GET", "/v1/shelves/s%2", "", nil, nil},
		{"404/too-long", "GET", "/v1/shelves/s1/books/b1/x", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, allow, ok := tab.Match(tt.method, tt.path)
			got := ""
			if m.Route != nil {
				got = string(m.Route.Method.Name())
			}
			if ok != (tt.want != "") || got != tt.want {
				t.Fatalf("Match(%q, %q) = %q, ok=%v; want %q", tt.method, tt.path, got, ok, tt.want)
			}
			if diff := cmp.Diff(tt.values, m.Values, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Values mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.allow, allow); diff != "" {
				t.Errorf("allow mismatch (-want +got):\n%s", diff)
			}
			if ok && len(m.Values) != len(m.Route.Vars) {
				t.Errorf("got %d values; want %d (one per var)", len(m.Values), len(m.Route.Vars))
			}
		})
	}
}

func TestMatchInto(t *testing.T) {
	t.Parallel()
	tab := newTable(t, testRules)
	buf := make([]string, 0, 4)
	m, _, ok := tab.MatchInto(buf, "GET", "/v2/shelves/s1/books/b1")
	if !ok {
		t.Fatal("MatchInto: no match; want GetBookNested")
	}
	if diff := cmp.Diff([]string{"s1", "b1"}, m.Values); diff != "" {
		t.Errorf("Values mismatch (-want +got):\n%s", diff)
	}
	if &m.Values[0] != &buf[:1][0] {
		t.Error("MatchInto did not reuse the given slice")
	}
}

func TestMatchNilTable(t *testing.T) {
	t.Parallel()
	var tab *Table
	if m, allow, ok := tab.Match("GET", "/x"); ok || allow != nil || m.Route != nil {
		t.Errorf("nil Table Match = %v, %v, %v; want no match", m, allow, ok)
	}
	if got := tab.Routes(); got != nil {
		t.Errorf("nil Table Routes() = %v; want nil", got)
	}
}

// benchRules returns about 50 bindings shaped like a real API.
func benchRules() []config.HTTPRule {
	var rules []config.HTTPRule
	for i := range 8 {
		res := fmt.Sprintf("res%d", i)
		rules = append(rules,
			config.HTTPRule{Selector: "List" + res, Get: "/v1/" + res},
			config.HTTPRule{Selector: "Create" + res, Post: "/v1/" + res, Body: "*"},
			config.HTTPRule{Selector: "Get" + res, Get: "/v1/" + res + "/{id}"},
			config.HTTPRule{Selector: "Delete" + res, Delete: "/v1/" + res + "/{id}"},
			config.HTTPRule{Selector: "Sub" + res, Get: "/v1/" + res + "/{shelf}/items/{id}"},
			config.HTTPRule{Selector: "Act" + res, Post: "/v1/" + res + "/{id}:act", Body: "*"},
		)
	}
	return append(rules,
		config.HTTPRule{Selector: "GetFile", Get: "/files/{path=**}"},
		config.HTTPRule{Selector: "GetBook", Get: "/v1/{name=shelves/*/books/*}"},
	)
}

func BenchmarkMatch(b *testing.B) {
	tab := newTable(b, benchRules())
	cases := []struct{ name, method, path string }{
		{"literal", "GET", "/v1/res7"},
		{"two-vars", "GET", "/v1/res7/shelf-1/items/item-42"},
		{"verb", "POST", "/v1/res7/item-42:act"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, _, ok := tab.Match(c.method, c.path); !ok {
				b.Fatalf("no match for %s %s", c.method, c.path)
			}
			b.Run("Match", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					tab.Match(c.method, c.path)
				}
			})
			b.Run("MatchInto", func(b *testing.B) {
				b.ReportAllocs()
				buf := make([]string, 0, 4)
				for b.Loop() {
					tab.MatchInto(buf, c.method, c.path)
				}
			})
		})
	}
}
