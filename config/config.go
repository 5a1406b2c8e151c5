package config

import (
	"strconv"
	"time"
)

// Config is the whole gateway configuration, as read from rosetta.yaml.
// Field comments are the user reference.
type Config struct {
	// Listeners are the addresses the gateway serves on. At least one.
	Listeners []Listener `yaml:"listeners"`
	// Upstreams are the backends, keyed by a name that routes refer to.
	Upstreams map[string]*Upstream `yaml:"upstreams"`
	// Transcoding tunes REST/JSON ⇄ gRPC transcoding for every route.
	Transcoding Transcoding `yaml:"transcoding"`
	// HTTP holds HTTP rules for methods whose .proto has no google.api.http
	// annotation, in the gRPC API service-config form.
	HTTP HTTPConfig `yaml:"http"`
	// Routes tune groups of methods (selected by name) or paths: timeout and
	// JSON options per route.
	Routes []Route `yaml:"routes"`
	// WebSocket tunes the WebSocket bridge to gRPC methods.
	WebSocket WebSocket `yaml:"websocket"`
	// CORS allows browser clients from other origins (optional).
	CORS *CORS `yaml:"cors"`
	// Admin is the operator endpoint (optional).
	Admin *Admin `yaml:"admin"`
	// Tracing exports a span per call over OTLP (optional; off without
	// it). See [Tracing].
	Tracing *Tracing `yaml:"tracing"`
	// OpenAPI also serves the generated OpenAPI document on the public
	// listeners (optional; the admin listener always serves it). See
	// [OpenAPI].
	OpenAPI *OpenAPI `yaml:"openapi"`
	// Plugins apply to every route, unless a route lists a plugin of the
	// same name itself (the route's wins), and to calls no route covers.
	// A top-level plugin applies to a route as if the route listed it (a
	// top-level concurrency-limit caps each route on its own).
	Plugins []Plugin `yaml:"plugins"`
	// Consumers are the known callers: API keys and JWT subjects.
	Consumers []Consumer `yaml:"consumers"`
	// Redis is the shared store for rate limits with policy: redis and
	// for proxy-cache with store: redis.
	Redis *Redis `yaml:"redis"`
	// TrustedProxies are CIDRs (or addresses) of proxies whose
	// X-Forwarded-For is believed when a policy needs the client's IP.
	// Default: none (the connection's address is the client's).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Plans are the consumers' plans: quotas and rates (see [Plan]).
	Plans map[string]*Plan `yaml:"plans"`
	// Portal serves the developer portal (optional; see [Portal]).
	Portal *Portal `yaml:"portal"`
	// Analytics tunes call analytics (optional; see [Analytics]).
	Analytics *Analytics `yaml:"analytics"`
	// RequireAuth makes `rosetta lint` report every route that no
	// authentication plugin covers. Default false.
	RequireAuth bool `yaml:"require_auth"`

	// File is the path the config was read from ("" for flags-only
	// configs). Relative paths in the config are resolved against its
	// directory.
	File string `yaml:"-"`
	// Warnings are the settings of the file that are accepted but have no
	// effect, such as hash_on without balance: ring_hash, sorted by
	// position. Set by Parse; print them as "warning: " + d.String().
	Warnings Diagnostics `yaml:"-"`
}

