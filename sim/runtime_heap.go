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
	// p is the payload: a node.Event for node kinds, a client.Event for
	// client kinds (one field keeps the slab's values small).
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
// of events pending at once.
type eventHeap struct {
	keys []eventKey
	slab []event
	free []int32
}

func newEventHeap(capacity int) eventHeap {
	return eventHeap{keys: make([]eventKey, 0, capacity), slab: make([]event, 0, capacity)}
}

// len is the number of pending events.
func (h *eventHeap) len() int { return len(h.keys) }

// nextAt is the time of the earliest pending event; the heap must not be empty.
func (h *eventHeap) nextAt() int64 { return h.keys[0].at }

// reset drops every pending event.
func (h *eventHeap) reset() {
	clear(h.slab)
	h.keys, h.slab, h.free = h.keys[:0], h.slab[:0], h.free[:0]
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

func (h *eventHeap) push(e event) {
	var slot int32
	if n := len(h.free); n > 0 {
		slot = h.free[n-1]
		h.free = h.free[:n-1]
		h.slab[slot] = e
	} else {
		slot = int32(len(h.slab))
		h.slab = append(h.slab, e)
	}
	k := eventKey{at: e.at, seq: e.seq, slot: slot}
	s := append(h.keys, k)
	h.keys = s
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / heapArity
		if !k.less(&s[p]) {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = k
}

func (h *eventHeap) pop() event {
	s := h.keys
	top := s[0]
	last := len(s) - 1
	k := s[last]
	s = s[:last]
	h.keys = s
	i := 0
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
		i = m
	}
	if len(s) > 0 {
		s[i] = k
	}
	e := h.slab[top.slot]
	h.slab[top.slot] = event{} // drop payload references
	h.free = append(h.free, top.slot)
	return e
}
