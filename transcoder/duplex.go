package transcoder

import "net/http"

// EnableFullDuplex lets a handler read the request body while it writes
// the response over HTTP/1.x, as HTTP/2 and HTTP/3 always allow (where it
// is not needed it fails harmlessly). Defer the function it returns, so
// that it runs after whatever still reads the body has finished: it
// closes the body before the handler returns.
//
// Go's HTTP/1 server, with full duplex on, no longer reads a body the
// handler left unread before the response; it reads the rest when the
// handler has returned, after it stopped its background read of the
// connection, and the background read that reaching the body's end then
// starts makes the server panic at the next request and close the
// connection under a client that reuses it (golang/go#68560). Closing the
// body inside the handler does that reading while the handler still
// runs, where the server ends the background read it starts.
func EnableFullDuplex(rc *http.ResponseController, r *http.Request) (closeBody func()) {
	if rc.EnableFullDuplex() != nil || r.ProtoMajor != 1 || r.Body == nil {
		return func() {}
	}
	return func() { _ = r.Body.Close() }
}
