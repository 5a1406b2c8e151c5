package policy

import (
	"context"
	"sort"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
)

// Phase places a plugin in the chain. Plugins run in phase order,
// whatever their order in the config: authentication, then
// authorization, then limits. (Edge limits run in the transports, before
// any plugin.)
type Phase uint8

// The phases, in the order they run.
const (
	// Authenticate establishes who calls (jwt-auth, key-auth). When a
	// chain has several authentication plugins, a call passes when any
	// one of them accepts it.
	Authenticate Phase = iota + 1
	// Authorize decides whether that caller may make this call.
	Authorize
	// Limit counts the call (rate-limiting, concurrency-limit).
	Limit
)

// Field is one header field (or metadata entry), its name in lower case.
type Field struct{ Name, Value string }

// ConsumerHeader is the header (metadata) field that tells the upstream
// which consumer called: the chain sets it to [call.Call.Consumer] when
// an authentication plugin accepted the call, and strips the client's
// own field of that name.
const ConsumerHeader = "x-consumer"

// RateLimit is the state of the limit a call was counted against, for
// the RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset response
// headers (IETF draft names). Set is false when no limit counted the
// call.
type RateLimit struct {
	Set       bool
	Limit     int64
	Remaining int64
	// ResetSeconds is when the limit is fully replenished, in seconds
	// from now (rounded up).
	ResetSeconds int64
}

// State is what the chain learned about one call while deciding. The
// adapter that ran the chain owns it; plugins fill it; the adapter then
// renders Response on the answer (refused or not), sends Upstream to the
// backend and calls [Chain.Done] when the call ends.
type State struct {
	// Claims are the verified JWT's claims, nil without one. Shared and
	// read-only.
	Claims map[string]any
	// Upstream are header fields (metadata) to send to the backend. Each
	// replaces the client's fields of the same name. Plugins add what
	// they forward (claims_to_headers); the chain adds x-consumer
	// ([ConsumerHeader]) itself once authentication passed.
	Upstream []Field
	// Response are header fields to add to the answer, refused or not
	// (WWW-Authenticate, Retry-After).
	Response []Field
	// RateLimit is the limit the call was counted against.
	RateLimit RateLimit

	held [4]Releaser
	n    int
}

// Hold records r to be released by [Chain.Done] when the call ends. A
// plugin that holds a resource for the call's lifetime (a concurrency
// slot) calls it after acquiring. It panics past four holds per call,
// which a chain never reaches.
func (s *State) Hold(r Releaser) {
	s.held[s.n] = r
	s.n++
}

// Releaser gives back what a plugin held for a call.
type Releaser interface {
	Release()
}

// Plugin is one configured policy. It is built once per config snapshot,
// is immutable, and is safe for concurrent use; what it counts (rate
// limiter state) lives in stores that outlive the snapshot.
type Plugin interface {
	// Name is the plugin's config name, such as "jwt-auth".
	Name() string
	// Phase is when the plugin runs.
	Phase() Phase
	// Check decides on c: nil allows; a *call.Error refuses (its code says
	// how: Unauthenticated, PermissionDenied, ResourceExhausted,
	// Unavailable). It may set c.Consumer and fill st; an authentication
	// plugin sets c.Consumer, st.Claims and st.Upstream only when it
	// accepts, and may add challenge fields (WWW-Authenticate) to
	// st.Response when it refuses. It may block on I/O (a Redis round
	// trip, a JWKS fetch), bounded by ctx, so it must not run on a
	// connection's reading goroutine.
	Check(ctx context.Context, c *call.Call, st *State) *call.Error
}

// LocalChecker is implemented by plugins that can usually decide without
// I/O. TryCheck never blocks: it answers as Check would, or reports
// pending when the decision needs I/O, and then it has changed nothing
// (no count taken, no slot held, st and c untouched).
type LocalChecker interface {
	TryCheck(c *call.Call, st *State) (err *call.Error, pending bool)
}

// MessageChecker is implemented by limit plugins that count each message
// of a WebSocket (rate-limiting with per_message). CheckMessage refuses
// a message with ResourceExhausted; it may block on I/O like Check.
type MessageChecker interface {
	CheckMessage(ctx context.Context, c *call.Call, st *State) *call.Error
}

