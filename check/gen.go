package check

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// GenConfig describes a generated history: a correct single-store system
// (every effect happens atomically between an operation's call and its
// return) driven by concurrent clients that send, sync, read and list,
// receive pushes (some lost, so gaps are filled by sync), see send
// outcomes that are unknown or rejected, and converge once traffic stops.
// The same config and seed give the same history.
type GenConfig struct {
	Seed          uint64
	Conversations int     // default 10
	Users         int     // default max(2, Conversations)
	Ops           int     // history ops before traffic stops; default 1000
	UnknownRate   float64 // send attempts whose outcome the client never learns; half take effect
	ErrorRate     float64 // send attempts rejected (OVERLOADED)
	PushLossRate  float64 // pushes lost on the way
	SyncLimit     int     // sync page; default 20
}

// Generator timings, on the history clock.
const (
	genLatencyMin   = 200 * time.Microsecond
	genLatencySpan  = 3 * time.Millisecond
	genThinkMean    = 20 * time.Millisecond
	genSendTimeout  = 100 * time.Millisecond
	genBackoff      = 10 * time.Millisecond
	genSyncInterval = time.Second
)

// Generate returns a legal history and the store's final contents.
func Generate(cfg GenConfig) (*History, []store.Message) {
	g := newGen(cfg)
	for _, c := range g.clients {
		g.login(c)
	}
	for g.events.Len() > 0 {
		ev := heap.Pop(&g.events).(genEvent)
		g.now = ev.at
		ev.fn()
	}
	g.finals()
	return &History{Ops: g.rec.Ops()}, g.dump()
}

type genConv struct {
	id       string
	users    [2]string
	log      []store.Message
	bySender map[[2]string]uint64 // (sender, client_msg_id) -> seq
	readSeq  map[string]uint64
}

type genSend struct {
	conv int
	cmid string
	cseq uint64
}

type genClient struct {
	num, session int
	user         string
	convs        []int
	held         map[int]uint64
	buffer       map[int]map[uint64]genBuffered
	cseq         uint64
	pending      *genSend
	syncQ        []int
	queued       map[int]bool
	busy         bool
	scheduled    bool
	finalSynced  bool
	nextPeriodic int64
}

type genBuffered struct {
	ref MsgRef
	via string
}

type genEvent struct {
	at  int64
	seq uint64
	fn  func()
}

type genEvents []genEvent

func (e genEvents) Len() int { return len(e) }
func (e genEvents) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e genEvents) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *genEvents) Push(x any)   { *e = append(*e, x.(genEvent)) }
func (e *genEvents) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

type gen struct {
	cfg     GenConfig
	rng     *rand.Rand
	now     int64
	events  genEvents
	evSeq   uint64
	rec     Recorder
	convs   []*genConv
	clients []*genClient
	byUser  map[string][]*genClient
	quiet   bool
}

func newGen(cfg GenConfig) *gen {
	if cfg.Conversations <= 0 {
		cfg.Conversations = 10
	}
	if cfg.Users <= 0 {
		cfg.Users = max(2, cfg.Conversations)
	}
	cfg.Users = max(2, cfg.Users)
	if cfg.Ops <= 0 {
		cfg.Ops = 1000
	}
	if cfg.SyncLimit <= 0 {
		cfg.SyncLimit = 20
	}
	g := &gen{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), byUser: map[string][]*genClient{}}
	convsOf := make([][]int, cfg.Users)
	for i := 0; i < cfg.Conversations; i++ {
		b := g.rng.IntN(cfg.Users)
		s := (b + 1 + g.rng.IntN(cfg.Users-1)) % cfg.Users
		buyer, seller := fmt.Sprintf("u%d", b), fmt.Sprintf("u%d", s)
		g.convs = append(g.convs, &genConv{
			id: wire.PairConvID(buyer, seller, fmt.Sprintf("l%d", i)), users: [2]string{buyer, seller},
			bySender: map[[2]string]uint64{}, readSeq: map[string]uint64{},
		})
		convsOf[b] = append(convsOf[b], i)
		convsOf[s] = append(convsOf[s], i)
	}
	for u := 0; u < cfg.Users; u++ {
		if len(convsOf[u]) == 0 {
			continue
		}
		c := &genClient{
			num: len(g.clients), user: fmt.Sprintf("u%d", u), convs: convsOf[u],
			held: map[int]uint64{}, buffer: map[int]map[uint64]genBuffered{}, queued: map[int]bool{},
		}
		sort.Slice(c.convs, func(a, b int) bool { return g.convs[c.convs[a]].id < g.convs[c.convs[b]].id })
		g.clients = append(g.clients, c)
		g.byUser[c.user] = append(g.byUser[c.user], c)
	}
	return g
}

