// Package governance checks the live APIs of a gateway against simple
// rules, for `rosetta lint` and CI: every method has an HTTP binding or
// is deliberately default-bound, no method or uri route goes without
// authentication when the config sets require_auth, and every deprecated
// route announces a sunset (that has not passed while the route still
// answers).
//
// [Check] takes what the gateway would serve: a validated config, the
// descriptor snapshot of its upstreams and the policy set built from the
// config. It reads them and returns [Finding]s, sorted; it does no I/O,
// so it is tested with generated descriptors and a config parsed from
// YAML.
//
// The package does not load descriptors, build policies or print
// anything: the lint command does (cmd/rosetta). Nor does it repeat what
// config validation or the route table already reports (an invalid
// path template, a conflicting binding).
package governance
