package transcoder

import (
	"strings"
	"testing"
)

func TestJSONPathAt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body, at, want string
	}{
		{`{"a": 1}`, "1", "a"},
		{`{"a": {"b": [10, 20, {"c": "x"}]}}`, `"x"`, "a.b[2].c"},
		{`{"a": [{}, {}, 7]}`, "7", "a[2]"},
		{`{"m": {"k1": 1, "k2": true}}`, "true", "m.k2"},
		{`{"a": [[1], [2, 3]]}`, "3", "a[1][1]"},
		{`{"x": {}, "y": null}`, "null", "y"},
	}
	for _, c := range cases {
		off := strings.LastIndex(c.body, c.at)
		if got := jsonPathAt([]byte(c.body), int64(off)); got != c.want {
			t.Errorf("%s at %q: got %q; want %q", c.body, c.at, got, c.want)
		}
	}
	if got := errorFieldPath([]byte("{\n  \"a\": {\"b\": \"x\"}\n}"), "(line 2:15): invalid value"); got != "a.b" {
		t.Errorf("multi-line: got %q; want a.b", got)
	}
}