func (g *gen) at(d int64, fn func()) {
	g.evSeq++
	heap.Push(&g.events, genEvent{at: g.now + d, seq: g.evSeq, fn: fn})
}

func (g *gen) latency() int64 {
	return int64(genLatencyMin) + g.rng.Int64N(int64(genLatencySpan))
}

func (g *gen) think() int64 {
	return 1 + int64(g.rng.ExpFloat64()*float64(genThinkMean))
}

func (g *gen) record(op Op) {
	g.rec.Add(op)
	if !g.quiet && g.rec.Len() >= g.cfg.Ops {
		g.quiet = true // traffic stops; faults heal; clients converge
	}
}

func (g *gen) op(c *genClient, kind, conv string, call int64) Op {
	return Op{Client: c.num, Session: c.session, User: c.user, Kind: kind, Conv: conv, Call: call}
}

func (g *gen) returned(op *Op) {
	t := g.now
	op.Return = &t
}

// wakeAfter schedules the client's next decision.
func (g *gen) wakeAfter(c *genClient, d int64) {
	if c.scheduled {
		return
	}
	c.scheduled = true
	g.at(d, func() { g.wake(c) })
}

func (g *gen) login(c *genClient) {
	c.session++
	c.busy = true
	call := g.now
	g.at(g.latency(), func() {
		op := g.op(c, KindLogin, "", call)
		g.returned(&op)
		g.record(op)
		c.busy = false
		c.nextPeriodic = g.now + int64(genSyncInterval)
		g.wakeAfter(c, g.think())
	})
}

func (g *gen) wake(c *genClient) {
	c.scheduled = false
	if c.busy {
		return
	}
	if !g.quiet && g.now >= c.nextPeriodic {
		c.nextPeriodic = g.now + int64(genSyncInterval)
		g.enqueueAll(c)
	}
	switch {
	case c.pending != nil:
		g.send(c)
	case len(c.syncQ) > 0:
		conv := c.syncQ[0]
		c.syncQ = c.syncQ[1:]
		c.queued[conv] = false
		g.sync(c, conv)
	case g.quiet && !c.finalSynced:
		c.finalSynced = true
		g.enqueueAll(c)
		g.wakeAfter(c, 0)
	case g.quiet:
		// converged: only a push with a gap wakes it again
	default:
		g.act(c)
	}
}

func (g *gen) enqueueAll(c *genClient) {
	for _, conv := range c.convs {
		g.enqueueSync(c, conv)
	}
}

func (g *gen) enqueueSync(c *genClient, conv int) {
	if c.queued[conv] {
		return
	}
	c.queued[conv] = true
	c.syncQ = append(c.syncQ, conv)
	if !c.busy {
		g.wakeAfter(c, 0)
	}
}

// act draws the client's next action while traffic lasts.
func (g *gen) act(c *genClient) {
	conv := c.convs[g.rng.IntN(len(c.convs))]
	switch r := g.rng.Float64(); {
	case r < 0.45:
		c.cseq++
		c.pending = &genSend{conv: conv, cmid: fmt.Sprintf("%s-%d-%d", c.user, c.num, c.cseq), cseq: c.cseq}
		g.send(c)
	case r < 0.65:
		g.sync(c, conv)
	case r < 0.80:
		g.read(c, conv)
	case r < 0.85:
		g.convList(c)
	case r < 0.87:
		g.login(c)
	default:
		g.wakeAfter(c, g.think())
	}
}

