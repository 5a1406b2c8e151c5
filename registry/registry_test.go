package registry

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestReflection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts backendOpts
	}{
		{"v1", backendOpts{v1: true}},
		{"v1alpha-only", backendOpts{v1alpha: true}},
		{"v1+v1alpha", backendOpts{v1: true, v1alpha: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startBackend(t, tc.opts, librarySources, librarySvcs...)
			r := newRegistry(t, Params{Upstreams: []UpstreamSpec{reflectionSpec("library", b.addr)}})
			snap := load(t, r)

			if snap.Version != 1 {
				t.Errorf("Version: got %d; want 1", snap.Version)
			}
			if len(snap.Problems) != 0 {
				t.Errorf("Problems: got %q; want none", problemStrings(snap.Problems))
			}
			want := []string{"lib.Admin@library", "lib.Library@library"}
			if diff := cmp.Diff(want, serviceNames(snap)); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
			md, upstream, ok := snap.Method("/lib.Library/ListBooks")
			if !ok || upstream != "library" {
				t.Fatalf("Method: got %v, %q; want found on library", ok, upstream)
			}
			// The request type lives in lib/book.proto, which imports
			// lib/common.proto: the whole chain must be loaded.
			page := md.Input().Fields().ByName("page")
			if got := page.Message().FullName(); got != "lib.Page" {
				t.Errorf("ListBooksRequest.page type: got %s; want lib.Page", got)
			}
			for _, path := range []string{"lib/library.proto", "lib/book.proto", "lib/common.proto", "google/protobuf/timestamp.proto"} {
				if _, err := snap.Files.FindFileByPath(path); err != nil {
					t.Errorf("Files.FindFileByPath(%s): %v", path, err)
				}
			}
			if _, _, ok := snap.Method("grpc.health.v1.Health.Check"); ok {
				t.Errorf("health service is served; want it skipped")
			}
		})
	}
}

func TestTypesResolveAnyAndJSON(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, librarySources, librarySvcs...)
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{reflectionSpec("library", b.addr)}})
	snap := load(t, r)

	mt, err := snap.Types.FindMessageByURL("type.googleapis.com/lib.Book")
	if err != nil {
		t.Fatalf("FindMessageByURL: %v", err)
	}
	book := mt.New()
	book.Set(mt.Descriptor().Fields().ByName("title"), protoreflect.ValueOfString("Dune"))
	packed, err := anypb.New(book.Interface())
	if err != nil {
		t.Fatal(err)
	}
	got, err := protojson.MarshalOptions{Resolver: snap.Types}.Marshal(packed)
	if err != nil {
		t.Fatalf("protojson.Marshal(Any): %v", err)
	}
	if !strings.Contains(string(got), `"title":"Dune"`) {
		t.Errorf("Any JSON: got %s; want the title", got)
	}
	back := dynamicpb.NewMessage(mt.Descriptor())
	if err := (protojson.UnmarshalOptions{Resolver: snap.Types}).Unmarshal([]byte(`{"title":"Dune","published":"2024-01-02T03:04:05Z"}`), back); err != nil {
		t.Fatalf("protojson.Unmarshal(Book): %v", err)
	}
}

func TestServicesFilter(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, librarySources, librarySvcs...)
	spec := reflectionSpec("library", b.addr)
	spec.Services = []string{"lib.Admin", "lib.Missing"}
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{spec}})
	snap := load(t, r)

	if diff := cmp.Diff([]string{"lib.Admin@library"}, serviceNames(snap)); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	want := []string{"upstream library: service lib.Missing (from the services filter) is not served"}
	if diff := cmp.Diff(want, problemStrings(snap.Problems)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestDrift(t *testing.T) {
	t.Parallel()
	b1 := startBackend(t, backendOpts{v1: true}, svcSource("A"), "pkg.Svc")
	b2 := startBackend(t, backendOpts{v1: true}, svcSource("A", "B"), "pkg.Svc")
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{reflectionSpec("svc", b1.addr, b2.addr)}})
	snap := load(t, r)

	want := []Problem{{
		Upstream: "svc",
		Msg:      "schema drift: targets " + b1.addr + " and " + b2.addr + " serve different descriptors for service pkg.Svc (file pkg/svc.proto differs)",
	}}
	if diff := cmp.Diff(want, snap.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	// The first target that answered wins.
	if _, _, ok := snap.Method("/pkg.Svc/B"); ok {
		t.Errorf("Method B found; want the first target's descriptors (A only)")
	}
	if _, _, ok := snap.Method("/pkg.Svc/A"); !ok {
		t.Errorf("Method A not found")
	}
}

