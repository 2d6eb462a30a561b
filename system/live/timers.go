package live

import (
	"time"

	"github.com/zzim/zzim/system/node"
)

// Node timers. A node sets a timer for nearly every request it makes or
// passes on (entry: each attempt at logic and each push awaiting its ack;
// logic: each das call) and cancels nearly all of them. A runtime timer
// each (time.AfterFunc) costs an allocation of the timer and its closure,
// the P's timer lock to add it and again to stop it, and a goroutine for
// each that fires. A host instead keeps its node's timers in a heap of its
// own, touched only by the node goroutine, with one runtime timer (wake)
// set for the earliest. Cancel forgets the tag at once; the heap entry
// goes when it reaches the top, or in a rebuild once cancelled entries
// outnumber the live ones (so the heap stays within twice the timers
// pending, plus timerSlack).
type hostTimers struct {
	epoch time.Time
	tags  map[node.TimerID]any // pending timers
	heap  []timerEntry         // pending and cancelled, earliest first
	wake  *time.Timer
	armed bool
	at    time.Duration // when wake fires, since epoch (if armed)
}

type timerEntry struct {
	when time.Duration // since epoch
	id   node.TimerID
}

// timerSlack is how many cancelled entries the heap may hold beyond the
// pending ones before a rebuild.
const timerSlack = 1024

func (e timerEntry) before(o timerEntry) bool {
	return e.when < o.when || (e.when == o.when && e.id < o.id)
}

func (t *hostTimers) add(id node.TimerID, d time.Duration, tag any) {
	when := time.Since(t.epoch) + max(d, 0)
	t.tags[id] = tag
	t.push(timerEntry{when: when, id: id})
	if !t.armed || when < t.at {
		t.arm(when)
	}
}

func (t *hostTimers) cancel(id node.TimerID) {
	if _, ok := t.tags[id]; !ok {
		return
	}
	delete(t.tags, id)
	if len(t.heap) > 2*len(t.tags)+timerSlack {
		t.rebuild()
	}
}

// arm sets wake to fire at when (since epoch).
func (t *hostTimers) arm(when time.Duration) {
	t.armed, t.at = true, when
	t.wake.Reset(max(when-time.Since(t.epoch), 0))
}

// rearm sets wake for the earliest pending timer, if any, unless it is set
// already to fire no later (a wake for a cancelled timer only rearms).
func (t *hostTimers) rearm() {
	for len(t.heap) > 0 {
		if _, ok := t.tags[t.heap[0].id]; ok {
			break
		}
		t.pop() // cancelled
	}
	if len(t.heap) == 0 {
		if t.armed {
			t.wake.Stop()
			t.armed = false
		}
		return
	}
	if when := t.heap[0].when; !t.armed || when < t.at {
		t.arm(when)
	}
}

// fireTimers handles, in deadline order, every pending timer that is due,
// each followed by the events its effects queued, then sets wake for the
// next one. A wake that finds nothing due (its timer was cancelled, or an
// earlier Reset raced a firing) only rearms.
func (h *Host) fireTimers(env *hostEnv) {
	t := &h.timers
	t.armed = false
	now := time.Since(t.epoch)
	for len(t.heap) > 0 && t.heap[0].when <= now && !h.stopped.Load() {
		e := t.pop()
		tag, ok := t.tags[e.id]
		if !ok {
			continue
		}
		delete(t.tags, e.id)
		h.handled.Add(1)
		h.n.Handle(env, node.Timer{ID: e.id, Tag: tag})
		h.drainLocal(env)
	}
	t.rearm()
}

func (t *hostTimers) push(e timerEntry) {
	t.heap = append(t.heap, e)
	t.up(len(t.heap) - 1)
}

func (t *hostTimers) pop() timerEntry {
	h := t.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	t.heap = h[:last]
	if last > 0 {
		t.down(0)
	}
	return top
}

// rebuild drops cancelled entries and restores the heap order.
func (t *hostTimers) rebuild() {
	kept := t.heap[:0]
	for _, e := range t.heap {
		if _, ok := t.tags[e.id]; ok {
			kept = append(kept, e)
		}
	}
	clear(t.heap[len(kept):])
	t.heap = kept
	for i := len(kept)/2 - 1; i >= 0; i-- {
		t.down(i)
	}
}

func (t *hostTimers) up(i int) {
	h := t.heap
	for i > 0 {
		parent := (i - 1) / 2
		if !h[i].before(h[parent]) {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (t *hostTimers) down(i int) {
	h := t.heap
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].before(h[l]) {
			m = r
		}
		if !h[m].before(h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