func (g *gen) send(c *genClient) {
	s := *c.pending
	cv := g.convs[s.conv]
	call := g.now
	c.busy = true
	r := g.rng.Float64()
	faulty := !g.quiet
	op := g.op(c, KindSend, cv.id, call)
	op.In = Input{ClientMsgID: s.cmid, CSeq: s.cseq, Body: "m" + fmt.Sprint(s.cseq)}
	switch {
	case faulty && r < g.cfg.UnknownRate:
		applies := g.rng.IntN(2) == 0
		g.at(g.latency(), func() {
			if applies {
				g.appendMsg(c, s)
			}
		})
		g.at(int64(genSendTimeout), func() {
			op.Unknown = true
			g.record(op)
			c.busy = false
			g.wakeAfter(c, int64(genBackoff))
		})
	case faulty && r < g.cfg.UnknownRate+g.cfg.ErrorRate:
		g.at(2*g.latency(), func() {
			op.Error = "OVERLOADED"
			g.returned(&op)
			g.record(op)
			c.busy = false
			g.wakeAfter(c, int64(genBackoff))
		})
	default:
		var seq uint64
		effect := g.latency()
		g.at(effect, func() { seq = g.appendMsg(c, s) })
		g.at(effect+g.latency(), func() {
			op.Out.Seq = seq
			g.returned(&op)
			g.record(op)
			c.busy = false
			c.pending = nil
			g.receive(c, s.conv, MsgRef{Seq: seq, Sender: c.user, ClientMsgID: s.cmid}, viaOwn)
			g.wakeAfter(c, g.think())
		})
	}
}

// viaOwn marks the client's own acknowledged message: held, not delivered.
const viaOwn = "own"

// appendMsg is the store's idempotent append, then pushes to the other
// clients of the conversation's users.
func (g *gen) appendMsg(sender *genClient, s genSend) uint64 {
	cv := g.convs[s.conv]
	if seq, ok := cv.bySender[[2]string{sender.user, s.cmid}]; ok {
		return seq
	}
	seq := uint64(len(cv.log) + 1)
	cv.log = append(cv.log, store.Message{
		ConvID: cv.id, Seq: seq, SenderID: sender.user, ClientMsgID: s.cmid, CSeq: s.cseq,
		Body: "m" + fmt.Sprint(s.cseq), CreatedAtMs: g.now / int64(time.Millisecond),
	})
	cv.bySender[[2]string{sender.user, s.cmid}] = seq
	cv.readSeq[sender.user] = max(cv.readSeq[sender.user], seq)
	ref := MsgRef{Seq: seq, Sender: sender.user, ClientMsgID: s.cmid}
	for _, u := range cv.users {
		for _, c := range g.byUser[u] {
			if c == sender || (!g.quiet && g.rng.Float64() < g.cfg.PushLossRate) {
				continue
			}
			g.at(g.latency(), func() { g.receive(c, s.conv, ref, "push") })
		}
	}
	return seq
}

// receive is the client's dedup and reorder: deliver in seq order, buffer
// what is ahead, and sync to fill a gap.
func (g *gen) receive(c *genClient, conv int, ref MsgRef, via string) {
	held := c.held[conv]
	buf := c.buffer[conv]
	if buf == nil {
		buf = map[uint64]genBuffered{}
		c.buffer[conv] = buf
	}
	if _, ok := buf[ref.Seq]; ok || ref.Seq <= held {
		return
	}
	buf[ref.Seq] = genBuffered{ref, via}
	for {
		b, ok := buf[held+1]
		if !ok {
			break
		}
		delete(buf, held+1)
		held++
		if b.via != viaOwn {
			op := g.op(c, KindDeliver, g.convs[conv].id, g.now)
			op.In.Via = b.via
			op.Out.Msgs = []MsgRef{b.ref}
			g.returned(&op)
			g.record(op)
		}
	}
	c.held[conv] = held
	if len(buf) > 0 {
		g.enqueueSync(c, conv)
	}
}

