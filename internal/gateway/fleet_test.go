package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// TestFleetQuotaAndAnalytics runs two gateways (two instances of a
// fleet) sharing one real redis-server: together they let exactly the
// quota's calls pass, and each one's analytics and usage export show the
// calls of both.
func TestFleetQuotaAndAnalytics(t *testing.T) {
	t.Parallel()
	rd := testkit.StartRedis(t)
	backend := testkit.StartBackend(t)
	const limit = 7
	cfg := `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
redis: { address: "` + rd.Addr + `", timeout: 10s } # a loaded test machine must not fail open
admin: { address: "127.0.0.1:0" }
analytics: { flush_interval: 1s }
plans:
  small: { quota: { limit: 7, period: month } }
consumers:
  - { name: alice, keys: [alice-fleet-key-0123456789], plan: small }
plugins:
  - key-auth: {}
`
	start := time.Now().Add(-time.Minute)
	baseA, a := startGatewayOn(t, "relay", backend.Addr, cfg)
	baseB, b := startGatewayOn(t, "relay", backend.Addr, cfg)
	var passed, refused atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		base := baseA
		if i%2 == 1 {
			base = baseB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, body := portalDo(t, "POST", base+"/v1/metadata", `{}`, map[string]string{"Apikey": "alice-fleet-key-0123456789"}, nil)
			switch {
			case s == http.StatusOK:
				passed.Add(1)
			case s == http.StatusTooManyRequests && strings.Contains(body, `quota exhausted: plan \"small\" allows 7 calls per month`):
				refused.Add(1)
			default:
				t.Errorf("call: %d %s", s, body)
			}
		}()
	}
	wg.Wait()
	if passed.Load() != limit || refused.Load() != 20-limit {
		t.Fatalf("%d passed, %d refused; want exactly %d of 20 to pass across the two instances", passed.Load(), refused.Load(), limit)
	}
	// Each instance flushes its buckets to Redis; either one's usage
	// export then counts all 20 calls.
	for _, g := range []*Gateway{a, b} {
		if err := g.Analytics().Flush(testContext(t)); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []*Gateway{a, b} {
		byClass := map[string]int64{}
		for _, r := range usageRows(t, g, start, "alice") {
			byClass[r["status_class"].(string)] += int64(r["calls"].(float64))
		}
		if byClass["2xx"] != limit || byClass["4xx"] != 20-limit {
			t.Errorf("instance %s: usage by class %v; want %d 2xx and %d 4xx (both instances' calls)", g.AdminAddr(), byClass, limit, 20-limit)
		}
		resp, err := http.Get("http://" + g.AdminAddr().String() + "/analytics?window=1h")
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Series []struct {
				Totals struct{ Calls int64 } `json:"totals"`
			} `json:"series"`
		}
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || len(res.Series) != 1 || res.Series[0].Totals.Calls != 20 {
			t.Errorf("instance %s: analytics %+v (%v); want one series of 20 calls", g.AdminAddr(), res, err)
		}
	}
}
