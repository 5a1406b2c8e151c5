package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

// scenario is one row of the report: a request shape, the load tool that
// drives it, and the peers that can serve it.
type scenario struct {
	key   string
	title string
	unit  string // what one "request" is
	peers []string
	// load is h2load, ghz or load (bench/load).
	load string
	// h2load: the path, whether HTTP/1.1 (else h2c), a body file, headers.
	path    string
	h1      bool
	body    string // key into env.files
	headers []string
	// echo: each answer's DATA carries at least the body (a gRPC echo over
	// h2c), so fewer data bytes than requests × body size mean answers
	// without a message (a trailers-only refusal, which h2load counts as
	// a success); the shortfall is counted as errors.
	echo bool
	// variant: the scenario runs on each peer's instance of that
	// variant (peer.variants; "" for the plain instance): variantPolicy
	// (jwt-auth + rate-limiting; the load sends the bearer token),
	// variantLB3 (three backends), variantCache (a response cache),
	// variantMetrics (metrics on).
	variant string
	// ghz: the method and its JSON request.
	call, data string
	// load: its -mode.
	mode string
	// peerTitles names peers in this row of the details where the
	// column's title (peerTitles) does not say what runs.
	peerTitles map[string]string
	// smoke checks one request's answer before the load runs.
	smoke func(ctx context.Context, p *peer) error
}

var (
	restPeers = []string{peerRosetta, peerGRPCGateway, peerVanguard}
	grpcPeers = []string{peerRosetta, peerDirect, peerVanguard, peerNginx, peerHAProxy}
)

