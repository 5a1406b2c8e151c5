// Package portal holds the end-to-end browser test of the developer portal against the demo config (examples/rosetta.yaml).
//
// TestPortalDemo starts a real gateway with the demo config (its addresses
// moved to 127.0.0.1:0, its upstream to the test's library backend) and
// walks the portal in headless Chromium: the catalog, swagger-ui's try it
// out, the streaming consoles, a consumer's quota and usage, and the
// operator's analytics. It saves a screenshot of each step (see
// [github.com/rosetta-gateway/rosetta/portal/portaltest.Screenshot]), and
// the README's two pictures into $ROSETTA_README_SHOTS when that is set.
// The package has no code of its own.
package portal
