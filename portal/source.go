package portal

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// Source is what the gateway gives the portal: the catalog, documents,
// credential checks, usage, analytics and key management. internal/gateway
// implements it over its current snapshot, its consumers and its analytics
// store.
//
// Every method may be called concurrently, from the goroutines serving
// portal requests. Catalog and AdminAuthorized must not block on I/O; the
// others may, and must return when ctx is done.
//
// Errors are mapped to HTTP statuses as each method says; for the methods
// that do not say, an error wrapping [ErrInvalid] is a 400, [ErrForbidden]
// a 403 and [ErrNotFound] a 404, all with err.Error() as the message, and
// any other error is a 500 whose message is not shown to the client (it is
// logged with an error ID that the answer carries).
type Source interface {
	// Catalog returns every API the gateway serves, as of now. The
	// portal does not modify the result.
	Catalog() *Catalog
	// OpenAPI returns the OpenAPI 3.1 JSON document of one service
	// (a Version.Service such as "library.v1.LibraryService"). Any error
	// answers 404 with err.Error() as the message.
	OpenAPI(service string) ([]byte, error)
	// SignIn checks a credential and returns its consumer. Any error
	// answers 401 with err.Error() as the message, so it must not say
	// more than the client may know ("unknown API key", "token expired").
	SignIn(ctx context.Context, cred Credential) (*Consumer, error)
	// Usage returns the calls of one consumer between from and to, as a
	// JSON-encodable value: {"from", "to", "rows": [{"consumer", "api",
	// "method", "status_class", "calls", "bytes_in", "bytes_out"}]}.
	Usage(ctx context.Context, consumer string, from, to time.Time) (any, error)
	// Analytics answers an operator's query, passed through from the
	// portal's query string (window, group_by and filters), as a
	// JSON-encodable value: {"from", "to", "step", "series": [{"labels",
	// "points": [{"t", "calls", "errors", "bytes_in", "bytes_out", "p50",
	// "p95", "p99"}], "totals": {...}}]}, latencies in milliseconds.
	Analytics(ctx context.Context, q url.Values) (any, error)
	// CreateKey creates a self-service key for consumer and returns its
	// description and its secret, which the portal shows once.
	CreateKey(ctx context.Context, consumer string) (Key, string, error)
	// RevokeKey revokes the consumer's key id. A key that is not the
	// consumer's is [ErrNotFound]; one the consumer may not revoke (a
	// config key) is [ErrForbidden].
	RevokeKey(ctx context.Context, consumer, id string) error
	// AdminAuthorized reports whether r carries the admin token (the
	// portal's UI sends it as "Authorization: Bearer <token>").
	AdminAuthorized(r *http.Request) bool
}

// Errors a [Source] wraps to choose the status of its answer.
var (
	// ErrInvalid marks a bad request (400), such as an unknown group_by.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden marks a request the signed-in consumer may not make (403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound marks a request for something that does not exist (404).
	ErrNotFound = errors.New("not found")
)

// Credential is what a developer signs in with: one of an API key or a
// JWT.
type Credential struct {
	// APIKey is a key-auth key, sent by the UI in the X-API-Key header.
	APIKey string `json:"api_key,omitempty"`
	// JWT is a bearer token, sent by the UI as "Authorization: Bearer".
	JWT string `json:"jwt,omitempty"`
}

// Catalog lists every API the gateway serves.
type Catalog struct {
	// Title names the portal, e.g. "Acme APIs".
	Title string `json:"title"`
	// APIs are the APIs, in the order the portal shows them.
	APIs []API `json:"apis"`
}

// API is one family of services (one upstream, or one proto package
// without its version), such as "library" with versions v1 and v2.
type API struct {
	// Name identifies the API in URLs (#/api/<name>), e.g. "library".
	Name string `json:"name"`
	// Title is the display name, e.g. "Library".
	Title string `json:"title"`
	// Description is plain text from the proto comments; blank lines
	// separate paragraphs.
	Description string `json:"description"`
	// Versions are shown side by side, oldest first.
	Versions []Version `json:"versions"`
}

// Version is one version of an API: one gRPC service.
type Version struct {
	// Version is the label, e.g. "v1".
	Version string `json:"version"`
	// Service is the full service name, e.g. "library.v1.LibraryService";
	// its OpenAPI document is at api/openapi/<Service>.
	Service string `json:"service"`
	// Description is plain text from the service's proto comment.
	Description string `json:"description"`
	// Upstream names the upstream serving the version.
	Upstream string `json:"upstream"`
	// Deprecated is set when the whole version is deprecated.
	Deprecated *Lifecycle `json:"deprecated,omitempty"`
	// Retired is set when the version no longer answers.
	Retired *Lifecycle `json:"retired,omitempty"`
	// Methods are the service's methods in declaration order.
	Methods []Method `json:"methods"`
}

