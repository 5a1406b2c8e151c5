package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"slices"
)

// keySet is the verification keys held at one moment. It is immutable.
type keySet struct {
	// gen changes whenever the keys change (a JWKS refetch that brought
	// different keys), so cached verifications made with the old keys
	// are dropped.
	gen uint64
	// byKID holds the keys that have a key id.
	byKID map[string]*verifyKey
	// all holds every key, in the order the source listed them.
	all []*verifyKey
}

// verifyKey is one verification key and the "alg" values it verifies.
type verifyKey struct {
	kid  string
	key  any // []byte (HMAC secret), *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	algs []string
}

// newKeySet indexes keys (a later duplicate kid is ignored).
func newKeySet(gen uint64, keys []*verifyKey) *keySet {
	ks := &keySet{gen: gen, byKID: map[string]*verifyKey{}}
	for _, k := range keys {
		if k.kid != "" {
			if _, dup := ks.byKID[k.kid]; dup {
				continue
			}
			ks.byKID[k.kid] = k
		}
		ks.all = append(ks.all, k)
	}
	return ks
}

// sameKeys reports whether a and b hold the same keys with the same ids
// and algorithms.
func sameKeys(a, b *keySet) bool {
	if a == nil || b == nil || len(a.all) != len(b.all) {
		return false
	}
	for i, k := range a.all {
		o := b.all[i]
		if k.kid != o.kid || !slices.Equal(k.algs, o.algs) || !equalKeys(k.key, o.key) {
			return false
		}
	}
	return true
}

// equalKeys compares two public keys of the supported types.
func equalKeys(a, b any) bool {
	switch k := a.(type) {
	case *rsa.PublicKey:
		return k.Equal(b)
	case *ecdsa.PublicKey:
		return k.Equal(b)
	case ed25519.PublicKey:
		return k.Equal(b)
	}
	return false
}

// keySource hands out the keys a plugin verifies with.
type keySource interface {
	// current returns the keys held now: nil when none are loaded yet (a
	// JWKS before its first successful fetch). It never blocks.
	current() *keySet
}

// staticKeys is a secret or a configured public key: always loaded,
// never changing.
type staticKeys struct{ set *keySet }

func (s staticKeys) current() *keySet { return s.set }

var _ keySource = staticKeys{}
