package policy

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
)

// fakeAuth is an authentication plugin with a fixed answer.
type fakeAuth struct {
	name     string
	consumer string // accepts, as this consumer, when set
	missing  bool   // refuses as "no credentials"
	pending  bool   // TryCheck is pending
}

func (f *fakeAuth) Name() string { return f.name }
func (f *fakeAuth) Phase() Phase { return Authenticate }

func (f *fakeAuth) Check(_ context.Context, c *call.Call, st *State) *call.Error {
	switch {
	case f.consumer != "":
		c.Consumer = f.consumer
		st.Upstream = append(st.Upstream, Field{"x-" + f.name, "1"})
		return nil
	case f.missing:
		st.Response = append(st.Response, Field{"www-authenticate", f.name})
		return MissingCredentials("no " + f.name)
	}
	st.Response = append(st.Response, Field{"www-authenticate", f.name + ` error="invalid"`})
	return call.Errorf(codes.Unauthenticated, "bad %s", f.name)
}

func (f *fakeAuth) TryCheck(c *call.Call, st *State) (*call.Error, bool) {
	if f.pending {
		return nil, true
	}
	return f.Check(context.Background(), c, st), false
}

func TestChainAuthentication(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		plugins  []Plugin
		code     codes.Code
		msg      string
		consumer string
		upstream []Field
		response []Field
	}{
		{
			name:     "second accepts: the first one's challenge is dropped",
			plugins:  []Plugin{&fakeAuth{name: "jwt", missing: true}, &fakeAuth{name: "key", consumer: "alice"}},
			consumer: "alice",
			upstream: []Field{{"x-key", "1"}, {"x-consumer", "alice"}},
		},
		{
			name:     "bad credential wins over missing, every challenge kept",
			plugins:  []Plugin{&fakeAuth{name: "jwt", missing: true}, &fakeAuth{name: "key"}},
			code:     codes.Unauthenticated,
			msg:      "bad key",
			response: []Field{{"www-authenticate", "jwt"}, {"www-authenticate", `key error="invalid"`}},
		},
		{
			name:     "all missing: the first",
			plugins:  []Plugin{&fakeAuth{name: "jwt", missing: true}, &fakeAuth{name: "key", missing: true}},
			code:     codes.Unauthenticated,
			msg:      "no jwt",
			response: []Field{{"www-authenticate", "jwt"}, {"www-authenticate", "key"}},
		},
		{
			name:     "accepted without a consumer: no x-consumer",
			plugins:  []Plugin{&fakeAuth{name: "anon", consumer: ""}, &fakeAuth{name: "key", consumer: ""}},
			code:     codes.Unauthenticated,
			msg:      "bad anon",
			response: []Field{{"www-authenticate", `anon error="invalid"`}, {"www-authenticate", `key error="invalid"`}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			chain := NewChain(tc.plugins, []string{ConsumerHeader})
			for _, mode := range []string{"Check", "TryCheck"} {
				c := &call.Call{}
				st := &State{Response: []Field{{"x-before", "kept"}}}
				var err *call.Error
				if mode == "Check" {
					err = chain.Check(context.Background(), c, st)
				} else {
					var pending bool
					if err, pending = chain.TryCheck(c, st); pending {
						t.Fatalf("%s: pending", mode)
					}
				}
				if tc.code == codes.OK {
					if err != nil {
						t.Fatalf("%s: got %v; want accepted", mode, err)
					}
				} else if err == nil || err.Code != tc.code || err.Msg != tc.msg {
					t.Fatalf("%s: got %v; want %v %q", mode, err, tc.code, tc.msg)
				}
				if c.Consumer != tc.consumer {
					t.Errorf("%s: Consumer got %q; want %q", mode, c.Consumer, tc.consumer)
				}
				if diff := cmp.Diff(tc.upstream, st.Upstream); diff != "" {
					t.Errorf("%s: Upstream (-want +got):\n%s", mode, diff)
				}
				if diff := cmp.Diff(append([]Field{{"x-before", "kept"}}, tc.response...), st.Response); diff != "" {
					t.Errorf("%s: Response (-want +got):\n%s", mode, diff)
				}
			}
		})
	}
}

func TestChainTryCheckPendingRestores(t *testing.T) {
	t.Parallel()
	chain := NewChain([]Plugin{&fakeAuth{name: "jwt"}, &fakeAuth{name: "remote", pending: true}}, nil)
	c := &call.Call{Consumer: "before"}
	st := &State{Response: []Field{{"a", "b"}}, Upstream: []Field{{"c", "d"}}}
	err, pending := chain.TryCheck(c, st)
	if !pending || err != nil {
		t.Fatalf("got %v, pending %v; want pending", err, pending)
	}
	if diff := cmp.Diff(&State{Response: []Field{{"a", "b"}}, Upstream: []Field{{"c", "d"}}}, st, cmp.AllowUnexported(State{})); diff != "" {
		t.Errorf("State after pending (-want +got):\n%s", diff)
	}
	if c.Consumer != "before" {
		t.Errorf("Consumer after pending: got %q; want it unchanged", c.Consumer)
	}
}

