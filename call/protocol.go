package call

// Protocol names the wire protocol a client spoke to the gateway (or the
// gateway speaks to a backend). It is the one enum used in logs, metrics
// labels and config.
type Protocol uint8

// The protocols Rosetta speaks.
const (
	ProtocolUnknown Protocol = iota
	REST                     // JSON over HTTP, routed by google.api.http rules
	GRPC                     // gRPC over HTTP/2
	GRPCWeb                  // gRPC-Web, binary or base64 text
	Connect                  // the Connect protocol
	WebSocket                // the WebSocket bridge
	SSE                      // Server-Sent Events
	HTTP                     // plain HTTP reverse proxying
)

var protocolNames = [...]string{
	ProtocolUnknown: "unknown",
	REST:            "rest",
	GRPC:            "grpc",
	GRPCWeb:         "grpc_web",
	Connect:         "connect",
	WebSocket:       "websocket",
	SSE:             "sse",
	HTTP:            "http",
}

// String returns the snake_case name of p, as used in config and logs.
func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "unknown"
}
