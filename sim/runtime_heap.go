package sim

// evKind names what an event does when it is handled.
type evKind uint8

const (
	evNode           evKind = iota + 1 // deliver nev to node target (incarnation inc)
	evNodeTimer                        // node timer a fires (if not cancelled)
	evClient                           // deliver cev to client target (connection inc, 0: any)
	evClientTimer                      // client timer a fires
	evStoreApply                       // store op a reaches the database
	evQueuePump                        // queue consumer a may deliver
	evQueueAckWait                     // delivery a's AckWait expired
	evRegistryExpire                   // registry key of instance target may have expired
	evFault                            // fault action a (b: 0 start, 1 end)
	evWorkload                         // workload action a
	evHTTPTimeout                      // HTTP request on conn a timed out
	evPlatformReply                    // the platform service's HTTP request a was answered
	evPhase                            // run phase change a
)

var evKindNames = [...]string{"", "node", "node-timer", "client", "client-timer", "store-apply",
	"queue-pump", "queue-ackwait", "registry-expire", "fault", "workload", "http-timeout",
	"platform-reply", "phase"}

func (k evKind) String() string {
	if int(k) < len(evKindNames) {
		return evKindNames[k]
	}
	return "?"
}

// event is one entry of the heap. Events are values: the heap is a slice
// of them, so scheduling allocates nothing beyond what the payload needs.
type event struct {
	at     int64  // virtual ns since the start of the run
	seq    uint64 // tie-break: scheduling order
	kind   evKind
	target int32  // instance or client index, by kind
	inc    uint64 // incarnation (nodes) or connection (clients) it is for
	a, b   uint64
	// p is the payload: a node.Event for node kinds, a client.Event for
	// client kinds (one field keeps the heap's values small).
	p any
}

// eventHeap is a binary min-heap ordered by (at, seq).
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}

// heapArity: a 4-ary heap is shallower than a binary one, so a pop moves
// the large event values fewer times.
const heapArity = 4

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / heapArity
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = event{} // drop payload references
	s = s[:last]
	*h = s
	i := 0
	for {
		first := heapArity*i + 1
		if first >= len(s) {
			break
		}
		m := first
		for c := first + 1; c < first+heapArity && c < len(s); c++ {
			if s.less(c, m) {
				m = c
			}
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	return top
}
