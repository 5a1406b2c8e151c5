package websocket

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/transcoder/internal/binding"
)

func TestCloseReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"short", "failing at 3", "failing at 3"},
		{"ascii_cut", strings.Repeat("a", 200), strings.Repeat("a", 123)},
		{"utf8_cut", strings.Repeat("é", 100), strings.Repeat("é", 61)},
		{"invalid", "a\xffb", "a?b"},
	} {
		got := closeReason(tc.in)
		if got != tc.want || len(got) > maxCloseReason || !utf8.ValidString(got) {
			t.Errorf("%s: got %q; want %q", tc.name, got, tc.want)
		}
	}
}

func TestNegotiate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header   string
		mode           wsMode
		selected, bear string
		bad            bool
	}{
		{"none", "", modeJSON, "", "", false},
		{"json", "rosetta.json.v1", modeJSON, "rosetta.json.v1", "", false},
		{"proto_first", "rosetta.proto.v1, rosetta.json.v1", modeProto, "rosetta.proto.v1", "", false},
		{"bearer_only", "rosetta.bearer.abc.def", modeJSON, "", "abc.def", false},
		{"bearer_and_json", "rosetta.bearer.t, rosetta.json.v1", modeJSON, "rosetta.json.v1", "t", false},
		{"other_and_json", "graphql-ws, rosetta.json.v1", modeJSON, "rosetta.json.v1", "", false},
		{"other_only", "graphql-ws", modeJSON, "", "", true},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Sec-WebSocket-Protocol", tc.header)
		}
		n, err := negotiate(h)
		if (err != nil) != tc.bad || n.mode != tc.mode || n.selected != tc.selected || n.bearer != tc.bear {
			t.Errorf("%s: got %+v, %v; want mode %d selected %q bearer %q error %v", tc.name, n, err, tc.mode, tc.selected, tc.bear, tc.bad)
		}
	}
}

func TestOriginPolicy(t *testing.T) {
	t.Parallel()
	o := newOriginPolicy([]string{"https://app.example.com", "https://*.example.org/"})
	for _, tc := range []struct {
		origin string
		want   bool
	}{
		{"", true},
		{"http://gw.local:8080", true}, // same host as the request
		{"https://app.example.com", true},
		{"HTTPS://APP.EXAMPLE.COM", true},
		{"https://a.example.org", true},
		{"http://a.example.org", false},
		{"https://evil.example", false},
		{"null", false},
	} {
		r := httptest.NewRequest("GET", "http://gw.local:8080/v1/chat", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := o.allows(r); got != tc.want {
			t.Errorf("origin %q: got %v; want %v", tc.origin, got, tc.want)
		}
	}
	r := httptest.NewRequest("GET", "http://gw.local/", nil)
	r.Header.Set("Origin", "https://anything.example")
	if !newOriginPolicy([]string{"*"}).allows(r) {
		t.Error(`"*" does not allow every origin`)
	}
}

// FuzzWebSocketFrame feeds arbitrary frames to the bridge's frame decoder
// in both modes: it must never panic, and every message it accepts must
// marshal.
func FuzzWebSocketFrame(f *testing.F) {
	h := newTestBridge(f, config.Transcoding{})
	var p *binding.Plan
	for rt, pl := range h.routes {
		if rt.Method.Name() == "Echo" && rt.Pattern == "/v1/echo/{id}" {
			p = pl
		}
	}
	if p == nil {
		f.Fatal("no plan for GET /v1/echo/{id}")
	}
	for _, s := range []string{
		`{"@close_send": true}`, `{"@close_send": false}`, `{"@close_send": true, "id": "x"}`,
		`{"stringValue": "x", "int64Value": "12", "nested": {"n": 1}}`, `{"int32Value": "x"}`, `[1]`, "\x0a\x02hi", "\x0a\xff",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, binary bool) {
		mode := modeJSON
		if binary {
			mode = modeProto
		}
		req := &wsRequest{p: p, mode: mode, unmarshal: proto.UnmarshalOptions{Resolver: p.Resolver}}
		if closeSend, err := isCloseSend(frame); closeSend || err != nil {
			return
		}
		msg, err := req.decode(frame)
		if err != nil {
			return
		}
		if mode == modeProto {
			return // bytes, already checked against the type
		}
		if _, err := proto.Marshal(msg.(proto.Message)); err != nil {
			t.Fatalf("accepted frame %q builds a message that does not marshal: %v", frame, err)
		}
	})
}
