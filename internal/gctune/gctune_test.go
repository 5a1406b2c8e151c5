package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 32 << 20, 100},         // nothing measured yet
		{4 << 20, 32 << 20, 700},   // 4 MiB live: the next collection at 32 MiB
		{1 << 20, 32 << 20, 1000},  // capped
		{12 << 20, 32 << 20, 166},  // 12 → 32 MiB
		{16 << 20, 32 << 20, 100},  // half the floor: GOGC's own share
		{200 << 20, 32 << 20, 100}, // a large live heap
	} {
		if got := Percent(tc.live, tc.floor); got != tc.want {
			t.Errorf("Percent(%d MiB, %d MiB) = %d; want %d", tc.live>>20, tc.floor>>20, got, tc.want)
		}
	}
}

// TestTuner: with a small live heap the tuner raises GOGC after a
// collection; with a live heap of the floor it puts it back to 100; Stop
// restores 100.
func TestTuner(t *testing.T) {
	t.Setenv("GOGC", "")
	if Start(MinHeap) != nil {
		t.Fatal("Start with GOGC set in the environment: want nil (the operator's choice stands)")
	}
	if err := os.Unsetenv("GOGC"); err != nil { // t.Setenv restores it
		t.Fatal(err)
	}
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	tu := Start(64 << 20)
	defer tu.Stop()
	waitPercent(t, tu, func(p int) bool { return p > 100 }, "GOGC raised for a small live heap")
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = 1
	}
	waitPercent(t, tu, func(p int) bool { return p == 100 }, "GOGC back to 100 with 64 MiB live")
	runtime.KeepAlive(big)
	tu.Stop()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GOGC after Stop: %d; want 100", p)
	}
}

func waitPercent(t *testing.T, tu *Tuner, ok func(int) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(tu.Percent()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d", what, tu.Percent())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
