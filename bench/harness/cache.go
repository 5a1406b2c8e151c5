package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"google.golang.org/protobuf/encoding/protojson"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

// The rest-get-cached scenario (issue 11) repeats rest-get's GET
// /v1/bench/items/42 against a response cache, so that after the first
// call every answer is a hit. Rosetta caches GetItem with its proxy-cache
// plugin (memory store) and transcodes itself. nginx cannot transcode
// REST to gRPC, so its peer is proxy_cache in front of grpc-gateway's REST
// endpoint (a grpc-gateway process of its own): a hit never reaches
// grpc-gateway. The report counts the cache layer's CPU (Rosetta; nginx's
// processes) and shows what is behind it (the backend; grpc-gateway and
// the backend) as backend CPU, which is about 0 when every call hits.

// cacheTTL is both caches' lifetime of an answer. A run is far shorter,
// so each run has at most one miss (its first call).
const cacheTTL = "60s"

// rosettaCacheRoutes is the routes block of Rosetta's cache instance:
// proxy-cache on GetItem. key: [] shares entries among all callers (the
// default [consumer] would too, for anonymous calls: they share one
// consumer, ""); it is what public data would use.
func rosettaCacheRoutes() string {
	return fmt.Sprintf(`routes:
  - selector: rosetta.bench.v1.BenchService.GetItem
    plugins:
      - proxy-cache:
          ttl: %s
          key: []
`, cacheTTL)
}

// nginxCache is nginx's cache server block: an HTTP/1.1 listener that
// proxies to grpc-gateway at gw over kept-alive connections and caches
// 200s for cacheTTL (nginx's proxy_cache keeps entries in files under
// prefix/cache, read through the page cache on each hit, and an index in
// shared memory; 64 MiB like Rosetta's default max_bytes). X-Cache is
// $upstream_cache_status.
func nginxCache(addr, gw, prefix string) string {
	return fmt.Sprintf(`    proxy_cache_path %[1]s levels=1:2 keys_zone=bench_cache:10m max_size=64m inactive=10m use_temp_path=off;
    upstream grpc_gateway {
        server %[2]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %[3]s;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://grpc_gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench_cache;
            proxy_cache_valid 200 %[4]s;
            add_header X-Cache $upstream_cache_status;
        }
    }
`, filepath.Join(prefix, "cache"), gw, addr, cacheTTL)
}

// smokeCached GETs item 42 twice: both answers must be the item, and the
// second must come from the cache (X-Cache: HIT).
func smokeCached(ctx context.Context, p *peer) error {
	url := "http://" + p.addr + "/v1/bench/items/42"
	for i := range 2 {
		resp, b, err := do(ctx, h1Client, http.MethodGet, url, "", nil)
		if err != nil {
			return err
		}
		got := new(benchv1.Item)
		if err := protojson.Unmarshal(b, got); err != nil || got.GetId() != "42" {
			return fmt.Errorf("got %.300s; want item 42 (%v)", b, err)
		}
		if xc := resp.Header.Get("X-Cache"); i == 1 && xc != "HIT" {
			return fmt.Errorf("second GET: X-Cache %q; want HIT", xc)
		}
	}
	return nil
}
