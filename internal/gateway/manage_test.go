package gateway

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// This file tests API management end to end: a plan's quota holds on
// every protocol, and the analytics and usage export count exactly the
// calls made.

// planTop gives the matrix consumer alice the plan "small" (the line
// continues alice's entry in policyGatewayConfig), a quota of limit
// calls per day, and an admin listener.
func planTop(limit int) string {
	return `    plan: small
plans:
  small: { quota: { limit: ` + strconv.Itoa(limit) + `, period: day, time_zone: Europe/Berlin } }
admin: { address: "127.0.0.1:0" }`
}

// usageRows fetches the usage export of g's admin API as JSON and as
// CSV, checks that both say the same, and returns the JSON rows.
func usageRows(t *testing.T, g *Gateway, from time.Time, consumer string) []map[string]any {
	t.Helper()
	base := "http://" + g.AdminAddr().String() + "/usage?from=" + from.UTC().Format(time.RFC3339) + "&consumer=" + consumer
	get := func(url string) (string, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}
	ct, body := get(base)
	if ct != "application/json" {
		t.Errorf("usage JSON Content-Type %q", ct)
	}
	var u struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatalf("usage JSON: %v: %s", err, body)
	}
	ct, body = get(base + "&format=csv")
	if !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("usage CSV Content-Type %q", ct)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("usage CSV: %v", err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "consumer,api,method,status_class,calls,bytes_in,bytes_out" {
		t.Fatalf("usage CSV header: %q", recs)
	}
	if len(recs)-1 != len(u.Rows) {
		t.Fatalf("usage: %d CSV rows, %d JSON rows", len(recs)-1, len(u.Rows))
	}
	for i, rec := range recs[1:] {
		r := u.Rows[i]
		calls := strconv.FormatInt(int64(r["calls"].(float64)), 10)
		if rec[0] != r["consumer"] || rec[1] != r["api"] || rec[2] != r["method"] || rec[3] != r["status_class"] || rec[4] != calls {
			t.Errorf("CSV row %d %q differs from JSON %v", i, rec, r)
		}
	}
	return u.Rows
}

