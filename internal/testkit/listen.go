package testkit

import (
	"net"
	"testing"
	"time"
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

// ClosingAddr returns the address of a listener on 127.0.0.1 that closes
// every connection it accepts: a peer that is there but answers nothing,
// at once. It stops when the test ends.
func ClosingAddr(t testing.TB) string {
	t.Helper()
	return acceptEach(t, func(c net.Conn) { _ = c.Close() })
}

// SilentAddr returns the address of a listener on 127.0.0.1 that accepts
// connections and never reads or writes: a peer that hangs. Its
// connections are closed when the test ends.
func SilentAddr(t testing.TB) string {
	t.Helper()
	return acceptEach(t, func(c net.Conn) { t.Cleanup(func() { _ = c.Close() }) })
}

// acceptEach runs a local listener that hands each connection to handle.
func acceptEach(t testing.TB, handle func(net.Conn)) string {
	lis := ListenLocal(t)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	return lis.Addr().String()
}

// DialRaw opens a TCP connection to addr for a hand-written exchange (raw
// HTTP/1.1, HTTP/2 frames). It is closed when the test ends, and every
// read and write on it must end within 10 s, so that a server that hangs
// fails the test instead of stalling it.
func DialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}
