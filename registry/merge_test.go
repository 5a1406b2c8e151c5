package registry

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConflicts(t *testing.T) {
	t.Parallel()
	bookV1 := `syntax = "proto3";
package pkg;
message Book { string title = 1; }
`
	bookV2 := `syntax = "proto3";
package pkg;
message Book { string title = 1; string author = 2; }
`
	useBook := func(pkg, svc string) string {
		return "syntax = \"proto3\";\npackage " + pkg + ";\nimport \"pkg/book.proto\";\nservice " + svc + " { rpc Get(pkg.Book) returns (pkg.Book); }\n"
	}
	other := "syntax = \"proto3\";\npackage b;\nservice Other { rpc Ping(Empty) returns (Empty); }\nmessage Empty {}\n"

	for _, tc := range []struct {
		name         string
		a, b         map[string]string
		wantServices []string
		wantProblems []Problem
	}{
		{
			name: "message-differs",
			a:    map[string]string{"pkg/book.proto": bookV1, "a/a.proto": useBook("a", "ASvc")},
			b:    map[string]string{"pkg/book.proto": bookV2, "b/b.proto": useBook("b", "BSvc"), "b/other.proto": other},
			// b keeps the services that do not depend on pkg.Book.
			wantServices: []string{"a.ASvc@a", "b.Other@b"},
			wantProblems: []Problem{{
				Upstream: "b",
				Msg:      "conflict: message pkg.Book is defined differently by upstreams a and b; serving b's services that depend on it is disabled",
			}},
		},
		{
			name: "same-message-other-file",
			a:    map[string]string{"pkg/book.proto": bookV1, "a/a.proto": useBook("a", "ASvc")},
			b: map[string]string{
				"pkg/library.proto": bookV1,
				"b/b.proto":         "syntax = \"proto3\";\npackage b;\nimport \"pkg/library.proto\";\nservice BSvc { rpc Get(pkg.Book) returns (pkg.Book); }\n",
			},
			wantServices: []string{"a.ASvc@a"},
			wantProblems: []Problem{{
				Upstream: "b",
				Msg:      "conflict: message pkg.Book is defined differently by upstreams a and b; serving b's services that depend on it is disabled",
			}},
		},
		{
			name:         "shared-identical-file",
			a:            map[string]string{"pkg/book.proto": bookV1, "a/a.proto": useBook("a", "ASvc")},
			b:            map[string]string{"pkg/book.proto": bookV1, "b/b.proto": useBook("b", "BSvc")},
			wantServices: []string{"a.ASvc@a", "b.BSvc@b"},
		},
		{
			name:         "same-service-both-upstreams",
			a:            svcSource("A"),
			b:            svcSource("A"),
			wantServices: []string{"pkg.Svc@a"},
			wantProblems: []Problem{{
				Upstream: "b",
				Msg:      "conflict: service pkg.Svc is served by upstreams a and b; routing it to a",
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// b is listed first: precedence follows names, not order.
			r := newRegistry(t, Params{Upstreams: []UpstreamSpec{
				{Name: "b", Files: []string{writeDescriptorSet(t, tc.b)}},
				{Name: "a", Files: []string{writeDescriptorSet(t, tc.a)}},
			}})
			snap := load(t, r)
			if diff := cmp.Diff(tc.wantServices, serviceNames(snap)); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantProblems, snap.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConflictAcrossReflectionUpstreams(t *testing.T) {
	t.Parallel()
	ba := startBackend(t, backendOpts{v1: true}, svcSource("A"), "pkg.Svc")
	bb := startBackend(t, backendOpts{v1: true}, svcSource("A", "B"), "pkg.Svc")
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{reflectionSpec("a", ba.addr), reflectionSpec("b", bb.addr)}})
	snap := load(t, r)
	want := []Problem{{
		Upstream: "b",
		Msg:      "conflict: service pkg.Svc is defined differently by upstreams a and b; serving b's services that depend on it is disabled",
	}}
	if diff := cmp.Diff(want, snap.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pkg.Svc@a"}, serviceNames(snap)); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}
