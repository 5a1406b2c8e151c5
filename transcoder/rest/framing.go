package rest

import (
	"bytes"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
)

// framing is how a stream of response messages is laid out in an HTTP
// body.
type framing uint8

const (
	// framingNDJSON writes one JSON message per line
	// (application/x-ndjson); a failure adds a last line
	// {"error": <google.rpc.Status>}. The default.
	framingNDJSON framing = iota
	// framingArray writes one JSON array of the messages
	// (application/json), streamed element by element; a failure adds a
	// last element {"error": <google.rpc.Status>}.
	framingArray
	// framingSSE writes Server-Sent Events (text/event-stream): each
	// message is an event with "id: <n>" and "data: <json>"; a failure is
	// an "error" event whose data is the google.rpc.Status; a clean end is
	// an "end" event, so EventSource clients know not to reconnect.
	framingSSE
	// framingRaw streams the data of google.api.HttpBody messages as is.
	framingRaw
)

// framingFor picks the framing from the Accept header: text/event-stream
// → SSE; application/x-ndjson → NDJSON; application/json → a JSON array;
// anything else (*/*, none) → NDJSON. HttpBody responses are always raw.
func framingFor(r *http.Request, p *binding.Plan) framing {
	if p.RespRaw {
		return framingRaw
	}
	array := false
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			switch mt {
			case "text/event-stream":
				return framingSSE
			case "application/x-ndjson", "application/jsonl":
				return framingNDJSON
			case "application/json":
				array = true
			}
		}
	}
	if array {
		return framingArray
	}
	return framingNDJSON
}

func (f framing) contentType() string {
	switch f {
	case framingArray:
		return "application/json"
	case framingSSE:
		return "text/event-stream"
	case framingRaw:
		return "application/octet-stream"
	}
	return "application/x-ndjson"
}

func (f framing) begin(b *bytes.Buffer) {
	if f == framingArray {
		b.WriteByte('[')
	}
}

func (f framing) message(b *bytes.Buffer, msg []byte, seq int) {
	switch f {
	case framingNDJSON:
		b.Write(msg)
		b.WriteByte('\n')
	case framingArray:
		if seq > 1 {
			b.WriteByte(',')
		}
		b.Write(msg)
	case framingSSE:
		b.WriteString("id: ")
		b.WriteString(strconv.Itoa(seq))
		b.WriteString("\ndata: ")
		b.Write(msg) // protojson output has no newlines
		b.WriteString("\n\n")
	case framingRaw:
		b.Write(msg)
	}
}

func (f framing) fail(b *bytes.Buffer, status []byte) {
	switch f {
	case framingNDJSON:
		b.WriteString(`{"error":`)
		b.Write(status)
		b.WriteString("}\n")
	case framingArray:
		// The array always holds a message before a failure: an error
		// before the first message is an ordinary error response.
		b.WriteString(`,{"error":`)
		b.Write(status)
		b.WriteByte('}')
	case framingSSE:
		b.WriteString("event: error\ndata: ")
		b.Write(status)
		b.WriteString("\n\n")
	}
}

func (f framing) end(b *bytes.Buffer) {
	switch f {
	case framingArray:
		b.WriteByte(']')
	case framingSSE:
		b.WriteString("event: end\ndata: {}\n\n")
	}
}
