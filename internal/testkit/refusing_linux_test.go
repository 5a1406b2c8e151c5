package testkit

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// TestRefusingAddr: a connection to the address is refused, and the port
// cannot be listened on while the test runs.
func TestRefusingAddr(t *testing.T) {
	addr := RefusingAddr(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded; want refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v; want connection refused", addr, err)
	}
	if lis, err := net.Listen("tcp", addr); err == nil {
		lis.Close()
		t.Fatalf("listen on %s succeeded while it is held", addr)
	}
}
