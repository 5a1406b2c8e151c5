package cors

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
)

func TestAllowed(t *testing.T) {
	t.Parallel()
	p := New(config.CORS{AllowedOrigins: []string{"https://App.example.com/", "https://*.example.org"}})
	tests := map[string]bool{
		"https://app.example.com":   true,
		"https://APP.example.com":   true,
		"https://a.b.example.org":   true,
		"https://example.org":       false,
		"https://.example.org":      false,
		"http://app.example.com":    false,
		"https://app.example.com.x": false,
		"":                          false,
	}
	for origin, want := range tests {
		if got := p.Allowed(origin); got != want {
			t.Errorf("Allowed(%q): got %v; want %v", origin, got, want)
		}
	}
}

func TestPreflight(t *testing.T) {
	t.Parallel()
	p := New(config.CORS{AllowedOrigins: []string{"*"}, MaxAge: config.Duration(90 * time.Second)})
	tests := []struct {
		name, method, origin, reqMethod string
		answered                        bool
		status                          int
		allowOrigin                     string
	}{
		{"not a preflight", http.MethodPost, "https://a.test", "", false, 200, ""},
		{"options without request method", http.MethodOptions, "https://a.test", "", false, 200, ""},
		{"allowed", http.MethodOptions, "https://a.test", "POST", true, 204, "*"},
		{"no origin", http.MethodOptions, "", "POST", true, 403, ""},
		{"bad method", http.MethodOptions, "https://a.test", "TRACE", true, 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(tc.method, "/x", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if tc.reqMethod != "" {
				r.Header.Set("Access-Control-Request-Method", tc.reqMethod)
			}
			w := httptest.NewRecorder()
			if got := p.Preflight(w, r); got != tc.answered {
				t.Fatalf("Preflight: got %v; want %v", got, tc.answered)
			}
			if w.Code != tc.status || w.Header().Get("Access-Control-Allow-Origin") != tc.allowOrigin {
				t.Errorf("got %d origin %q; want %d %q", w.Code, w.Header().Get("Access-Control-Allow-Origin"), tc.status, tc.allowOrigin)
			}
			if tc.status == 204 && w.Header().Get("Access-Control-Max-Age") != "90" {
				t.Errorf("max age: got %q; want 90", w.Header().Get("Access-Control-Max-Age"))
			}
		})
	}
}