func scenarios() []scenario {
	return []scenario{
		{key: "rest-post-h1", title: "REST POST ~1.4 KB JSON, HTTP/1.1", unit: "request", peers: restPeers,
			load: "h2load", path: "/v1/bench/echo", h1: true, body: "order.json", headers: []string{"content-type: application/json"},
			smoke: func(ctx context.Context, p *peer) error { return smokeEcho(ctx, h1Client, p) }},
		{key: "rest-post-policy", title: "REST POST ~1.4 KB JSON, HTTP/1.1, jwt-auth + rate-limiting", unit: "request", peers: []string{peerRosetta},
			load: "h2load", path: "/v1/bench/echo", h1: true, body: "order.json", variant: variantPolicy,
			headers: []string{"content-type: application/json", policyHeader()},
			smoke:   withPolicySmoke(restRefused, smokeEchoToken)},
		{key: "rest-post-h2c", title: "REST POST ~1.4 KB JSON, h2c", unit: "request", peers: restPeers,
			load: "h2load", path: "/v1/bench/echo", body: "order.json", headers: []string{"content-type: application/json"},
			smoke: func(ctx context.Context, p *peer) error { return smokeEcho(ctx, h2cClient, p) }},
		{key: "rest-get", title: "REST GET small, HTTP/1.1", unit: "request", peers: restPeers,
			load: "h2load", path: "/v1/bench/items/42", h1: true, smoke: smokeGet},
		// rest-get-cached: rest-get's request, answered from a cache
		// (cache.go); nginx's peer is proxy_cache in front of grpc-gateway.
		{key: "rest-get-cached", title: "REST GET small, HTTP/1.1, cache hit (Rosetta proxy-cache; nginx proxy_cache → grpc-gateway)", unit: "request",
			peers: []string{peerRosetta, peerNginx}, load: "h2load", path: "/v1/bench/items/42", h1: true, variant: variantCache, smoke: smokeCached,
			peerTitles: map[string]string{peerRosetta: "Rosetta proxy-cache", peerNginx: "nginx proxy_cache → grpc-gateway"}},
		// vanguard v0.4.0 answers 415 "stream type server not supported
		// with REST protocol".
		{key: "rest-stream", title: "REST server stream, 10 msgs NDJSON, HTTP/1.1", unit: "stream", peers: []string{peerRosetta, peerGRPCGateway},
			load: "h2load", path: "/v1/bench/stream", h1: true, smoke: smokeRESTStream},
		{key: "grpc-unary", title: "gRPC unary ~1.4 KB, pass-through (h2load)", unit: "call", peers: grpcPeers,
			load: "h2load", path: "/rosetta.bench.v1.BenchService/Echo", body: "order.grpc",
			headers: []string{"content-type: application/grpc", "te: trailers"}, echo: true, smoke: smokeGRPCUnary},
		// grpc-unary-token splits the policy row's cost: the same calls
		// with the bearer token on the plain instances, no plugins.
		{key: "grpc-unary-token", title: "gRPC unary ~1.4 KB, pass-through, bearer token sent, no plugins (h2load)", unit: "call", peers: []string{peerRosetta, peerHAProxy},
			load: "h2load", path: "/rosetta.bench.v1.BenchService/Echo", body: "order.grpc", echo: true,
			headers: []string{"content-type: application/grpc", "te: trailers", policyHeader()}, smoke: smokeGRPCUnaryToken},
		{key: "grpc-unary-policy", title: "gRPC unary ~1.4 KB, pass-through, jwt-auth + rate-limiting (h2load)", unit: "call", peers: []string{peerRosetta, peerHAProxy},
			load: "h2load", path: "/rosetta.bench.v1.BenchService/Echo", body: "order.grpc", echo: true, variant: variantPolicy,
			headers: []string{"content-type: application/grpc", "te: trailers", policyHeader()},
			smoke:   withPolicySmoke(grpcRefused, smokeGRPCUnaryToken)},
		// grpc-unary-metrics: grpc-unary on an instance whose admin
		// listener turns metrics on (issue 12).
		{key: "grpc-unary-metrics", title: "gRPC unary ~1.4 KB, pass-through, metrics on (h2load)", unit: "call", peers: []string{peerRosetta},
			load: "h2load", path: "/rosetta.bench.v1.BenchService/Echo", body: "order.grpc", variant: variantMetrics,
			headers: []string{"content-type: application/grpc", "te: trailers"}, echo: true, smoke: smokeGRPCUnary},
		// grpc-unary-lb3: grpc-unary's calls to three backends, balanced
		// on calls in flight by each gateway (lb.go).
		{key: "grpc-unary-lb3", title: "gRPC unary ~1.4 KB, pass-through, 3 backends, least request (h2load)", unit: "call",
			peers: []string{peerRosetta, peerNginx, peerHAProxy}, load: "h2load", path: "/rosetta.bench.v1.BenchService/Echo", body: "order.grpc",
			headers: []string{"content-type: application/grpc", "te: trailers"}, echo: true, variant: variantLB3, smoke: smokeLB3,
			peerTitles: map[string]string{peerRosetta: "Rosetta least_request", peerNginx: "nginx least_conn", peerHAProxy: "HAProxy leastconn"}},
		{key: "grpc-stream", title: "gRPC server stream, 10 msgs, pass-through (ghz)", unit: "stream", peers: grpcPeers,
			load: "ghz", call: "rosetta.bench.v1.BenchService.Stream", data: `{"count":10}`, smoke: smokeGRPCStream},
		{key: "grpcweb-unary", title: "gRPC-Web unary ~1.4 KB binary, HTTP/1.1", unit: "call", peers: []string{peerRosetta, peerVanguard},
			load: "h2load", path: "/rosetta.bench.v1.BenchService/Echo", h1: true, body: "order.grpc",
			headers: []string{"content-type: application/grpc-web+proto", "x-grpc-web: 1"}, smoke: smokeGRPCWeb},
		{key: "ws-bidi", title: "WebSocket bidi, 1 msg each way (rosetta.proto.v1)", unit: "message", peers: []string{peerRosetta},
			load: "load", mode: "ws", smoke: smokeWS},
		{key: "h3-get", title: "HTTP/3 GET small", unit: "request", peers: []string{peerRosetta},
			load: "load", mode: "h3", smoke: smokeH3},
	}
}

