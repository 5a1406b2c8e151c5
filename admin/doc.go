// Package admin is the gateway's management plane: the admin listener's
// HTTP API (health and readiness probes, the running config with its
// secrets redacted, the route table, upstream targets, descriptors,
// reload and cache purge), behind a bearer token. It renders what a
// [Backend] (the running gateway) tells it and mounts the handlers other
// packages provide (metrics, OpenAPI).
//
// It does not own the gateway's state, and it does not reload anything
// itself: [Backend.Reload] does.
package admin
