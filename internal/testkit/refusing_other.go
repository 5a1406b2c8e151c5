//go:build !linux

package testkit

import "testing"

// RefusingAddr returns a 127.0.0.1 address where connections are refused:
// a listener's port, closed. Unlike on Linux, another listener on port 0
// may take the port again during the test.
func RefusingAddr(t testing.TB) string {
	t.Helper()
	lis := ListenLocal(t)
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}
