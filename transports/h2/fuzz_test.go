package h2_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/transports/h2"
)

// fuzzFrames builds a seed: frames written with x/net's Framer.
func fuzzFrames(write func(fr *http2.Framer, block func(...hpack.HeaderField) []byte)) []byte {
	var out, hb bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.AllowIllegalWrites = true
	enc := hpack.NewEncoder(&hb)
	block := func(fields ...hpack.HeaderField) []byte {
		hb.Reset()
		for _, f := range fields {
			_ = enc.WriteField(f)
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	_ = fr.WriteSettings()
	write(fr, block)
	return out.Bytes()
}

var getFields = []hpack.HeaderField{
	{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
	{Name: ":authority", Value: "x"}, {Name: ":path", Value: "/echo"},
}

// FuzzServerConn feeds arbitrary bytes after the client preface to a
// server whose handler echoes the body, and checks that the connection
// always ends (no hang, no panic, no goroutine left: TestMain's leak
// check) once the client closes.
func FuzzServerConn(f *testing.F) {
	f.Add(fuzzFrames(func(fr *http2.Framer, block func(...hpack.HeaderField) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(getFields...), EndHeaders: true})
		_ = fr.WriteData(1, true, []byte("hello"))
	}))
	f.Add(fuzzFrames(func(fr *http2.Framer, block func(...hpack.HeaderField) []byte) {
		b := block(getFields...)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:2]})
		_ = fr.WriteContinuation(1, true, b[2:])
		_ = fr.WriteWindowUpdate(0, 1<<20)
		_ = fr.WriteWindowUpdate(1, 100)
		_ = fr.WriteData(1, false, bytes.Repeat([]byte("a"), 1000))
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WritePriority(3, http2.PriorityParam{StreamDep: 1, Weight: 3})
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	}))
	f.Add(fuzzFrames(func(fr *http2.Framer, block func(...hpack.HeaderField) []byte) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(getFields...), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("x"))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(hpack.HeaderField{Name: "t", Value: "v"}), EndHeaders: true, EndStream: true})
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(getFields[:2]...), EndHeaders: true, EndStream: true})
	}))
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		srv := &h2.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(w, r.Body)
			}),
			Limits: h2.Limits{MaxConcurrentStreams: 4},
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(server, h2.ConnOptions{})
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, client)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write([]byte(http2.ClientPreface))
		_, _ = client.Write(data)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("the server did not end the connection after the client closed it\n%s", buf[:runtime.Stack(buf, true)])
		}
		<-drained
	})
}
