package config

// Plugin is one entry of a plugins list: a map with exactly one key, the
// plugin's name, whose value holds the plugin's settings:
//
//	plugins:
//	  - rate-limiting:
//	      limit: 1000
//	      period: 3600
//	  - jwt-auth:
//	      secret: ${JWT_SECRET}
//
// Plugins run in a fixed phase order whatever their order in the list:
// authentication, authorization, then limits.
type Plugin struct {
	// JWTAuth authenticates callers by a signed JWT.
	JWTAuth *JWTAuth `yaml:"jwt-auth"`
	// KeyAuth authenticates callers by an API key of a consumer.
	KeyAuth *KeyAuth `yaml:"key-auth"`
	// RateLimiting allows at most Limit calls per Period per key.
	RateLimiting *RateLimiting `yaml:"rate-limiting"`
	// ConcurrencyLimit caps the calls in flight on a route.
	ConcurrencyLimit *ConcurrencyLimit `yaml:"concurrency-limit"`
	// CORS opens a route to browser origins (the keys of the top-level
	// cors block).
	CORS *CORS `yaml:"cors"`

	// Pos is where this entry is in the config file.
	Pos Pos `yaml:"-"`
}

// JWTAuth verifies a JSON Web Token sent as "Authorization: Bearer", or
// in Cookie when set (and, on the WebSocket bridge, as the
// rosetta.bearer.<token> subprotocol or the access_token query
// parameter). Exactly one of Secret, PublicKey and JWKSURI is set.
type JWTAuth struct {
	// Secret verifies HS256/384/512 tokens.
	Secret string `yaml:"secret"`
	// PublicKey is a PEM public key (RSA, ECDSA or Ed25519), inline or as
	// a file path relative to the config file; it verifies RS/PS/ES/EdDSA
	// tokens.
	PublicKey string `yaml:"public_key"`
	// JWKSURI is an https:// URL of a JSON Web Key Set (http:// only for
	// loopback hosts). Keys are fetched at start, refreshed every
	// JWKSRefresh and at once when a token names an unknown kid (at most
	// once per JWKSRefreshMin after that).
	JWKSURI string `yaml:"jwks_uri"`
	// JWKSRefresh is how often the key set is refetched. Default 1h.
	JWKSRefresh Duration `yaml:"jwks_refresh"`
	// Algorithms allow-lists the "alg" values accepted. Default: those the
	// key material implies (HS256/384/512 for a secret, the key type's
	// family for a public key, what the JWKS keys declare).
	Algorithms []string `yaml:"algorithms"`
	// Issuer, when set, must equal the "iss" claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set (a string or a list), must contain one of the
	// token's "aud" values.
	Audience StringList `yaml:"audience"`
	// ClockSkew is the tolerance on exp, nbf and iat. Default 30s.
	ClockSkew *Duration `yaml:"clock_skew"`
	// Scopes must all be granted by the token (a space-separated "scope"
	// claim or an "scp" array); missing ones → 403 / PERMISSION_DENIED.
	Scopes []string `yaml:"scopes"`
	// Cookie names a cookie read for the token when no Authorization
	// header carries one.
	Cookie string `yaml:"cookie"`
	// ClaimsToHeaders sends claims to the upstream as headers (gRPC
	// metadata), e.g. {sub: x-user-id}. The client's own fields of those
	// names are removed first.
	ClaimsToHeaders map[string]string `yaml:"claims_to_headers"`
}

// KeyAuth authenticates a call by an API key that belongs to one of the
// top-level consumers.
type KeyAuth struct {
	// Header is the request header carrying the key. Default "apikey".
	Header string `yaml:"header"`
	// Query, when set, is a query parameter also read for the key.
	Query string `yaml:"query"`
}

// RateLimiting allows at most Limit calls per Period for each key,
// smoothly (GCRA: never 2×Limit across a boundary).
type RateLimiting struct {
	// Limit is the number of calls allowed per Period. Required.
	Limit int64 `yaml:"limit"`
	// Period is seconds as an integer (3600) or a duration ("1h").
	// Required.
	Period Period `yaml:"period"`
	// Key is what is counted: consumer (default when the call is
	// authenticated), ip (default otherwise), route, header:<name> or
	// claim:<name>.
	Key string `yaml:"key"`
	// Policy is local (default: in memory, per instance) or redis (shared
	// by every instance; needs the top-level redis block).
	Policy string `yaml:"policy"`
	// Fail is what happens while Redis is unreachable: open (default:
	// allow, logged once per outage) or closed (503 / UNAVAILABLE).
	Fail string `yaml:"fail"`
	// PerMessage also counts each WebSocket message; an over-limit message
	// closes the socket with 4008.
	PerMessage bool `yaml:"per_message"`
}

// ConcurrencyLimit caps the calls in flight on a route (a stream counts
// until it ends); over it → 503 / UNAVAILABLE at once.
type ConcurrencyLimit struct {
	// Max is the number of calls allowed in flight. Required.
	Max int `yaml:"max"`
}

// Consumer is a known caller of the gateway. Rate limits count by the
// consumer, which is forwarded to upstreams as x-consumer.
type Consumer struct {
	// Name identifies the consumer. Required, unique.
	Name string `yaml:"name"`
	// Keys are the consumer's API keys (for key-auth). They are kept only
	// as hashes.
	Keys []string `yaml:"keys"`
	// JWTSubject makes a JWT whose "sub" is this value this consumer.
	JWTSubject string `yaml:"jwt_subject"`

	// Pos is where this consumer is in the config file.
	Pos Pos `yaml:"-"`
}

// Redis is the shared store of rate limits (policy: redis).
type Redis struct {
	// Address is host:port of the Redis server.
	Address string `yaml:"address"`
	// Username and Password authenticate (Redis 6 ACLs, or Password
	// alone for requirepass).
	Username string `yaml:"username"`
	// Password is the Redis password.
	Password string `yaml:"password"`
	// DB is the database number. Default 0.
	DB int `yaml:"db"`
	// TLS enables TLS to Redis.
	TLS *ClientTLS `yaml:"tls"`
}

// Period is a rate-limit period: an integer number of seconds (3600) or
// a duration string ("1h", "90s").
type Period Duration

// StringList is a string or a list of strings.
type StringList []string
