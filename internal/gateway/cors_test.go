package gateway

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
)

const corsConfig = `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
cors:
  allowed_origins: ["https://app.example.com", "https://*.example.org"]
  allow_credentials: true
  max_age: 10m
`

// corsHeaders picks the CORS-related headers of a response.
func corsHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k, vs := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
			"Access-Control-Max-Age", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers", "Vary":
			out[k] = strings.Join(vs, ", ")
		}
	}
	return out
}

func TestCORS(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, corsConfig)
	preflight := func(origin string) response {
		return do(t, "OPTIONS", url+echoService+"Echo", "",
			"Origin: "+origin,
			"Access-Control-Request-Method: POST",
			"Access-Control-Request-Headers: content-type,x-grpc-web,x-user-agent,grpc-timeout,connect-protocol-version,connect-timeout-ms,authorization")
	}
	t.Run("preflight allowed", func(t *testing.T) {
		t.Parallel()
		for _, origin := range []string{"https://app.example.com", "https://web.example.org"} {
			r := preflight(origin)
			if r.status != http.StatusNoContent {
				t.Fatalf("%s: got %d %s; want 204", origin, r.status, r.body)
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":      origin,
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods":     "GET, HEAD, POST, PUT, PATCH, DELETE",
				"Access-Control-Allow-Headers":     "content-type, x-grpc-web, x-user-agent, grpc-timeout, connect-protocol-version, connect-timeout-ms, authorization",
				"Access-Control-Max-Age":           "600",
				"Vary":                             "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
			}
			if diff := cmp.Diff(want, corsHeaders(r.header)); diff != "" {
				t.Errorf("%s: preflight headers (-want +got):\n%s", origin, diff)
			}
		}
	})
	t.Run("preflight refused", func(t *testing.T) {
		t.Parallel()
		r := preflight("https://evil.example.net")
		if r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("got %d %v; want 403 without CORS headers", r.status, r.header)
		}
		if want := "CORS preflight refused: origin \"https://evil.example.net\" is not allowed; add it to cors.allowed_origins\n"; r.body != want {
			t.Errorf("body: got %q; want %q", r.body, want)
		}
	})
	t.Run("actual response", func(t *testing.T) {
		t.Parallel()
		msg, _ := proto.Marshal(&testingv1.FailRequest{Code: 5, Message: "m"})
		r := doWebWithOrigin(t, url+echoService+"Fail", webFrame(0, msg), "https://app.example.com")
		want := map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example.com",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Grpc-Encoding, Grpc-Accept-Encoding, Connect-Content-Encoding, Connect-Accept-Encoding, Content-Encoding, Rosetta-Error-Id, WWW-Authenticate, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset",
			"Vary":                             "Origin",
		}
		if diff := cmp.Diff(want, corsHeaders(r.Header)); diff != "" {
			t.Errorf("response headers (-want +got):\n%s", diff)
		}
		if r.Header.Get("Grpc-Status") != "5" {
			t.Errorf("grpc-status: got %q; want 5", r.Header.Get("Grpc-Status"))
		}
		other := doWebWithOrigin(t, url+echoService+"Fail", webFrame(0, msg), "https://evil.example.net")
		if got := corsHeaders(other.Header); len(got) != 1 || got["Vary"] != "Origin" {
			t.Errorf("disallowed origin: got CORS headers %v; want only Vary", got)
		}
	})
	t.Run("any origin", func(t *testing.T) {
		t.Parallel()
		url := startBrowserGateway(t, basicConfig+"cors:\n  allowed_origins: [\"*\"]\n")
		r := do(t, "POST", url+echoService+"Echo", `{}`, "Connect-Protocol-Version: 1", "Origin: https://x.test")
		if r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Access-Control-Expose-Headers") == "" {
			t.Errorf("got %v; want Access-Control-Allow-Origin: * and exposed headers", r.header)
		}
	})
}

// doWebWithOrigin sends a binary gRPC-Web request with an Origin header.
func doWebWithOrigin(t *testing.T, url string, body []byte, origin string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("Origin", origin)
	resp, err := newHTTP1Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

// corsRouteConfig opens one method to a browser origin with a cors
// plugin; the rest of the API stays closed (no top-level cors).
const corsRouteConfig = `
listeners:
  - address: "127.0.0.1:0"
upstreams:
  test:
    targets: ["$BACKEND"]
routes:
  - selector: rosetta.testing.v1.EchoService.Echo
    plugins:
      - cors:
          allowed_origins: ["https://app.example.com"]
`

// TestCORSPerRoute checks the cors plugin: the route that has it answers
// preflights and sets CORS headers, by its gRPC path and by its REST
// binding; another route of the same service does not.
func TestCORSPerRoute(t *testing.T) {
	t.Parallel()
	url := startBrowserGateway(t, corsRouteConfig)
	const origin = "https://app.example.com"
	preflight := func(path, method string) response {
		return do(t, "OPTIONS", url+path, "", "Origin: "+origin, "Access-Control-Request-Method: "+method)
	}
	for _, tc := range []struct {
		name, path, method string
		open               bool
	}{
		{"rpc path of the route", echoService + "Echo", "POST", true},
		{"REST binding of the route", "/v1/echo/x", "GET", true},
		{"another method", echoService + "Metadata", "POST", false},
		{"another method's REST binding", "/v1/metadata", "POST", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := preflight(tc.path, tc.method)
			got := r.header.Get("Access-Control-Allow-Origin")
			if tc.open && (r.status != http.StatusNoContent || got != origin) {
				t.Fatalf("preflight: got %d, Allow-Origin %q; want 204 and %q", r.status, got, origin)
			}
			if !tc.open && got != "" {
				t.Fatalf("preflight: got Allow-Origin %q; want none (the route has no cors plugin)", got)
			}
		})
	}
	r := do(t, "GET", url+"/v1/echo/x", "", "Origin: "+origin)
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("actual response: got %d, Allow-Origin %q; want 200 and %q", r.status, r.header.Get("Access-Control-Allow-Origin"), origin)
	}
}
