package sim

import (
	"cmp"
	"errors"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

var (
	errNoSlot      = errors.New("sim: no such slot")
	errNoFrontEnd  = errors.New("sim: workload has users but the topology has no entry or httpentry")
	protoMarshal   = proto.Marshal
	requestKeysMax = 1 << 16
)

// observer counts what the simulator sees happen, for the exercised
// counters and the run summary. It only reads events; it never steers.
type observer struct {
	crashes, scaleOuts, scaleIns, scaleOutRefused uint64
	faultsStarted                                 uint64

	linkDowns, partitionDrops, packetDrops, reordered, duplicated uint64
	dials, dialsRefused, clientsDisconnected, httpTimeouts        uint64

	storeOps, deadlocks, lateCommits, unknownResolvedByDedup uint64
	presenceOps, presenceLost, presenceStale                 uint64
	publishes, publishDeduped, offlinePublishes              uint64
	redeliveries, redeliveriesHandled, queueDuplicates       uint64
	lostAcks, naks, deadLetters                              uint64
	registryExpiries, viewChanges                            uint64

	sends, sendsRefused, churns, loginStorms          uint64
	stormReconnects                                   uint64 // clients a login storm dropped (they log in again at once)
	platformAccepted, platformFailed, platformRetries uint64
	pushFailed                                        uint64

	// failover observation: the logic slot each forwarded request last
	// reached, keyed by (entry, session, req); users seen away from home.
	lastSlot        map[requestKey]int
	failoverResends uint64
	failBacks       uint64
	remapped        map[string]struct{}
}

type requestKey struct {
	entry   string
	session uint64
	req     uint32
}

// nodeEvent looks at an event a node is about to handle.
func (o *observer) nodeEvent(s *sim, in *instance, ev node.Event) {
	r, ok := ev.(node.Recv)
	if !ok {
		return
	}
	switch m := r.Msg.(type) {
	case *wire.ClientRequest:
		if in.addr.Role == node.RoleLogic {
			o.clientRequest(s, in, m)
		}
	case *wire.PushFailed:
		o.pushFailed++
	}
}

func (o *observer) clientRequest(s *sim, in *instance, m *wire.ClientRequest) {
	if o.lastSlot == nil {
		o.lastSlot, o.remapped = map[requestKey]int{}, map[string]struct{}{}
	}
	home := route.Home(m.UserId, max(s.cfg.Topology[node.RoleLogic], 1))
	if in.addr.Slot != home && len(o.remapped) < requestKeysMax {
		o.remapped[m.UserId] = struct{}{}
	}
	entry := ""
	if m.Origin != nil {
		entry = m.Origin.Entry
	}
	k := requestKey{entry: entry, session: m.SessionId, req: m.ReqId}
	if prev, ok := o.lastSlot[k]; ok && prev != in.addr.Slot {
		o.failoverResends++
		if in.addr.Slot == home {
			o.failBacks++
		}
	}
	if len(o.lastSlot) >= requestKeysMax {
		clear(o.lastSlot) // bounded memory: forget old requests (undercounts, never overcounts)
	}
	o.lastSlot[k] = in.addr.Slot
}

// opLog collects the clients' history ops. It keeps them in fixed-size
// chunks, so a long run never copies the ops it already holds (an op is
// about 260 bytes; a growing slice copied each one about twice), and sorts
// them with a typed stable sort. Ops returns what check.Recorder.Ops
// would: sorted by call time, then client, ties in recording order.
type opLog struct {
	chunks [][]check.Op
	n      int
}

// opChunkLen ops per chunk: 1024 × ~260 B is a quarter megabyte.
const opChunkLen = 1024

func (l *opLog) Add(op check.Op) {
	if k := len(l.chunks); k == 0 || len(l.chunks[k-1]) == opChunkLen {
		l.chunks = append(l.chunks, make([]check.Op, 0, opChunkLen))
	}
	last := &l.chunks[len(l.chunks)-1]
	*last = append(*last, op)
	l.n++
}

// Len is the number of ops recorded.
func (l *opLog) Len() int { return l.n }

// Ops returns the ops sorted by call time, then client. It sorts small
// keys that end in the recording index (so the order is the stable one)
// and then gathers the ops, instead of moving whole ops while sorting.
func (l *opLog) Ops() []check.Op {
	type key struct {
		call   int64
		client int
		idx    int
	}
	keys := make([]key, 0, l.n)
	for ci, c := range l.chunks {
		for i := range c {
			keys = append(keys, key{call: c[i].Call, client: c[i].Client, idx: ci*opChunkLen + i})
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(a.call, b.call); c != 0 {
			return c
		}
		if c := cmp.Compare(a.client, b.client); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	out := make([]check.Op, len(keys))
	for i, k := range keys {
		out[i] = l.chunks[k.idx/opChunkLen][k.idx%opChunkLen]
	}
	return out
}