func (g *gen) sync(c *genClient, conv int) {
	cv := g.convs[conv]
	call, after, limit := g.now, c.held[conv], g.cfg.SyncLimit
	c.busy = true
	var page []MsgRef
	var last uint64
	effect := g.latency()
	g.at(effect, func() {
		last = uint64(len(cv.log))
		for s := after; s < last && len(page) < limit; s++ {
			m := cv.log[s]
			page = append(page, MsgRef{Seq: m.Seq, Sender: m.SenderID, ClientMsgID: m.ClientMsgID})
		}
	})
	g.at(effect+g.latency(), func() {
		op := g.op(c, KindSync, cv.id, call)
		op.In = Input{AfterSeq: after, Limit: limit}
		op.Out = Output{Msgs: page, LastSeq: last}
		g.returned(&op)
		g.record(op)
		c.busy = false
		for _, m := range page {
			g.receive(c, conv, m, "sync")
		}
		if len(page) == limit {
			g.enqueueSync(c, conv)
		}
		g.wakeAfter(c, g.think())
	})
}

func (g *gen) read(c *genClient, conv int) {
	cv := g.convs[conv]
	call, seq := g.now, c.held[conv]
	c.busy = true
	var rs uint64
	effect := g.latency()
	g.at(effect, func() {
		rs = max(cv.readSeq[c.user], min(seq, uint64(len(cv.log))))
		cv.readSeq[c.user] = rs
	})
	g.at(effect+g.latency(), func() {
		op := g.op(c, KindRead, cv.id, call)
		op.In.Seq = seq
		op.Out.ReadSeq = rs
		g.returned(&op)
		g.record(op)
		c.busy = false
		g.wakeAfter(c, g.think())
	})
}

func (g *gen) convList(c *genClient) {
	call := g.now
	c.busy = true
	var rows []ConvView
	effect := g.latency()
	g.at(effect, func() {
		for _, i := range c.convs {
			cv := g.convs[i]
			last, rs := uint64(len(cv.log)), cv.readSeq[c.user]
			if last > 0 {
				rows = append(rows, ConvView{Conv: cv.id, LastSeq: last, ReadSeq: rs, Unread: last - rs})
			}
		}
	})
	g.at(effect+g.latency(), func() {
		op := g.op(c, KindConvList, "", call)
		op.Out.Convs = rows
		g.returned(&op)
		g.record(op)
		c.busy = false
		g.wakeAfter(c, g.think())
	})
}

// finals records what each client holds once everything has drained.
func (g *gen) finals() {
	g.now += int64(time.Millisecond)
	for _, c := range g.clients {
		for _, i := range c.convs {
			cv := g.convs[i]
			op := g.op(c, KindFinal, cv.id, g.now)
			for s := uint64(0); s < c.held[i]; s++ {
				m := cv.log[s]
				op.Out.Msgs = append(op.Out.Msgs, MsgRef{Seq: m.Seq, Sender: m.SenderID, ClientMsgID: m.ClientMsgID})
			}
			op.Out.ReadSeq = cv.readSeq[c.user]
			op.Out.Unread = uint64(len(cv.log)) - op.Out.ReadSeq
			g.returned(&op)
			g.rec.Add(op)
		}
	}
}

func (g *gen) dump() []store.Message {
	out := []store.Message{}
	convs := make([]*genConv, len(g.convs))
	copy(convs, g.convs)
	sort.Slice(convs, func(a, b int) bool { return convs[a].id < convs[b].id })
	for _, cv := range convs {
		out = append(out, cv.log...)
	}
	return out
}
