package gateway

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// This file tests API lifecycle: a deprecated route's answers carry
// Deprecation, Sunset and Link on every protocol (as metadata on gRPC),
// and a retired route refuses every call, 410 Gone on HTTP and
// UNIMPLEMENTED elsewhere, naming the successor.

const (
	lifecycleSince  = "@1796083200" // 2026-12-01T00:00:00Z
	lifecycleSunset = "Wed, 30 Jun 2027 00:00:00 GMT"
	lifecycleLink   = `<https://example.com/v2>; rel="successor-version"`
)

func TestDeprecatedRouteEveryProtocol(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	dep := `
    deprecated: { since: 2026-12-01, sunset: 2027-06-30, link: "https://example.com/v2" }`
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", `
  - selector: `+matrixSelector+dep+`
  - uri: `+matrixURI+`
    service: web`+dep))
	for _, proto := range matrixProtos() {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			a := proto.call(t, p, nil)
			want{}.check(t, proto, a)
			if a.header == nil {
				if proto.name != "grpc-bidi/relay" && proto.name != "grpc-bidi/handler" {
					t.Fatalf("the answer reports no header")
				}
				return // the bidi client reads no metadata; grpc/* checks them
			}
			for name, v := range map[string]string{"Deprecation": lifecycleSince, "Sunset": lifecycleSunset, "Link": lifecycleLink} {
				if got := a.header.Get(name); got != v {
					t.Errorf("%s: got %q; want %q", name, got, v)
				}
			}
		})
	}
}

func TestRetiredRouteEveryProtocol(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	// The route's key-auth never runs: a retired route refuses everyone
	// with the same answer.
	p := env.start(t, policyGatewayConfig(env.leaf, env.web, "", `
  - selector: `+matrixSelector+`
    retired: { link: "https://example.com/v2" }
    plugins:
      - key-auth: {}
  - uri: `+matrixURI+`
    service: web
    retired: { link: "https://example.com/v2", message: "the web API was retired on 2026-12-01; use https://example.com/v2" }`))
	for _, proto := range matrixProtos() {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			a := proto.call(t, p, nil)
			if a.code != codes.Unimplemented {
				t.Fatalf("got %s %q (HTTP %d); want UNIMPLEMENTED", a.code, a.msg, a.status)
			}
			wantMsg := "is retired; use https://example.com/v2"
			if proto.uri {
				wantMsg = "the web API was retired on 2026-12-01; use https://example.com/v2"
			}
			if !strings.Contains(a.msg, wantMsg) {
				t.Errorf("message: got %q; want it to contain %q", a.msg, wantMsg)
			}
			switch proto.kind {
			case kindHTTP:
				if a.status != http.StatusGone {
					t.Errorf("HTTP status: got %d; want 410", a.status)
				}
				if got := a.header.Get("Link"); got != lifecycleLink {
					t.Errorf("Link: got %q; want %q", got, lifecycleLink)
				}
			case kindConnectUnary:
				if a.status != http.StatusNotImplemented { // Connect maps unimplemented to 501
					t.Errorf("Connect status: got %d; want 501", a.status)
				}
			case kindGRPCWeb:
				if a.status != http.StatusOK || a.header.Get("Grpc-Status") != "12" {
					t.Errorf("gRPC-Web: got HTTP %d grpc-status %q; want 200 and 12", a.status, a.header.Get("Grpc-Status"))
				}
			}
		})
	}
	// The message names the method on RPC routes.
	a := restProto("http1").call(t, p, nil)
	if want := "/rosetta.testing.v1.EchoService/Metadata is retired; use https://example.com/v2"; a.msg != want {
		t.Errorf("REST message: got %q; want %q", a.msg, want)
	}
}
