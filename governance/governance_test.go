package governance_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bufbuild/protocompile"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/governance"
	"github.com/rosetta-gateway/rosetta/policy"
	_ "github.com/rosetta-gateway/rosetta/policy/keyauth"
	libraryv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/examples/library/v1"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/registry"
)

// configHead starts every test config: a listener, the gRPC upstream
// that serves the test services, an http upstream for uri routes and a
// consumer for key-auth.
const configHead = `listeners:
  - address: 127.0.0.1:8080
upstreams:
  test: {targets: ["127.0.0.1:9000"]}
  web: {kind: http, targets: ["127.0.0.1:9001"]}
consumers:
  - {name: alice, keys: [alice-key]}
`

// plainProto has a service whose methods have no binding at all, and
// one whose only method has an invalid google.api.http option.
const plainProto = `syntax = "proto3";
package plain.v1;
import "google/api/annotations.proto";
message Req { string name = 1; }
service Plain {
  rpc A(Req) returns (Req);
  rpc B(Req) returns (Req);
}
service Broken {
  rpc Get(Req) returns (Req) { option (google.api.http) = {get: "/v1/{nope}"}; }
}
`

var (
	echo    = testingv1.File_rosetta_testing_v1_echo_proto.Services().ByName("EchoService")
	library = libraryv1.File_rosetta_examples_library_v1_library_proto.Services().ByName("LibraryService")
)

// compilePlain compiles plainProto and returns its services by name.
func compilePlain(t *testing.T) map[string]protoreflect.ServiceDescriptor {
	t.Helper()
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
		&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(map[string]string{"plain.proto": plainProto})},
		protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
			fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
			if err != nil {
				return protocompile.SearchResult{}, err
			}
			return protocompile.SearchResult{Desc: fd}, nil
		}),
	})}
	files, err := c.Compile(context.Background(), "plain.proto")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]protoreflect.ServiceDescriptor{}
	svcs := files[0].Services()
	for i := 0; i < svcs.Len(); i++ {
		out[string(svcs.Get(i).Name())] = svcs.Get(i)
	}
	return out
}

// lintParams are the inputs of one check.
type lintParams struct {
	yaml     string // after configHead
	services []protoreflect.ServiceDescriptor
	noPols   bool      // pass a nil policy set
	now      time.Time // default 2026-06-01
}

// newLint parses configHead+p.yaml as rosetta.yaml, builds its policy
// set and runs Check over p.services (served by upstream test).
func newLint(t *testing.T, p lintParams) []governance.Finding {
	t.Helper()
	cfg, err := config.Parse("rosetta.yaml", []byte(configHead+p.yaml), nil)
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	var pols *policy.Set
	if !p.noPols {
		if pols, err = policy.Build(cfg, nil, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pols.Close() })
	}
	svcs := make([]*registry.Service, len(p.services))
	for i, sd := range p.services {
		svcs[i] = &registry.Service{Desc: sd, Upstream: "test"}
	}
	if p.now.IsZero() {
		p.now = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	}
	return governance.Check(governance.Input{
		Config:   cfg,
		Snapshot: registry.NewSnapshot(1, nil, nil, svcs, nil),
		Policies: pols,
		Now:      p.now,
	})
}

// lines formats findings one per line.
func lines(fs []governance.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}

