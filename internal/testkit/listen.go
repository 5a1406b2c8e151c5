package testkit

import (
	"net"
	"testing"
)

// ListenLocal returns a TCP listener on 127.0.0.1 with a free port. It is
// closed when the test ends.
func ListenLocal(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.1:0: %v", err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	return lis
}
