package grpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/transcoder"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/rpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoregistry"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/registry"
	"github.com/rosetta-gateway/rosetta/upstream"
)

// frames builds a gRPC stream of messages with the given payload sizes.
func frames(sizes ...int) []byte {
	var out []byte
	for i, n := range sizes {
		var h [grpcHeaderLen]byte
		h[0] = byte(i % 2) // alternate the compressed flag; it is not checked
		binary.BigEndian.PutUint32(h[1:], uint32(n))
		out = append(out, h[:]...)
		out = append(out, make([]byte, n)...)
	}
	return out
}

func TestFrameScannerConsume(t *testing.T) {
	stream := frames(0, 3, 100, 0, 7, 101, 2)
	// Every chunk size, so headers are split at every offset.
	for chunk := 1; chunk <= len(stream); chunk++ {
		s := frameScanner{max: 100}
		var got uint32
		for p := stream; len(p) > 0 && got == 0; {
			n := min(chunk, len(p))
			got = s.consume(p[:n])
			p = p[n:]
		}
		if got != 101 {
			t.Fatalf("chunk %d: over-limit size %d; want 101", chunk, got)
		}
	}
	s := frameScanner{max: 100}
	if got := s.consume(frames(100, 0, 100)); got != 0 {
		t.Errorf("messages at the limit: reported %d", got)
	}
}

// TestFrameScannerGzip: with gzip, a compressed message is checked by the
// size it inflates to (gzip's ISIZE), at its last byte, however the
// stream is split; uncompressed messages and short ones are checked on
// the wire.
func TestFrameScannerGzip(t *testing.T) {
	gz := func(n int) []byte { return rpc.GzipBytes(bytes.Repeat([]byte("x"), n)) }
	msg := func(flag byte, payload []byte) []byte {
		h := []byte{flag, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(h[1:], uint32(len(payload)))
		return append(h, payload...)
	}
	small, big := gz(90), gz(5000)
	stream := append(append(msg(1, small), msg(0, bytes.Repeat([]byte("y"), 50))...), msg(1, big)...)
	for chunk := 1; chunk <= len(stream); chunk++ {
		s := frameScanner{max: 100, gzip: true}
		var got uint32
		fed := 0
		for p := stream; len(p) > 0 && got == 0; {
			n := min(chunk, len(p))
			got = s.consume(p[:n])
			p = p[n:]
			fed += n
		}
		if got != 5000 {
			t.Fatalf("chunk %d: reported %d; want 5000 (the inflated size)", chunk, got)
		}
		if fed != len(stream) {
			t.Fatalf("chunk %d: reported before the last byte (%d of %d)", chunk, fed, len(stream))
		}
	}
	// Without gzip (another encoding, or none), only wire sizes count.
	s := frameScanner{max: 100}
	if got := s.consume(msg(1, big)[:0]); got != 0 {
		t.Fatal(got)
	}
	if got := (&frameScanner{max: 100}).consume(msg(1, big)); got != 0 {
		t.Errorf("without gzip: reported %d; want 0 (the wire size is %d)", got, len(big))
	}
}

func TestFrameScannerBoundary(t *testing.T) {
	stream := frames(3, 0, 10, 200, 1)
	tooBigAt := len(frames(3, 0, 10))
	for chunk := 1; chunk <= len(stream); chunk++ {
		s := frameScanner{max: 100}
		var written []byte
		buf := make([]byte, 0, len(stream))
		var found uint32
		for p := stream; len(p) > 0; {
			n := min(chunk, len(p))
			buf = append(buf, p[:n]...)
			p = p[n:]
			w, big := s.boundary(buf)
			written = append(written, buf[:w]...)
			buf = append(buf[:0], buf[w:]...)
			if big > 0 {
				found = big
				break
			}
		}
		if found != 200 {
			t.Fatalf("chunk %d: over-limit size %d; want 200", chunk, found)
		}
		if len(written) != tooBigAt {
			t.Fatalf("chunk %d: wrote %d bytes before refusing; want exactly the %d before the big header", chunk, len(written), tooBigAt)
		}
	}
}

func TestGRPCTimeoutRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 1500 * time.Microsecond, 30 * time.Second, 2000 * time.Hour} {
		v := formatGRPCTimeout(d)
		got, err := transcoder.ParseGRPCTimeout(v)
		if err != nil {
			t.Fatalf("%v → %q: %v", d, v, err)
		}
		if got < d || got > d+time.Second {
			t.Errorf("%v → %q → %v", d, v, got)
		}
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":  "plain text",
		"100% sure":   "100%25 sure",
		"ünï\ncode\t": "%C3%BCn%C3%AF%0Acode%09",
	} {
		if got := transcoder.EncodeGRPCMessage(in); got != want {
			t.Errorf("encodeGRPCMessage(%q) = %q; want %q", in, got, want)
		}
	}
}