func TestUnreachableTarget(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, librarySources, librarySvcs...)
	down := testkit.RefusingAddr(t)
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{
		reflectionSpec("down", down),
		reflectionSpec("library", b.addr),
	}})
	snap := load(t, r)

	if diff := cmp.Diff([]string{"lib.Admin@library", "lib.Library@library"}, serviceNames(snap)); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if len(snap.Problems) != 1 {
		t.Fatalf("problems: got %q; want one", problemStrings(snap.Problems))
	}
	p := snap.Problems[0]
	if prefix := "reflection from " + down + ": "; p.Upstream != "down" || !strings.HasPrefix(p.Msg, prefix) {
		t.Errorf("problem: got %q; want upstream down and a message starting %q", p.String(), prefix)
	}
}

func TestRefreshKeepsDescriptorsOfFailedUpstream(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, librarySources, librarySvcs...)
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{reflectionSpec("library", b.addr)}})
	first := load(t, r)

	b.srv.Stop()
	snap, err := r.Refresh(context.Background())
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if snap != first {
		t.Errorf("Refresh swapped the snapshot (version %d); want the previous one kept", snap.Version)
	}
	if _, _, ok := snap.Method("/lib.Library/ListBooks"); !ok {
		t.Errorf("ListBooks dropped after a failed refresh")
	}
	problems := r.Problems()
	if len(problems) != 1 || !strings.HasPrefix(problems[0].Msg, "reflection from "+b.addr+": ") {
		t.Errorf("Problems(): got %q; want the reflection failure", problemStrings(problems))
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, svcSource("A"), "pkg.Svc")
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{reflectionSpec("svc", b.addr)}})
	var mu sync.Mutex
	var notified []uint64
	r.Subscribe(func(s *Snapshot) {
		mu.Lock()
		defer mu.Unlock()
		notified = append(notified, s.Version)
	})
	notifications := func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]uint64(nil), notified...)
	}
	ctx := context.Background()

	if got := r.Current().Version; got != 0 {
		t.Errorf("Version before Load: got %d; want 0", got)
	}
	load(t, r)

	snap, err := r.Refresh(ctx)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if snap.Version != 1 {
		t.Errorf("unchanged Refresh: version got %d; want 1", snap.Version)
	}
	if diff := cmp.Diff([]uint64{1}, notifications()); diff != "" {
		t.Errorf("notifications after unchanged Refresh (-want +got):\n%s", diff)
	}

	b.set(t, svcSource("A", "B"), "pkg.Svc")
	snap, err = r.Refresh(ctx)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if snap.Version != 2 || r.Current() != snap {
		t.Errorf("changed Refresh: version got %d (current %d); want 2", snap.Version, r.Current().Version)
	}
	if _, _, ok := snap.Method("pkg.Svc.B"); !ok {
		t.Errorf("new method pkg.Svc.B not found after Refresh")
	}
	if diff := cmp.Diff([]uint64{1, 2}, notifications()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

func TestRefreshMissing(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, svcSource("A"), "pkg.Svc")
	r := newRegistry(t, Params{
		Upstreams: []UpstreamSpec{reflectionSpec("svc", b.addr)},
		// Long enough that only the first miss in this test refreshes.
		MissRefreshMinInterval: time.Hour,
	})
	load(t, r)
	ctx := context.Background()
	base := b.streams.Load()

	if _, ok := r.RefreshMissing(ctx, "/pkg.Svc/A"); !ok {
		t.Errorf("RefreshMissing(known method): got false; want true")
	}
	if got := b.streams.Load() - base; got != 0 {
		t.Errorf("reflection streams after a known method: got %d; want 0", got)
	}

	// Hold the refresh's reflection stream until every caller is in, so
	// they overlap, and check they share one refresh.
	b.set(t, svcSource("A", "B"), "pkg.Svc")
	gate := make(chan struct{})
	b.gate.Store(&gate)
	const callers = 8
	results := make(chan bool, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			_, ok := r.RefreshMissing(ctx, "/pkg.Svc/B")
			results <- ok
		})
	}
	for b.streams.Load() == base {
		time.Sleep(time.Millisecond) // wait for the refresh to reach the server
	}
	close(gate)
	wg.Wait()
	close(results)
	for ok := range results {
		if !ok {
			t.Errorf("RefreshMissing(new method): got false; want true")
		}
	}
	if got := b.streams.Load() - base; got != 1 {
		t.Errorf("reflection streams for %d concurrent misses: got %d; want 1", callers, got)
	}

	// Within MissRefreshMinInterval: no refresh, and C stays unknown.
	b.set(t, svcSource("A", "B", "C"), "pkg.Svc")
	if _, ok := r.RefreshMissing(ctx, "/pkg.Svc/C"); ok {
		t.Errorf("RefreshMissing within the min interval: got true; want false (no refresh)")
	}
	if got := b.streams.Load() - base; got != 1 {
		t.Errorf("reflection streams after a rate-limited miss: got %d; want 1", got)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, svcSource("A"), "pkg.Svc")
	spec := reflectionSpec("svc", b.addr)
	spec.RefreshInterval = 10 * time.Millisecond
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{spec}})
	swapped := make(chan *Snapshot, 16)
	r.Subscribe(func(s *Snapshot) { swapped <- s })
	load(t, r)
	<-swapped

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	b.set(t, svcSource("A", "B"), "pkg.Svc")
	snap := <-swapped
	if _, _, ok := snap.Method("/pkg.Svc/B"); !ok || snap.Version != 2 {
		t.Errorf("after Run refreshed: version %d, B found %v; want 2, true", snap.Version, ok)
	}
	cancel()
	<-done
}