// countingLimit is a local limit plugin that counts the calls it allows,
// refuses past max (0: never), or is pending.
type countingLimit struct {
	max     int
	pending bool
	counted int
}

func (f *countingLimit) Name() string { return "counting-limit" }
func (f *countingLimit) Phase() Phase { return Limit }

func (f *countingLimit) Check(context.Context, *call.Call, *State) *call.Error {
	if f.max > 0 && f.counted >= f.max {
		return call.Errorf(codes.ResourceExhausted, "over")
	}
	f.counted++
	return nil
}

func (f *countingLimit) TryCheck(c *call.Call, st *State) (*call.Error, bool) {
	if f.pending {
		return nil, true
	}
	return f.Check(context.Background(), c, st), false
}

// TestChainTryAuthenticate: TryAuthenticate runs only the authentication
// phase (the caller's identity is known, nothing is counted), and
// TryCheckRest then runs the limits once; together they answer as
// TryCheck. A refusal or a pending plugin in either phase is TryCheck's.
func TestChainTryAuthenticate(t *testing.T) {
	t.Parallel()
	t.Run("allowed", func(t *testing.T) {
		lim := &countingLimit{max: 1}
		chain := NewChain([]Plugin{lim, &fakeAuth{name: "key", consumer: "alice"}}, []string{ConsumerHeader})
		c, st := &call.Call{}, &State{}
		if err, pending := chain.TryAuthenticate(c, st); err != nil || pending {
			t.Fatalf("TryAuthenticate: %v, pending %v; want allowed", err, pending)
		}
		if c.Consumer != "alice" || lim.counted != 0 {
			t.Fatalf("after TryAuthenticate: consumer %q, counted %d; want alice, 0", c.Consumer, lim.counted)
		}
		if err, pending := chain.TryCheckRest(c, st); err != nil || pending {
			t.Fatalf("TryCheckRest: %v, pending %v; want allowed", err, pending)
		}
		if lim.counted != 1 {
			t.Errorf("counted %d; want 1", lim.counted)
		}
		if diff := cmp.Diff([]Field{{"x-key", "1"}, {"x-consumer", "alice"}}, st.Upstream); diff != "" {
			t.Errorf("Upstream (-want +got):\n%s", diff)
		}
		c2, st2 := &call.Call{}, &State{}
		if err, _ := chain.TryAuthenticate(c2, st2); err != nil {
			t.Fatalf("second TryAuthenticate: %v", err)
		}
		if err, _ := chain.TryCheckRest(c2, st2); err == nil || err.Code != codes.ResourceExhausted || err.Plugin != "counting-limit" {
			t.Errorf("second TryCheckRest: %v; want the limit's refusal", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		lim := &countingLimit{}
		chain := NewChain([]Plugin{&fakeAuth{name: "key"}, lim}, nil)
		err, pending := chain.TryAuthenticate(&call.Call{}, &State{})
		if pending || err == nil || err.Code != codes.Unauthenticated || err.Plugin != "key" || !err.Refusal {
			t.Errorf("got %v, pending %v; want key's refusal", err, pending)
		}
		if lim.counted != 0 {
			t.Errorf("counted %d; want 0", lim.counted)
		}
	})
	t.Run("pending authentication", func(t *testing.T) {
		chain := NewChain([]Plugin{&fakeAuth{name: "remote", pending: true}}, nil)
		c, st := &call.Call{Consumer: "before"}, &State{}
		if err, pending := chain.TryAuthenticate(c, st); !pending || err != nil {
			t.Errorf("got %v, pending %v; want pending", err, pending)
		}
		if c.Consumer != "before" || len(st.Upstream) != 0 {
			t.Errorf("after pending: consumer %q, upstream %v; want them unchanged", c.Consumer, st.Upstream)
		}
	})
	t.Run("pending limit", func(t *testing.T) {
		chain := NewChain([]Plugin{&fakeAuth{name: "key", consumer: "alice"}, &countingLimit{pending: true}}, nil)
		c, st := &call.Call{}, &State{}
		if err, pending := chain.TryAuthenticate(c, st); err != nil || pending {
			t.Fatalf("TryAuthenticate: %v, pending %v; want allowed", err, pending)
		}
		n := len(st.Upstream)
		if err, pending := chain.TryCheckRest(c, st); !pending || err != nil {
			t.Errorf("TryCheckRest: %v, pending %v; want pending", err, pending)
		}
		if c.Consumer != "alice" || len(st.Upstream) != n {
			t.Errorf("after pending: consumer %q, upstream %v; want them as TryAuthenticate left them", c.Consumer, st.Upstream)
		}
	})
	t.Run("nil chain", func(t *testing.T) {
		var chain *Chain
		if err, pending := chain.TryAuthenticate(&call.Call{}, &State{}); err != nil || pending {
			t.Errorf("TryAuthenticate: %v, pending %v", err, pending)
		}
		if err, pending := chain.TryCheckRest(&call.Call{}, &State{}); err != nil || pending {
			t.Errorf("TryCheckRest: %v, pending %v", err, pending)
		}
	})
}