func TestPlanQuotaAndUsageEveryProtocol(t *testing.T) {
	t.Parallel()
	env := newPolicyEnv(t)
	protos := matrixProtos()
	// Each gateway (relay, handler path) counts on its own: its quota is
	// exactly one call per protocol it serves.
	var onG, onGH int
	for _, p := range protos {
		if p.handler {
			onGH++
		} else {
			onG++
		}
	}
	start := time.Now().Add(-time.Minute)
	routes := matrixRoutes(matrixPlugins["key-auth"])
	p := &policyGateway{}
	relay := env.start(t, policyGatewayConfig(env.leaf, env.web, planTop(onG), routes))
	handler := env.start(t, policyGatewayConfig(env.leaf, env.web, planTop(onGH), routes))
	*p = *relay
	p.gh, p.handlerCC = handler.gh, handler.handlerCC
	key := http.Header{"Apikey": {aliceKey}}
	// Within the quota: every protocol's first call passes.
	for _, proto := range protos {
		want{}.check(t, proto, proto.call(t, p, key))
	}
	// Past it: every protocol is refused, naming the quota and its reset.
	for _, proto := range protos {
		a := proto.call(t, p, key)
		want{code: codes.ResourceExhausted, reason: `quota exhausted: plan "small" allows `}.check(t, proto, a)
		if !strings.Contains(a.msg, "calls per day; resets at ") {
			t.Errorf("%s: quota message %q names no reset", proto.name, a.msg)
		}
	}
	// The usage export of the relay gateway counts exactly its calls:
	// onG allowed (2xx) and onG refused (4xx).
	rows := usageRows(t, p.g, start, "alice")
	byClass := map[string]int64{}
	var bytesOut int64
	for _, r := range rows {
		if r["consumer"] != "alice" {
			t.Errorf("row of consumer %v", r["consumer"])
		}
		byClass[r["status_class"].(string)] += int64(r["calls"].(float64))
		bytesOut += int64(r["bytes_out"].(float64))
	}
	if byClass["2xx"] != int64(onG) || byClass["4xx"] != int64(onG) || len(byClass) != 2 {
		t.Errorf("usage by status class: %v; want %d 2xx and %d 4xx", byClass, onG, onG)
	}
	if bytesOut == 0 {
		t.Errorf("usage counts no bytes out")
	}
	// The analytics view groups the same calls by protocol.
	resp, err := http.Get("http://" + p.g.AdminAddr().String() + "/analytics?window=1h&group_by=protocol&consumer=alice")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Series []struct {
			Labels map[string]string `json:"labels"`
			Totals struct {
				Calls  int64 `json:"calls"`
				Errors int64 `json:"errors"`
			} `json:"totals"`
		} `json:"series"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	wantByProto := map[string]int64{}
	for _, proto := range protos {
		if !proto.handler {
			wantByProto[protocolLabel(proto)] += 2
		}
	}
	got := map[string]int64{}
	for _, s := range res.Series {
		got[s.Labels["protocol"]] = s.Totals.Calls

		if s.Totals.Errors*2 != s.Totals.Calls {
			t.Errorf("protocol %s: %d errors of %d calls; want half", s.Labels["protocol"], s.Totals.Errors, s.Totals.Calls)
		}
	}
	for k, v := range wantByProto {
		if got[k] != v {
			t.Errorf("analytics: protocol %s has %d calls; want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// protocolLabel is the analytics protocol of a matrix cell.
func protocolLabel(p matrixProto) string {
	name, _, _ := strings.Cut(p.name, "/")
	switch name {
	case "grpc-web":
		return "grpc_web"
	case "connect-stream":
		return "connect"
	case "grpc-bidi":
		return "grpc"
	case "ws":
		return "websocket"
	}
	return name
}

// TestWebSocketAnalyticsBytes: a WebSocket over HTTP/1.1 (an upgraded
// connection, which bypasses the response recorder) counts its messages'
// bytes in the analytics, as the bridge reads and writes them.
func TestWebSocketAnalyticsBytes(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	base, g := startGatewayOn(t, "relay", backend.Addr, basicConfig+"admin: { address: \"127.0.0.1:0\" }\n")
	ctx := testContext(t)
	c, _, err := websocket.Dial(ctx, wsURL(base, "/v1/metadata"), nil)
	if err != nil {
		t.Fatal(err)
	}
	wsSend(t, c, `{}`)
	reply := wsRead(t, c, websocket.MessageText)
	wsExpectOK(t, c)
	_ = c.CloseNow()
	var res struct {
		Series []struct {
			Totals struct {
				Calls    int64 `json:"calls"`
				BytesIn  int64 `json:"bytes_in"`
				BytesOut int64 `json:"bytes_out"`
			} `json:"totals"`
		} `json:"series"`
	}
	waitUntil(t, func() bool {
		s, _ := portalDo(t, "GET", "http://"+g.AdminAddr().String()+"/analytics?window=1h&protocol=websocket", "", nil, &res)
		return s == 200 && len(res.Series) == 1 && res.Series[0].Totals.Calls == 1
	}, "the WebSocket call is in the analytics")
	if tot := res.Series[0].Totals; tot.BytesIn != 2 || tot.BytesOut < int64(len(reply)) {
		t.Errorf("bytes in %d, out %d; want 2 in (the message {}) and at least the %d-byte reply out", tot.BytesIn, tot.BytesOut, len(reply))
	}
}

// TestAnalyticsAdminErrors shows the exact answers to malformed
// analytics and usage queries, and that the admin API keeps answering.
func TestAnalyticsAdminErrors(t *testing.T) {
	t.Parallel()
	backend := testkit.StartBackend(t)
	_, g := startGatewayOn(t, "relay", backend.Addr, basicConfig+"admin: { address: \"127.0.0.1:0\", token: analytics-admin-token-01 }\n")
	admin := "http://" + g.AdminAddr().String()
	auth := map[string]string{"Authorization": "Bearer analytics-admin-token-01"}
	for _, c := range []struct{ path, want string }{
		{"/analytics?window=2y", `unknown window`},
		{"/analytics?group_by=colour", `group_by \"colour\" is not a dimension (api, route, method, protocol, consumer, status_class)`},
		{"/analytics?step=fast", `step \"fast\" is not a positive duration such as 5m`},
		{"/analytics?from=yesterday", `from: \"yesterday\" is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a date (2026-12-01)`},
		{"/analytics?consumer=a&consumer=b", `consumer is given 2 values: group_by=consumer to filter by several`},
		{"/usage", `from: \"\" is neither an RFC 3339 time`},
		{"/usage?from=2026-12-02&to=2026-12-01", `to (2026-12-01T00:00:00Z) must be after from (2026-12-02T00:00:00Z)`},
		{"/usage?from=2026-12-01&format=xml", `format \"xml\": use json or csv`},
	} {
		s, body := portalDo(t, "GET", admin+c.path, "", auth, nil)
		if s != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %s; want 400 with %q", c.path, s, body, c.want)
		}
	}
	if s, body := portalDo(t, "GET", admin+"/usage?from=2026-12-01", "", nil, nil); s != http.StatusUnauthorized {
		t.Errorf("usage without the token: %d %s", s, body)
	}
	if s, body := portalDo(t, "GET", admin+"/analytics?window=1h", "", auth, nil); s != http.StatusOK || !strings.Contains(body, `"series":[]`) {
		t.Errorf("a good query after the bad ones: %d %s", s, body)
	}
}
