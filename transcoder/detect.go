package transcoder

import (
	"net/http"
	"strings"

	"github.com/rosetta-gateway/rosetta/call"
)

// Detect picks the protocol adapter for a request from its method,
// Content-Type, Upgrade and Connect headers:
//
//   - application/grpc and application/grpc+<codec>: [call.GRPC]
//   - application/grpc-web, application/grpc-web+<codec>,
//     application/grpc-web-text(+<codec>): [call.GRPCWeb]
//   - application/connect+<codec> (streaming), a Connect-Protocol-Version
//     header, application/proto (unary), or a GET with ?connect=v1:
//     [call.Connect]
//   - a WebSocket upgrade: [call.WebSocket]
//   - anything else: [call.REST] (which also covers SSE and plain HTTP
//     routes; the gateway decides between them).
//
// A POST of application/json to /pkg.Service/Method without a
// Connect-Protocol-Version header is REST (the default binding), which
// answers the same message; only the error shape differs.
func Detect(r *http.Request) call.Protocol {
	ct := call.HTTPHeader(r.Header).Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return call.GRPCWeb
	case IsGRPC(ct):
		return call.GRPC
	case strings.HasPrefix(ct, "application/connect+"):
		return call.Connect
	case call.HTTPHeader(r.Header).Get("Connect-Protocol-Version") != "":
		return call.Connect
	case r.Method == http.MethodPost && (ct == "application/proto" || strings.HasPrefix(ct, "application/proto;")):
		return call.Connect
	case r.Method == http.MethodGet && strings.Contains(r.URL.RawQuery, "connect=v1"):
		return call.Connect
	case isWebSocketUpgrade(r):
		return call.WebSocket
	}
	return call.REST
}

// IsGRPC reports whether a Content-Type is gRPC's (not gRPC-Web's).
func IsGRPC(ct string) bool {
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

func isWebSocketUpgrade(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		// HTTP/2 and HTTP/3 extended CONNECT (RFC 8441 / RFC 9220).
		return r.Proto == "websocket" || r.Header.Get(":protocol") == "websocket"
	}
	for _, v := range r.Header.Values("Upgrade") {
		if strings.EqualFold(strings.TrimSpace(v), "websocket") {
			return true
		}
	}
	return false
}
