// Package jwtauth is the jwt-auth plugin: it authenticates a call by a
// signed JSON Web Token sent as "Authorization: Bearer <token>", as the
// bearer token a protocol carried elsewhere (the WebSocket bridge), or
// in a configured cookie. Keys are an HMAC secret, a PEM public key (RSA,
// ECDSA, Ed25519) or a JSON Web Key Set fetched over HTTPS and kept
// fresh. It checks the signature (github.com/golang-jwt/jwt/v5), the
// algorithm allow-list, exp/nbf/iat with a clock skew, issuer, audience
// and scopes; it maps the subject to a consumer and forwards chosen
// claims upstream as headers. Verified tokens are cached (bounded LRU,
// keyed by the whole token) so that a repeat costs a map lookup.
// Importing the package registers the plugin under the name "jwt-auth".
//
// It does not issue or refresh tokens, introspect opaque tokens, or
// decrypt JWE.
package jwtauth
