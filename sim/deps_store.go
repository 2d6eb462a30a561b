package sim

import (
	"errors"
	"strings"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// Business names of store ops, as das queues them (wire.Business).
const (
	businessMessage = "message"
	businessContact = "contact"
	businessUnread  = "unread"
	businessSystem  = "system"
)

var businesses = []string{businessMessage, businessContact, businessUnread, businessSystem}

// storeCall is one store op between submit and apply.
type storeCall struct {
	in       *instance
	inc      node.Incarnation
	req      node.ReqID
	op       node.StoreOp
	timedOut bool // the caller already got Unknown: apply only by a coin
	// submitted is when das sent it (a pause can push it past the timeout).
	submitted int64
	// synced: committed, its acknowledgement waits for the replica
	// (semi-sync); comp is that acknowledgement.
	synced bool
	comp   node.Completion
}

// simStore is the database: a single durable primary (a store.Store, the
// in-memory one) reached with latency, timeouts of unknown outcome,
// deadlock aborts and outages (DESIGN.md "Dependency semantics").
type simStore struct {
	s     *sim
	st    store.Store
	calls map[uint64]*storeCall
	// unknownKeys remembers appends whose caller got Unknown, to count the
	// ones a later resend resolved by dedup. Bounded by unknownKeysMax.
	unknownKeys map[appendKey]struct{}

	// down counts the primary's deaths in force (db-crash, db-failover):
	// requests are refused meanwhile. pauseUntil: a db-pause freezes the
	// primary until then. repl is the replica (runs with a failover only).
	down            int
	pauseUntil      int64
	repl            *replication
	crashRecoveries uint64
}

type appendKey struct{ conv, sender, clientMsgID string }

// unknownKeysMax bounds unknownKeys; past it new unknowns are not tracked
// (the counter then undercounts, it never overcounts).
const unknownKeysMax = 1 << 16

func newSimStore(s *sim, st store.Store) *simStore {
	return &simStore{s: s, st: st, calls: map[uint64]*storeCall{}, unknownKeys: map[appendKey]struct{}{}}
}

// businessOf tells which das queue an op belongs to.
func businessOf(op *node.StoreOp) string {
	switch {
	case len(op.Append) > 0:
		if strings.HasPrefix(op.Append[0].ConvID, "p:") {
			return businessMessage
		}
		return businessSystem
	case op.Sync != nil:
		return businessMessage
	case op.MarkRead != nil:
		return businessUnread
	}
	return businessContact
}

func (d *simStore) submit(in *instance, req node.ReqID, op node.StoreOp) {
	s := d.s
	s.obs.storeOps++
	business := businessOf(&op)
	cfg := &s.cfg.Deps
	lat := latency(s.deps, cfg.StoreLatencyMin, cfg.StoreLatencyMean) + s.faults.dbExtra(business)
	if s.faults.dbOutage() || d.down > 0 {
		// A dead primary refuses the connection: nothing was sent.
		s.complete(in, in.inc, s.now+lat/4, node.Completion{Req: req, Outcome: node.Failed, Err: store.ErrUnavailable})
		return
	}
	if d.pauseUntil > s.now {
		// A frozen primary accepts the request and answers when it resumes.
		lat += d.pauseUntil - s.now
	}
	if len(op.Append) > 0 && coin(s.flt, s.faults.dbDeadlock()) {
		s.obs.deadlocks++
		s.complete(in, in.inc, s.now+lat, node.Completion{Req: req, Outcome: node.Failed, Err: store.ErrDeadlock})
		return
	}
	c := &storeCall{in: in, inc: in.inc, req: req, op: op, submitted: s.now}
	id := s.id()
	d.calls[id] = c
	timeout := int64(cfg.StoreTimeout)
	if lat > timeout || coin(s.flt, s.faults.dbUnknown()) {
		// The caller gives up at the timeout; the transaction reaches the
		// database at lat and commits or not by a coin.
		c.timedOut = true
		at := min(lat, timeout)
		s.complete(in, in.inc, s.now+at, node.Completion{Req: req, Outcome: node.Unknown, Err: store.ErrUnknownOutcome})
		d.noteUnknown(&op)
	}
	s.schedule(s.now+lat, event{kind: evStoreApply, target: in.idx, a: id})
}

// apply runs a call against the store and completes it.
func (d *simStore) apply(id uint64) {
	s := d.s
	c := d.calls[id]
	if c == nil {
		return // the primary died with it in flight (dbDie answered it)
	}
	if c.synced {
		// The replica has it: the semi-sync acknowledgement goes out.
		delete(d.calls, id)
		s.complete(c.in, c.inc, s.now+latency(s.deps, s.cfg.Deps.StoreLatencyMin/4, 0), c.comp)
		return
	}
	if d.pauseUntil > s.now {
		d.hold(id, c)
		return
	}
	delete(d.calls, id)
	if c.timedOut {
		if !s.faults.dbOutage() && s.flt.IntN(2) == 0 {
			s.obs.lateCommits++
			_, _ = d.commit(c, false)
		}
		return
	}
	if s.faults.dbOutage() {
		s.complete(c.in, c.inc, s.now, node.Completion{Req: c.req, Outcome: node.Failed, Err: store.ErrUnavailable})
		return
	}
	// Semi-sync: the commit is acknowledged once the replica has it.
	sync := d.repl != nil && d.repl.syncAck() && isWrite(&c.op)
	res, err := d.commit(c, !sync)
	comp := node.Completion{Req: c.req, Outcome: node.OK, Store: res}
	if err != nil {
		comp = node.Completion{Req: c.req, Outcome: node.Failed, Err: err, Store: nil}
		if errors.Is(err, store.ErrUnknownOutcome) {
			comp.Outcome = node.Unknown
		}
	} else if sync {
		c.synced, c.comp = true, comp
		d.calls[id] = c
		s.schedule(s.now+d.repl.lag, event{kind: evStoreApply, target: c.in.idx, a: id})
		return
	}
	s.complete(c.in, c.inc, s.now+latency(s.deps, s.cfg.Deps.StoreLatencyMin/4, 0), comp)
}

// hold keeps a call that reached a frozen primary until it resumes; a
// caller who waited past the store timeout is told Unknown meanwhile.
func (d *simStore) hold(id uint64, c *storeCall) {
	s := d.s
	timeout := int64(s.cfg.Deps.StoreTimeout)
	if !c.timedOut && d.pauseUntil-c.submitted > timeout {
		c.timedOut = true
		s.complete(c.in, c.inc, max(s.now, c.submitted+timeout), node.Completion{Req: c.req, Outcome: node.Unknown,
			Err: store.ErrUnknownOutcome})
		d.noteUnknown(&c.op)
	}
	s.schedule(d.pauseUntil+latency(s.deps, s.cfg.Deps.StoreLatencyMin, 0), event{kind: evStoreApply, target: c.in.idx, a: id})
}

// run executes one op on the store.
func (d *simStore) run(op *node.StoreOp) (*node.StoreResult, error) {
	res := &node.StoreResult{}
	var err error
	switch {
	case len(op.Append) > 0:
		res.Append, err = d.st.Append(bg, op.Append)
		if err == nil {
			d.noteAppended(op.Append, res.Append)
		}
	case op.Sync != nil:
		res.Sync, err = d.st.Sync(bg, *op.Sync)
	case op.MarkRead != nil:
		res.Read, err = d.st.MarkRead(bg, *op.MarkRead)
	case op.ConvList != nil:
		res.ConvList, err = d.st.ConvList(bg, *op.ConvList)
	case op.Touch != nil:
		err = d.st.Touch(bg, *op.Touch)
	default:
		err = store.ErrInvalid
	}
	return res, err
}

func (d *simStore) noteUnknown(op *node.StoreOp) {
	for _, a := range op.Append {
		if len(d.unknownKeys) >= unknownKeysMax {
			return
		}
		d.unknownKeys[appendKey{a.ConvID, a.SenderID, a.ClientMsgID}] = struct{}{}
	}
}

// noteAppended counts unknown outcomes that a resend resolved by dedup.
func (d *simStore) noteAppended(reqs []store.AppendReq, res []store.AppendResult) {
	if len(d.unknownKeys) == 0 {
		return
	}
	for i, a := range reqs {
		k := appendKey{a.ConvID, a.SenderID, a.ClientMsgID}
		if _, ok := d.unknownKeys[k]; !ok {
			continue
		}
		if i < len(res) && res[i].Duplicate {
			d.s.obs.unknownResolvedByDedup++
			delete(d.unknownKeys, k)
		}
	}
}

// businessName maps a wire business to the sim's name.
func businessName(b wire.Business) string {
	switch b {
	case wire.Business_BUSINESS_CONTACT:
		return businessContact
	case wire.Business_BUSINESS_UNREAD:
		return businessUnread
	case wire.Business_BUSINESS_SYSTEM:
		return businessSystem
	}
	return businessMessage
}
