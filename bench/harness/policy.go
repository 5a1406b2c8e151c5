package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	benchv1 "github.com/rosetta-gateway/rosetta/bench/proto/gen/rosetta/bench/v1"
)

// The policy scenarios (issue 10) run each gateway with the same two
// policies on the bench service: jwt-auth (HS256, policySecret) and a rate
// limit high enough never to refuse (policyLimit calls per second, per
// client). Rosetta runs them as a second process with plugins on a route;
// HAProxy as a second frontend of the same process (jwt_verify and a
// stick table). The load sends policyToken, which is valid until 2100.
const (
	policySecret = "rosetta-bench-hs256-secret-0123456789abcdef"
	policyLimit  = 100_000_000
)

var (
	// policyToken: {"alg":"HS256","typ":"JWT"}.{"sub":"bench","iat":2025-01-01,"exp":2100-01-01}.
	policyToken = hs256(policySecret, `{"sub":"bench","iat":1735689600,"exp":4102444800}`)
	// badSigToken has the same claims, signed with another secret.
	badSigToken = hs256(policySecret+"-not", `{"sub":"bench","iat":1735689600,"exp":4102444800}`)
	// expiredToken is signed with the secret but expired in 2025.
	expiredToken = hs256(policySecret, `{"sub":"bench","iat":1735689600,"exp":1735693200}`)
)

// policyHeader is the header the load tools send on policy scenarios.
func policyHeader() string { return "authorization: Bearer " + policyToken }

// hs256 signs payload (JSON) as a compact JWS with HMAC-SHA256.
func hs256(secret, payload string) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(s))
	return s + "." + enc.EncodeToString(m.Sum(nil))
}

// rosettaPolicyRoutes is the routes block of Rosetta's policy instance:
// both plugins on every method of the bench service (REST and gRPC).
func rosettaPolicyRoutes() string {
	return fmt.Sprintf(`routes:
  - selector: rosetta.bench.v1.BenchService.*
    plugins:
      - rate-limiting:
          limit: %d
          period: 1
      - jwt-auth:
          secret: %q
`, policyLimit, policySecret)
}

// haproxyPolicyFrontend is HAProxy's policy frontend, doing what Rosetta's
// plugins do, in the same order: a bearer token whose alg is HS256, whose
// signature verifies and whose exp is in the future (Rosetta also checks
// nbf and iat when present; the bench token has no nbf), then a per-client
// request rate tracked in a stick table. Refusals are HTTP 401 and 429,
// which gRPC clients read as UNAUTHENTICATED and UNAVAILABLE (Rosetta
// answers trailers-only grpc-status 16 and 8). HAProxy 2.6 cannot send a
// trailers-only gRPC status itself: "http-request return" without a body
// drops the content-type, and gRPC clients then read code Unknown.
func haproxyPolicyFrontend(addr string) string {
	return fmt.Sprintf(`frontend fe_policy
    bind %s proto h2
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('$.alg')
    http-request set-var(txn.jwt_exp) var(txn.bearer),jwt_payload_query('$.exp','int')
    http-request set-var(txn.now) date
    acl jwt_alg_ok var(txn.jwt_alg) -m str HS256
    acl jwt_sig_ok var(txn.bearer),jwt_verify(txn.jwt_alg,%q) -m int 1
    acl jwt_live var(txn.jwt_exp),sub(txn.now) -m int gt 0
    http-request deny deny_status 401 unless jwt_alg_ok jwt_sig_ok jwt_live
    http-request track-sc0 src table st_policy_rate
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt %d }
    default_backend be
backend st_policy_rate
    stick-table type ip size 100k expire 10s store http_req_rate(1s)
`, addr, policySecret, policyLimit)
}

// withPolicySmoke wraps a scenario's check: a call without a token, one
// with a badly signed token and one with an expired token must be refused
// (refused reports how), then ok runs with the valid token.
func withPolicySmoke(refused func(ctx context.Context, p *peer, token string) error, ok func(ctx context.Context, p *peer) error) func(ctx context.Context, p *peer) error {
	return func(ctx context.Context, p *peer) error {
		for _, c := range []struct{ name, token string }{{"no token", ""}, {"bad signature", badSigToken}, {"expired", expiredToken}} {
			if err := refused(ctx, p, c.token); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		if err := ok(ctx, p); err != nil {
			return fmt.Errorf("valid token: %w", err)
		}
		return nil
	}
}

// grpcRefused wants Echo with token (none when empty) to fail with
// UNAUTHENTICATED.
func grpcRefused(ctx context.Context, p *peer, token string) error {
	cc, err := grpcConn(p)
	if err != nil {
		return err
	}
	defer cc.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err = benchv1.NewBenchServiceClient(cc).Echo(ctx, benchOrder())
	if status.Code(err) != codes.Unauthenticated {
		return fmt.Errorf("got %v; want code Unauthenticated", err)
	}
	return nil
}

// smokeGRPCUnaryToken is smokeGRPCUnary with the valid token.
func smokeGRPCUnaryToken(ctx context.Context, p *peer) error {
	cc, err := grpcConn(p)
	if err != nil {
		return err
	}
	defer cc.Close()
	want := benchOrder()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+policyToken)
	got, err := benchv1.NewBenchServiceClient(cc).Echo(ctx, want)
	if err != nil {
		return err
	}
	if !proto.Equal(got, want) {
		return errors.New("echo differs")
	}
	return nil
}

// restRefused wants POST /v1/bench/echo with token (none when empty) to
// be answered 401 with a WWW-Authenticate challenge.
func restRefused(ctx context.Context, p *peer, token string) error {
	body, _ := protojson.Marshal(benchOrder())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.addr+"/v1/bench/echo", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h1Client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("got %s; want 401", resp.Status)
	}
	if resp.Header.Get("WWW-Authenticate") == "" {
		return errors.New("401 without WWW-Authenticate")
	}
	return nil
}

// smokeEchoToken is smokeEcho over HTTP/1.1 with the valid token.
func smokeEchoToken(ctx context.Context, p *peer) error {
	return smokeEcho(ctx, &http.Client{Timeout: h1Client.Timeout, Transport: bearer{h1Client.Transport, policyToken}}, p)
}

// bearer adds "Authorization: Bearer <token>" to each request.
type bearer struct {
	rt    http.RoundTripper
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}
