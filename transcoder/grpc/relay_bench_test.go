package grpc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
	"github.com/rosetta-gateway/rosetta/internal/testkit/snapshot"
	"github.com/rosetta-gateway/rosetta/policy"
	_ "github.com/rosetta-gateway/rosetta/policy/jwtauth"
	_ "github.com/rosetta-gateway/rosetta/policy/ratelimit"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// The relay benchmark reproduces `make bench`'s grpc-unary rows in one
// process, with nothing but the relay path in the way: h2 client
// connections (4 connections × 16 calls in flight, as h2load drives the
// bench) → the gateway's h2.Server with Proxy.Relay as its Intercept →
// the relay's h2 client connection → a minimal h2 backend that answers
// every call with a canned response (its own cost stays small and
// constant). "token" sends `authorization: Bearer <HS256 JWT>` as a
// never-indexed HPACK literal, as nghttp2 does; "policy" adds jwt-auth
// and rate-limiting (never refusing) on the route, as the bench's policy
// instance does.

const (
	benchSecret = "rosetta-bench-hs256-secret-0123456789abcdef"
	benchConns  = 4
	benchPerCon = 16
)

// benchToken is the bench's token: {"alg":"HS256","typ":"JWT"} and
// {"sub":"bench","iat":2025-01-01,"exp":2100-01-01}, signed with benchSecret.
var benchToken = func() string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc.EncodeToString([]byte(`{"sub":"bench","iat":1735689600,"exp":4102444800}`))
	m := hmac.New(sha256.New, []byte(benchSecret))
	m.Write([]byte(s))
	return s + "." + enc.EncodeToString(m.Sum(nil))
}()

// benchMessage is an 809-byte gRPC message, the size of the bench's order.
var benchMessage = func() []byte {
	b := make([]byte, 5+804)
	binary.BigEndian.PutUint32(b[1:], 804)
	for i := 5; i < len(b); i++ {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// cannedBackend answers each request, once it has ended, with a gRPC
// response: head, benchMessage, trailers.
type cannedBackend struct{}

var (
	cannedHead     = []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"}}
	cannedTrailers = []hpack.HeaderField{{Name: "grpc-status", Value: "0"}, {Name: "grpc-message", Value: ""}}
)

func (cannedBackend) Headers(s *h2.Stream, _ []hpack.HeaderField, end bool) {
	if end {
		cannedAnswer(s)
	}
}

func (cannedBackend) Data(s *h2.Stream, p []byte, end bool) {
	s.Credit(len(p))
	if end {
		cannedAnswer(s)
	}
}

func (cannedBackend) Reset(*h2.Stream, error) {}

func cannedAnswer(s *h2.Stream) {
	_ = s.WriteHeaders(cannedHead, false)
	_ = s.WriteData(benchMessage, false)
	_ = s.WriteHeaders(cannedTrailers, true)
}

// serveH2 serves every connection ln accepts with s until ln closes.
func serveH2(tb testing.TB, ln net.Listener, s *h2.Server) {
	tb.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.ServeConn(nc, h2.ConnOptions{})
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		s.Shutdown()
		wg.Wait()
	})
}

