package config

import (
	"errors"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and always returns either a
// config or Diagnostics. It is seeded with the golden inputs.
func FuzzParse(f *testing.F) {
	paths, err := filepath.Glob("testdata/config/*.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range paths {
		input, _ := readGolden(f, path)
		f.Add([]byte(input))
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("http: {rules: &r [{get: /x, additional_bindings: *r}]}"))
	f.Add([]byte("upstreams: {x: {<<: *nope}}"))
	env := func(name string) (string, bool) {
		if name == "SET" {
			return "127.0.0.1:9000", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, env)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned nil config and nil error")
			}
			if _, err := c.Normalized(); err != nil {
				t.Fatalf("Normalized: %v", err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("config from Parse fails Validate: %v", err)
			}
			return
		}
		if c != nil {
			t.Fatal("Parse returned a config and an error")
		}
		var diags Diagnostics
		if !errors.As(err, &diags) || len(diags) == 0 {
			t.Fatalf("error is %T %q; want non-empty Diagnostics", err, err)
		}
	})
}
