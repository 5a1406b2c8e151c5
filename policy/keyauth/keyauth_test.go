package keyauth

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
)

var testConsumers = []config.Consumer{
	{Name: "alice", Keys: config.StringList{"alice-key-1", "alice-key-2"}},
	{Name: "bob", Keys: config.StringList{"bob key+/="}},
	{Name: "jwt-only", JWTSubject: "u1"},
}

func newPlugin(t testing.TB, cfg config.KeyAuth) *Plugin {
	t.Helper()
	p, err := New(cfg, testConsumers)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		cfg      config.KeyAuth
		header   http.Header
		query    string
		consumer string
		code     codes.Code
		msg      string
		missing  bool
	}{
		{name: "default header", header: http.Header{"Apikey": {"alice-key-1"}}, consumer: "alice"},
		{name: "second key", header: http.Header{"Apikey": {"alice-key-2"}}, consumer: "alice"},
		{name: "lower-case metadata", header: http.Header{"apikey": {"alice-key-1"}}, consumer: "alice"},
		{name: "custom header", cfg: config.KeyAuth{Header: "X-API-Key"}, header: http.Header{"X-Api-Key": {"alice-key-1"}}, consumer: "alice"},
		{name: "custom header ignores apikey", cfg: config.KeyAuth{Header: "x-api-key"}, header: http.Header{"Apikey": {"alice-key-1"}},
			code: codes.Unauthenticated, msg: "missing API key: send it in the x-api-key header", missing: true},
		{name: "query", cfg: config.KeyAuth{Query: "api_key"}, query: "a=1&api_key=alice-key-1&b", consumer: "alice"},
		{name: "query escaped", cfg: config.KeyAuth{Query: "api_key"}, query: "api%5Fkey=bob+key%2B%2F%3D", consumer: "bob"},
		{name: "query empty then set", cfg: config.KeyAuth{Query: "k"}, query: "k=&k=alice-key-2", consumer: "alice"},
		{name: "header wins over query", cfg: config.KeyAuth{Query: "api_key"}, header: http.Header{"Apikey": {"bob key+/="}}, query: "api_key=alice-key-1", consumer: "bob"},
		{name: "query not configured", query: "apikey=alice-key-1",
			code: codes.Unauthenticated, msg: "missing API key: send it in the apikey header", missing: true},
		{name: "missing with query", cfg: config.KeyAuth{Query: "api_key"},
			code: codes.Unauthenticated, msg: "missing API key: send it in the apikey header or the api_key query parameter", missing: true},
		{name: "bad query escape", cfg: config.KeyAuth{Query: "api_key"}, query: "api_key=%zz",
			code: codes.Unauthenticated, msg: "missing API key: send it in the apikey header or the api_key query parameter", missing: true},
		{name: "unknown key", header: http.Header{"Apikey": {"alice-key-3"}}, code: codes.Unauthenticated, msg: "invalid API key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPlugin(t, tc.cfg)
			for _, mode := range []string{"Check", "TryCheck"} {
				c := &call.Call{Header: call.HTTPHeader(tc.header), RawQuery: tc.query}
				var st policy.State
				var err *call.Error
				if mode == "Check" {
					err = p.Check(context.Background(), c, &st)
				} else {
					var pending bool
					err, pending = p.TryCheck(c, &st)
					if pending {
						t.Fatalf("TryCheck: pending; key-auth never is")
					}
				}
				if tc.code == codes.OK {
					if err != nil {
						t.Fatalf("%s: got %v; want accepted", mode, err)
					}
					if c.Consumer != tc.consumer {
						t.Errorf("%s: Consumer got %q; want %q", mode, c.Consumer, tc.consumer)
					}
					continue
				}
				if err == nil || err.Code != tc.code || err.Msg != tc.msg {
					t.Fatalf("%s: got %v; want %v %q", mode, err, tc.code, tc.msg)
				}
				if got := policy.IsMissingCredentials(err); got != tc.missing {
					t.Errorf("%s: IsMissingCredentials got %v; want %v", mode, got, tc.missing)
				}
				if c.Consumer != "" {
					t.Errorf("%s: refused call has Consumer %q", mode, c.Consumer)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	_, err := New(config.KeyAuth{}, []config.Consumer{{Name: "jwt-only", JWTSubject: "u"}})
	if err == nil || !strings.Contains(err.Error(), "needs at least one consumer with keys") {
		t.Errorf("no keys: got %v", err)
	}
	_, err = New(config.KeyAuth{}, []config.Consumer{{Name: "a", Keys: config.StringList{"same-secret"}}, {Name: "b", Keys: config.StringList{"same-secret"}}})
	if err == nil || !strings.Contains(err.Error(), "consumers[1].keys[0] (b) is also a key of a") {
		t.Errorf("duplicate: got %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "same-secret") {
		t.Errorf("error shows the key: %v", err)
	}
}

func TestRegistered(t *testing.T) {
	t.Parallel()
	ctor, ok := policy.Lookup("key-auth")
	if !ok {
		t.Fatal(`"key-auth" is not registered`)
	}
	cfg := &config.Config{Consumers: testConsumers}
	p, err := ctor(policy.Env{Config: cfg}, config.Plugin{KeyAuth: &config.KeyAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "key-auth" || p.Phase() != policy.Authenticate {
		t.Errorf("got %s in phase %d", p.Name(), p.Phase())
	}
}

// TestCheckAllocs runs alone: AllocsPerRun refuses parallel tests.
func TestCheckAllocs(t *testing.T) {
	p := newPlugin(t, config.KeyAuth{Query: "api_key"})
	for _, tc := range []struct {
		name string
		c    *call.Call
	}{
		{"header", &call.Call{Header: call.HTTPHeader{"Apikey": {"alice-key-1"}}}},
		{"query", &call.Call{Header: call.HTTPHeader{}, RawQuery: "x=1&api_key=alice-key-1"}},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if err, _ := p.TryCheck(tc.c, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: an accepted key allocates %v times; want 0", tc.name, allocs)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	p := newPlugin(b, config.KeyAuth{Query: "api_key"})
	for _, bc := range []struct {
		name string
		c    call.Call
	}{
		{"header", call.Call{Header: call.HTTPHeader{"Apikey": {"alice-key-1"}}}},
		{"query", call.Call{Header: call.HTTPHeader{}, RawQuery: "x=1&api_key=alice-key-1"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c := bc.c
				var st policy.State
				for pb.Next() {
					if err, _ := p.TryCheck(&c, &st); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// TestOptional: with optional: true a call without a key passes
// anonymously, with no challenge, on both the blocking and the
// non-blocking check; a wrong key is still refused, a right one names
// its consumer.
func TestOptional(t *testing.T) {
	t.Parallel()
	chain := policy.NewChain([]policy.Plugin{newPlugin(t, config.KeyAuth{Optional: true})}, nil)
	for _, c := range []struct {
		key      string
		consumer string
		code     codes.Code
	}{
		{"", "", codes.OK},
		{"wrong", "", codes.Unauthenticated},
		{"alice-key-1", "alice", codes.OK},
	} {
		h := http.Header{}
		if c.key != "" {
			h.Set("apikey", c.key)
		}
		for _, try := range []bool{false, true} {
			cl := &call.Call{Header: call.HTTPHeader(h)}
			var st policy.State
			var err *call.Error
			if try {
				err, _ = chain.TryCheck(cl, &st)
			} else {
				err = chain.Check(context.Background(), cl, &st)
			}
			code := codes.OK
			if err != nil {
				code = err.Code
			}
			if code != c.code || cl.Consumer != c.consumer {
				t.Errorf("key %q (try %v): got %s, consumer %q; want %s, %q", c.key, try, code, cl.Consumer, c.code, c.consumer)
			}
			if c.key == "" && len(st.Response) != 0 {
				t.Errorf("an anonymous call gets response fields %v", st.Response)
			}
		}
	}
	if strict := policy.NewChain([]policy.Plugin{newPlugin(t, config.KeyAuth{})}, nil); strict.Check(context.Background(), &call.Call{Header: call.HTTPHeader(http.Header{})}, &policy.State{}) == nil {
		t.Error("without optional, a call without a key passes")
	}
}
