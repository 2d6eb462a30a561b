package das_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/wire"
)

var (
	das0   = node.Addr{Role: node.RoleDas, Slot: 0}
	caller = node.Addr{Role: node.RoleLogic, Slot: 0}
	conv   = wire.PairConvID("alice", "bob", "bike")
)

// bench is one das with a stand-in caller that collects its replies.
type bench struct {
	t      *testing.T
	c      *nodetest.Cluster
	d      *das.Das
	caller *nodetest.StandIn
	nextID uint64
}

func newBench(t *testing.T, cfg das.Config) *bench {
	b := &bench{t: t, c: nodetest.NewCluster(memstore.New(memstore.Options{}))}
	cfg.Topology = map[node.Role]int{node.RoleDas: 1, node.RoleLogic: 1}
	b.c.Add(das0, func() node.Node { b.d = das.New(cfg); return b.d })
	b.caller = b.c.AddStandIn(caller)
	b.c.Stabilize()
	return b
}

// request puts req (req_id and reply_to filled in) on the way to das-0 and delivers it.
func (b *bench) request(req *wire.StoreRequest) uint64 {
	b.nextID++
	req.ReqId, req.ReplyTo, req.CallerIncarnation = b.nextID, caller.String(), 1
	b.c.Net = append(b.c.Net, &nodetest.Envelope{From: caller, To: das0, Msg: req})
	b.c.Deliver(nodetest.To[*wire.StoreRequest](das0))
	return b.nextID
}

func appendReq(cseq uint64) *wire.StoreRequest {
	return &wire.StoreRequest{Business: wire.Business_BUSINESS_MESSAGE, Append: &wire.AppendItem{
		ConvId: conv, SenderId: "alice", PeerId: "bob", ListingId: "bike",
		ClientMsgId: fmt.Sprintf("alice-%d", cseq), Cseq: cseq, Body: "hi",
	}}
}

// reply returns das's answer to id after delivering what is in flight to the caller, or nil.
func (b *bench) reply(id uint64) *wire.StoreReply {
	for b.c.DeliverNext() {
	}
	var out *wire.StoreReply
	for _, m := range b.caller.Inbox {
		if r, ok := m.(*wire.StoreReply); ok && r.ReqId == id {
			if out != nil {
				b.t.Fatalf("request %d answered twice", id)
			}
			out = r
		}
	}
	return out
}

// A full queue answers OVERLOADED at once while another business's queue
// keeps serving; the queued appends are then group-committed.
func TestFullQueueOverloadedWhileOtherQueueServes(t *testing.T) {
	b := newBench(t, das.Config{
		QueueMax:          map[wire.Business]int{wire.Business_BUSINESS_MESSAGE: 2},
		AppendInflightMax: 1,
	})
	b.c.HoldStores = nodetest.StoreAppends
	first := b.request(appendReq(1)) // in flight
	b.request(appendReq(2))          // queued
	b.request(appendReq(3))          // queued: the queue is full
	over := b.request(appendReq(4))
	if r := b.reply(over); r == nil || r.Outcome != wire.Outcome_OUTCOME_FAILED || r.Code != wire.ErrorCode_OVERLOADED {
		t.Fatalf("append to a full queue: got %v, want FAILED OVERLOADED", r)
	}
	list := b.request(&wire.StoreRequest{Business: wire.Business_BUSINESS_CONTACT, ConvList: &wire.ConvListOp{UserId: "alice"}})
	b.c.Stabilize()
	if r := b.reply(list); r == nil || r.Outcome != wire.Outcome_OUTCOME_OK || r.ConvList == nil {
		t.Fatalf("conv list while the message queue is full: got %v, want OK", r)
	}
	st := b.d.Stats()
	if st.Rejected[wire.Business_BUSINESS_MESSAGE] != 1 || st.QueueDepth[wire.Business_BUSINESS_MESSAGE] != 2 {
		t.Fatalf("stats: got rejected=%d depth=%d, want 1 and 2",
			st.Rejected[wire.Business_BUSINESS_MESSAGE], st.QueueDepth[wire.Business_BUSINESS_MESSAGE])
	}

	b.c.HoldStores = nil
	b.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreApply)
	if got := len(b.c.Stores); got != 1 || len(b.c.Stores[0].Op.Append) != 2 {
		t.Fatalf("after the first commit: got %d store ops, want one batch of 2", got)
	}
	b.c.Stabilize()
	for id, want := range map[uint64]uint64{first: 1, first + 1: 2, first + 2: 3} {
		if r := b.reply(id); r == nil || r.Append.GetSeq() != want {
			t.Errorf("request %d: got %v, want seq %d", id, r, want)
		}
	}
	if st := b.d.Stats(); st.Batches != 2 || st.BatchSizeMax != 2 || st.BatchedAppends != 3 {
		t.Errorf("batch stats: got batches=%d max=%d appends=%d, want 2 2 3", st.Batches, st.BatchSizeMax, st.BatchedAppends)
	}
}