func newTestGRPCProxy(t *testing.T) *Proxy {
	t.Helper()
	files := new(protoregistry.Files)
	if err := files.RegisterFile(testingv1.File_rosetta_testing_v1_echo_proto); err != nil {
		t.Fatal(err)
	}
	sd := testingv1.File_rosetta_testing_v1_echo_proto.Services().Get(0)
	snap := registry.NewSnapshot(1, files, new(protoregistry.Types), []*registry.Service{{Desc: sd, Upstream: "test"}}, nil)
	u, err := upstream.New(&config.Upstream{Name: "test", Targets: config.TargetsOf("127.0.0.1:1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return New(Params{Snapshot: snap, Upstreams: func(name string) (*upstream.Upstream, bool) {
		return u, name == "test"
	}})
}

func TestGRPCProxyMatch(t *testing.T) {
	p := newTestGRPCProxy(t)
	for path, want := range map[string]string{
		"/rosetta.testing.v1.EchoService/Echo": "",
		"/rosetta.testing.v1.EchoService/Nope": "unknown method Nope for service rosetta.testing.v1.EchoService",
		"/no.Such/Echo":                        "unknown service no.Such",
		"/justone":                             `malformed method name: "/justone"`,
	} {
		r := httptest.NewRequest(http.MethodPost, path, nil)
		r.ProtoMajor = 2
		rt, err := p.Match(r)
		if want == "" {
			if err != nil || rt.Method != "Echo" || rt.Upstream.Name != "test" || !rt.unary {
				t.Errorf("%s: got %+v, %v", path, rt, err)
			}
			continue
		}
		var ce *call.Error
		if !errors.As(err, &ce) || ce.Code != codes.Unimplemented || ce.Msg != want || !errors.Is(err, ErrUnknownMethod) {
			t.Errorf("%s: got %v; want UNIMPLEMENTED %q", path, err, want)
		}
	}
}

func TestGRPCProxyTrailersOnlyErrors(t *testing.T) {
	p := newTestGRPCProxy(t)

	// HTTP/1.1 is refused with a message naming HTTP/2.
	r := httptest.NewRequest(http.MethodPost, "/rosetta.testing.v1.EchoService/Echo", nil)
	r.Header.Set("Content-Type", "application/grpc")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusOK || w.Header().Get("Grpc-Status") != "12" || w.Header().Get("Content-Type") != "application/grpc" {
		t.Errorf("HTTP/1.1: got %d %v", w.Code, w.Header())
	}

	// An unreachable upstream is UNAVAILABLE, with an error ID.
	r = httptest.NewRequest(http.MethodPost, "/rosetta.testing.v1.EchoService/Echo", nil)
	r.ProtoMajor, r.Proto = 2, "HTTP/2.0"
	w = httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Header().Get("Grpc-Status") != "14" || w.Header().Get("Grpc-Message") != "upstream test is unavailable" || w.Header().Get(transcoder.ErrorIDHeader) == "" {
		t.Errorf("unreachable upstream: got %v", w.Header())
	}

	// A malformed grpc-timeout is INTERNAL, naming the header.
	r.Header.Set("Grpc-Timeout", "soon")
	w = httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Header().Get("Grpc-Status") != "13" {
		t.Errorf("bad grpc-timeout: got %v", w.Header())
	}
}

// TestReadReplayable: a request within maxReplay is read whole (with or
// without its Content-Length); a larger one is not, and its start and the
// rest still make the whole stream; a message over the limit fails the
// read.
func TestReadReplayable(t *testing.T) {
	body := func(b []byte) *grpcCall {
		return &grpcCall{body: io.NopCloser(bytes.NewReader(b)), scan: frameScanner{max: 1 << 20}}
	}
	small := frames(100)
	for _, size := range []int64{-1, int64(len(small))} {
		buf, whole, err := readReplayable(context.Background(), body(small), size)
		if err != nil || !whole || !bytes.Equal(buf, small) {
			t.Errorf("size %d: got %d bytes, whole %v, %v; want the %d bytes whole", size, len(buf), whole, err, len(small))
		}
	}
	large := frames(maxReplay)
	c := body(large)
	buf, whole, err := readReplayable(context.Background(), c, -1)
	if err != nil || whole {
		t.Fatalf("a request of %d bytes: whole %v, %v; want not whole", len(large), whole, err)
	}
	rest, err := io.ReadAll(&prefixBody{head: buf, rest: c})
	if err != nil || !bytes.Equal(rest, large) {
		t.Errorf("start and rest: %d bytes, %v; want the %d bytes of the request", len(rest), err, len(large))
	}
	c = &grpcCall{body: io.NopCloser(bytes.NewReader(frames(101))), scan: frameScanner{max: 100}}
	if _, _, err := readReplayable(context.Background(), c, -1); !errors.Is(err, errRequestTooBig) || c.tooBig.Load() != 101 {
		t.Errorf("a message over the limit: %v (size %d); want errRequestTooBig (101)", err, c.tooBig.Load())
	}
}
