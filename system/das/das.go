// Package das is zzim's storage access service: the only component that
// talks to the database. It is a sans-I/O state machine (system/node): it
// receives wire.StoreRequest messages from logic and extlogic, queues them
// per business, issues node.StoreOp requests through its Env and answers
// each caller with a wire.StoreReply.
//
// What it guarantees (docs/protocol.md "Das"):
//   - One bounded queue per business (message, contact, unread, system). A
//     full queue answers OUTCOME_FAILED + OVERLOADED at once, and nothing is
//     stored; the other queues keep serving, so one slow business cannot
//     starve another.
//   - Appends are group-committed: up to store.AppendBatchMax queued appends
//     of one queue go into one transaction, with at most appendInflightMax
//     append transactions per queue in flight. Reads go one StoreOp each,
//     at most readInflightMax per queue.
//   - The outcome of a transaction reaches every caller in it unchanged:
//     committed → OUTCOME_OK with the seq; timed out → OUTCOME_UNKNOWN (it may
//     have committed: the caller retries, the store's dedup answers);
//     definitely not committed → OUTCOME_FAILED with a code. A deadlock is
//     retried here as the same batch up to deadlockRetryMax times before it
//     becomes UNAVAILABLE.
//
// Bug switches honoured here: bugs.AckBeforeCommit (answer an append at once
// with a seq guessed from a cache) and bugs.StaleSync (answer a sync from a
// snapshot lagging by StaleSyncBound).
package das

