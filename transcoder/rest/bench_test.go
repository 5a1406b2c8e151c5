package rest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// echoConn answers every unary call with the request itself, marshalled
// and unmarshalled as a real connection would, so a benchmark measures the
// gateway's own work (route, decode, encode) without the network. It
// echoes with whatever codec the call uses: messages, or wire bytes
// (*[]byte) for the raw codec, copied as a connection would deliver them.
type echoConn struct{}

func (echoConn) Invoke(_ context.Context, _ string, args, reply any, _ ...grpc.CallOption) error {
	if b, ok := args.(*[]byte); ok {
		*reply.(*[]byte) = append([]byte(nil), *b...)
		return nil
	}
	b, err := proto.Marshal(args.(proto.Message))
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, reply.(proto.Message))
}

func (echoConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, fmt.Errorf("echoConn does not stream")
}

// benchBody is a ~1 KB request: strings, int64s, repeated nested messages,
// a map and a timestamp.
var benchBody = func() string {
	var b strings.Builder
	b.WriteString(`{"stringValue":"The quick brown fox jumps over the lazy dog","int64Value":"1234567890123","doubleValue":3.14159,`)
	b.WriteString(`"boolValue":true,"color":"COLOR_GREEN","ts":"2024-05-06T07:08:09.123Z","strings":["alpha","beta","gamma","delta"],`)
	b.WriteString(`"labels":{"team":"platform","env":"production","region":"eu-west-1"},"nesteds":[`)
	for i := 0; i < 8; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"nested item number %d with some text","n":%d,"child":{"name":"child %d","n":%d}}`, i, i*7, i, i)
	}
	b.WriteString(`]}`)
	return b.String()
}()

// BenchmarkRESTUnary measures one REST POST through the adapter: match,
// JSON decode, backend call (in-process echo), JSON encode.
func BenchmarkRESTUnary(b *testing.B) {
	h := newTestREST(b, echoConn{}, config.Transcoding{})
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/v1/echo", strings.NewReader(benchBody))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkRESTUnaryGET measures a small GET with path and query binding.
func BenchmarkRESTUnaryGET(b *testing.B) {
	h := newTestREST(b, echoConn{}, config.Transcoding{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, "/v1/echo/nested/abc/12?stringValue=x&int64Value=5", nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkRESTUnaryLoopback is the same POST against a real gRPC backend
// over loopback.
func BenchmarkRESTUnaryLoopback(b *testing.B) {
	be := testkit.StartBackend(b)
	conn := be.Dial(b)
	h := newTestREST(b, conn, config.Transcoding{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/v1/echo", strings.NewReader(benchBody))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