// startRelayGateway starts the canned backend and a gateway relaying the
// echo service to it (with plugins when policies is set), and returns the
// gateway's address.
func startRelayGateway(tb testing.TB, policies bool) string {
	tb.Helper()
	beLn := testkit.ListenLocal(tb)
	serveH2(tb, beLn, &h2.Server{Intercept: func(*h2.Stream, *h2.RequestHead) h2.Events { return cannedBackend{} }})

	yaml := `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["` + beLn.Addr().String() + `"]
`
	if policies {
		yaml += `routes:
  - selector: rosetta.testing.v1.EchoService.*
    plugins:
      - rate-limiting:
          limit: 100000000
          period: 1
      - jwt-auth:
          secret: "` + benchSecret + `"
`
	}
	cfg, err := config.Parse(filepath.Join(tb.TempDir(), "rosetta.yaml"), []byte(yaml), nil)
	if err != nil {
		tb.Fatal(err)
	}
	ups, err := upstream.NewSet(cfg.Upstreams)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ups.Close() })
	params := Params{Upstreams: ups.Get}
	params.Snapshot, _ = snapshot.EchoSnapshot(tb)
	if policies {
		set, err := policy.Build(cfg, nil, nil)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = set.Close() })
		params.Policies = set
	}
	p := New(params)
	var relayed atomic.Int64
	gwLn := testkit.ListenLocal(tb)
	serveH2(tb, gwLn, &h2.Server{Intercept: func(s *h2.Stream, head *h2.RequestHead) h2.Events {
		ev := p.Relay(s, head, nil)
		if ev != nil {
			relayed.Add(1)
		}
		return ev
	}, Handler: notRelayed{}})
	addr := gwLn.Addr().String()

	// The relay's upstream connection is dialed in the background by the
	// first call; wait until calls are relayed.
	cc := dialBench(tb, addr)
	deadline := time.Now().Add(10 * time.Second)
	for relayed.Load() == 0 {
		if time.Now().After(deadline) {
			tb.Fatal("calls are not relayed")
		}
		_ = newBenchCaller(cc, policies).call() // answered by notRelayed until the relay is ready
		time.Sleep(10 * time.Millisecond)
	}
	return addr
}

// notRelayed answers the calls the relay leaves (before its upstream
// connection is up) with UNAVAILABLE.
type notRelayed struct{}

func (notRelayed) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("content-type", "application/grpc")
	w.Header().Set("grpc-status", "14")
	w.WriteHeader(200)
}

func dialBench(tb testing.TB, addr string) *h2.ClientConn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := h2.Dial(ctx, addr, h2.ClientOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// benchCaller makes unary calls one at a time on a client connection.
type benchCaller struct {
	cc     *h2.ClientConn
	fields []hpack.HeaderField
	done   chan error
	status string
}

func newBenchCaller(cc *h2.ClientConn, token bool) *benchCaller {
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/rosetta.testing.v1.EchoService/Echo"},
		{Name: ":authority", Value: "127.0.0.1"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "user-agent", Value: "h2load nghttp2/1.52.0"},
	}
	if token {
		fields = append(fields, hpack.HeaderField{Name: "authorization", Value: "Bearer " + benchToken, Sensitive: true})
	}
	return &benchCaller{cc: cc, fields: fields, done: make(chan error, 1)}
}

func (c *benchCaller) Headers(_ *h2.Stream, fields []hpack.HeaderField, end bool) {
	for _, f := range fields {
		if f.Name == "grpc-status" {
			c.status = f.Value
		}
	}
	if end {
		c.done <- nil
	}
}

func (c *benchCaller) Data(s *h2.Stream, p []byte, _ bool) { s.Credit(len(p)) }
func (c *benchCaller) Reset(_ *h2.Stream, err error)       { c.done <- err }

var errBadStatus = errors.New("call did not end with grpc-status 0")

func (c *benchCaller) call() error {
	c.status = ""
	s, err := c.cc.NewStream(c.fields, false, c, nil)
	if err != nil {
		return err
	}
	if err := s.WriteData(benchMessage, true); err != nil {
		return err
	}
	if err := <-c.done; err != nil {
		return err
	}
	if c.status != "0" {
		return errBadStatus
	}
	return nil
}

// BenchmarkRelay measures one unary call through the frame relay, 64 in
// flight over 4 client connections.
func BenchmarkRelay(b *testing.B) {
	for _, bc := range []struct {
		name            string
		token, policies bool
	}{
		{"plain", false, false},
		{"token", true, false},
		{"policy", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := startRelayGateway(b, bc.policies)
			var callers []*benchCaller
			for range benchConns {
				cc := dialBench(b, addr)
				for range benchPerCon {
					callers = append(callers, newBenchCaller(cc, bc.token))
				}
			}
			for _, c := range callers {
				if err := c.call(); err != nil { // warm up HPACK tables and caches
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for _, c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := c.call(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