// Requests that name the wrong business, carry no op or two, or an append
// the store would refuse, are answered BAD_REQUEST without touching the store.
func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *wire.StoreRequest
	}{
		{"no op", &wire.StoreRequest{}},
		{"two ops", &wire.StoreRequest{Sync: &wire.SyncOp{ConvId: conv}, ConvList: &wire.ConvListOp{UserId: "a"}}},
		{"sync as contact", &wire.StoreRequest{Business: wire.Business_BUSINESS_CONTACT, Sync: &wire.SyncOp{ConvId: conv}}},
		{"mark read as message", &wire.StoreRequest{MarkRead: &wire.MarkReadOp{UserId: "a", ConvId: conv}}},
		{"notice as message", &wire.StoreRequest{Append: &wire.AppendItem{
			ConvId: wire.SystemConvID("a"), SenderId: "~system", ClientMsgId: "n1", Body: "x"}}},
		{"bad client_msg_id", func() *wire.StoreRequest { r := appendReq(1); r.Append.ClientMsgId = "a b"; return r }()},
		{"bad conv", func() *wire.StoreRequest { r := appendReq(1); r.Append.ConvId = "p:x"; return r }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(t, das.Config{})
			id := b.request(tc.req)
			if r := b.reply(id); r == nil || r.Code != wire.ErrorCode_BAD_REQUEST {
				t.Fatalf("got %v, want FAILED BAD_REQUEST", r)
			}
			if len(b.c.Stores) != 0 {
				t.Fatalf("store ops: got %d, want 0", len(b.c.Stores))
			}
		})
	}
}

// The store's outcome reaches the caller: unknown stays unknown, deadlocks
// are retried up to deadlockRetryMax (3), refusals become UNAVAILABLE.
func TestOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		modes   []nodetest.StoreMode
		outcome wire.Outcome
		code    wire.ErrorCode
	}{
		{"ok", []nodetest.StoreMode{nodetest.StoreApply}, wire.Outcome_OUTCOME_OK, 0},
		{"unknown", []nodetest.StoreMode{nodetest.StoreUnknownApplied}, wire.Outcome_OUTCOME_UNKNOWN, 0},
		{"unavailable", []nodetest.StoreMode{nodetest.StoreUnavailable}, wire.Outcome_OUTCOME_FAILED, wire.ErrorCode_UNAVAILABLE},
		{"three deadlocks then ok", []nodetest.StoreMode{nodetest.StoreDeadlock, nodetest.StoreDeadlock,
			nodetest.StoreDeadlock, nodetest.StoreApply}, wire.Outcome_OUTCOME_OK, 0},
		{"four deadlocks", []nodetest.StoreMode{nodetest.StoreDeadlock, nodetest.StoreDeadlock,
			nodetest.StoreDeadlock, nodetest.StoreDeadlock}, wire.Outcome_OUTCOME_FAILED, wire.ErrorCode_UNAVAILABLE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(t, das.Config{})
			id := b.request(appendReq(1))
			for i, m := range tc.modes {
				if r := b.reply(id); r != nil {
					t.Fatalf("answer before store completion %d: got %v", i, r)
				}
				b.c.CompleteStore(nil, m)
			}
			r := b.reply(id)
			if r == nil || r.Outcome != tc.outcome || r.Code != tc.code {
				t.Fatalf("got %v, want outcome %s code %s", r, tc.outcome, tc.code)
			}
			if len(b.c.Stores) != 0 {
				t.Fatalf("store ops left: got %d, want 0", len(b.c.Stores))
			}
		})
	}
}

// bugs.AckBeforeCommit answers an append before the store has it.
func TestAckBeforeCommit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bugs      bugs.Set
		wantEarly bool
		wantFinal wire.Outcome
	}{
		{"guarded", bugs.Set{}, false, wire.Outcome_OUTCOME_FAILED},
		{"ack-before-commit", bugs.Set{bugs.AckBeforeCommit: true}, true, wire.Outcome_OUTCOME_OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(t, das.Config{Bugs: tc.bugs})
			id := b.request(appendReq(1))
			if got := b.reply(id) != nil; got != tc.wantEarly {
				t.Fatalf("answered before the store: got %v, want %v", got, tc.wantEarly)
			}
			b.c.CompleteStore(nil, nodetest.StoreUnavailable) // nothing stored
			r := b.reply(id)
			if r == nil || r.Outcome != tc.wantFinal {
				t.Fatalf("final answer: got %v, want outcome %s", r, tc.wantFinal)
			}
		})
	}
}

// bugs.StaleSync serves a snapshot lagging by StaleSyncBound.
func TestStaleSync(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bugs     bugs.Set
		wantMsgs int
		wantLast uint64
	}{
		{"guarded", bugs.Set{}, 2, 2},
		{"stale-sync", bugs.Set{bugs.StaleSync: true}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(t, das.Config{Bugs: tc.bugs})
			now := b.c.Node(das0).Env.Now()
			for i, at := range []time.Time{now.Add(-3 * time.Second), now} {
				r := appendReq(uint64(i + 1))
				r.Append.CreatedAtMs = at.UnixMilli()
				b.request(r)
				b.c.Stabilize()
			}
			id := b.request(&wire.StoreRequest{Sync: &wire.SyncOp{ConvId: conv}})
			b.c.Stabilize()
			r := b.reply(id)
			if r == nil || len(r.Sync.GetMessages()) != tc.wantMsgs || r.Sync.GetLastSeq() != tc.wantLast {
				t.Fatalf("sync: got %v, want %d messages and last_seq %d", r, tc.wantMsgs, tc.wantLast)
			}
		})
	}
}

// A restarted das has no memory of its previous incarnation's requests:
// their completions are dropped and the callers time out.
func TestRestartDropsOldCompletions(t *testing.T) {
	b := newBench(t, das.Config{})
	id := b.request(appendReq(1))
	b.c.Restart(das0)
	b.c.CompleteStore(nil, nodetest.StoreApply) // it committed; nobody is told
	if r := b.reply(id); r != nil {
		t.Fatalf("answer from a previous incarnation: got %v, want none", r)
	}
}
