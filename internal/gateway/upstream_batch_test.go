package gateway

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/upstream/balance"
)

// TestUpstreamLeastRequestBatch: gRPC calls that reach the relay in one
// read of a connection go to one target together under least_request
// (balance.PickNear), so they leave in one write rather than one per
// target; batches that arrive apart are balanced on their own. Once every
// backend has answered enough calls for its latency to be known (PickNear
// keeps a target only beside one of similar latency), a client writes 8
// Echo calls (HEADERS and DATA each) in one write, 12 times, waiting for
// every answer in between: the batches land whole on one backend (at
// least 6 of 12: under make test's load a read may take part of a batch,
// or a latency spike split one; a pick per call would keep a batch of 8
// whole once in 2,000, so 6 whole batches never happen by chance),
// every call answers OK, and the batches use more than one backend (all
// 12 on one would happen about once in 30,000 runs of a fair pick). The
// slow backend's side is TestUpstreamLeastRequest.
func TestUpstreamLeastRequestBatch(t *testing.T) {
	t.Parallel()
	bes := upstreamTrio(t)
	targets := fmt.Sprintf(`["%s", "%s", "%s"]`, bes[0].Addr, bes[1].Addr, bes[2].Addr)
	u := startUpGateway(t, "relay", gatewayConfig(targets, "balance: least_request", ""))
	const perBatch, batches = 8, 12
	if perBatch > balance.NearSlack {
		t.Fatalf("perBatch %d is over balance.NearSlack %d: the pick would move within a batch", perBatch, balance.NearSlack)
	}

	// Latency known everywhere: 40 answers or more from each backend (the
	// first answers of a connection, which can be slow, then weigh under
	// 1 % of the average).
	echo := testingv1.NewEchoServiceClient(u.cc)
	for i := 0; bes[0].calls.Load() < 40 || bes[1].calls.Load() < 40 || bes[2].calls.Load() < 40; i++ {
		if i == 2000 {
			t.Fatalf("after %d calls the backends got %d, %d and %d; want 40 each", i, bes[0].calls.Load(), bes[1].calls.Load(), bes[2].calls.Load())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := echo.Echo(ctx, &testingv1.Everything{})
		cancel()
		if err != nil {
			t.Fatalf("warm-up call: %v", err)
		}
	}

	nc := testkit.DialRaw(t, strings.TrimPrefix(u.url, "http://"))
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	out.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings()
	flush := func() {
		t.Helper()
		if _, err := nc.Write(out.Bytes()); err != nil {
			t.Fatalf("write: %v", err)
		}
		out.Reset()
	}
	flush()
	// The batches go after the server's SETTINGS, so that each arrives
	// in a read of its own.
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			_ = fr.WriteSettingsAck()
			break
		}
	}

	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	before := func() []int64 { return []int64{bes[0].calls.Load(), bes[1].calls.Load(), bes[2].calls.Load()} }
	used := map[string]bool{}
	whole := 0
	id := uint32(1)
	for batch := range batches {
		start := before()
		ids := map[uint32]bool{}
		for range perBatch {
			hbuf.Reset()
			for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", echoService + "Echo"},
				{":authority", "gateway"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
			_ = fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}) // an empty Everything
			ids[id] = true
			id += 2
		}
		flush()
		for len(ids) > 0 {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("batch %d: read: %v (%d calls unanswered)", batch, err, len(ids))
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				if !f.StreamEnded() {
					continue
				}
				if got := f.PseudoValue("status"); got != "200" && got != "" {
					t.Fatalf("batch %d, stream %d: :status %s", batch, f.StreamID, got)
				}
				var st string
				for _, hf := range f.RegularFields() {
					if hf.Name == "grpc-status" {
						st = hf.Value
					}
				}
				if st != "0" {
					t.Fatalf("batch %d, stream %d: grpc-status %q; want 0 (fields %v)", batch, f.StreamID, st, f.Fields)
				}
				delete(ids, f.StreamID)
			case *http2.RSTStreamFrame:
				t.Fatalf("batch %d, stream %d: RST_STREAM %v", batch, f.StreamID, f.ErrCode)
			case *http2.GoAwayFrame:
				t.Fatalf("batch %d: GOAWAY %v", batch, f.ErrCode)
			case *http2.PingFrame:
				if !f.IsAck() {
					_ = fr.WritePing(true, f.Data)
					flush()
				}
			}
		}
		var got []string
		for i, n := range before() {
			if d := n - start[i]; d > 0 {
				got = append(got, fmt.Sprintf("%s %d", bes[i].name, d))
				used[bes[i].name] = true
			}
		}
		t.Logf("batch %d: %s", batch, strings.Join(got, ", "))
		if len(got) == 1 {
			whole++
		}
	}
	if whole < batches/2 {
		t.Errorf("%d of %d batches of %d calls arriving together went to one backend; want at least %d", whole, batches, perBatch, batches/2)
	}
	if len(used) < 2 {
		t.Errorf("all %d batches went to the same backend %v; want batches balanced over the three", batches, used)
	}
}