// Method is one RPC of a [Version].
type Method struct {
	// Name is the short name, e.g. "ListBooks".
	Name string `json:"name"`
	// FullName is the gRPC path, e.g. "/library.v1.LibraryService/ListBooks".
	FullName string `json:"full_name"`
	// Description is plain text from the method's proto comment.
	Description string `json:"description"`
	// Kind is one of unary, server_stream, client_stream, bidi_stream.
	Kind string `json:"kind"`
	// HTTP are the method's REST bindings (google.api.http), if any.
	HTTP []Binding `json:"http,omitempty"`
	// Auth names the authentication plugins the method's route runs,
	// e.g. ["key-auth"] or ["jwt-auth"]; empty when anonymous calls pass.
	Auth []string `json:"auth,omitempty"`
	// AuthOptional is set when calls without a credential pass
	// anonymously (key-auth with optional: true).
	AuthOptional bool `json:"auth_optional,omitempty"`
	// AuthHeader is key-auth's header (default X-API-Key).
	AuthHeader string `json:"auth_header,omitempty"`
	// AuthQuery is key-auth's query parameter, empty when key-auth reads
	// no query parameter (then a browser WebSocket cannot send a key).
	AuthQuery string `json:"auth_query,omitempty"`
	// RequestExample is a JSON skeleton of the request message.
	RequestExample json.RawMessage `json:"request_example,omitempty"`
	// Deprecated is set when the method is deprecated.
	Deprecated *Lifecycle `json:"deprecated,omitempty"`
	// Retired is set when the method no longer answers.
	Retired *Lifecycle `json:"retired,omitempty"`
}

// Binding is one REST binding of a [Method].
type Binding struct {
	// Method is the HTTP method, e.g. "GET".
	Method string `json:"method"`
	// Path is the path template, e.g. "/v1/{parent=shelves/*}/books".
	Path string `json:"path"`
	// Body is the rule's body: "*", a field name, or empty.
	Body string `json:"body,omitempty"`
}

// Lifecycle says when and why a version or method was deprecated or
// retired.
type Lifecycle struct {
	// Since is the date it took effect (YYYY-MM-DD).
	Since string `json:"since,omitempty"`
	// Sunset is the date it stops (or stopped) answering (YYYY-MM-DD).
	Sunset string `json:"sunset,omitempty"`
	// Link points at the successor or the migration guide: a URL, or a
	// portal route such as "#/api/library".
	Link string `json:"link,omitempty"`
	// Message is a short note for developers.
	Message string `json:"message,omitempty"`
}

// Consumer is a signed-in developer.
type Consumer struct {
	// Name is the consumer's name in the gateway's config.
	Name string `json:"name"`
	// Plan names the consumer's plan, e.g. "free".
	Plan string `json:"plan,omitempty"`
	// Keys are the consumer's API keys, masked.
	Keys []Key `json:"keys"`
	// Quota is the consumer's quota, nil when unlimited.
	Quota *Quota `json:"quota,omitempty"`
}

// Key describes an API key without its secret.
type Key struct {
	// ID identifies the key (for DELETE api/me/keys/{id}).
	ID string `json:"id"`
	// Masked shows the key's first and last characters, e.g. "rk_3f…9a".
	Masked string `json:"masked"`
	// Source is "config" or "self-service"; only self-service keys can
	// be revoked from the portal.
	Source string `json:"source"`
	// Created is when the key was created (zero for config keys).
	Created time.Time `json:"created,omitzero"`
}

// Quota is a consumer's call quota in the current period.
type Quota struct {
	// Plan names the plan the quota comes from.
	Plan string `json:"plan,omitempty"`
	// Limit is the number of calls allowed per period.
	Limit int64 `json:"limit"`
	// Used is the number of calls made in the current period.
	Used int64 `json:"used"`
	// Remaining is Limit-Used, never negative.
	Remaining int64 `json:"remaining"`
	// Period is the period's length, e.g. "1h" or "30d".
	Period string `json:"period,omitempty"`
	// ResetAt is when the current period ends.
	ResetAt time.Time `json:"reset_at,omitzero"`
}