// Chain is the ordered plugins of one route. It is built once per config
// snapshot and is immutable; a nil *Chain allows everything.
//
// Authentication plugins are alternatives: the first that accepts wins,
// and the challenge fields that the others added to State.Response while
// refusing are dropped. Once one accepted, the chain adds x-consumer
// ([ConsumerHeader]) to State.Upstream when the call has a consumer.
type Chain struct {
	authn    []Plugin
	rest     []Plugin // Authorize and Limit, in phase order
	messages []MessageChecker
	local    bool
	optional bool // an authentication plugin lets calls without credentials pass
	strip    []string
	query    []string // query parameters that carry credentials
	// life is the route's deprecation or retirement (nil: neither),
	// applied before any plugin.
	life *lifecycle
}

// OptionalAuthenticator is implemented by authentication plugins that
// may let calls without credentials pass (key-auth with optional: true).
// When one of a chain's says Optional, a call that every authentication
// plugin refused for want of credentials ([MissingCredentials]) passes
// anonymously; a wrong credential is still refused.
type OptionalAuthenticator interface {
	Optional() bool
}

// CredentialQuerier is implemented by plugins that read a credential from
// a query parameter (key-auth with query:). Protocols that map query
// parameters to request fields (REST bindings, the WebSocket bridge)
// leave that parameter out of the mapping.
type CredentialQuerier interface {
	CredentialQuery() string
}

// NewChain orders plugins by phase (stable within a phase). strip lists
// header names the backend must never receive from the client, because
// the chain sets them itself (claims_to_headers targets, x-consumer).
func NewChain(plugins []Plugin, strip []string) *Chain {
	c := &Chain{local: true, strip: strip}
	sorted := append([]Plugin(nil), plugins...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Phase() < sorted[j].Phase() })
	for _, p := range sorted {
		if p.Phase() == Authenticate {
			c.authn = append(c.authn, p)
			if o, ok := p.(OptionalAuthenticator); ok && o.Optional() {
				c.optional = true
			}
		} else {
			c.rest = append(c.rest, p)
		}
		if _, ok := p.(LocalChecker); !ok {
			c.local = false
		}
		if m, ok := p.(MessageChecker); ok {
			c.messages = append(c.messages, m)
		}
		if q, ok := p.(CredentialQuerier); ok && q.CredentialQuery() != "" {
			c.query = append(c.query, q.CredentialQuery())
		}
	}
	return c
}

