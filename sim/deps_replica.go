package sim

import (
	"fmt"
	"sort"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
)

// Faults of the database itself (not of the path to it): the primary is
// killed, frozen, or killed and replaced by its replica.
const (
	// FaultDBCrash: the primary is SIGKILLed at At and restarted after For.
	// Transactions in flight get Unknown (some had committed: InnoDB keeps
	// what it made durable); new requests are refused; committed data
	// survive the restart.
	FaultDBCrash FaultKind = "db-crash"
	// FaultDBPause: the primary freezes for For. Requests hang, they do
	// not fail; a caller whose request outlasts the store timeout gets
	// Unknown, and the request still runs when the database resumes.
	FaultDBPause FaultKind = "db-pause"
	// FaultDBFailover: semi-synchronous replication (MariaDB AFTER_SYNC): a
	// write is acknowledged only once the replica has it, Delay (the
	// replication lag) after its commit. At At the primary dies as in
	// db-crash; at At+For the replica is promoted and becomes the store.
	FaultDBFailover FaultKind = "db-failover"
	// FaultDBFailoverAsync: asynchronous replication: writes are
	// acknowledged at commit and reach the replica Delay later, so the
	// promotion loses the last Delay of acknowledged writes and the
	// promoted store hands their seqs out again.
	FaultDBFailoverAsync FaultKind = "db-failover-async"
)

// dbResetMin is how long a caller takes to see its connection reset when
// the database dies under it.
const dbResetMin = 200 * time.Microsecond

// LostAppend is one acknowledged message a failover lost: the seq das was
// told, missing from the promoted store (which may give it to another
// message).
type LostAppend struct {
	Conv        string `json:"conv"`
	Seq         uint64 `json:"seq"`
	ClientMsgID string `json:"client_msg_id"`
}

func (l LostAppend) String() string {
	return fmt.Sprintf("(%s, %d, %s)", l.Conv, l.Seq, l.ClientMsgID)
}

// DepsReport is what the simulated dependencies' own faults did in a run.
type DepsReport struct {
	DBCrashRecoveries  uint64 `json:"db_crash_recoveries"`
	DBFailovers        uint64 `json:"db_failovers"`
	NATSNodeRestarts   uint64 `json:"nats_node_restarts"`
	NATSLeaderChanges  uint64 `json:"nats_leader_changes"`
	PresenceLost       uint64 `json:"presence_lost"`
	ReplicaDivergences uint64 `json:"replica_divergences,omitempty"`
	// LostAcknowledged lists the acknowledged appends failovers lost, in
	// the order the primary committed them.
	LostAcknowledged []LostAppend `json:"lost_acknowledged,omitempty"`
}

// depsReport collects the dependency faults' counters at the end of a run.
func (s *sim) depsReport() DepsReport {
	d := s.store
	r := DepsReport{DBCrashRecoveries: d.crashRecoveries, PresenceLost: s.presence.killed}
	if rp := d.repl; rp != nil {
		r.DBFailovers, r.ReplicaDivergences = rp.failovers, rp.divergences
		r.LostAcknowledged = append([]LostAppend(nil), rp.lost...)
	}
	if n := s.faults.nats; n != nil {
		r.NATSNodeRestarts, r.NATSLeaderChanges = n.restarts, n.leaderChanges
	}
	return r
}

// replication is the database's replica and the binlog it reads. The
// replica applies each committed write lag after its commit, in commit
// order; ops are replayed, and the store is deterministic, so the replica
// assigns the seqs the primary did (a divergence is counted, and a test
// demands none).
type replication struct {
	d     *simStore
	async bool
	lag   int64
	// replica is the store a failover promotes.
	replica store.Store
	// pending are committed writes the replica has not applied yet, in
	// commit order; history are those it has, kept to rebuild a replica
	// after a promotion (the promoted store's state is exactly history).
	pending, history []replOp
	failovers        uint64
	divergences      uint64
	lost             []LostAppend
}

// replOp is one committed write in the binlog.
type replOp struct {
	at  int64
	op  node.StoreOp
	res *node.StoreResult
	// acked: das was told it committed (an OK completion was sent).
	acked bool
}

// enableReplication gives the store a replica, for runs with a failover.
func (d *simStore) enableReplication(async bool, lag time.Duration) {
	d.repl = &replication{d: d, async: async, lag: int64(lag), replica: d.s.services.NewStore(d.s.cfg.Bugs)}
}

