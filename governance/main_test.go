package governance_test

import (
	"testing"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }
