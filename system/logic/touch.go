package logic

import (
	"container/list"
	"time"
)

// Contact upkeep is throttled. MessageSent feeds extlogic's contact upkeep
// (last_active of both participants), which costs a durable queue publish,
// a delivery and two store writes. Publishing it for every message made it
// the most expensive part of a send (JetStream with sync_interval: always
// capped the cluster near its publish rate), so logic publishes it at most
// once per conversation per ContactTouchInterval: last_active is then exact
// to within that interval, which a contact list ordered by recency does not
// notice. The memory of when each conversation was last published is an LRU
// bounded by ContactTouchesMax; forgetting one only means an extra publish.
const (
	// ContactTouchIntervalDefault is the least time between two MessageSent
	// publishes of one conversation by one logic instance.
	ContactTouchIntervalDefault = 10 * time.Second
	// ContactTouchesMaxDefault bounds the conversations remembered.
	ContactTouchesMaxDefault = 100000
)

type touch struct {
	conv string
	at   time.Time
	elem *list.Element
}

// touches remembers the last MessageSent publish per conversation.
type touches struct {
	interval time.Duration // <= 0: publish for every message
	max      int
	m        map[string]*touch
	lru      *list.List // of *touch, most recent first
}

func newTouches(interval time.Duration, max int) *touches {
	return &touches{interval: interval, max: max, m: map[string]*touch{}, lru: list.New()}
}

// due reports whether conv's MessageSent should be published at now, and
// if so records it.
func (t *touches) due(conv string, now time.Time) bool {
	if t.interval <= 0 {
		return true
	}
	if e := t.m[conv]; e != nil {
		if now.Sub(e.at) < t.interval {
			return false
		}
		e.at = now
		t.lru.MoveToFront(e.elem)
		return true
	}
	if len(t.m) >= t.max {
		old := t.lru.Back()
		t.lru.Remove(old)
		delete(t.m, old.Value.(*touch).conv)
	}
	e := &touch{conv: conv, at: now}
	e.elem = t.lru.PushFront(e)
	t.m[conv] = e
	return true
}