// syncAck reports whether a write's acknowledgement waits for the
// replica: semi-sync, unless the no-semisync bug makes the primary answer
// at commit.
func (r *replication) syncAck() bool {
	return !r.async && !r.d.s.cfg.Bugs.On(bugs.NoSemiSync)
}

// isWrite tells the ops the binlog carries.
func isWrite(op *node.StoreOp) bool {
	return len(op.Append) > 0 || op.MarkRead != nil || op.Touch != nil
}

// committed logs one write the primary committed at now.
func (r *replication) committed(op *node.StoreOp, res *node.StoreResult, acked bool) {
	r.pending = append(r.pending, replOp{at: r.d.s.now, op: *op, res: res, acked: acked})
	r.drain(r.d.s.now)
}

// drain applies to the replica every pending write committed lag or more
// before t.
func (r *replication) drain(t int64) {
	i := 0
	for ; i < len(r.pending) && r.pending[i].at+r.lag <= t; i++ {
		r.replay(r.replica, &r.pending[i])
	}
	if i == 0 {
		return
	}
	r.history = append(r.history, r.pending[:i]...)
	n := copy(r.pending, r.pending[i:])
	clear(r.pending[n:])
	r.pending = r.pending[:n]
}

// replay applies one logged write to st, checking that appends get the
// primary's seqs.
func (r *replication) replay(st store.Store, w *replOp) {
	tmp := &simStore{s: r.d.s, st: st}
	res, err := tmp.run(&w.op)
	if err != nil {
		r.divergences++
		return
	}
	if w.res == nil {
		return
	}
	for j, a := range w.res.Append {
		if j >= len(res.Append) || res.Append[j].Seq != a.Seq {
			r.divergences++
		}
	}
}

// primaryDied: at t the replica stops receiving; what it lacks is lost
// (the old primary never comes back).
func (r *replication) primaryDied(t int64) {
	r.drain(t)
}

// promote makes the replica the store: the writes it never received are
// gone, and the acknowledged appends among them are counted as lost.
func (r *replication) promote() {
	for i := range r.pending {
		w := &r.pending[i]
		if !w.acked || w.res == nil {
			continue
		}
		for j, a := range w.res.Append {
			if a.Duplicate || j >= len(w.op.Append) {
				continue
			}
			req := &w.op.Append[j]
			r.lost = append(r.lost, LostAppend{Conv: req.ConvID, Seq: a.Seq, ClientMsgID: req.ClientMsgID})
		}
	}
	clear(r.pending)
	r.pending = r.pending[:0]
	r.d.st = r.replica
	r.failovers++
	// A fresh replica is seeded from the promoted state, so a later
	// failover has one too.
	r.replica = r.d.s.services.NewStore(r.d.s.cfg.Bugs)
	for i := range r.history {
		r.replay(r.replica, &r.history[i])
	}
}

// dbDie kills the primary (db-crash, or the start of a failover): every
// call in flight is answered Unknown; for a crash each had committed or
// not (InnoDB made it durable or rolled it back), for a failover what had
// not committed is gone with the primary.
func (d *simStore) dbDie(failover bool) {
	s := d.s
	d.down++
	ids := make([]uint64, 0, len(d.calls))
	for id := range d.calls {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		c := d.calls[id]
		delete(d.calls, id)
		if !c.synced && !failover && coin(s.flt, 0.5) {
			s.obs.lateCommits++
			d.commit(c, false)
		}
		if !c.timedOut {
			d.noteUnknown(&c.op)
			s.complete(c.in, c.inc, s.now+latency(s.deps, dbResetMin, 0), node.Completion{Req: c.req,
				Outcome: node.Unknown, Err: store.ErrUnknownOutcome})
		}
	}
	if failover && d.repl != nil {
		d.repl.primaryDied(s.now)
	}
}

// dbRecover ends a crash (the primary answers again, its committed data
// intact) or a failover (the replica is promoted).
func (d *simStore) dbRecover(failover bool) {
	d.down--
	if failover && d.repl != nil {
		d.repl.promote()
		return
	}
	d.crashRecoveries++
}

// commit runs a call's op on the primary and logs it for the replica.
func (d *simStore) commit(c *storeCall, acked bool) (*node.StoreResult, error) {
	res, err := d.run(&c.op)
	if err == nil && d.repl != nil && isWrite(&c.op) {
		d.repl.committed(&c.op, res, acked)
	}
	return res, err
}
