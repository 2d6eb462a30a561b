package clientrun

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/client"
)

func TestTimerDueRoundsUpToSlack(t *testing.T) {
	ms := time.Millisecond
	base := time.Unix(1000, 0).Truncate(1024 * ms) // on every grid
	for _, c := range []struct{ d, want time.Duration }{
		{0, 0}, {-time.Second, 0}, {1, ms}, {ms, ms}, {ms + 1, 2 * ms},
		{50 * ms, 52 * ms},                 // slack 4 ms (d/8 = 6.25 ms)
		{100 * ms, 104 * ms},               // slack 8 ms
		{time.Second, 1024 * ms},           // slack 64 ms
		{5 * time.Second, 5120 * ms},       // slack 128 ms, the most
		{time.Minute, time.Minute + 32*ms}, // 469 × 128 = 60032
	} {
		if got := timerDue(base, c.d).Sub(base); got != c.want {
			t.Errorf("timerDue(+%v): got +%v, want +%v", c.d, got, c.want)
		}
	}
}

// TestTimerServiceFiresInOrderAndEnds: timers of several runners fire in
// due order, each into its runner's mailbox, none before it is due; a
// stopped runner gets none; the service's goroutine ends when no timer is
// left, and starts again for the next.
func TestTimerServiceFiresInOrderAndEnds(t *testing.T) {
	s := &timerService{wake: make(chan struct{}, 1)}
	mk := func() *Runner { return &Runner{mailbox: make(chan any, 8), done: make(chan struct{})} }
	a, b, stopped := mk(), mk(), mk()
	stopped.stopped.Store(true)
	start := time.Now()
	s.add(timerEntry{at: start.Add(60 * time.Millisecond), r: a, id: 3})
	s.add(timerEntry{at: start.Add(20 * time.Millisecond), r: b, id: 1})
	s.add(timerEntry{at: start.Add(40 * time.Millisecond), r: a, id: 2})
	s.add(timerEntry{at: start.Add(10 * time.Millisecond), r: stopped, id: 9})
	got := func(r *Runner) (client.TimerID, time.Duration) {
		select {
		case ev := <-r.mailbox:
			return ev.(client.Timer).ID, time.Since(start)
		case <-time.After(5 * time.Second):
			t.Fatal("timer did not fire")
		}
		return 0, 0
	}
	if id, at := got(b); id != 1 || at < 20*time.Millisecond {
		t.Errorf("b: got timer %d at %v, want 1 at 20ms or later", id, at)
	}
	for _, want := range []struct {
		id client.TimerID
		at time.Duration
	}{{2, 40 * time.Millisecond}, {3, 60 * time.Millisecond}} {
		if id, at := got(a); id != want.id || at < want.at {
			t.Errorf("a: got timer %d at %v, want %d at %v or later", id, at, want.id, want.at)
		}
	}
	if len(stopped.mailbox) != 0 {
		t.Error("a stopped runner got a timer")
	}
	ended := func() bool {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			s.mu.Lock()
			running := s.running
			s.mu.Unlock()
			if !running {
				return true
			}
		}
		return false
	}
	if !ended() {
		t.Fatal("the service goroutine did not end with no timer left")
	}
	s.add(timerEntry{at: time.Now(), r: b, id: 4})
	if id, _ := got(b); id != 4 {
		t.Errorf("after a restart: got timer %d, want 4", id)
	}
	if !ended() {
		t.Fatal("the restarted service goroutine did not end")
	}
}