// peerTitle is peer k's name in the rows of s.
func (s scenario) peerTitle(k string) string {
	if t, ok := s.peerTitles[k]; ok {
		return t
	}
	return peerTitles[k]
}

// benchOrder is the REST POST body: ~1.4 KB of proto3 JSON.
func benchOrder() *benchv1.Order {
	o := &benchv1.Order{
		Id:         "ord_01HZX4T9K3M8Q2W7E5R6Y1U0PA",
		CustomerId: "cus_7f3a9c2e1b4d4e8f",
		State:      benchv1.OrderState_ORDER_STATE_PAID,
		CreatedAt:  timestamppb.New(time.Date(2026, 3, 14, 15, 9, 26, 535000000, time.UTC)),
		Labels: map[string]string{
			"channel": "web", "campaign": "spring-sale-2026", "warehouse": "ams-3", "priority": "standard",
		},
		ShippingAddress: &benchv1.Address{
			Name: "Ada Lovelace", Line1: "12 Analytical Engine Street", Line2: "Floor 3, Apartment 14",
			City: "London", Region: "Greater London", PostalCode: "NW1 6XE", Country: "GB",
		},
		Currency: "EUR",
		Note:     "Please leave the parcel with the concierge if nobody answers; the doorbell on the left does not work.",
		Version:  7,
	}
	titles := []string{
		"Stainless steel water bottle, 750 ml, brushed finish",
		"Organic cotton t-shirt, crew neck, size M, navy blue",
		"Wireless ergonomic mouse with silent buttons",
		"Paperback notebook, dotted, A5, 192 pages",
		"USB-C to USB-C cable, braided, 2 m, 100 W",
	}
	for i, t := range titles {
		it := &benchv1.LineItem{
			Sku: fmt.Sprintf("SKU-%05d-%c", 31337+i*101, 'A'+rune(i)), Title: t,
			Quantity: int64(1 + i%3), UnitPriceCents: int64(1299 + 250*i),
			Tags: []string{"gift-wrap", "eco", "in-stock"}[:1+i%3],
		}
		o.Items = append(o.Items, it)
		o.SubtotalCents += it.Quantity * it.UnitPriceCents
	}
	o.TaxCents = o.SubtotalCents * 21 / 100
	o.TotalCents = o.SubtotalCents + o.TaxCents
	return o
}

// grpcFrame is one length-prefixed gRPC (and gRPC-Web) message.
func grpcFrame(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	f := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(f[1:], uint32(len(b)))
	return append(f, b...)
}

var (
	h1Client  = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	h2cClient = func() *http.Client {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
	}()
)

func do(ctx context.Context, c *http.Client, method, url, ctype string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, b, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp, b, fmt.Errorf("%s %s: %s: %.300s", method, url, resp.Status, b)
	}
	return resp, b, nil
}

func smokeEcho(ctx context.Context, c *http.Client, p *peer) error {
	want := benchOrder()
	body, _ := protojson.Marshal(want)
	_, b, err := do(ctx, c, http.MethodPost, "http://"+p.addr+"/v1/bench/echo", "application/json", body)
	if err != nil {
		return err
	}
	got := new(benchv1.Order)
	if err := protojson.Unmarshal(b, got); err != nil {
		return fmt.Errorf("decode the answer: %w: %.300s", err, b)
	}
	if !proto.Equal(got, want) {
		return fmt.Errorf("echo differs: got %.300s", b)
	}
	return nil
}

func smokeGet(ctx context.Context, p *peer) error {
	_, b, err := do(ctx, h1Client, http.MethodGet, "http://"+p.addr+"/v1/bench/items/42", "", nil)
	if err != nil {
		return err
	}
	got := new(benchv1.Item)
	if err := protojson.Unmarshal(b, got); err != nil || got.GetId() != "42" {
		return fmt.Errorf("got %.300s; want item 42 (%v)", b, err)
	}
	return nil
}

