// Command load drives the scenarios h2load and ghz cannot: WebSocket
// messages over Rosetta's bridge and HTTP/3 GETs. It runs -concurrency
// callers for -duration against 127.0.0.1 and prints one JSON line:
// {"requests","errors","rps","p50_us","p99_us","first_error"}.
//
//	go run ./load -mode ws -url ws://127.0.0.1:8080/rosetta.bench.v1.BenchService/Chat
//	go run ./load -mode h3 -url https://127.0.0.1:8443/v1/bench/items/42
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/protobuf/proto"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

func main() {
	mode := flag.String("mode", "ws", "ws (one Item per message, rosetta.proto.v1, on a bidi stream per connection) or h3 (GET)")
	target := flag.String("url", "", "ws://… or https://… on 127.0.0.1")
	concurrency := flag.Int("concurrency", 64, "callers in flight")
	conns := flag.Int("conns", 4, "h3: QUIC connections the callers share")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var (
		r   result
		err error
	)
	switch *mode {
	case "ws":
		r, err = runWS(ctx, *target, *concurrency)
	case "h3":
		r, err = runH3(ctx, *target, *concurrency, *conns)
	default:
		err = fmt.Errorf("unknown -mode %q: want ws or h3", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/load:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// result is what one run prints.
type result struct {
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	RPS        float64 `json:"rps"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	FirstError string  `json:"first_error,omitempty"`
}

// recorder collects latencies and errors from many callers.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int64
	firstErr string
}

func (r *recorder) add(lat []time.Duration, errs int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, lat...)
	r.errs += errs
	if err != nil && r.firstErr == "" {
		r.firstErr = err.Error()
	}
}

func (r *recorder) result(elapsed time.Duration) result {
	slices.Sort(r.lat)
	q := func(p float64) float64 {
		if len(r.lat) == 0 {
			return 0
		}
		return float64(r.lat[int(p*float64(len(r.lat)-1))].Microseconds())
	}
	return result{
		Requests:   int64(len(r.lat)),
		Errors:     r.errs,
		RPS:        float64(len(r.lat)) / elapsed.Seconds(),
		P50us:      q(0.50),
		P99us:      q(0.99),
		FirstError: r.firstErr,
	}
}

// runWS opens one bidi stream (one WebSocket) per caller; each caller sends
// an Item and waits for its echo, as a request and its response.
func runWS(ctx context.Context, url string, concurrency int) (result, error) {
	msg, err := proto.Marshal(&benchv1.Item{Id: "item-7", Name: "Stainless steel water bottle, 750 ml", PriceCents: 1999, InStock: true})
	if err != nil {
		return result{}, err
	}
	var rec recorder
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			lat, errs, err := wsCaller(ctx, url, msg)
			rec.add(lat, errs, err)
		})
	}
	wg.Wait()
	return rec.result(time.Since(start)), nil
}

func wsCaller(ctx context.Context, url string, msg []byte) ([]time.Duration, int64, error) {
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{Subprotocols: []string{"rosetta.proto.v1"}})
	if err != nil {
		return nil, 1, fmt.Errorf("dial: %w", err)
	}
	defer c.CloseNow()
	lat := make([]time.Duration, 0, 4096)
	// Messages in flight finish after ctx ends; a new one is not started.
	bg := context.Background()
	for ctx.Err() == nil {
		t0 := time.Now()
		if err := c.Write(bg, websocket.MessageBinary, msg); err != nil {
			return lat, 1, fmt.Errorf("write: %w", err)
		}
		typ, got, err := c.Read(bg)
		if err != nil {
			return lat, 1, fmt.Errorf("read: %w", err)
		}
		if typ != websocket.MessageBinary || len(got) != len(msg) {
			return lat, 1, fmt.Errorf("got a %v frame of %d bytes; want binary of %d", typ, len(got), len(msg))
		}
		lat = append(lat, time.Since(t0))
	}
	_ = c.Write(bg, websocket.MessageText, []byte(`{"@close_send": true}`))
	return lat, 0, nil
}

// runH3 sends GETs over conns QUIC connections from concurrency callers.
func runH3(ctx context.Context, url string, concurrency, conns int) (result, error) {
	var rec recorder
	var wg sync.WaitGroup
	transports := make([]*http3.Transport, conns)
	for i := range transports {
		transports[i] = &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a throwaway self-signed certificate on 127.0.0.1
		defer transports[i].Close()
	}
	start := time.Now()
	for i := range concurrency {
		client := &http.Client{Transport: transports[i%conns], Timeout: 10 * time.Second}
		wg.Go(func() {
			var lat []time.Duration
			var errs int64
			var first error
			for ctx.Err() == nil {
				t0 := time.Now()
				err := get(client, url)
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			rec.add(lat, errs, first)
		})
	}
	wg.Wait()
	return rec.result(time.Since(start)), nil
}

func get(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
