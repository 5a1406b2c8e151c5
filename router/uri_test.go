package router

import (
	"slices"
	"testing"

	"github.com/rosetta-gateway/rosetta/config"
)

var uriRoutes = []config.Route{
	{Selector: "library.v1.Library.*"}, // not a URI route: skipped
	{URI: "/users/*", Service: "users"},
	{URI: "/users/admin/*", Service: "admin", Methods: []string{"GET", "DELETE"}},
	{URI: "/users/admin/*", Service: "admin-write", Methods: []string{"POST"}},
	{URI: "/health", Service: "health", Methods: []string{"GET", "HEAD"}},
	{URI: "/files/*", Service: "files", Methods: []string{"GET"}},
	{URI: "/files", Service: "files-root"},
	{URI: "/*", Service: "root", Methods: []string{"OPTIONS"}},
}

func TestURITableMatch(t *testing.T) {
	tab := BuildURI(uriRoutes)
	if tab.Len() != len(uriRoutes)-1 {
		t.Fatalf("Len: got %d; want %d", tab.Len(), len(uriRoutes)-1)
	}
	tests := []struct {
		name, method, path string
		want               string   // service; "" when no match
		allow              []string // on 405
	}{
		{"prefix/bare", "GET", "/users", "users", nil},
		{"prefix/slash", "GET", "/users/", "users", nil},
		{"prefix/deep", "PUT", "/users/1/photos", "users", nil},
		{"prefix/not-segment", "GET", "/usersx", "", []string{"OPTIONS"}}, // only "/*" matches
		{"longest-prefix", "GET", "/users/admin/x", "admin", nil},
		{"same-uri/second-route", "POST", "/users/admin/x", "admin-write", nil},
		{"longest-prefix/method-falls-back", "PUT", "/users/admin/x", "users", nil},
		{"exact", "HEAD", "/health", "health", nil},
		{"exact/405", "POST", "/health", "", []string{"GET", "HEAD", "OPTIONS"}},
		{"exact/no-sub-paths", "GET", "/health/x", "", []string{"OPTIONS"}},
		{"exact-beats-prefix", "POST", "/files", "files-root", nil},
		{"prefix/405", "POST", "/files/a", "", []string{"GET", "OPTIONS"}},
		{"root-prefix", "OPTIONS", "/anything/at/all", "root", nil},
		{"root-prefix/slash", "OPTIONS", "/", "root", nil},
		{"root-prefix/405", "GET", "/nothing", "", []string{"OPTIONS"}},
		{"cleaned/dotdot", "GET", "/files/../users/1", "users", nil},
		{"cleaned/escape-attempt", "DELETE", "/users/admin/../../health", "", []string{"GET", "HEAD", "OPTIONS"}},
		{"cleaned/double-slash", "GET", "//users//1", "users", nil},
		{"not-a-path", "OPTIONS", "*", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, allow, ok := tab.Match(tc.method, tc.path)
			got := ""
			if ok {
				got = r.Config.Service
			}
			if got != tc.want || !slices.Equal(allow, tc.allow) {
				t.Errorf("Match(%s %s): got %q allow %v; want %q allow %v", tc.method, tc.path, got, allow, tc.want, tc.allow)
			}
			if ok && &uriRoutes[r.Index] != r.Config {
				t.Errorf("Index %d does not point at the route's config", r.Index)
			}
		})
	}
}

func TestURITableEmpty(t *testing.T) {
	var nilTab *URITable
	for _, tab := range []*URITable{nilTab, BuildURI(nil), BuildURI([]config.Route{{Selector: "a.B.*"}})} {
		if r, allow, ok := tab.Match("GET", "/x"); ok || r != nil || allow != nil {
			t.Errorf("empty table matched: %v %v %v", r, allow, ok)
		}
	}
}

func TestURITableMatchAllocs(t *testing.T) {
	tab := BuildURI(uriRoutes)
	n := testing.AllocsPerRun(100, func() {
		if _, _, ok := tab.Match("GET", "/users/admin/some/deep/path"); !ok {
			t.Fatal("no match")
		}
	})
	if n != 0 {
		t.Errorf("Match allocates %v times per call; want 0", n)
	}
}

func BenchmarkURITableMatch(b *testing.B) {
	tab := BuildURI(uriRoutes)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tab.Match("GET", "/users/admin/some/deep/path")
		}
	})
}
