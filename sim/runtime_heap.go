package sim

// evKind names what an event does when it is handled.
type evKind uint8

const (
	evNode            evKind = iota + 1 // deliver nev to node target (incarnation inc)
	evNodeTimer                         // node timer a fires (if not cancelled)
	evClient                            // deliver cev to client target (connection inc, 0: any)
	evClientTimer                       // client timer a fires
	evStoreApply                        // store op a reaches the database
	evQueuePump                         // queue consumer a may deliver
	evQueueAckWait                      // delivery a's AckWait expired
	evRegistryExpire                    // registry key of instance target may have expired
	evFault                             // fault action a (b: 0 start, 1 end)
	evWorkload                          // workload action a
	evHTTPTimeout                       // HTTP request on conn a timed out
	evPlatformReply                     // the platform service's HTTP request a was answered
	evPhase                             // run phase change a
	evRegistryRefresh                   // watchers are told every view again
)

var evKindNames = [...]string{"", "node", "node-timer", "client", "client-timer", "store-apply",
	"queue-pump", "queue-ackwait", "registry-expire", "fault", "workload", "http-timeout",
	"platform-reply", "phase", "registry-refresh"}

func (k evKind) String() string {
	if int(k) < len(evKindNames) {
		return evKindNames[k]
	}
	return "?"
}

// event is one scheduled happening. Events are values kept in a slab;
// the heap orders small pointer-free keys that name their slab slot.
type event struct {
	at     int64  // virtual ns since the start of the run
	seq    uint64 // tie-break: scheduling order
	kind   evKind
	target int32  // instance or client index, by kind
	inc    uint64 // incarnation (nodes) or connection (clients) it is for
	a, b   uint64
	// p is the payload: a node.Event for evNode, a client.Event for
	// evClient, the tag for timer kinds (one field keeps the slab's values
	// small). A timer's Timer value is built when it fires, so a cancelled
	// timer never allocates one.
	p any
}

// eventKey orders one event: it holds no pointer, so sifting keys costs
// no GC write barrier, and a key is a third of an event's size.
type eventKey struct {
	at   int64
	seq  uint64
	slot int32
}

// eventHeap is a min-heap of keys ordered by (at, seq) over a slab of
// events; freed slots are reused, so the slab grows to the largest number
// of events pending at once. pos records where each slot's key sits in
// keys, so a cancelled timer's event can leave the heap at once: it then
// costs neither a pop nor a place that every later sift has to step over
// (about a fifth of all timers were cancelled before they fired).
type eventHeap struct {
	keys []eventKey
	slab []event
	pos  []int32 // slot -> index in keys; -1 when the slot is free
	free []int32
}

func newEventHeap(capacity int) eventHeap {
	return eventHeap{keys: make([]eventKey, 0, capacity), slab: make([]event, 0, capacity),
		pos: make([]int32, 0, capacity)}
}

// len is the number of pending events.
func (h *eventHeap) len() int { return len(h.keys) }

// nextAt is the time of the earliest pending event; the heap must not be empty.
func (h *eventHeap) nextAt() int64 { return h.keys[0].at }

// reset drops every pending event.
func (h *eventHeap) reset() {
	clear(h.slab)
	h.keys, h.slab, h.pos, h.free = h.keys[:0], h.slab[:0], h.pos[:0], h.free[:0]
}

func (k *eventKey) less(o *eventKey) bool {
	if k.at != o.at {
		return k.at < o.at
	}
	return k.seq < o.seq
}

// heapArity: a 4-ary heap is shallower than a binary one, so a pop moves
// keys fewer times.
const heapArity = 4

// push queues e and returns its slot, which stays valid (for remove) until
// the event is popped or removed.
func (h *eventHeap) push(e event) int32 {
	var slot int32
	if n := len(h.free); n > 0 {
		slot = h.free[n-1]
		h.free = h.free[:n-1]
		h.slab[slot] = e
	} else {
		slot = int32(len(h.slab))
		h.slab = append(h.slab, e)
		h.pos = append(h.pos, -1)
	}
	k := eventKey{at: e.at, seq: e.seq, slot: slot}
	h.keys = append(h.keys, k)
	h.up(len(h.keys)-1, k)
	return slot
}

// up moves k, which belongs at index i or above, to its place.
func (h *eventHeap) up(i int, k eventKey) {
	s, pos := h.keys, h.pos
	for i > 0 {
		p := (i - 1) / heapArity
		if !k.less(&s[p]) {
			break
		}
		s[i] = s[p]
		pos[s[i].slot] = int32(i)
		i = p
	}
	s[i] = k
	pos[k.slot] = int32(i)
}

// down moves k, which belongs at index i or below, to its place.
func (h *eventHeap) down(i int, k eventKey) {
	s, pos := h.keys, h.pos
	for {
		first := heapArity*i + 1
		if first >= len(s) {
			break
		}
		m := first
		end := min(first+heapArity, len(s))
		for c := first + 1; c < end; c++ {
			if s[c].less(&s[m]) {
				m = c
			}
		}
		if !s[m].less(&k) {
			break
		}
		s[i] = s[m]
		pos[s[i].slot] = int32(i)
		i = m
	}
	s[i] = k
	pos[k.slot] = int32(i)
}

// take removes the key at index i and refills the hole with the last key.
func (h *eventHeap) take(i int) {
	last := len(h.keys) - 1
	k := h.keys[last]
	h.keys = h.keys[:last]
	if i == last {
		return
	}
	if i > 0 && k.less(&h.keys[(i-1)/heapArity]) {
		h.up(i, k)
	} else {
		h.down(i, k)
	}
}

// release frees a slot whose key has left the heap.
func (h *eventHeap) release(slot int32) {
	h.slab[slot] = event{} // drop payload references
	h.pos[slot] = -1
	h.free = append(h.free, slot)
}

// pop removes and returns the earliest event; the heap must not be empty.
func (h *eventHeap) pop() event {
	slot := h.keys[0].slot
	h.take(0)
	e := h.slab[slot]
	h.release(slot)
	return e
}

// remove drops the pending event in slot (a cancelled timer). It reports
// false when the slot holds no pending event.
func (h *eventHeap) remove(slot int32) bool {
	if slot < 0 || int(slot) >= len(h.pos) || h.pos[slot] < 0 {
		return false
	}
	h.take(int(h.pos[slot]))
	h.release(slot)
	return true
}