// Listener is one address the gateway accepts connections on, serving
// HTTP/1.1 and cleartext HTTP/2 (h2c) on the same port. Sizes are byte
// counts, durations are strings such as "10s".
type Listener struct {
	// Address is host:port, for example "127.0.0.1:8080" or ":8080".
	Address string `yaml:"address"`
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included. Default 0
	// (none: streaming bodies may last).
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response. Default 0 (none: streams may
	// last); per-route timeouts bound unary calls.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps the size of a request's header fields, in bytes:
	// each field counts its name, its value and 32 (as HTTP/2 and HTTP/3
	// count a field list); the request line or pseudo-header fields do not
	// count (see MaxURIBytes). Larger gets 431 on every HTTP version,
	// before any plugin. Default 61440 (60 KiB, as Envoy); minimum 1024.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxHeaderCount caps the number of a request's header fields: on
	// HTTP/1.1 every field line, Host included; on HTTP/2 and HTTP/3 the
	// regular fields, split cookie fields counting as one. More gets 431
	// on every HTTP version, before any plugin. Default 100 (as Envoy);
	// minimum 16.
	MaxHeaderCount int `yaml:"max_header_count"`
	// MaxURIBytes caps the request-target (HTTP/1.1) or :path (HTTP/2,
	// HTTP/3), query included, in bytes. Longer gets 414 on every HTTP
	// version, before any plugin. Default 8192; minimum 256.
	MaxURIBytes int `yaml:"max_uri_bytes"`
	// MaxBodyBytes caps a request body; larger bodies get 413. Default 4 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// TLS terminates TLS on this listener (HTTP/1.1 and HTTP/2 by ALPN).
	// Omitted: cleartext HTTP/1.1 and h2c.
	TLS *ServerTLS `yaml:"tls"`
	// HTTP3 also serves HTTP/3 (QUIC) on the same port over UDP and
	// advertises it with Alt-Svc. Requires TLS.
	HTTP3 bool `yaml:"http3"`
	// MaxConcurrentStreams caps concurrent HTTP/2 and HTTP/3 streams per
	// connection. Default 250.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
}

// ServerTLS configures TLS termination on a listener.
type ServerTLS struct {
	// Cert and Key are PEM files of the default certificate. Reloaded when
	// the files change.
	Cert string `yaml:"cert"`
	// Key is the PEM private key of Cert.
	Key string `yaml:"key"`
	// Certificates are more certificates, chosen by the SNI name the client
	// asks for (matched against each certificate's DNS names).
	Certificates []CertKey `yaml:"certificates"`
	// ClientCA is a PEM file of CAs that client certificates must chain to.
	ClientCA string `yaml:"client_ca"`
	// ClientAuth is "none" (default), "request" (verify a certificate if
	// sent) or "require" (a valid certificate is required). Needs ClientCA
	// unless "none".
	ClientAuth string `yaml:"client_auth"`
	// SelfSigned generates a throwaway self-signed certificate at start,
	// for local use only. Exclusive with Cert/Key.
	SelfSigned bool `yaml:"self_signed"`
}

// CertKey is one certificate and its key, as PEM files.
type CertKey struct {
	// Cert is a PEM certificate chain file.
	Cert string `yaml:"cert"`
	// Key is the PEM private key file.
	Key string `yaml:"key"`
}

// CORS configures cross-origin access for browser clients (gRPC-Web,
// Connect, REST).
type CORS struct {
	// AllowedOrigins lists origins allowed to call, e.g.
	// "https://app.example.com"; "*" allows any.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowCredentials lets browsers send cookies and credentials.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long browsers may cache a preflight answer. Default 2h.
	MaxAge Duration `yaml:"max_age"`
}

// WebSocket tunes the WebSocket bridge.
type WebSocket struct {
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may open WebSockets, "*" for any. Default: same origin only (Origin's
	// host equals the request's Host).
	AllowedOrigins []string `yaml:"allowed_origins"`
	// PingInterval is how often the gateway pings an idle client. Default
	// 30s; "0s" disables pings.
	PingInterval *Duration `yaml:"ping_interval"`
	// IdleTimeout closes a WebSocket with no message either way for this
	// long. Default 5m; "0s" disables it.
	IdleTimeout *Duration `yaml:"idle_timeout"`
	// MaxMessageBytes caps one client message; larger ones close the
	// socket with 1009. Default 1 MiB.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
}

// Upstream is one backend cluster.
type Upstream struct {
	// Kind is "grpc" (default) or "http", for plain HTTP backends.
	Kind string `yaml:"kind"`
	// Targets are the backend's addresses, at least one, each a
	// "host:port" string or a mapping {address: "host:port", weight: 3}
	// (see [Target]). Hosts are IP addresses or DNS names; a name is
	// re-resolved every DNSRefresh. Each call is balanced over them by
	// Balance. Example: ["10.0.0.5:9000", {address: "10.0.0.7:9000",
	// weight: 3}]. Normalized output shows every target as a mapping.
	Targets []Target `yaml:"targets"`
	// Balance is how each call (not each connection) picks a target:
	// round_robin (default: in turn, by weight), least_request (of two
	// targets drawn at random by weight, the one with the higher weight /
	// (calls in flight + 1), as Envoy), ring_hash (consistent hashing on
	// HashOn, so that calls with the same key keep reaching the same
	// target while the target set is stable) or random (by weight).
	// Every algorithm honours Target.Weight.
	Balance string `yaml:"balance"`
	// HashOn is the key ring_hash hashes (other balances ignore it, with
	// a warning): header:<name> (a request header, e.g. header:x-user-id),
	// claim:<name> (a claim of the caller's JWT, e.g. claim:sub),
	// consumer (the authenticated consumer) or ip (the address of the
	// client's connection; X-Forwarded-For is not read). Default ip with
	// ring_hash. A call that lacks the value (no such header or claim, an
	// anonymous caller) hashes on its ip.
	HashOn string `yaml:"hash_on"`
	// DNSRefresh is how often targets given as DNS names are resolved
	// again; every address a name resolves to becomes a target of the
	// name's weight. Default 30s; at least 1s. IP targets are not
	// resolved.
	DNSRefresh Duration `yaml:"dns_refresh"`
	// TLS enables TLS to the targets; omitted means plaintext (h2c for
	// gRPC upstreams, HTTP/1.1 for http upstreams).
	TLS *ClientTLS `yaml:"tls"`
	// Descriptors says where this upstream's descriptors come from.
	// Default: reflection.
	Descriptors Descriptors `yaml:"descriptors"`
	// Timeout is the default deadline of a call to this upstream. Default 30s.
	Timeout Duration `yaml:"timeout"`
	// MaxMessageBytes caps a message received from this upstream. Default 4 MiB.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxRequestMessageBytes caps a message a client sends to this
	// upstream through the gateway. Default: MaxMessageBytes.
	MaxRequestMessageBytes int `yaml:"max_request_message_bytes"`
	// HealthCheck probes every target in the background and stops
	// sending calls to those that fail it. Omitted: no active checks (a
	// target whose connection fails is still avoided until it reconnects).
	HealthCheck *HealthCheck `yaml:"health_check"`
	// OutlierDetection ejects, for a while, targets whose calls keep
	// failing. Omitted: no ejection; write outlier_detection: {} for the
	// defaults.
	OutlierDetection *OutlierDetection `yaml:"outlier_detection"`
	// Retry retries failed calls to this upstream on another target.
	// Omitted: no retries (one attempt), unless a route sets retry.
	// Write retry: {} for the defaults (3 attempts).
	Retry *Retry `yaml:"retry"`
	// CircuitBreaker caps the calls in flight to this upstream and the
	// calls waiting for a connection; over either cap, calls fail at once
	// with 503 / UNAVAILABLE instead of piling up. Omitted: no caps.
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker"`

	// Name is the key of this upstream in Config.Upstreams; it matches
	// [a-zA-Z0-9_.-]+. Set by Parse and FromFlags.
	Name string `yaml:"-"`
}

// ClientTLS configures TLS from the gateway to an upstream.
type ClientTLS struct {
	// CA is a PEM file of roots to trust; empty uses the system roots.
	// Relative paths are resolved against the config file's directory, as
	// are Cert and Key.
	CA string `yaml:"ca"`
	// Cert is a PEM client certificate for mTLS; set it together with Key.
	Cert string `yaml:"cert"`
	// Key is the PEM private key of Cert.
	Key string `yaml:"key"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks (testing only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Descriptors lists the descriptor sources of one upstream. When none is
// set, reflection is used.
type Descriptors struct {
	// Reflection loads descriptors by gRPC server reflection from every
	// target (v1, falling back to v1alpha). Default true when Files and
	// Protos are empty.
	Reflection *bool `yaml:"reflection"`
	// RefreshInterval reloads reflection descriptors this often. Default
	// 60s; "0s" disables periodic refresh.
	RefreshInterval *Duration `yaml:"refresh_interval"`
	// Files are descriptor-set files (buf build -o x.binpb, or protoc
	// --include_imports --descriptor_set_out). Relative paths are resolved
	// against the config file's directory, as are ImportPaths.
	Files []string `yaml:"files"`
	// Protos are .proto source files compiled at start, named relative to
	// ImportPaths as for protoc (e.g. "library/v1/library.proto"); without
	// ImportPaths, relative to the config file's directory.
	Protos []string `yaml:"protos"`
	// ImportPaths are the directories .proto imports are resolved against.
	ImportPaths []string `yaml:"import_paths"`
	// Services restricts this upstream to these fully-qualified service
	// names. Default: every service found (for files, every service they
	// define; for reflection, every service listed).
	Services []string `yaml:"services"`
}

// Transcoding holds gateway-wide REST/JSON options.
type Transcoding struct {
	// DefaultBindings serves every method without an HTTP rule as
	// POST /package.Service/Method with body "*". Default true.
	DefaultBindings *bool `yaml:"default_bindings"`
	// DefaultBound are selectors (as a route's: "pkg.Service.Method",
	// "pkg.Service.*", "*") of methods served by their default binding
	// on purpose: `rosetta lint` does not report them for having no HTTP
	// rule.
	DefaultBound []string `yaml:"default_bound"`
	// JSON controls JSON marshalling.
	JSON JSONOptions `yaml:"json"`
	// StrictQuery rejects unknown query parameters with 400. Default false
	// (ignored, as grpc-gateway does).
	StrictQuery bool `yaml:"strict_query"`
	// ForwardHeaders lists request headers (case-insensitive) forwarded to
	// the backend as metadata, in addition to Authorization and
	// Grpc-Metadata-* headers. A trailing "*" matches a prefix.
	ForwardHeaders []string `yaml:"forward_headers"`
}

// JSONOptions are the proto3 JSON mapping choices. Pointers distinguish
// "unset" (inherit) from false in per-route overrides.
type JSONOptions struct {
	// UseProtoNames writes field names as in the .proto (snake_case)
	// instead of lowerCamelCase. Default false.
	UseProtoNames *bool `yaml:"use_proto_names"`
	// EmitUnpopulated writes fields with default values. Default false.
	EmitUnpopulated *bool `yaml:"emit_unpopulated"`
	// UseEnumNumbers writes enums as numbers. Default false.
	UseEnumNumbers *bool `yaml:"use_enum_numbers"`
	// Int64AsNumbers writes 64-bit integers as JSON numbers instead of
	// strings. Default false; a client may also ask per request.
	Int64AsNumbers *bool `yaml:"int64_as_numbers"`
	// DiscardUnknown ignores unknown fields in request bodies instead of
	// answering 400. Default false.
	DiscardUnknown *bool `yaml:"discard_unknown"`
}

// HTTPConfig is the gRPC API service-config "http" section.
type HTTPConfig struct {
	// Rules bind methods to HTTP verbs and paths.
	Rules []HTTPRule `yaml:"rules"`
}

// HTTPRule mirrors google.api.HttpRule. Exactly one of Get, Put, Post,
// Delete, Patch or Custom is set.
type HTTPRule struct {
	// Selector is the method's full name, e.g. "library.v1.Library.GetBook".
	// Required on a rule, not allowed in its additional bindings (they
	// inherit it).
	Selector string `yaml:"selector"`
	// Get is a path template served for GET, e.g. "/v1/{name=shelves/*}".
	Get string `yaml:"get"`
	// Put is a path template served for PUT.
	Put string `yaml:"put"`
	// Post is a path template served for POST.
	Post string `yaml:"post"`
	// Delete is a path template served for DELETE.
	Delete string `yaml:"delete"`
	// Patch is a path template served for PATCH.
	Patch string `yaml:"patch"`
	// Custom binds another HTTP method, e.g. HEAD.
	Custom *CustomRule `yaml:"custom"`
	// Body names the request field bound to the HTTP body: "*" for the
	// whole message, a field name, or empty for no body.
	Body string `yaml:"body"`
	// ResponseBody names the response field written as the HTTP body;
	// empty writes the whole response message.
	ResponseBody string `yaml:"response_body"`
	// AdditionalBindings are more verb/path pairs for the same method.
	// They cannot have additional bindings themselves.
	AdditionalBindings []HTTPRule `yaml:"additional_bindings"`

	// Pos is where this rule is in the config file, for error messages.
	Pos Pos `yaml:"-"`
}

// CustomRule is a custom HTTP verb binding.
type CustomRule struct {
	// Kind is the HTTP method, e.g. "HEAD" or "OPTIONS".
	Kind string `yaml:"kind"`
	// Path is the path template, starting with "/".
	Path string `yaml:"path"`
}

// Route tunes the methods it selects.
type Route struct {
	// Selector picks methods by full name; a trailing ".*" selects every
	// method of a service or package, e.g. "library.v1.Library.*", and "*"
	// every method. A method takes the plugins of the first route (in
	// file order) whose selector matches it. Either Selector or URI is
	// set.
	Selector string `yaml:"selector"`
	// URI routes plain HTTP requests to an upstream of kind http: an exact
	// path ("/health") or a prefix ending in "/*" ("/users/*").
	URI string `yaml:"uri"`
	// Service is the upstream (kind http) a URI route proxies to.
	Service string `yaml:"service"`
	// Methods restricts a URI route to these HTTP methods. Default: all.
	Methods []string `yaml:"methods"`
	// StripPrefix removes the URI prefix (before "/*") from the path sent
	// upstream.
	StripPrefix bool `yaml:"strip_prefix"`
	// HostHeader sets the Host header sent upstream. Default: the client's
	// Host.
	HostHeader string `yaml:"host_header"`
	// Timeout is the deadline for calls on this route; a client's
	// Grpc-Timeout header may shorten it, never extend it. For URI routes
	// it bounds the wait for the response headers (a streamed body may
	// last longer). Default 0: the upstream's timeout applies.
	Timeout Duration `yaml:"timeout"`
	// Idempotent declares that the methods of this selector route may be
	// run twice, so that a retry may resend a call the backend may already
	// have received (after reset, unavailable, resource-exhausted,
	// deadline-exceeded, or once the request was on its way). Without it
	// such calls are retried only when their descriptor declares
	// idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS; connect-failure and
	// refused-stream before the request left are retried for every call.
	// Selector routes only: a uri route resends requests whose HTTP method
	// is idempotent (GET, HEAD, OPTIONS, PUT, DELETE). Default false.
	Idempotent bool `yaml:"idempotent"`
	// Retry overrides the retry settings of the upstream for the calls of
	// this route, field by field: fields left out inherit the upstream's
	// retry, or the retry defaults when the upstream has none (so a route
	// can retry calls to an upstream that does not). budget is the
	// upstream's only. Example: retry: {attempts: 2}. See
	// [Route.EffectiveRetry].
	Retry *Retry `yaml:"retry"`
	// JSON overrides the gateway-wide JSON options for this route.
	JSON JSONOptions `yaml:"json"`
	// Plugins are the policies of this route, run in phase order
	// (authentication, authorization, limits, cache) on every protocol that
	// reaches it.
	Plugins []Plugin `yaml:"plugins"`
	// Deprecated marks the route deprecated (see [Deprecation]).
	Deprecated *Deprecation `yaml:"deprecated"`
	// Retired marks the route retired: every call is refused (see
	// [Retirement]).
	Retired *Retirement `yaml:"retired"`

	// Pos is where this route is in the config file.
	Pos Pos `yaml:"-"`
}

// Admin is the operator endpoint.
type Admin struct {
	// Address is host:port for the admin listener, e.g. "127.0.0.1:9901".
	// It must differ from every listener address. Without a Token it must
	// be a loopback address.
	Address string `yaml:"address"`
	// Token is the bearer token ("Authorization: Bearer <token>") every
	// admin path but /healthz and /readyz requires, e.g. ${ADMIN_TOKEN}.
	// Without one the admin listener binds only to loopback.
	Token string `yaml:"token" redact:"true"`
}

// OpenAPI serves the OpenAPI 3.1 document of the REST bindings on every
// listener, without a token, for clients and tools that read it from the
// API itself. Example:
//
//	openapi: { path: /openapi.json, title: Library API }
//
// A request may ask for one upstream's document with ?upstream=NAME.
type OpenAPI struct {
	// Path is where the listeners serve the document. Default
	// "/openapi.json". It takes precedence over a route with the same
	// path.
	Path string `yaml:"path"`
	// Title is the document's info.title. Default "Rosetta gateway".
	Title string `yaml:"title"`
	// Servers are the base URLs clients call
	// ("https://api.example.com"). Default: none (clients resolve paths
	// against the document's own URL).
	Servers []string `yaml:"servers"`
}

// Duration is a time.Duration written as a string such as "5s" or "1m30s".
// A bare number other than 0 is an error (the unit is required).
type Duration time.Duration

// Std returns d as a [time.Duration].
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like [time.Duration.String], e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText formats d like [Duration.String], so that encoding/json and
// similar encoders write durations as strings.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Pos is a position in a config file. Line and Col are 1-based; zero
// means unknown.
type Pos struct {
	// File is the config file name as given to Load or Parse.
	File string
	// Line is the line number.
	Line int
	// Col is the column, in bytes.
	Col int
}

// String formats p as "file:line:col", or as much of it as is known:
// "file:line", "file", "line:col" or "".
func (p Pos) String() string {
	s := p.File
	if p.Line > 0 {
		if s != "" {
			s += ":"
		}
		s += strconv.Itoa(p.Line)
		if p.Col > 0 {
			s += ":" + strconv.Itoa(p.Col)
		}
	}
	return s
}

// UseReflection reports whether descriptors are loaded by server
// reflection: Reflection when set, otherwise true exactly when no Files
// and no Protos are listed.
func (d Descriptors) UseReflection() bool {
	if d.Reflection != nil {
		return *d.Reflection
	}
	return len(d.Files) == 0 && len(d.Protos) == 0
}

// Refresh returns how often reflection descriptors are reloaded: the
// RefreshInterval when set, else the 60s default. Zero disables refresh.
func (d Descriptors) Refresh() time.Duration {
	if d.RefreshInterval != nil {
		return d.RefreshInterval.Std()
	}
	return defaultRefreshInterval
}

// DefaultBindingsEnabled reports whether methods without an HTTP rule are
// served as POST /package.Service/Method: DefaultBindings when set, else
// true.
func (t Transcoding) DefaultBindingsEnabled() bool {
	return t.DefaultBindings == nil || *t.DefaultBindings
}

// Merge returns o with every option that override sets replaced by
// override's value; options override leaves nil keep o's value. Use it to
// compute a route's effective options:
// cfg.Transcoding.JSON.Merge(route.JSON).
func (o JSONOptions) Merge(override JSONOptions) JSONOptions {
	pick := func(base, over *bool) *bool {
		if over != nil {
			return over
		}
		return base
	}
	return JSONOptions{
		UseProtoNames:   pick(o.UseProtoNames, override.UseProtoNames),
		EmitUnpopulated: pick(o.EmitUnpopulated, override.EmitUnpopulated),
		UseEnumNumbers:  pick(o.UseEnumNumbers, override.UseEnumNumbers),
		Int64AsNumbers:  pick(o.Int64AsNumbers, override.Int64AsNumbers),
		DiscardUnknown:  pick(o.DiscardUnknown, override.DiscardUnknown),
	}
}