// smokeRESTStream wants 10 newline-delimited JSON messages (grpc-gateway
// wraps each in {"result": …}; that is its framing).
func smokeRESTStream(ctx context.Context, p *peer) error {
	_, b, err := do(ctx, h1Client, http.MethodGet, "http://"+p.addr+"/v1/bench/stream", "", nil)
	if err != nil {
		return err
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.Contains(l, `"error"`) {
			n++
		}
	}
	if n != 10 {
		return fmt.Errorf("got %d lines; want 10 NDJSON messages: %.300s", n, b)
	}
	return nil
}

func grpcConn(p *peer) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func smokeGRPCUnary(ctx context.Context, p *peer) error {
	cc, err := grpcConn(p)
	if err != nil {
		return err
	}
	defer cc.Close()
	want := benchOrder()
	got, err := benchv1.NewBenchServiceClient(cc).Echo(ctx, want)
	if err != nil {
		return err
	}
	if !proto.Equal(got, want) {
		return errors.New("echo differs")
	}
	return nil
}

func smokeGRPCStream(ctx context.Context, p *peer) error {
	cc, err := grpcConn(p)
	if err != nil {
		return err
	}
	defer cc.Close()
	s, err := benchv1.NewBenchServiceClient(cc).Stream(ctx, &benchv1.StreamRequest{Count: 10})
	if err != nil {
		return err
	}
	n := 0
	for {
		_, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if n != 10 {
		return fmt.Errorf("got %d messages; want 10", n)
	}
	return nil
}

// smokeGRPCWeb wants one message frame equal to the order and a trailer
// frame (or header) with grpc-status 0.
func smokeGRPCWeb(ctx context.Context, p *peer) error {
	want := benchOrder()
	resp, b, err := do(ctx, h1Client, http.MethodPost, "http://"+p.addr+"/rosetta.bench.v1.BenchService/Echo",
		"application/grpc-web+proto", grpcFrame(want))
	if err != nil {
		return err
	}
	status := resp.Header.Get("Grpc-Status")
	var msg []byte
	for len(b) >= 5 {
		flag, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			return errors.New("truncated gRPC-Web frame")
		}
		payload := b[5 : 5+n]
		b = b[5+n:]
		if flag&0x80 != 0 {
			for _, l := range strings.Split(string(payload), "\r\n") {
				if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "grpc-status") {
					status = strings.TrimSpace(v)
				}
			}
			continue
		}
		msg = payload
	}
	if status != "0" {
		return fmt.Errorf("grpc-status %q; want 0", status)
	}
	got := new(benchv1.Order)
	if err := proto.Unmarshal(msg, got); err != nil || !proto.Equal(got, want) {
		return fmt.Errorf("echo differs (%v)", err)
	}
	return nil
}

func wsURL(p *peer) string { return "ws://" + p.addr + "/rosetta.bench.v1.BenchService/Chat" }

func smokeWS(ctx context.Context, p *peer) error {
	c, _, err := websocket.Dial(ctx, wsURL(p), &websocket.DialOptions{Subprotocols: []string{"rosetta.proto.v1"}})
	if err != nil {
		return err
	}
	defer c.CloseNow()
	want := &benchv1.Item{Id: "item-7", Name: "bottle", PriceCents: 1999}
	b, _ := proto.Marshal(want)
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		return err
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, b) {
		return errors.New("echo differs")
	}
	return c.Write(ctx, websocket.MessageText, []byte(`{"@close_send": true}`))
}

func h3URL(p *peer) string { return "https://" + p.h3Addr + "/v1/bench/items/42" }

func smokeH3(ctx context.Context, p *peer) error {
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // self-signed on 127.0.0.1
	defer tr.Close()
	_, b, err := do(ctx, &http.Client{Transport: tr, Timeout: 10 * time.Second}, http.MethodGet, h3URL(p), "", nil)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(`"42"`)) {
		return fmt.Errorf("got %.300s", b)
	}
	return nil
}

// smokeRetry retries a smoke check for up to 15s: Rosetta and vanguard
// load descriptors from the backend after they listen.
func smokeRetry(ctx context.Context, s scenario, p *peer) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.smoke(cctx, p)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
