// Package portal is the gateway's developer portal: one URL where an
// external developer finds every API, reads its documentation, tries it
// (streaming methods included), signs in with an API key or a JWT, manages
// self-service keys and sees their own usage, and where the operator sees
// the gateway's analytics.
//
// [New] returns one [http.Handler] serving a single-page UI under
// Options.Path+"/" and its JSON API under Options.Path+"/api/". The UI is
// plain HTML, CSS and JavaScript with no build step, embedded in the
// binary with the vendored copies of swagger-ui-dist (the OpenAPI
// renderer behind "try it") and uPlot (charts) that it loads, so the
// portal works offline. portal/web pins those libraries in package-lock.json and
// portal/web/vendor.sh refreshes the copies in portal/assets/vendor.
//
// The portal owns presentation only. Everything it shows comes from a
// [Source], which internal/gateway implements: the catalog of APIs, their
// OpenAPI documents, sign-in (credential checks), usage and analytics,
// key creation and revocation, and the admin token check. The portal keeps
// no state of its own: the browser keeps the credential in
// sessionStorage and sends it with every call, and each call is checked
// again by the Source.
//
// The portal does not serve the APIs themselves: "try it" and the
// streaming consoles call the gateway's REST, Connect, SSE and WebSocket
// endpoints on the same origin, where the gateway's policies apply as for
// any other client.
package portal
