package logic

import (
	"testing"
	"time"
)

// A clock that steps back (a skewed node corrected, NTP) must not lock a
// user out until it catches up. Found by the simulator's clock-skew scenario:
// sends were refused for the 30 s the clock had jumped back, and acknowledged
// after the clients' final sync.
func TestRateLimitClockStepsBack(t *testing.T) {
	l := newLimiter(20, 40, 10)
	t0 := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	for i := 0; i < 40; i++ {
		if !l.allow("u1", t0) {
			t.Fatalf("send %d of the burst refused", i)
		}
	}
	back := t0.Add(-30 * time.Second)
	if !l.allow("u1", back.Add(time.Second)) {
		t.Fatal("after the clock stepped back 30s, a send a second later was refused; want allowed")
	}
}
