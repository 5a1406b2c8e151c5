package jwtauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
	"github.com/rosetta-gateway/rosetta/policy"
)

var (
	errNone       = errors.New("alg none")
	errUnknownKID = errors.New("unknown kid")
	errNoKey      = errors.New("no key for alg")
)

// algError refuses a token whose "alg" the plugin does not accept.
type algError struct {
	alg        string
	asymmetric bool // the plugin verifies with public keys
}

func (e *algError) Error() string { return "signing algorithm " + e.alg + " not accepted" }

// verify checks tok's signature with ks and its claims. unknownKID
// reports a refusal because ks lacks the token's kid, which a JWKS
// refetch may cure.
func (p *Plugin) verify(tok string, ks *keySet) (e *entry, err *call.Error, unknownKID bool) {
	claims := jwt.MapClaims{}
	_, perr := p.parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) { return p.keyFor(t, ks) })
	if perr != nil {
		return nil, p.refusal(perr, claims), errors.Is(perr, errUnknownKID)
	}
	e, err = p.entryOf(claims, ks.gen, tok)
	return e, err, false
}

// keyFor picks the key that verifies t: the one its kid names (JWKS), or
// every held key that verifies its alg.
func (p *Plugin) keyFor(t *jwt.Token, ks *keySet) (any, error) {
	alg := t.Method.Alg()
	if alg == "none" {
		return nil, errNone
	}
	if !slices.Contains(p.allow, alg) {
		return nil, &algError{alg: alg, asymmetric: p.asymmetric}
	}
	kid, _ := t.Header["kid"].(string)
	if p.jwks != nil && kid != "" {
		k := ks.byKID[kid]
		if k == nil {
			return nil, errUnknownKID
		}
		if !slices.Contains(k.algs, alg) {
			return nil, errNoKey
		}
		return k.key, nil
	}
	var keys []jwt.VerificationKey
	for _, k := range ks.all {
		if slices.Contains(k.algs, alg) {
			keys = append(keys, k.key)
		}
	}
	switch len(keys) {
	case 0:
		return nil, errNoKey
	case 1:
		return keys[0], nil
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// refusal turns a parse error into the client's answer: what is wrong,
// never the token.
func (p *Plugin) refusal(err error, claims jwt.MapClaims) *call.Error {
	var msg string
	var ae *algError
	switch {
	case errors.Is(err, errNone):
		msg = "unsigned token (alg none) not accepted"
	case errors.As(err, &ae) && ae.asymmetric && strings.HasPrefix(ae.alg, "HS"):
		msg = fmt.Sprintf("signing algorithm %s not accepted: this route verifies tokens with public keys", ae.alg)
	case errors.As(err, &ae):
		msg = fmt.Sprintf("signing algorithm %s not accepted", ae.alg)
	case errors.Is(err, errUnknownKID):
		msg = "unknown signing key id"
	case errors.Is(err, errNoKey):
		msg = "no signing key for the token's algorithm"
	case errors.Is(err, jwt.ErrTokenMalformed):
		msg = "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = "unsupported signing algorithm"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		msg = "invalid token signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		msg = "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		msg = "token not yet valid"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		msg = "token issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		msg = "issuer mismatch"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		msg = "audience mismatch"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// Only iss and aud are required, and only when configured.
		if _, ok := claims["iss"]; p.issuer != "" && !ok {
			msg = "issuer mismatch"
		} else {
			msg = "audience mismatch"
		}
	case errors.Is(err, jwt.ErrInvalidType):
		msg = "malformed token claims"
	default:
		msg = "invalid token"
	}
	return call.Errorf(codes.Unauthenticated, "%s", msg).WithCause(err)
}

// entryOf makes the cache entry of verified claims.
// The upstream gets the verified token as its only authorization value
// (the chain strips every authorization the client sent), so a second,
// unverified credential never travels beside it.
func (p *Plugin) entryOf(claims jwt.MapClaims, gen uint64, tok string) (*entry, *call.Error) {
	e := &entry{gen: gen, claims: claims}
	e.upstream = append(e.upstream, policy.Field{Name: "authorization", Value: "Bearer " + tok})
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		e.exp, e.hasExp = exp.Time, true
	}
	if nbf, err := claims.GetNotBefore(); err == nil && nbf != nil {
		e.nbf, e.hasNbf = nbf.Time, true
	}
	sub, err := claims.GetSubject()
	if err != nil || !validFieldValue(sub) {
		return nil, call.Errorf(codes.Unauthenticated, "malformed token claims: invalid sub")
	}
	e.consumer = sub
	if name, ok := p.subjects[sub]; ok && sub != "" {
		e.consumer = name
	}
	for _, ch := range p.claims {
		if v, ok := claimString(claims[ch.claim]); ok && validFieldValue(v) {
			e.upstream = append(e.upstream, policy.Field{Name: ch.header, Value: policy.FieldValue(v)})
		}
	}
	e.missingScope = p.missingScope(claims)
	return e, nil
}

// missingScope returns the first configured scope the token does not
// grant, "" when it grants them all. Scopes come from a space-separated
// "scope" claim or an "scp" claim (a list or a space-separated string).
func (p *Plugin) missingScope(claims jwt.MapClaims) string {
	if len(p.scopes) == 0 {
		return ""
	}
	var granted []string
	for _, name := range []string{"scope", "scp"} {
		switch v := claims[name].(type) {
		case string:
			granted = append(granted, strings.Fields(v)...)
		case []any:
			for _, s := range v {
				if s, ok := s.(string); ok {
					granted = append(granted, s)
				}
			}
		}
	}
	for _, s := range p.scopes {
		if !slices.Contains(granted, s) {
			return s
		}
	}
	return ""
}

// claimString formats a claim as a header value: strings as they are,
// numbers and booleans formatted, lists joined with ",", objects as
// JSON. ok is false for an absent (or null) claim.
func claimString(v any) (s string, ok bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	case []any:
		parts := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := claimString(x); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ","), true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// validFieldValue reports whether s can be sent as a header value (no
// control characters, so no header injection).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
