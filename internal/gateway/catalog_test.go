package gateway

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestAPIOf: services that differ only by their package's version
// component are versions of one API.
func TestAPIOf(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ svc, api, version string }{
		{"library.v1.LibraryService", "library.LibraryService", "v1"},
		{"library.v2.LibraryService", "library.LibraryService", "v2"},
		{"acme.shop.v1beta1.Cart", "acme.shop.Cart", "v1beta1"},
		{"acme.v2alpha.Cart", "acme.Cart", "v2alpha"},
		{"grpc.health.v1.Health", "grpc.health.Health", "v1"},
		{"plain.Service", "plain.Service", ""},
		{"Service", "Service", ""},
		{"v1.Service", "Service", "v1"},
		{"pkg.version.Service", "pkg.version.Service", ""},
	} {
		api, version := apiOf(protoreflect.FullName(c.svc))
		if api != c.api || version != c.version {
			t.Errorf("apiOf(%s) = %q, %q; want %q, %q", c.svc, api, version, c.api, c.version)
		}
	}
	if got := titleOf("LibraryService"); got != "Library Service" {
		t.Errorf("titleOf: %q", got)
	}
}
