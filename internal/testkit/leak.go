package testkit

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs the package's tests and then fails if goroutines leaked.
// Call it from TestMain:
//
//	func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }
//
// grpc-go needs no ignores when servers are stopped (StartBackend does) and
// client connections are closed (Backend.Dial does); add ignores here, with a
// reason, only for background goroutines that outlive a test by design.
func VerifyNoLeaks(m *testing.M) {
	goleak.VerifyTestMain(m)
}
