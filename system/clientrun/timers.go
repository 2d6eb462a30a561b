package clientrun

import (
	"container/heap"
	"sync"
	"time"

	"github.com/zzim/zzim/system/client"
)

// Timer slack: a client timer set for d fires up to d/8 late (at most
// timerSlackMax, at least timerSlackMin), on a grid of that step, so that
// timers due close together fire in one wake. Client timers are request
// deadlines, heartbeats and periodic syncs (seconds: on the 128 ms grid,
// a few wakes a second for thousands of clients) and backoffs (50 ms at
// the least: a 4 ms grid).
const (
	timerSlackMin = time.Millisecond
	timerSlackMax = 128 * time.Millisecond
)

// timerService fires every runner's timers from one goroutine, started when
// a timer is set and ending when none is left. A time.AfterFunc per timer
// started a goroutine per firing; in a load generator with thousands of
// clients those came by the hundred a second, and each new goroutine takes
// its processor's next slot, sending whatever waited there (the
// generator's scheduler, woken by its own timer) to the back of the run
// queue: a trace of the sink throughput test showed half the scheduler's
// waits over a millisecond (up to 57 ms) behind one.
type timerService struct {
	mu      sync.Mutex
	h       timerHeap
	running bool
	wake    chan struct{} // a new earliest timer
}

var timers = &timerService{wake: make(chan struct{}, 1)}

type timerEntry struct {
	at  time.Time // due, rounded up to the slack
	r   *Runner
	id  client.TimerID
	tag any
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = timerEntry{}
	*h = old[:len(old)-1]
	return e
}

// add sets a timer; the runner ignores it once cancelled (Runner.timers).
func (s *timerService) add(e timerEntry) {
	s.mu.Lock()
	heap.Push(&s.h, e)
	earliest := s.h[0].r == e.r && s.h[0].id == e.id
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.loop()
	} else if earliest {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *timerService) loop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []timerEntry
	for {
		s.mu.Lock()
		now := time.Now()
		for len(s.h) > 0 && !s.h[0].at.After(now) {
			due = append(due, heap.Pop(&s.h).(timerEntry))
		}
		if len(due) == 0 && len(s.h) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		var wait time.Duration
		if len(s.h) > 0 {
			wait = s.h[0].at.Sub(now)
		}
		s.mu.Unlock()
		for i, e := range due {
			e.r.fireTimer(e.id, e.tag)
			due[i] = timerEntry{}
		}
		if len(due) > 0 {
			due = due[:0]
			continue
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-s.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
	}
}

// fireTimer posts a fired timer to the runner without waiting: a full
// mailbox gets it from a goroutine of its own (rare), so one busy client
// does not hold back every other's timers.
func (r *Runner) fireTimer(id client.TimerID, tag any) {
	if r.stopped.Load() {
		return
	}
	ev := client.Timer{ID: id, Tag: tag}
	select {
	case r.mailbox <- ev:
	default:
		go r.post(ev)
	}
}

// timerDue is when a timer set now for d fires: now+d rounded up to its
// slack's grid (the slack a power of two milliseconds).
func timerDue(now time.Time, d time.Duration) time.Time {
	d = max(d, 0)
	slack := timerSlackMin
	for slack < timerSlackMax && 2*slack <= d/8 {
		slack *= 2
	}
	at := now.Add(d)
	if r := at.Sub(at.Truncate(slack)); r > 0 {
		at = at.Add(slack - r)
	}
	return at
}
