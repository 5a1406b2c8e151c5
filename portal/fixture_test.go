package portal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rosetta-gateway/rosetta/portal"
)

// Credentials the fixture knows.
const (
	fixtureKey   = "dev-key-alice"
	fixtureJWT   = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.sig"
	fixtureAdmin = "admin-secret"
)

// fixture is an in-memory portal.Source: a library API in two versions
// (v1 deprecated), a billing API whose v1 is retired, one consumer (alice)
// with a config key, usage rows and analytics series.
type fixture struct {
	mu        sync.Mutex
	selfKeys  []portal.Key // alice's self-service keys
	usageFrom time.Time
	usageTo   time.Time
	queries   []url.Values // Analytics queries, in order
}

func newFixture() *fixture {
	return &fixture{selfKeys: []portal.Key{{ID: "k-self", Masked: "rk_se…lf", Source: "self-service", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}}
}

var v1Deprecation = &portal.Lifecycle{Since: "2025-01-01", Sunset: "2026-06-30", Link: "#/api/library/v2", Message: "v2 pages its results."}

func libraryMethods(pkg string, deprecated *portal.Lifecycle) []portal.Method {
	svc := "/" + pkg + ".LibraryService/"
	return []portal.Method{
		{
			Name: "ListBooks", FullName: svc + "ListBooks", Kind: "unary",
			Description: "ListBooks lists the books of a shelf.\n\nThe order is by title.",
			HTTP:        []portal.Binding{{Method: "GET", Path: "/" + strings.TrimPrefix(pkg, "library.") + "/shelves/{shelf}/books"}},
			Auth:        []string{"key-auth"}, AuthHeader: "X-API-Key", AuthQuery: "apikey",
			RequestExample: json.RawMessage(`{"shelf":"0","pageSize":0}`),
			Deprecated:     deprecated,
		},
		{
			Name: "WatchBooks", FullName: svc + "WatchBooks", Kind: "server_stream",
			Description: "WatchBooks streams the books of a shelf, then every change.",
			HTTP:        []portal.Binding{{Method: "GET", Path: "/" + strings.TrimPrefix(pkg, "library.") + "/shelves/{shelf}/books:watch"}},
			Auth:        []string{"key-auth"}, AuthHeader: "X-API-Key", AuthQuery: "apikey",
			RequestExample: json.RawMessage(`{"shelf":"1"}`),
			Deprecated:     deprecated,
		},
		{
			Name: "Chat", FullName: svc + "Chat", Kind: "bidi_stream",
			Description: "Chat answers each message.",
			Auth:        []string{"key-auth", "jwt-auth"}, AuthHeader: "X-API-Key", AuthQuery: "apikey",
			RequestExample: json.RawMessage(`{"user":"","text":""}`),
			Deprecated:     deprecated,
		},
	}
}

func (f *fixture) Catalog() *portal.Catalog {
	return &portal.Catalog{
		Title: "Fixture APIs",
		APIs: []portal.API{
			{
				Name: "library", Title: "Library", Description: "Books and shelves.\n\nA small API to learn the gateway with.",
				Versions: []portal.Version{
					{Version: "v1", Service: "library.v1.LibraryService", Description: "The first library.", Upstream: "library", Deprecated: v1Deprecation, Methods: libraryMethods("library.v1", nil)},
					{Version: "v2", Service: "library.v2.LibraryService", Description: "The library with pages.", Upstream: "library", Methods: append(libraryMethods("library.v2", nil), portal.Method{
						Name: "Tail", FullName: "/library.v2.LibraryService/Tail", Kind: "server_stream",
						Description: "Tail streams the log of a shelf. It has no REST binding.",
						Auth:        []string{"key-auth"}, AuthQuery: "apikey", RequestExample: json.RawMessage(`{"shelf":"1"}`),
					})},
				},
			},
			{
				Name: "billing", Title: "Billing", Description: "Invoices.",
				Versions: []portal.Version{
					{Version: "v1", Service: "billing.v1.Billing", Upstream: "billing", Retired: &portal.Lifecycle{Sunset: "2024-12-31", Link: "#/api/billing/v2"}, Methods: []portal.Method{
						{Name: "GetInvoice", FullName: "/billing.v1.Billing/GetInvoice", Kind: "unary", Retired: &portal.Lifecycle{Sunset: "2024-12-31"}},
					}},
					{Version: "v2", Service: "billing.v2.Billing", Upstream: "billing", Methods: []portal.Method{
						{Name: "GetInvoice", FullName: "/billing.v2.Billing/GetInvoice", Kind: "unary", Auth: []string{"jwt-auth"},
							HTTP: []portal.Binding{{Method: "GET", Path: "/billing/v2/{name=invoices/*}"}}, RequestExample: json.RawMessage(`{"name":""}`)},
						{Name: "Upload", FullName: "/billing.v2.Billing/Upload", Kind: "client_stream", Auth: []string{"jwt-auth"},
							HTTP: []portal.Binding{{Method: "POST", Path: "/billing/v2/uploads", Body: "*"}}, RequestExample: json.RawMessage(`{"chunk":""}`)},
					}},
				},
			},
		},
	}
}

var pathVar = regexp.MustCompile(`\{([^}=]+)(=[^}]*)?\}`)

// OpenAPI builds a small OpenAPI 3.1 document from the catalog's bindings.
func (f *fixture) OpenAPI(service string) ([]byte, error) {
	for _, api := range f.Catalog().APIs {
		for _, v := range api.Versions {
			if v.Service != service {
				continue
			}
			paths := map[string]map[string]any{}
			for _, m := range v.Methods {
				for _, b := range m.HTTP {
					p := pathVar.ReplaceAllString(b.Path, "{$1}")
					var params []any
					for _, sm := range pathVar.FindAllStringSubmatch(b.Path, -1) {
						params = append(params, map[string]any{"name": sm[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
					}
					if paths[p] == nil {
						paths[p] = map[string]any{}
					}
					op := map[string]any{
						"operationId": m.Name,
						"summary":     m.Description,
						"tags":        []string{v.Service},
						"parameters":  params,
						"responses":   map[string]any{"200": map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}},
					}
					if b.Body != "" {
						op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
					}
					paths[p][strings.ToLower(b.Method)] = op
				}
			}
			return json.Marshal(map[string]any{
				"openapi": "3.1.0",
				"info":    map[string]any{"title": api.Title + " " + v.Version, "version": v.Version},
				"paths":   paths,
			})
		}
	}
	return nil, fmt.Errorf("unknown service %q", service)
}

func (f *fixture) consumer() *portal.Consumer {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := append([]portal.Key{{ID: "k-config", Masked: "dev-…lice", Source: "config"}}, f.selfKeys...)
	return &portal.Consumer{
		Name: "alice", Plan: "free", Keys: keys,
		Quota: &portal.Quota{Plan: "free", Limit: 1000, Used: 250, Remaining: 750, Period: "24h", ResetAt: time.Now().Add(5 * time.Hour).UTC().Truncate(time.Second)},
	}
}

func (f *fixture) SignIn(_ context.Context, cred portal.Credential) (*portal.Consumer, error) {
	switch {
	case cred.APIKey == fixtureKey, cred.JWT == fixtureJWT:
		return f.consumer(), nil
	case cred.APIKey != "":
		return nil, errors.New("unknown API key")
	}
	return nil, errors.New("invalid token")
}

func (f *fixture) Usage(_ context.Context, consumer string, from, to time.Time) (any, error) {
	f.mu.Lock()
	f.usageFrom, f.usageTo = from, to
	f.mu.Unlock()
	return map[string]any{
		"from": from, "to": to,
		"rows": []map[string]any{
			{"consumer": consumer, "api": "library", "method": "/library.v1.LibraryService/ListBooks", "status_class": "2xx", "calls": 120, "bytes_in": 2400, "bytes_out": 96000},
			{"consumer": consumer, "api": "library", "method": "/library.v1.LibraryService/ListBooks", "status_class": "4xx", "calls": 7, "bytes_in": 140, "bytes_out": 700},
			{"consumer": consumer, "api": "library", "method": "/library.v2.LibraryService/WatchBooks", "status_class": "2xx", "calls": 30, "bytes_in": 300},
			{"consumer": consumer, "api": "billing", "method": "/billing.v2.Billing/GetInvoice", "status_class": "5xx", "calls": "2"},
		},
	}, nil
}

var groupings = []string{"api", "route", "method", "protocol", "consumer", "status_class"}

// Analytics answers with one series per value of the grouped labels over
// 12 steps ending now; group_by "boom" fails without a sentinel.
func (f *fixture) Analytics(_ context.Context, q url.Values) (any, error) {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	group := q.Get("group_by")
	if group == "boom" {
		return nil, errors.New("analytics store: connection refused")
	}
	var keys []string
	for _, g := range strings.Split(group, ",") {
		if !slices.Contains(groupings, g) {
			return nil, fmt.Errorf("group_by %q: %w", g, portal.ErrInvalid)
		}
		keys = append(keys, g)
	}
	values := map[string][]string{
		"api":          {"library", "billing"},
		"route":        {"library-v1", "library-v2"},
		"method":       {"/library.v1.LibraryService/ListBooks", "/library.v2.LibraryService/ListBooks"},
		"protocol":     {"rest", "grpc", "websocket"},
		"consumer":     {"alice", "bob"},
		"status_class": {"2xx", "4xx"},
	}
	if ms := q["method"]; len(ms) > 0 {
		values["method"] = ms
	}
	combos := []map[string]string{{}}
	for _, k := range keys {
		var next []map[string]string
		for _, c := range combos {
			for _, v := range values[k] {
				n := map[string]string{k: v}
				for kk, vv := range c {
					n[kk] = vv
				}
				next = append(next, n)
			}
		}
		combos = next
	}
	to := time.Now().UTC().Truncate(time.Hour)
	from := to.Add(-12 * time.Hour)
	var series []any
	for i, labels := range combos {
		var points []any
		total := 0
		for s := range 12 {
			calls := 10*(i+1) + s*3
			total += calls
			points = append(points, map[string]any{
				"t": from.Add(time.Duration(s+1) * time.Hour).Unix(), "calls": calls, "errors": s % 3,
				"bytes_in": calls * 100, "bytes_out": calls * 900, "p50": 4.5 + float64(i), "p95": 20 + float64(s), "p99": 55.5,
			})
		}
		series = append(series, map[string]any{
			"labels": labels, "points": points,
			"totals": map[string]any{"calls": total, "errors": 44, "bytes_in": total * 100, "bytes_out": total * 900, "p50": 4.5, "p95": 25, "p99": 55.5},
		})
	}
	return map[string]any{"from": from, "to": to, "step": "1h", "series": series}, nil
}

func (f *fixture) CreateKey(_ context.Context, consumer string) (portal.Key, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := portal.Key{ID: fmt.Sprintf("k-new%d", len(f.selfKeys)), Masked: "rk_ne…w1", Source: "self-service", Created: time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)}
	f.selfKeys = append(f.selfKeys, k)
	return k, "rk_new_secret_" + consumer, nil
}

func (f *fixture) RevokeKey(_ context.Context, consumer, id string) error {
	if id == "k-config" {
		return fmt.Errorf("key %q comes from the config: %w", id, portal.ErrForbidden)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, k := range f.selfKeys {
		if k.ID == id {
			f.selfKeys = slices.Delete(f.selfKeys, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("key %q: %w", id, portal.ErrNotFound)
}

func (f *fixture) AdminAuthorized(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+fixtureAdmin
}

var _ portal.Source = (*fixture)(nil)