func TestLintHTTPBinding(t *testing.T) {
	t.Parallel()
	plain := compilePlain(t)
	const (
		unannotated = "rosetta.testing.v1.EchoService.Unannotated: http-binding: no HTTP binding: REST clients reach it only by its default binding POST /rosetta.testing.v1.EchoService/Unannotated" +
			` (fix: add a google.api.http option to the method or an http rule for it, or add "rosetta.testing.v1.EchoService.Unannotated" to transcoding.default_bound if the default binding is deliberate)`
		configured = "rosetta.testing.v1.EchoService.Configured: http-binding: no HTTP binding: REST clients reach it only by its default binding POST /rosetta.testing.v1.EchoService/Configured" +
			` (fix: add a google.api.http option to the method or an http rule for it, or add "rosetta.testing.v1.EchoService.Configured" to transcoding.default_bound if the default binding is deliberate)`
		moveBook = "rosetta.examples.library.v1.LibraryService.MoveBook: http-binding: no HTTP binding: REST clients reach it only by its default binding POST /rosetta.examples.library.v1.LibraryService/MoveBook" +
			` (fix: add a google.api.http option to the method or an http rule for it, or add "rosetta.examples.library.v1.LibraryService.MoveBook" to transcoding.default_bound if the default binding is deliberate)`
		plainSvc = "plain.v1.Plain: http-binding: none of its 2 methods has an HTTP binding: REST clients reach them only by their default bindings POST /plain.v1.Plain/{method}" +
			` (fix: add google.api.http options to its methods or http rules for them, or add "plain.v1.Plain.*" to transcoding.default_bound if the default bindings are deliberate)`
		plainSvcOff = "plain.v1.Plain: http-binding: none of its 2 methods has an HTTP binding, and transcoding.default_bindings is false: REST clients cannot call them" +
			` (fix: add google.api.http options to its methods or http rules for them, or add "plain.v1.Plain.*" to transcoding.default_bound if the default bindings are deliberate)`
		unannotatedOff = "rosetta.testing.v1.EchoService.Unannotated: http-binding: no HTTP binding, and transcoding.default_bindings is false: REST clients cannot call it" +
			` (fix: add a google.api.http option to the method or an http rule for it, or add "rosetta.testing.v1.EchoService.Unannotated" to transcoding.default_bound if the default binding is deliberate)`
		brokenOption = "plain.v1.Broken.Get: http-binding: its google.api.http option is invalid, so it has no REST route" +
			" (fix: fix the option, or replace it with an http rule: `rosetta routes` prints what is wrong with it)"
	)
	configRule := "http:\n  rules:\n    - {selector: rosetta.testing.v1.EchoService.Configured, post: /v1/configured, body: \"*\"}\n"
	for _, c := range []struct {
		name     string
		yaml     string
		services []protoreflect.ServiceDescriptor
		want     []string
	}{
		{"annotations", "", []protoreflect.ServiceDescriptor{echo, library},
			[]string{moveBook, configured, unannotated}},
		{"config-rule", configRule, []protoreflect.ServiceDescriptor{echo}, []string{unannotated}},
		{"default-bound/method", "transcoding: {default_bound: [rosetta.testing.v1.EchoService.Unannotated]}\n" + configRule,
			[]protoreflect.ServiceDescriptor{echo, library}, []string{moveBook}},
		{"default-bound/package", "transcoding: {default_bound: [\"rosetta.*\"]}\n",
			[]protoreflect.ServiceDescriptor{echo, library, plain["Plain"]}, []string{plainSvc}},
		{"default-bound/all", "transcoding: {default_bound: [\"*\"]}\n",
			[]protoreflect.ServiceDescriptor{echo, library, plain["Plain"], plain["Broken"]}, nil},
		{"default-bindings-off", "transcoding: {default_bindings: false}\n" + configRule,
			[]protoreflect.ServiceDescriptor{echo, plain["Plain"]}, []string{plainSvcOff, unannotatedOff}},
		{"retired", "routes:\n  - selector: rosetta.testing.v1.EchoService.Unannotated\n    retired: {link: https://example.com/v2}\n" + configRule,
			[]protoreflect.ServiceDescriptor{echo}, nil},
		{"invalid-rule",
			"http:\n  rules:\n    - selector: rosetta.testing.v1.EchoService.Configured\n      get: /v1/{nope}\n",
			[]protoreflect.ServiceDescriptor{echo},
			[]string{
				"rosetta.yaml:10:7: http-binding: rosetta.testing.v1.EchoService.Configured: its http rule is invalid, so it has no REST route" +
					" (fix: fix the rule: `rosetta routes` prints what is wrong with it)",
				unannotated,
			}},
		{"invalid-option", "", []protoreflect.ServiceDescriptor{plain["Broken"]}, []string{brokenOption}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := lines(newLint(t, lintParams{yaml: c.yaml, services: c.services}))
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLintRequireAuth(t *testing.T) {
	t.Parallel()
	plain := compilePlain(t)
	all := []protoreflect.ServiceDescriptor{echo, library, plain["Plain"]}
	const (
		// Bindings are not this test's concern.
		head     = "require_auth: true\ntranscoding: {default_bound: [\"*\"]}\n"
		topKey   = "plugins:\n  - key-auth: {}\n"
		echoOpen = "rosetta.testing.v1.EchoService: require-auth: none of its 14 methods authenticates callers: no route selects them and the top-level plugins have no jwt-auth or key-auth" +
			" (fix: add jwt-auth or key-auth to the top-level plugins, or a route that selects them with one)"
		libraryOpen = "rosetta.examples.library.v1.LibraryService: require-auth: none of its 12 methods authenticates callers: no route selects them and the top-level plugins have no jwt-auth or key-auth" +
			" (fix: add jwt-auth or key-auth to the top-level plugins, or a route that selects them with one)"
		plainOpen = "plain.v1.Plain: require-auth: none of its 2 methods authenticates callers: no route selects them and the top-level plugins have no jwt-auth or key-auth" +
			" (fix: add jwt-auth or key-auth to the top-level plugins, or a route that selects them with one)"
	)
	for _, c := range []struct {
		name   string
		yaml   string
		noPols bool
		want   []string
		more   int // findings after want, not compared
	}{
		{"off", "transcoding: {default_bound: [\"*\"]}\n", false, nil, 0},
		{"nothing", head, false, []string{plainOpen, libraryOpen, echoOpen}, 0},
		{"nil-policies", head + topKey, true, []string{plainOpen, libraryOpen, echoOpen}, 0},
		{"optional", head + "plugins:\n  - key-auth: {optional: true}\nroutes:\n  - {uri: /users/*, service: web}\n", false, []string{
			`rosetta.yaml:13:5: require-auth: route "/users/*": does not authenticate every caller: its key-auth has optional: true, which lets calls without a key pass anonymously (fix: remove optional: true from key-auth)`,
			"plain.v1.Plain: require-auth: none of its 2 methods authenticates callers: its key-auth has optional: true, which lets calls without a key pass anonymously (fix: remove optional: true from key-auth)",
		}, 2},
		{"top-level", head + topKey + "routes:\n  - {selector: \"plain.*\", timeout: 5s}\n  - {uri: /health, service: web}\n", false, nil, 0},
		{"routes", head + `routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins: [{key-auth: {}}]
  - selector: rosetta.examples.library.v1.LibraryService.MoveBook
    timeout: 5s
  - selector: rosetta.examples.library.v1.LibraryService.Chat
    retired: {}
  - selector: rosetta.examples.*
    plugins: [{key-auth: {}}]
  - selector: plain.v1.Plain.*
    timeout: 5s
  - uri: /health
    service: web
  - uri: /old/*
    service: web
    retired: {}
  - uri: /users/*
    service: web
    plugins: [{key-auth: {}}]
`, false, []string{
			`rosetta.yaml:13:5: require-auth: rosetta.examples.library.v1.LibraryService.MoveBook: does not authenticate callers: route "rosetta.examples.library.v1.LibraryService.MoveBook" has no jwt-auth or key-auth, nor do the top-level plugins` +
				` (fix: add jwt-auth or key-auth to the plugins of route "rosetta.examples.library.v1.LibraryService.MoveBook", or to the top-level plugins for every route)`,
			`rosetta.yaml:19:5: require-auth: plain.v1.Plain: none of its 2 methods authenticates callers: route "plain.v1.Plain.*" has no jwt-auth or key-auth, nor do the top-level plugins` +
				` (fix: add jwt-auth or key-auth to the plugins of route "plain.v1.Plain.*", or to the top-level plugins for every route)`,
			`rosetta.yaml:21:5: require-auth: route "/health": does not authenticate callers: neither its plugins nor the top-level plugins have jwt-auth or key-auth` +
				` (fix: add jwt-auth or key-auth to the route's plugins, or to the top-level plugins for every route)`,
			// Echo is authenticated: the 13 other methods get a finding each.
			"rosetta.testing.v1.EchoService.BidiStream: require-auth: does not authenticate callers: no route selects it and the top-level plugins have no jwt-auth or key-auth" +
				" (fix: add jwt-auth or key-auth to the top-level plugins, or a route that selects it with one)",
		}, 12},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := lines(newLint(t, lintParams{yaml: c.yaml, services: all, noPols: c.noPols}))
			if len(got) != len(c.want)+c.more {
				t.Errorf("got %d findings; want %d", len(got), len(c.want)+c.more)
			}
			if len(got) > len(c.want) {
				got = got[:len(c.want)]
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLintLifecycle(t *testing.T) {
	t.Parallel()
	const yaml = `transcoding: {default_bound: ["*"]}
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    deprecated: {since: 2026-01-01, link: https://example.com/v2}
  - selector: rosetta.testing.v1.EchoService.Fail
    deprecated: {sunset: 2026-05-31}
  - uri: /v1/*
    service: web
    deprecated: {sunset: "2026-06-01T00:00:00Z"}
  - selector: rosetta.testing.v1.EchoService.Sleep
    deprecated: {sunset: 2026-06-02}
  - uri: /v0/*
    service: web
    retired: {}
`
	got := lines(newLint(t, lintParams{yaml: yaml, services: []protoreflect.ServiceDescriptor{echo}}))
	want := []string{
		`rosetta.yaml:10:5: deprecation-sunset: route "rosetta.testing.v1.EchoService.Echo": deprecated without a sunset: clients are told to move, but not by when` +
			" (fix: add the date it stops answering, e.g. deprecated: {sunset: 2027-06-30})",
		`rosetta.yaml:12:5: warning: sunset-passed: route "rosetta.testing.v1.EchoService.Fail": sunset 2026-05-31 has passed, yet the route still answers` +
			" (fix: retire it (replace deprecated with retired: {link: ...}) or move the sunset later)",
		`rosetta.yaml:14:5: warning: sunset-passed: route "/v1/*": sunset 2026-06-01T00:00:00Z has passed, yet the route still answers` +
			" (fix: retire it (replace deprecated with retired: {link: ...}) or move the sunset later)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}

func TestLintFindingFormats(t *testing.T) {
	t.Parallel()
	f := governance.Finding{
		Rule: governance.RuleSunsetPassed, Severity: governance.Warning, Kind: governance.KindRoute,
		Subject: "a.*", Message: "m", Fix: "x",
	}
	if got, want := f.String(), `route "a.*": warning: sunset-passed: m (fix: x)`; got != want {
		t.Errorf("String: got %q; want %q", got, want)
	}
	f.Pos = config.Pos{File: "rosetta.yaml", Line: 3, Col: 5}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"rule":"sunset-passed","severity":"warning","kind":"route","subject":"a.*","message":"m","fix":"x","file":"rosetta.yaml","line":3,"col":5}`; got != want {
		t.Errorf("JSON: got %s; want %s", got, want)
	}
	f = governance.Finding{Rule: governance.RuleHTTPBinding, Severity: governance.Error, Kind: governance.KindMethod, Subject: "p.S.M", Message: "m"}
	if b, _ = json.Marshal(f); !strings.Contains(string(b), `"subject":"p.S.M","message":"m"}`) {
		t.Errorf("JSON without fix and position: %s", b)
	}
	if governance.Check(governance.Input{}) != nil {
		t.Error("Check without a config: want no findings")
	}
}
