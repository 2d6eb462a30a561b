package loadgen

import (
	"container/heap"
	"context"
	"time"
)

// source is one stream of actions in intended-time order. The scheduler
// merges the sources in a heap and never waits for an action's outcome.
type source struct {
	name string
	at   time.Duration // intended time of the next action, from the start
	// pop advances to the following action; false when the source is done.
	pop func() (time.Duration, bool)
	// fire performs the action due at intended (absolute), at offset at.
	fire func(intended time.Time, at time.Duration)
}

type sourceHeap []*source

func (h sourceHeap) Len() int           { return len(h) }
func (h sourceHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h sourceHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *sourceHeap) Push(x any)        { *h = append(*h, x.(*source)) }
func (h *sourceHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// scheduler runs sources from start until end (or ctx ends) on the calling
// goroutine. now is the run's clock. Each action's lag (dispatch time minus
// intended time) is passed to fire's caller through the metrics; actions
// overdue are dispatched at once, never skipped: the intended time keeps
// their latency honest.
type scheduler struct {
	now   func() time.Time
	start time.Time
	end   time.Duration
	h     sourceHeap
}

func (s *scheduler) add(src *source) {
	at, ok := src.pop()
	if !ok || at >= s.end {
		return
	}
	src.at = at
	heap.Push(&s.h, src)
}

// run returns the number of actions fired.
func (s *scheduler) run(ctx context.Context) int64 {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var fired int64
	for s.h.Len() > 0 {
		src := s.h[0]
		due := s.start.Add(src.at)
		if d := due.Sub(s.now()); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return fired
			case <-timer.C:
			}
		} else if fired%1024 == 0 && ctx.Err() != nil {
			return fired
		}
		src.fire(due, src.at)
		fired++
		if at, ok := src.pop(); ok && at < s.end {
			src.at = at
			heap.Fix(&s.h, 0)
		} else {
			heap.Pop(&s.h)
		}
	}
	// The traffic phase lasts its duration even when the sources ran dry
	// (idle connections, a short replay).
	if d := s.start.Add(s.end).Sub(s.now()); d > 0 {
		timer.Reset(d)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
	return fired
}

// once is a source of one action at at.
func once(name string, at time.Duration, fire func(time.Time, time.Duration)) *source {
	done := false
	return &source{name: name, fire: fire, pop: func() (time.Duration, bool) {
		if done {
			return 0, false
		}
		done = true
		return at, true
	}}
}
