package extlogic

import "container/list"

// lru is a bounded set of notification keys; the least recently added key
// is evicted when it is full. Eviction only weakens deduplication, which is
// best effort anyway (notifications are outside the no-loss promise).
type lru struct {
	max   int
	order *list.List // front = newest; values are notifyKey
	index map[notifyKey]*list.Element
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), index: map[notifyKey]*list.Element{}}
}

func (l *lru) contains(k notifyKey) bool {
	e, ok := l.index[k]
	if ok {
		l.order.MoveToFront(e)
	}
	return ok
}

func (l *lru) add(k notifyKey) {
	if e, ok := l.index[k]; ok {
		l.order.MoveToFront(e)
		return
	}
	l.index[k] = l.order.PushFront(k)
	if l.order.Len() > l.max {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.index, old.Value.(notifyKey))
	}
}

func (l *lru) len() int { return l.order.Len() }