func TestClose(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, svcSource("A"), "pkg.Svc")
	r, err := New(Params{Upstreams: []UpstreamSpec{reflectionSpec("svc", b.addr)}})
	if err != nil {
		t.Fatal(err)
	}
	load(t, r)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.Refresh(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Refresh after Close: got %v; want ErrClosed", err)
	}
	if r.Current().Version != 1 {
		t.Errorf("Current after Close: version %d; want 1", r.Current().Version)
	}
	// Run returns at once on a closed registry.
	r.Run(context.Background())
}

func TestLoadCanceled(t *testing.T) {
	t.Parallel()
	b := startBackend(t, backendOpts{v1: true}, svcSource("A"), "pkg.Svc")
	r := newRegistry(t, Params{Upstreams: []UpstreamSpec{reflectionSpec("svc", b.addr)}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Load(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Load(canceled ctx): got %v; want context.Canceled", err)
	}
	if r.Current().Version != 0 {
		t.Errorf("Current after canceled Load: version %d; want 0", r.Current().Version)
	}
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		spec UpstreamSpec
		want string
	}{
		{"no-name", UpstreamSpec{Files: []string{"x"}}, "upstreams[0]: name is empty"},
		{"no-source", UpstreamSpec{Name: "a"}, "upstream a: no descriptor source"},
		{"no-target", UpstreamSpec{Name: "a", Reflection: true}, "upstream a: reflection needs at least one target"},
		{"no-credentials", UpstreamSpec{Name: "a", Reflection: true, Targets: []string{"127.0.0.1:1"}}, "upstream a: dial 127.0.0.1:1:"},
		{"bad-service", UpstreamSpec{Name: "a", Files: []string{"x"}, Services: []string{"not a name"}}, `upstream a: services: "not a name"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(Params{Upstreams: []UpstreamSpec{tc.spec}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
