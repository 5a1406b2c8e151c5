package call

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestHTTPHeaderGet(t *testing.T) {
	t.Parallel()
	h := HTTPHeader(http.Header{
		"Authorization":    {"Bearer t"},
		"X-Request-Id":     {"r1", "r2"},
		"x-lower":          {"l"},
		"Www-Authenticate": {"w"},
	})
	cases := map[string]string{
		"authorization":    "Bearer t",
		"AUTHORIZATION":    "Bearer t",
		"x-request-id":     "r1",
		"x-lower":          "l",
		"www-authenticate": "w",
		"missing":          "",
		"":                 "",
	}
	for name, want := range cases {
		if got := h.Get(name); got != want {
			t.Errorf("Get(%q): got %q; want %q", name, got, want)
		}
	}
}

// TestHTTPHeaderGetAllocs runs alone: AllocsPerRun refuses parallel tests.
func TestHTTPHeaderGetAllocs(t *testing.T) {
	h := HTTPHeader(http.Header{"X-Request-Id": {"r1"}})
	if allocs := testing.AllocsPerRun(100, func() { _ = h.Get("x-request-id") }); allocs != 0 {
		t.Errorf("Get allocates %v times; want 0", allocs)
	}
}
