package config

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFromFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		listen    string
		upstreams []string
		want      map[string][]string // upstream name → targets
	}{
		{
			name:      "bare address",
			listen:    "127.0.0.1:8080",
			upstreams: []string{"127.0.0.1:9000"},
			want:      map[string][]string{"127-0-0-1-9000": {"127.0.0.1:9000"}},
		},
		{
			name:      "named",
			listen:    ":8080",
			upstreams: []string{"library=localhost:9000"},
			want:      map[string][]string{"library": {"localhost:9000"}},
		},
		{
			name:      "named with several targets",
			listen:    ":0",
			upstreams: []string{"library=10.0.0.5:9000, 10.0.0.6:9000", "users.v1=users:9000"},
			want: map[string][]string{
				"library":  {"10.0.0.5:9000", "10.0.0.6:9000"},
				"users.v1": {"users:9000"},
			},
		},
		{
			name:      "ipv6",
			listen:    "[::1]:8080",
			upstreams: []string{"[::1]:9000"},
			want:      map[string][]string{"1-9000": {"[::1]:9000"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := FromFlags(tt.listen, tt.upstreams)
			if err != nil {
				t.Fatalf("FromFlags: %v", err)
			}
			got := map[string][]string{}
			for name, u := range c.Upstreams {
				got[name] = u.Addresses()
				if u.Name != name {
					t.Errorf("upstream %q: Name is %q", name, u.Name)
				}
				if !u.Descriptors.UseReflection() {
					t.Errorf("upstream %q: UseReflection false; want true", name)
				}
				if u.Kind != "grpc" || u.Timeout.Std().String() != "30s" || u.MaxMessageBytes != 4<<20 {
					t.Errorf("upstream %q: defaults not applied: %+v", name, u)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("upstreams (-want +got):\n%s", diff)
			}
			if got, want := c.Listeners[0].Address, tt.listen; got != want {
				t.Errorf("listener: got %q; want %q", got, want)
			}
			if got, want := c.Listeners[0].ReadHeaderTimeout.Std().String(), "10s"; got != want {
				t.Errorf("read header timeout: got %q; want %q", got, want)
			}
			if c.File != "" {
				t.Errorf("File: got %q; want empty", c.File)
			}
		})
	}
}

func TestFromFlagsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		listen    string
		upstreams []string
		want      string
	}{
		{
			name:      "no listen",
			upstreams: []string{"127.0.0.1:9000"},
			want:      `--listen: address is required (hint: write host:port, e.g. "127.0.0.1:8080" or ":8080")`,
		},
		{
			name:      "listen without port",
			listen:    "localhost",
			upstreams: []string{"127.0.0.1:9000"},
			want:      `--listen: invalid address "localhost": missing port in address (hint: write host:port, e.g. "127.0.0.1:8080" or ":8080")`,
		},
		{
			name:      "listen port out of range",
			listen:    ":80800",
			upstreams: []string{"127.0.0.1:9000"},
			want:      `--listen: invalid address ":80800": port 80800 out of range 0-65535 (hint: write host:port, e.g. "127.0.0.1:8080" or ":8080")`,
		},
		{
			name:   "no upstream",
			listen: ":8080",
			want:   `--upstream: at least one upstream is required (hint: e.g. --upstream 127.0.0.1:9000 or --upstream name=host:port)`,
		},
		{
			name:      "empty upstream",
			listen:    ":8080",
			upstreams: []string{" "},
			want:      `--upstream: empty value (hint: write host:port or name=host:port)`,
		},
		{
			name:      "target without port",
			listen:    ":8080",
			upstreams: []string{"localhost"},
			want:      `--upstream: invalid address "localhost": missing port in address (hint: write host:port, e.g. "10.0.0.5:9000")`,
		},
		{
			name:      "target without host",
			listen:    ":8080",
			upstreams: []string{"lib=:9000"},
			want:      `--upstream: invalid address ":9000": missing host (hint: write host:port, e.g. "10.0.0.5:9000")`,
		},
		{
			name:      "target port zero",
			listen:    ":8080",
			upstreams: []string{"127.0.0.1:0"},
			want:      `--upstream: invalid address "127.0.0.1:0": port 0 out of range 1-65535 (hint: write host:port, e.g. "10.0.0.5:9000")`,
		},
		{
			name:      "url instead of address",
			listen:    ":8080",
			upstreams: []string{"http://localhost:9000"},
			want:      `--upstream: invalid address "http://localhost:9000": too many colons in address (hint: write host:port, e.g. "10.0.0.5:9000")`,
		},
		{
			name:      "missing name",
			listen:    ":8080",
			upstreams: []string{"=127.0.0.1:9000"},
			want:      `--upstream: "=127.0.0.1:9000": missing name before "=" (hint: write name=host:port, or just host:port)`,
		},
		{
			name:      "bad name",
			listen:    ":8080",
			upstreams: []string{"my lib=127.0.0.1:9000"},
			want:      `--upstream: "my lib=127.0.0.1:9000": invalid upstream name "my lib" (hint: use letters, digits, '_', '.' and '-')`,
		},
		{
			name:      "name without address",
			listen:    ":8080",
			upstreams: []string{"lib="},
			want:      `--upstream: address is required (hint: write host:port, e.g. "10.0.0.5:9000")`,
		},
		{
			name:      "several addresses without name",
			listen:    ":8080",
			upstreams: []string{"a:1,b:2"},
			want:      `--upstream: "a:1,b:2": several addresses need a name (hint: write name=a:1,b:2)`,
		},
		{
			name:      "duplicate name",
			listen:    ":8080",
			upstreams: []string{"lib=a:1", "lib=b:2"},
			want:      `--upstream: duplicate upstream name "lib" (hint: list several addresses as lib=a:1,b:2)`,
		},
		{
			name:      "duplicate derived name",
			listen:    ":8080",
			upstreams: []string{"127.0.0.1:9000", "127.0.0.1:9000"},
			want:      `--upstream: duplicate upstream name "127-0-0-1-9000" (hint: list several addresses as 127-0-0-1-9000=a:1,b:2)`,
		},
		{
			name:      "every error at once",
			listen:    "nope",
			upstreams: []string{"x", "lib=y:1,z"},
			want: `--listen: invalid address "nope": missing port in address (hint: write host:port, e.g. "127.0.0.1:8080" or ":8080")
--upstream: invalid address "x": missing port in address (hint: write host:port, e.g. "10.0.0.5:9000")
--upstream: invalid address "z": missing port in address (hint: write host:port, e.g. "10.0.0.5:9000")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := FromFlags(tt.listen, tt.upstreams)
			if err == nil {
				t.Fatalf("FromFlags: got config %+v; want error", c)
			}
			var diags Diagnostics
			if !errors.As(err, &diags) {
				t.Fatalf("got %T; want Diagnostics", err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNameFromAddr(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"127.0.0.1:9000":       "127-0-0-1-9000",
		"localhost:9000":       "localhost-9000",
		"[::1]:9000":           "1-9000",
		"my_host.example:8443": "my_host-example-8443",
	}
	for in, want := range tests {
		if got := nameFromAddr(in); got != want {
			t.Errorf("nameFromAddr(%q): got %q; want %q", in, got, want)
		}
	}
}