import (
	"errors"
	"fmt"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// Defaults and bounds.
const (
	// QueueMaxDefault bounds each business queue (appends and reads waiting).
	QueueMaxDefault = 1024
	// AppendInflightMaxDefault bounds the append transactions of one queue in flight.
	AppendInflightMaxDefault = 2
	// ReadInflightMaxDefault bounds the read requests of one queue in flight.
	ReadInflightMaxDefault = 16
	// QueueWaitMaxDefault bounds how long a request may wait in its queue
	// before it is started: one that waited longer is answered OVERLOADED
	// instead (nothing stored). Without it a queue that is long but under
	// QueueMax delays answers past the callers' dasTimeout (1s), and callers
	// read the busy das as dead: they retry elsewhere and multiply the load.
	// Well under dasTimeout, so a busy das answers before a caller gives up.
	QueueWaitMaxDefault = 300 * time.Millisecond
	// BatchDurationMaxDefault bounds how long one group commit is expected
	// to take beyond its fixed part: the batch size is capped at
	// BatchDurationMax divided by the measured cost of one more append (the
	// slope of commit time over batch size, commitcost.go), so a store that
	// slows down per row gets smaller batches and a caller's append is
	// answered within QueueWaitMax + BatchDurationMax + the fixed commit
	// time, under dasTimeout. A store whose cost is per transaction (an
	// fsync, a semi-sync replica's ack) keeps full batches.
	BatchDurationMaxDefault = 200 * time.Millisecond
	// AppendLingerMax bounds Config.AppendLinger: a linger is paid by every
	// append's latency, and past a few tens of milliseconds it would be a
	// visible part of the callers' dasTimeout (1s) and of a send's latency.
	AppendLingerMax = 50 * time.Millisecond
	// StaleSyncBoundDefault is how far bugs.StaleSync's snapshot lags.
	StaleSyncBoundDefault = 2 * time.Second
	// deadlockRetryMax bounds the re-issues of one batch aborted by a deadlock.
	deadlockRetryMax = 3
	// seqCacheMax bounds bugs.AckBeforeCommit's per-conversation cache; when
	// full it is cleared (a bug switch needs no eviction policy).
	seqCacheMax = 1 << 16
	// flightsFreeMax bounds the finished flights kept for reuse: what the
	// default in-flight bounds of all queues can hold.
	flightsFreeMax = businessCount * (AppendInflightMaxDefault + ReadInflightMaxDefault)
	// businessCount is the number of wire.Business values.
	businessCount = 4
)

// Config configures a Das.
type Config struct {
	// Topology is the number of slots per role (for registration and views).
	Topology map[node.Role]int
	Bugs     bugs.Set
	// QueueMax bounds each business queue; a missing or zero entry means QueueMaxDefault.
	QueueMax          map[wire.Business]int
	AppendInflightMax int           // per queue; 0 means AppendInflightMaxDefault
	ReadInflightMax   int           // per queue; 0 means ReadInflightMaxDefault
	StaleSyncBound    time.Duration // 0 means StaleSyncBoundDefault
	QueueWaitMax      time.Duration // 0 means QueueWaitMaxDefault
	BatchDurationMax  time.Duration // 0 means BatchDurationMaxDefault
	// AppendLinger, when positive, holds a batch smaller than the batch
	// cap until its oldest append has waited this long, so that appends
	// arriving one by one share a transaction: on a store whose cost is
	// per commit (MariaDB: a one-append transaction costs the server many
	// times what one more append in a batch does) this trades up to
	// AppendLinger of latency for fewer commits. A full batch goes at
	// once. 0 (the default) starts every batch as soon as a transaction
	// slot is free. Capped at AppendLingerMax and at QueueWaitMax/2, so
	// that lingering alone never makes a request expire.
	AppendLinger time.Duration
}

// Stats are das counters, exported for metrics.
type Stats struct {
	QueueDepth      [businessCount]int    `metric:"business"` // waiting now, by wire.Business
	Rejected        [businessCount]uint64 `metric:"business"` // OVERLOADED answers, by wire.Business (queue full or waited too long)
	RejectedTotal   uint64                // OVERLOADED answers, all businesses
	Expired         uint64                // requests answered OVERLOADED after QueueWaitMax in a queue
	BadRequests     uint64                // requests refused by validation or the store
	Batches         uint64                // append transactions issued (first attempts)
	BatchedAppends  uint64                // appends in those transactions
	BatchSizeMax    int                   // largest batch so far
	BatchCap        int                   // batch size BatchDurationMax allows now
	Reads           uint64                // read requests issued
	DeadlockRetries uint64
	Unknown         uint64 // store operations that timed out
	Failed          uint64 // store operations that definitely failed
	EarlyAcks       uint64 // bugs.AckBeforeCommit answers
}

// request is one caller's request waiting in a queue or in a transaction.
type request struct {
	from  node.Addr
	req   *wire.StoreRequest
	at    time.Time // when it was queued
	acked bool      // bugs.AckBeforeCommit: the caller already has its answer
}

// queue is one business's bounded queue.
type queue struct {
	business       wire.Business
	max            int
	appends        []*request
	reads          []*request
	appendInflight int
	readInflight   int
}

func (q *queue) depth() int { return len(q.appends) + len(q.reads) }

// flight is one StoreOp in flight.
type flight struct {
	q    *queue
	reqs []*request
	// one backs reqs for a read (one request), so a read's flight is one
	// allocation.
	one       [1]*request
	op        node.StoreOp
	isAppend  bool
	deadlocks int
	started   time.Time
}

// Das is the storage access state machine.
type Das struct {
	cfg      Config
	member   *node.Member
	queues   [businessCount]*queue
	inflight map[node.ReqID]*flight
	free     []*flight         // finished flights kept for reuse, at most flightsFreeMax
	seqCache map[string]uint64 // bugs.AckBeforeCommit only
	// cost learns what an append adds to a group commit's time; it caps
	// the batch size (BatchDurationMax).
	cost commitCost
	// linger is the one timer armed for Config.AppendLinger, if armed:
	// it is due when the earliest lingering batch of any queue must go.
	linger      node.TimerID
	lingerArmed bool
	lingerAt    time.Time
	stats       Stats
}

// lingerTag marks the AppendLinger timer.
type lingerTag struct{}

var _ node.Node = (*Das)(nil)

// New returns a Das with cfg's defaults filled in.
func New(cfg Config) *Das {
	if cfg.AppendInflightMax <= 0 {
		cfg.AppendInflightMax = AppendInflightMaxDefault
	}
	if cfg.ReadInflightMax <= 0 {
		cfg.ReadInflightMax = ReadInflightMaxDefault
	}
	if cfg.StaleSyncBound <= 0 {
		cfg.StaleSyncBound = StaleSyncBoundDefault
	}
	if cfg.QueueWaitMax <= 0 {
		cfg.QueueWaitMax = QueueWaitMaxDefault
	}
	if cfg.BatchDurationMax <= 0 {
		cfg.BatchDurationMax = BatchDurationMaxDefault
	}
	cfg.AppendLinger = min(max(cfg.AppendLinger, 0), AppendLingerMax, cfg.QueueWaitMax/2)
	d := &Das{
		cfg:      cfg,
		member:   node.NewMember(cfg.Topology),
		inflight: map[node.ReqID]*flight{},
		seqCache: map[string]uint64{},
	}
	for b := range d.queues {
		max := cfg.QueueMax[wire.Business(b)]
		if max <= 0 {
			max = QueueMaxDefault
		}
		d.queues[b] = &queue{business: wire.Business(b), max: max}
	}
	return d
}

// Stats returns a copy of the counters.
func (d *Das) Stats() Stats {
	s := d.stats
	s.BatchCap = d.batchMax()
	for b, q := range d.queues {
		s.QueueDepth[b] = q.depth()
	}
	return s
}

// Start implements node.Node.
func (d *Das) Start(env node.Env) { d.member.Start(env) }

// Handle implements node.Node.
func (d *Das) Handle(env node.Env, ev node.Event) {
	if d.member.Handle(env, ev) {
		return
	}
	switch ev := ev.(type) {
	case node.Recv:
		if req, ok := ev.Msg.(*wire.StoreRequest); ok {
			d.onRequest(env, req)
		}
	case node.Completion:
		d.onCompletion(env, ev)
	case node.Timer:
		if _, ok := ev.Tag.(lingerTag); ok && d.lingerArmed && ev.ID == d.linger {
			// A timer cancelled after it fired may still be delivered: only
			// the armed one counts.
			d.lingerArmed = false
			for _, q := range d.queues {
				d.dispatch(env, q)
			}
		}
	}
}

// Linger returns the effective Config.AppendLinger, after its caps.
func (d *Das) Linger() time.Duration { return d.cfg.AppendLinger }

func (d *Das) onRequest(env node.Env, req *wire.StoreRequest) {
	from, err := node.ParseAddr(req.ReplyTo)
	if err != nil {
		env.Log().Warn("das: request without a valid reply_to", "reply_to", req.ReplyTo, "err", err)
		return // nobody to answer
	}
	r := &request{from: from, req: req, at: env.Now()}
	if err := validate(req); err != nil {
		d.stats.BadRequests++
		d.send(env, r, failed(wire.ErrorCode_BAD_REQUEST, err))
		return
	}
	q := d.queues[req.Business]
	if q.depth() >= q.max {
		d.stats.Rejected[req.Business]++
		d.stats.RejectedTotal++
		d.send(env, r, failed(wire.ErrorCode_OVERLOADED, fmt.Errorf("das: %s queue full (%d)", req.Business, q.max)))
		return
	}
	if req.Append != nil {
		if d.cfg.Bugs.On(bugs.AckBeforeCommit) {
			d.ackEarly(env, r)
		}
		q.appends = append(q.appends, r)
	} else {
		q.reads = append(q.reads, r)
	}
	d.dispatch(env, q)
}

// dispatch starts as much of q's waiting work as its in-flight bounds allow.
func (d *Das) dispatch(env node.Env, q *queue) {
	d.expire(env, q)
	now := env.Now()
	for q.appendInflight < d.cfg.AppendInflightMax && len(q.appends) > 0 && !d.lingering(now, q) {
		n := min(len(q.appends), d.batchMax())
		batch := q.appends[:n:n]
		q.appends = q.appends[n:]
		f := d.newFlight()
		f.q, f.reqs, f.isAppend, f.op = q, batch, true, node.StoreOp{Append: make([]store.AppendReq, n)}
		for i, r := range batch {
			f.op.Append[i] = appendReq(r.req.Append)
		}
		q.appendInflight++
		d.stats.Batches++
		d.stats.BatchedAppends += uint64(n)
		d.stats.BatchSizeMax = max(d.stats.BatchSizeMax, n)
		d.issue(env, f)
	}
	for q.readInflight < d.cfg.ReadInflightMax && len(q.reads) > 0 {
		r := q.reads[0]
		q.reads = q.reads[1:]
		q.readInflight++
		d.stats.Reads++
		f := d.newFlight()
		f.q, f.op = q, readOp(r.req)
		f.one[0] = r
		f.reqs = f.one[:]
		d.issue(env, f)
	}
	if d.cfg.AppendLinger > 0 {
		d.armLinger(env)
	}
}

// lingering reports whether q's waiting appends are held for AppendLinger:
// fewer than a full batch, the oldest not yet waited AppendLinger.
func (d *Das) lingering(now time.Time, q *queue) bool {
	return d.cfg.AppendLinger > 0 && len(q.appends) < d.batchMax() &&
		now.Sub(q.appends[0].at) < d.cfg.AppendLinger
}

// armLinger keeps the one linger timer due when the earliest lingering
// batch must go, and no timer when no batch lingers: a queue waiting for a
// transaction slot instead is started by that transaction's completion.
func (d *Das) armLinger(env node.Env) {
	now := env.Now()
	var due time.Time
	for _, q := range d.queues {
		if q.appendInflight < d.cfg.AppendInflightMax && len(q.appends) > 0 && d.lingering(now, q) {
			if at := q.appends[0].at.Add(d.cfg.AppendLinger); due.IsZero() || at.Before(due) {
				due = at
			}
		}
	}
	if d.lingerArmed && (due.IsZero() || !due.Equal(d.lingerAt)) {
		env.Cancel(d.linger)
		d.lingerArmed = false
	}
	if !due.IsZero() && !d.lingerArmed {
		d.linger, d.lingerArmed, d.lingerAt = env.After(due.Sub(now), lingerTag{}), true, due
	}
}

// expire answers OVERLOADED the requests that waited in q longer than
// QueueWaitMax; they were never started, so nothing of them is stored
// (an early-acked append under bugs.AckBeforeCommit keeps its lie).
func (d *Das) expire(env node.Env, q *queue) {
	now := env.Now()
	keep := func(rs []*request) []*request {
		kept := rs[:0]
		for _, r := range rs {
			if now.Sub(r.at) > d.cfg.QueueWaitMax && !r.acked {
				d.stats.Expired++
				d.stats.Rejected[q.business]++
				d.stats.RejectedTotal++
				d.send(env, r, failed(wire.ErrorCode_OVERLOADED, fmt.Errorf("das: waited over %s in the %s queue", d.cfg.QueueWaitMax, q.business)))
				continue
			}
			kept = append(kept, r)
		}
		clear(rs[len(kept):]) // no stale pointers past the kept ones
		return kept
	}
	if len(q.appends) > 0 && now.Sub(q.appends[0].at) > d.cfg.QueueWaitMax {
		q.appends = keep(q.appends)
	}
	if len(q.reads) > 0 && now.Sub(q.reads[0].at) > d.cfg.QueueWaitMax {
		q.reads = keep(q.reads)
	}
}

func (d *Das) issue(env node.Env, f *flight) {
	f.started = env.Now()
	d.inflight[env.Store(f.op)] = f
}

// batchMax is the largest group commit whose per-append part is expected
// to fit in BatchDurationMax.
func (d *Das) batchMax() int {
	return d.cost.batchCap(d.cfg.BatchDurationMax, store.AppendBatchMax)
}

// learnAppendTime folds a committed batch's size and time into the cost.
func (d *Das) learnAppendTime(env node.Env, f *flight) {
	d.cost.observe(len(f.reqs), env.Now().Sub(f.started))
}

func (d *Das) onCompletion(env node.Env, c node.Completion) {
	f, ok := d.inflight[c.Req]
	if !ok {
		return // a registry completion, or a previous incarnation's request
	}
	delete(d.inflight, c.Req)
	if c.Outcome == node.Failed && errors.Is(c.Err, store.ErrDeadlock) && f.deadlocks < deadlockRetryMax {
		// Nothing was written: the same batch again is safe and keeps its order.
		f.deadlocks++
		d.stats.DeadlockRetries++
		d.issue(env, f)
		return
	}
	switch c.Outcome {
	case node.OK:
		if f.isAppend {
			d.learnAppendTime(env, f)
		}
		d.answerOK(env, f, c.Store)
	case node.Unknown:
		d.stats.Unknown++
		d.answerAll(env, f, &wire.StoreReply{Outcome: wire.Outcome_OUTCOME_UNKNOWN, Error: errText(c.Err)})
	default:
		d.stats.Failed++
		code := wire.ErrorCode_UNAVAILABLE
		if errors.Is(c.Err, store.ErrInvalid) {
			code = wire.ErrorCode_BAD_REQUEST
			d.stats.BadRequests++
		}
		d.answerAll(env, f, failed(code, c.Err))
	}
	if f.isAppend {
		f.q.appendInflight--
	} else {
		f.q.readInflight--
	}
	q := f.q
	d.freeFlight(f)
	d.dispatch(env, q)
}

// newFlight returns a zeroed flight, reusing a finished one if any.
func (d *Das) newFlight() *flight {
	if n := len(d.free); n > 0 {
		f := d.free[n-1]
		d.free = d.free[:n-1]
		return f
	}
	return &flight{}
}

// freeFlight keeps a finished flight for reuse. Only d.inflight held it,
// and the op it issued is the store's: the flight is zeroed, nothing in the
// op is reused.
func (d *Das) freeFlight(f *flight) {
	if len(d.free) >= flightsFreeMax {
		return
	}
	*f = flight{}
	d.free = append(d.free, f)
}

func (d *Das) answerOK(env node.Env, f *flight, res *node.StoreResult) {
	if res == nil {
		res = &node.StoreResult{}
	}
	if f.isAppend {
		// One allocation each for the batch's replies and results: each
		// caller still gets messages of its own.
		reps := make([]wire.StoreReply, len(f.reqs))
		results := make([]wire.AppendResult, min(len(f.reqs), len(res.Append)))
		for i, r := range f.reqs {
			if i >= len(res.Append) {
				// The store broke its contract: one result per request.
				d.send(env, r, failed(wire.ErrorCode_INTERNAL, errors.New("das: store returned too few append results")))
				continue
			}
			a := res.Append[i]
			d.learnSeq(r.req.Append.ConvId, a.Seq)
			ar := &results[i]
			ar.Seq, ar.Duplicate, ar.CreatedAtMs = a.Seq, a.Duplicate, a.CreatedAtMs
			rep := &reps[i]
			rep.Append = ar
			d.send(env, r, rep)
		}
		return
	}
	r := f.reqs[0]
	d.send(env, r, d.readReply(env, r.req, res))
}

// answerAll sends rep to every caller in f: a copy to each but the last,
// which takes rep itself.
func (d *Das) answerAll(env node.Env, f *flight, rep *wire.StoreReply) {
	last := len(f.reqs) - 1
	for i, r := range f.reqs {
		if i == last {
			d.send(env, r, rep)
		} else {
			d.reply(env, r, rep)
		}
	}
}

// send addresses rep, which nothing else holds or will change, to r's
// caller and sends it: unlike reply, no copy.
func (d *Das) send(env node.Env, r *request, rep *wire.StoreReply) {
	if r.acked {
		return // bugs.AckBeforeCommit: the real outcome is ignored
	}
	rep.ReqId = r.req.ReqId
	rep.CallerIncarnation = r.req.CallerIncarnation
	env.Send(r.from, rep)
}

// reply sends a copy of rep, addressed to r's caller: rep is shared by
// several callers, and a sent message must never change afterwards.
func (d *Das) reply(env node.Env, r *request, rep *wire.StoreReply) {
	if r.acked {
		return // bugs.AckBeforeCommit: the real outcome is ignored
	}
	out := &wire.StoreReply{
		ReqId:             r.req.ReqId,
		CallerIncarnation: r.req.CallerIncarnation,
		Outcome:           rep.Outcome,
		Code:              rep.Code,
		Error:             rep.Error,
		Append:            rep.Append,
		Sync:              rep.Sync,
		Read:              rep.Read,
		ConvList:          rep.ConvList,
	}
	env.Send(r.from, out)
}

func failed(code wire.ErrorCode, err error) *wire.StoreReply {
	return &wire.StoreReply{Outcome: wire.Outcome_OUTCOME_FAILED, Code: code, Error: errText(err)}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
