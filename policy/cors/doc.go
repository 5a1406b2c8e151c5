// Package cors answers cross-origin (CORS) preflight requests and sets the
// CORS headers of actual responses, so browser clients of other origins can
// call the gateway over gRPC-Web, Connect and REST.
//
// It owns only the CORS headers. It does not authenticate, and a request
// from a disallowed origin is still served (the browser then keeps the
// answer from the page); only its preflight is refused.
package cors
