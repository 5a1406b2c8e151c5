// Package call is Rosetta's shared vocabulary: the protocol names and the
// protocol-neutral error that every layer (transports, router, policy,
// transcoder, upstream) speaks. It imports no other Rosetta package.
//
// It does not render errors on any wire; each protocol adapter does that in
// its own dialect.
package call
