package keyauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/policy"
	"github.com/rosetta-gateway/rosetta/policy/keystore"
)

func init() {
	policy.Register(config.PluginKeyAuth, func(env policy.Env, spec config.Plugin) (policy.Plugin, error) {
		if spec.KeyAuth == nil {
			return nil, errors.New("no key-auth settings")
		}
		var consumers []config.Consumer
		var store *keystore.Store
		if env.Config != nil {
			consumers = env.Config.Consumers
			if p := env.Config.Portal; p != nil && p.SelfService && env.Shared != nil {
				s, err := keystore.Shared(env.Shared, env.Config)
				if err != nil {
					return nil, err
				}
				store = s
			}
		}
		return NewWithStore(*spec.KeyAuth, consumers, store)
	})
}

// Plugin is a configured key-auth. It is immutable and safe for
// concurrent use.
type Plugin struct {
	header  string // lower case
	query   string
	missing string
	keys    map[[sha256.Size]byte]consumer
	// store holds the self-service keys (nil: none), asked for keys that
	// the config does not list.
	store *keystore.Store
	// optional lets calls without a key pass anonymously.
	optional bool
}

// consumer is who a key hash belongs to.
type consumer struct {
	hash [sha256.Size]byte
	name string
}

// New returns a key-auth plugin for cfg that accepts the keys of
// consumers. An unset header is "apikey". It fails when no consumer has a
// key or two consumers share one.
func New(cfg config.KeyAuth, consumers []config.Consumer) (*Plugin, error) {
	return NewWithStore(cfg, consumers, nil)
}

// NewWithStore is [New] that also accepts the self-service keys of store
// (nil: none); with a store, consumers may have no key.
func NewWithStore(cfg config.KeyAuth, consumers []config.Consumer, store *keystore.Store) (*Plugin, error) {
	header := strings.ToLower(cfg.Header)
	if header == "" {
		header = "apikey"
	}
	p := &Plugin{
		header:   header,
		query:    cfg.Query,
		keys:     map[[sha256.Size]byte]consumer{},
		store:    store,
		optional: cfg.Optional,
	}
	p.missing = fmt.Sprintf("missing API key: send it in the %s header", header)
	if cfg.Query != "" {
		p.missing += fmt.Sprintf(" or the %s query parameter", cfg.Query)
	}
	for i, c := range consumers {
		for j, k := range c.Keys {
			if k == "" {
				continue
			}
			h := sha256.Sum256([]byte(k))
			if prev, dup := p.keys[h]; dup {
				// Never name the key itself.
				return nil, fmt.Errorf("consumers[%d].keys[%d] (%s) is also a key of %s: keys must be unique", i, j, c.Name, prev.name)
			}
			p.keys[h] = consumer{hash: h, name: c.Name}
		}
	}
	if len(p.keys) == 0 && store == nil {
		return nil, errors.New(`key-auth needs at least one consumer with keys: add consumers: [{name: alice, keys: ["${ALICE_KEY}"]}]`)
	}
	return p, nil
}

// Name returns "key-auth".
func (p *Plugin) Name() string { return config.PluginKeyAuth }

// Phase returns [policy.Authenticate].
func (p *Plugin) Phase() policy.Phase { return policy.Authenticate }

// Check accepts a call whose key belongs to a consumer and sets
// c.Consumer to that consumer. No key is a [policy.MissingCredentials]
// refusal; an unknown key is Unauthenticated "invalid API key". It never
// blocks.
func (p *Plugin) Check(ctx context.Context, c *call.Call, _ *policy.State) *call.Error {
	err, hash := p.check(c)
	if hash == "" {
		return err
	}
	name, ok, lerr := p.store.Lookup(ctx, hash)
	switch {
	case lerr != nil:
		return call.Errorf(codes.Unavailable, "the API key store is unreachable; retry later").WithCause(lerr)
	case !ok:
		return errInvalidKey
	}
	c.Consumer = name
	return nil
}

// errInvalidKey refuses a key that no consumer has.
var errInvalidKey = call.Errorf(codes.Unauthenticated, "invalid API key")

// Optional reports whether calls without a key pass anonymously
// (optional: true; see [policy.OptionalAuthenticator]).
func (p *Plugin) Optional() bool { return p.optional }

// CredentialQuery returns the query parameter read for the key ("" when
// none is configured).
func (p *Plugin) CredentialQuery() string { return p.query }

// TryCheck answers as Check without blocking: it is pending only for a
// key the config does not list whose self-service entry is not cached
// (a Redis read).
func (p *Plugin) TryCheck(c *call.Call, _ *policy.State) (*call.Error, bool) {
	err, hash := p.check(c)
	if hash == "" {
		return err, false
	}
	name, ok, pending := p.store.LookupLocal(hash)
	switch {
	case pending:
		return nil, true
	case !ok:
		return errInvalidKey, false
	}
	c.Consumer = name
	return nil, false
}

// check decides on the keys of the config. hash, when not "", is the
// hash of a key they do not list, for the self-service store to decide
// (err is then nil).
func (p *Plugin) check(c *call.Call) (err *call.Error, hash string) {
	key := ""
	if c.Header != nil {
		key = c.Header.Get(p.header)
	}
	if key == "" && p.query != "" {
		key = queryValue(c.RawQuery, p.query)
	}
	if key == "" {
		return policy.MissingCredentials(p.missing), ""
	}
	h := sha256.Sum256([]byte(key))
	e, ok := p.keys[h]
	if !ok || subtle.ConstantTimeCompare(e.hash[:], h[:]) != 1 {
		if p.store != nil {
			return nil, hex.EncodeToString(h[:])
		}
		return errInvalidKey, ""
	}
	c.Consumer = e.name
	return nil, ""
}

// queryValue returns the first non-empty value of the parameter name in
// a raw query string. It slices raw and allocates only for escaped
// (%XX or +) names and values.
func queryValue(raw, name string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			u, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = u
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = u
		}
		if v != "" {
			return v
		}
	}
	return ""
}

var (
	_ policy.Plugin       = (*Plugin)(nil)
	_ policy.LocalChecker = (*Plugin)(nil)
)
