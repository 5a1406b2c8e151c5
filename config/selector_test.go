package config

import "testing"

func TestSelects(t *testing.T) {
	for _, c := range []struct {
		sel, name string
		want      bool
	}{
		{"*", "a.v1.S.M", true},
		{"a.v1.S.M", "a.v1.S.M", true},
		{"a.v1.S.*", "a.v1.S.M", true},
		{"a.*", "a.v1.S.M", true},
		{"a.v1.S.*", "a.v1.Sx.M", false}, // a prefix of a name, not of a dotted part
		{"a.v1.S", "a.v1.S.M", false},
		{"", "a.v1.S.M", false},
		{"b.*", "a.v1.S.M", false},
	} {
		if got := Selects(c.sel, c.name); got != c.want {
			t.Errorf("Selects(%q, %q) = %v; want %v", c.sel, c.name, got, c.want)
		}
	}
	routes := []Route{{URI: "/a/*"}, {Selector: "a.v1.S.N"}, {Selector: "a.*", Timeout: 1}, {Selector: "*", Timeout: 2}}
	if r := SelectorRoute(routes, "a.v1.S.M"); r != &routes[2] {
		t.Errorf("SelectorRoute: got %+v; want the first selecting route, a.*", r)
	}
	if r := SelectorRoute(routes[:2], "b.v1.S.M"); r != nil {
		t.Errorf("SelectorRoute with no match: %+v", r)
	}
}