// Strips reports whether the client's field name k is one the chain sets
// itself and so must not reach the upstream as the client sent it: a
// name of [Chain.Strip] in any case, or spelt with "_" for "-" (which
// CGI-style servers read as the same field). It does not allocate.
func (c *Chain) Strips(k string) bool {
	if c == nil {
		return false
	}
	for _, s := range c.strip {
		if len(k) != len(s) {
			continue
		}
		same := true
		for i := 0; i < len(k); i++ {
			b := k[i]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			} else if b == '_' {
				b = '-'
			}
			if b != s[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// CredentialQuery returns the query parameters that carry credentials
// for the chain's plugins (see [CredentialQuerier]).
func (c *Chain) CredentialQuery() []string {
	if c == nil {
		return nil
	}
	return c.query
}

// Authenticates reports whether the chain has an authentication plugin
// (jwt-auth, key-auth): whether a call it allows has a known caller.
func (c *Chain) Authenticates() bool { return c != nil && len(c.authn) > 0 }

// RequiresAuth reports whether every call the chain allows has a known
// caller: it authenticates, and no authentication plugin lets anonymous
// calls pass (key-auth with optional: true).
func (c *Chain) RequiresAuth() bool { return c.Authenticates() && !c.optional }

// AuthPlugins returns the names of the chain's authentication plugins,
// in phase order.
func (c *Chain) AuthPlugins() []string {
	if c == nil {
		return nil
	}
	names := make([]string, len(c.authn))
	for i, p := range c.authn {
		names[i] = p.Name()
	}
	return names
}

// Empty reports whether the chain has no plugin.
func (c *Chain) Empty() bool { return c == nil || len(c.authn)+len(c.rest) == 0 && c.life == nil }

// Strip returns the header names to remove from what the client sent
// before the backend sees it.
func (c *Chain) Strip() []string {
	if c == nil {
		return nil
	}
	return c.strip
}

// HasMessageLimits reports whether [Chain.CheckMessage] counts anything.
func (c *Chain) HasMessageLimits() bool { return c != nil && len(c.messages) > 0 }

// Check runs the chain on c, in phase order, and returns the first
// refusal. It may block on I/O. Whatever it returns, the caller must call
// [Chain.Done] with st when the call ends (at once when refused).
func (c *Chain) Check(ctx context.Context, cl *call.Call, st *State) *call.Error {
	if c == nil {
		return nil
	}
	if err := c.life.apply(cl, st); err != nil {
		return err
	}
	if err := c.authenticate(ctx, cl, st); err != nil {
		return err
	}
	for _, p := range c.rest {
		if err := p.Check(ctx, cl, st); err != nil {
			return refusedBy(p, err)
		}
	}
	return nil
}

// refusedBy returns a plugin's refusal marked with the plugin's name
// (call.Error.Plugin) and as a refusal (call.Error.Refusal), for metrics
// and logs. It copies err: plugins may return shared errors.
func refusedBy(p Plugin, err *call.Error) *call.Error {
	if err == nil || err.Plugin != "" {
		return err
	}
	e := *err
	e.Plugin, e.Refusal = p.Name(), true
	return &e
}

// authenticate passes when any authentication plugin accepts the call.
// When none does, the refusal of the first plugin that found a credential
// wins over "no credentials" refusals.
func (c *Chain) authenticate(ctx context.Context, cl *call.Call, st *State) *call.Error {
	var first *call.Error
	var by Plugin
	n0 := len(st.Response)
	for _, p := range c.authn {
		before := len(st.Response)
		err := p.Check(ctx, cl, st)
		if err == nil {
			accepted(cl, st, n0, before)
			return nil
		}
		if first == nil || IsMissingCredentials(first) && !IsMissingCredentials(err) {
			first, by = err, p
		}
	}
	if c.optional && IsMissingCredentials(first) {
		st.Response = st.Response[:n0] // no challenge on an anonymous call
		return nil
	}
	return refusedBy(by, first)
}

// accepted finishes an authentication that passed: it drops the
// challenge fields that plugins refusing before the accepting one added
// to st.Response (from n0 up to before), and sets x-consumer.
func accepted(cl *call.Call, st *State, n0, before int) {
	if before > n0 {
		st.Response = append(st.Response[:n0], st.Response[before:]...)
	}
	if cl.Consumer != "" {
		st.Upstream = append(st.Upstream, Field{Name: ConsumerHeader, Value: FieldValue(cl.Consumer)})
	}
}

// FieldValue makes s safe to send as a header field or gRPC metadata
// value, which must be printable ASCII, without ambiguity: every byte
// outside 0x20-0x7E, and "%", is percent-encoded (UTF-8 "josé" becomes
// "jos%C3%A9", and a literal "jos%C3%A9" becomes "jos%25C3%25A9"), so
// every protocol carries the same bytes upstream and two identities never
// share one value. A value with nothing to encode is returned as is,
// without allocating.
func FieldValue(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			return percentEncode(s)
		}
	}
	return s
}

func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// TryCheck runs the chain without blocking. pending reports that some
// plugin needs I/O to decide; then st and cl are as they were before the
// call (nothing held, no field added, Consumer unchanged) and the caller
// must run [Chain.Check] where it may block (the handler path).
// Otherwise it answers as Check.
func (c *Chain) TryCheck(cl *call.Call, st *State) (err *call.Error, pending bool) {
	if c == nil {
		return nil, false
	}
	if !c.local {
		return nil, true
	}
	saved := saveState(cl, st)
	if err := c.life.apply(cl, st); err != nil {
		return err, false
	}
	if err, pending := c.tryAuthenticate(cl, st, saved); err != nil || pending {
		return err, pending
	}
	return c.tryRest(cl, st, saved)
}

// TryAuthenticate runs the authentication phase of [Chain.TryCheck]
// alone, for a caller that needs the caller's identity (Consumer,
// Claims) before it commits to a path: authentication counts nothing and
// holds nothing, so a caller that then gives the call to the handler
// path (which runs [Chain.Check] again) has taken nothing twice. It
// answers pending, with st and cl as they were, when the chain cannot
// decide without I/O (as TryCheck would); a refusal is TryCheck's. Once
// it allowed the call, the caller finishes with [Chain.TryCheckRest].
func (c *Chain) TryAuthenticate(cl *call.Call, st *State) (err *call.Error, pending bool) {
	if c == nil {
		return nil, false
	}
	if !c.local {
		return nil, true
	}
	saved := saveState(cl, st)
	if err := c.life.apply(cl, st); err != nil {
		return err, false
	}
	return c.tryAuthenticate(cl, st, saved)
}

// TryCheckRest runs the phases after authentication (authorization,
// limits) of [Chain.TryCheck], on a call that [Chain.TryAuthenticate]
// allowed. pending restores st and cl to how TryAuthenticate left them.
func (c *Chain) TryCheckRest(cl *call.Call, st *State) (err *call.Error, pending bool) {
	if c == nil {
		return nil, false
	}
	if !c.local {
		return nil, true
	}
	return c.tryRest(cl, st, saveState(cl, st))
}

// tryAuthenticate is the authentication phase of TryCheck; saved is the
// state before it, which a pending plugin restores.
func (c *Chain) tryAuthenticate(cl *call.Call, st *State, saved savedState) (err *call.Error, pending bool) {
	if len(c.authn) == 0 {
		return nil, false
	}
	n0 := len(st.Response) // after the lifecycle's fields
	var first *call.Error
	var by Plugin
	for _, p := range c.authn {
		before := len(st.Response)
		err, pending := p.(LocalChecker).TryCheck(cl, st)
		if pending {
			saved.restore(cl, st)
			return nil, true
		}
		if err == nil {
			accepted(cl, st, n0, before)
			return nil, false
		}
		if first == nil || IsMissingCredentials(first) && !IsMissingCredentials(err) {
			first, by = err, p
		}
	}
	if c.optional && IsMissingCredentials(first) {
		st.Response = st.Response[:n0] // no challenge on an anonymous call
		return nil, false
	}
	return refusedBy(by, first), false
}

// tryRest is the authorization and limit phases of TryCheck; saved is
// the state it restores when a plugin is pending.
func (c *Chain) tryRest(cl *call.Call, st *State, saved savedState) (err *call.Error, pending bool) {
	for _, p := range c.rest {
		err, pending := p.(LocalChecker).TryCheck(cl, st)
		if pending {
			// Only the last plugins of a chain may be pending-capable
			// after a counting one; release what was held so far.
			c.Done(st)
			saved.restore(cl, st)
			return nil, true
		}
		if err != nil {
			return refusedBy(p, err), false
		}
	}
	return nil, false
}

// savedState is what [Chain.TryCheck] puts back when it turns pending.
type savedState struct {
	response, upstream int
	consumer           string
	claims             map[string]any
	rateLimit          RateLimit
}

func saveState(cl *call.Call, st *State) savedState {
	return savedState{len(st.Response), len(st.Upstream), cl.Consumer, st.Claims, st.RateLimit}
}

func (s savedState) restore(cl *call.Call, st *State) {
	st.Response = st.Response[:s.response]
	st.Upstream = st.Upstream[:s.upstream]
	cl.Consumer = s.consumer
	st.Claims = s.claims
	st.RateLimit = s.rateLimit
}

// CheckMessage counts one WebSocket message against the chain's
// per-message limits.
func (c *Chain) CheckMessage(ctx context.Context, cl *call.Call, st *State) *call.Error {
	if c == nil {
		return nil
	}
	for _, m := range c.messages {
		if err := m.CheckMessage(ctx, cl, st); err != nil {
			if p, ok := m.(Plugin); ok {
				return refusedBy(p, err)
			}
			return err
		}
	}
	return nil
}

// Done releases what the chain held for the call (concurrency slots). It
// is idempotent.
func (c *Chain) Done(st *State) {
	for i := 0; i < st.n; i++ {
		st.held[i].Release()
		st.held[i] = nil
	}
	st.n = 0
}

// missingCredentials marks refusals that mean "no credential of this kind
// was sent", as opposed to a bad one.
type missingCredentials struct{}

func (missingCredentials) Error() string { return "no credentials" }

// MissingCredentials returns an Unauthenticated error with msg, marked as
// "nothing was sent" so that a chain with several authentication plugins
// prefers another plugin's "bad credential" refusal.
func MissingCredentials(msg string) *call.Error {
	e := call.Errorf(codes.Unauthenticated, "%s", msg)
	e.Cause = missingCredentials{}
	return e
}

// IsMissingCredentials reports whether err came from [MissingCredentials].
func IsMissingCredentials(err *call.Error) bool {
	_, ok := err.Cause.(missingCredentials)
	return ok
}
