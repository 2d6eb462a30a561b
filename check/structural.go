package check

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// ViolationsMax bounds the violations a pass reports per promise; the rest
// are counted. The bound is per promise so that a flood of one kind (a bug
// that breaks total order everywhere) cannot hide another broken promise.
const ViolationsMax = 1000

// StructuralOptions tune the structural pass.
type StructuralOptions struct {
	// Faults: the liveness bound counts from the end of the last window.
	Faults []FaultWindow
	// LivenessBound enables promise 9 when positive (history clock, ns).
	LivenessBound time.Duration
	// ViolationsMax bounds the violations returned per promise (0: ViolationsMax).
	ViolationsMax int
}

type convSeq struct {
	conv string
	seq  uint64
}

// convID numbers the pass's conversations densely in first-appearance
// order (an index into structural.convs). The pass's indexes are keyed by
// it instead of the conversation's name: hashing and comparing names was
// most of the pass's time (a swarm seed's history holds about 400,000
// ops), and a conversation's name is looked up once per op instead of once
// per index it touches.
type convID int32

// msgRef identifies a message: (conv, sender, client_msg_id), the
// conversation by its number. A message without client_msg_id (a system
// notice) is identified by its seq.
type msgRef struct {
	conv      convID
	sender    string
	cmid      string
	noticeSeq uint64 // a message without client_msg_id is named by its seq
}

func refOf(conv convID, sender, cmid string, seq uint64) msgRef {
	if cmid == "" {
		return msgRef{conv: conv, sender: sender, noticeSeq: seq}
	}
	return msgRef{conv: conv, sender: sender, cmid: cmid}
}

// cmidText is the client_msg_id as reports print it ("#seq" for a notice).
func (k msgRef) cmidText() string {
	if k.cmid == "" {
		return "#" + strconv.FormatUint(k.noticeSeq, 10)
	}
	return k.cmid
}

type seqAt struct {
	conv convID
	seq  uint64
}

type clientConv struct {
	client int
	conv   convID
}

type clientConvSeq struct {
	client int
	conv   convID
	seq    uint64
}

type userConv struct {
	user string
	conv convID
}

// source names where an observation came from: an op index (>= 0) or a
// dump row j encoded as -(j+1).
type source int

type seqSeen struct {
	seq uint64
	src source
}

type keySeen struct {
	id   msgID
	src  source
	seen bool // the slot holds an observation
}

// dumpRow is a message's seq in the store dump, if it is there.
type dumpRow struct {
	seq uint64
	ok  bool
}

// firstSender is the first client that sent a message, if any did.
type firstSender struct {
	client int
	ok     bool
}

// structural holds the indexes of one pass. Every map is keyed so that
// each op is visited a constant number of times (sorting aside).
type structural struct {
	h       *History
	dump    []store.Message
	opts    StructuralOptions
	out     []Violation
	total   int
	max     int
	sizes   sizes
	listed  map[int]int     // violations reported, per promise
	flagged map[string]bool // one report per broken fact

	idx    *index
	msgSeq []seqSeen // by msgID; seq 0: not observed
	// bySeq[conv][seq-1] is the first message seen at (conv, seq): a
	// conversation's seqs are dense from 1, so a slice is smaller than a
	// map and is read without hashing or a cache miss per probe. A seq far
	// beyond what the slice holds (only a corrupt history has one) goes to
	// seqMsgFar, so a wild seq cannot make the pass allocate for it.
	bySeq     [][]keySeen
	seqMsgFar map[seqAt]keySeen
	convs     []string // every conversation by convID, first appearance order
	lastSeq   []uint64 // by convID

	ackOf      map[seqAt]int // first acked send op per (conv, seq)
	dumpSeq    []dumpRow     // by msgID: the message's seq in the dump
	sentBy     []firstSender // by msgID
	deliverAt  map[clientConvSeq]int64
	finals     map[clientConv]int // final op per (client, conv)
	hasFinal   map[int]bool
	userOf     map[int]string
	lastLogin  map[int]int64
	maxRead    map[userConv]uint64
	maxOwnSent map[userConv]uint64
	anyDeliver bool
	recipients [][]int // cache of finalClients, by convID
}

// Structural runs the linear-time checks of promises 1-6, 8 and 9 on h,
// against dump when it is non-nil.
func Structural(h *History, dump []store.Message, opts StructuralOptions) []Violation {
	return runStructural(h, dump, opts).out
}

func runStructural(h *History, dump []store.Message, opts StructuralOptions) *structural {
	return runStructuralIndexed(newIndex(h, dump), h, dump, opts)
}

func runStructuralIndexed(idx *index, h *History, dump []store.Message, opts StructuralOptions) *structural {
	s := newStructural(idx, h, dump, opts)
	s.observeDump()
	s.observeOps()
	s.checkDurable()
	s.checkFIFO()
	s.checkDeliveries()
	s.checkFinals()
	s.checkLiveness()
	return s
}

// sizes counts a history's ops by kind and its delivered messages, so the
// pass's maps are made at their final size: growing them one rehash at a
// time cost a third of the checker's time on a 400k-op history.
type sizes struct {
	sends, delivered, finals, clients, msgs int
}

func sizesOf(h *History, dump []store.Message) sizes {
	var z sizes
	for i := range h.Ops {
		op := &h.Ops[i]
		switch op.Kind {
		case KindSend:
			z.sends++
		case KindDeliver:
			z.delivered += len(op.Out.Msgs)
		case KindFinal:
			z.finals++
		case KindLogin:
			z.clients++
		}
	}
	z.msgs = len(dump)
	if dump == nil {
		z.msgs = z.sends
	}
	return z
}

func newStructural(idx *index, h *History, dump []store.Message, opts StructuralOptions) *structural {
	z := sizesOf(h, dump)
	s := &structural{
		h: h, dump: dump, opts: opts, max: opts.ViolationsMax, sizes: z,
		idx:        idx,
		flagged:    map[string]bool{},
		listed:     map[int]int{},
		msgSeq:     make([]seqSeen, len(idx.refs)),
		seqMsgFar:  map[seqAt]keySeen{},
		convs:      idx.convs,
		lastSeq:    make([]uint64, len(idx.convs)),
		bySeq:      make([][]keySeen, len(idx.convs)),
		ackOf:      make(map[seqAt]int, z.sends),
		sentBy:     make([]firstSender, len(idx.refs)),
		deliverAt:  make(map[clientConvSeq]int64, z.delivered),
		finals:     map[clientConv]int{},
		hasFinal:   map[int]bool{},
		userOf:     map[int]string{},
		lastLogin:  map[int]int64{},
		maxRead:    map[userConv]uint64{},
		maxOwnSent: map[userConv]uint64{},
	}
	if s.max <= 0 {
		s.max = ViolationsMax
	}
	return s
}

// violate records a violation once per fact (flag), up to the bound.
func (s *structural) violate(flag string, promise int, conv string, srcs []source, format string, args ...any) {
	if flag != "" {
		if s.flagged[flag] {
			return
		}
		s.flagged[flag] = true
	}
	s.total++
	if s.listed[promise] >= s.max {
		return
	}
	s.listed[promise]++
	v := Violation{Promise: promise, Name: PromiseName(promise), Conv: conv, Message: fmt.Sprintf(format, args...)}
	for _, src := range srcs {
		if src >= 0 {
			v.Ops = append(v.Ops, opLine(s.h, int(src)))
			v.Index = append(v.Index, int(src))
		} else {
			v.Ops = append(v.Ops, dumpLineString(s.dump[-int(src)-1]))
		}
	}
	s.out = append(s.out, v)
}

// Total is how many violations the pass found, reported or not.
func (s *structural) Total() int { return s.total }

// seqSlack is how far beyond a conversation's slice a seq may land and
// still grow the slice: the slice at most doubles, plus this, per seq.
const seqSlack = 1024

// seqMsg returns the first message seen at (conv, seq).
func (s *structural) seqMsg(conv convID, seq uint64) (keySeen, bool) {
	if slots := s.bySeq[conv]; seq-1 < uint64(len(slots)) && slots[seq-1].seen {
		return slots[seq-1], true
	}
	if len(s.seqMsgFar) == 0 {
		return keySeen{}, false
	}
	v, ok := s.seqMsgFar[seqAt{conv, seq}]
	return v, ok
}

// setSeqMsg records v as the first message seen at (conv, seq), which
// seqMsg must have reported unseen.
func (s *structural) setSeqMsg(conv convID, seq uint64, v keySeen) {
	v.seen = true
	slots := s.bySeq[conv]
	switch i := seq - 1; {
	case i < uint64(len(slots)):
		slots[i] = v
	case i < 2*uint64(len(slots))+seqSlack:
		slots = append(slots, make([]keySeen, int(i)+1-len(slots))...)
		slots[i] = v
		s.bySeq[conv] = slots
	default:
		s.seqMsgFar[seqAt{conv, seq}] = v
	}
}

// conv is op i's conversation, numbered by the index.
func (s *structural) conv(i int) convID { return s.idx.opConv[i] }

// observe records that src saw message (conv, sender, cmid) at seq:
// promise 3 (one message, one seq) and promise 1 (one seq, one message).
func (s *structural) observe(conv convID, k msgID, seq uint64, src source) {
	if seq == 0 {
		return
	}
	prev, seen := s.seqMsg(conv, seq)
	if seen && prev.id == k {
		// (k, seq) was observed before, and both checks below were made
		// for it then: they would find nothing new (a violation is
		// reported once per fact).
		if !s.haveDump() && seq > s.lastSeq[conv] {
			s.lastSeq[conv] = seq
		}
		return
	}
	ref := &s.idx.refs[k]
	if prev := s.msgSeq[k]; prev.seq == 0 {
		s.msgSeq[k] = seqSeen{seq, src}
	} else if prev.seq != seq {
		s.violate(fmt.Sprintf("3|%d|%d|%d", k, prev.seq, seq), PromiseIdempotent, s.convs[conv], []source{prev.src, src},
			"message %s/%s has seq %d and seq %d", ref.sender, ref.cmidText(), prev.seq, seq)
	}
	if !seen {
		s.setSeqMsg(conv, seq, keySeen{id: k, src: src})
	} else {
		pref := &s.idx.refs[prev.id]
		s.violate(fmt.Sprintf("1|%d|%d|%d|%d", conv, seq, prev.id, k), PromiseTotalOrder, s.convs[conv], []source{prev.src, src},
			"seq %d names two messages: %s/%s and %s/%s", seq, pref.sender, pref.cmidText(), ref.sender, ref.cmidText())
	}
	if !s.haveDump() && seq > s.lastSeq[conv] {
		s.lastSeq[conv] = seq
	}
}

func (s *structural) haveDump() bool { return s.dump != nil }

// observeDump indexes the store's contents and checks they are gap-free.
func (s *structural) observeDump() {
	if s.dump == nil {
		return
	}
	var count []uint64 // rows by convID
	s.dumpSeq = make([]dumpRow, len(s.idx.refs))
	for j, m := range s.dump {
		src := source(-(j + 1))
		k := s.idx.dumpMsg[j]
		conv := s.idx.refs[k].conv
		if prev := s.dumpSeq[k]; prev.ok {
			s.violate("", PromiseIdempotent, m.ConvID, []source{src},
				"store holds message %s/%s twice (seqs %d and %d)", m.SenderID, m.ClientMsgID, prev.seq, m.Seq)
		}
		s.dumpSeq[k] = dumpRow{m.Seq, true}
		s.observe(conv, k, m.Seq, src)
		for int(conv) >= len(count) {
			count = append(count, 0)
		}
		count[conv]++
		if m.Seq > s.lastSeq[conv] {
			s.lastSeq[conv] = m.Seq
		}
	}
	for id, conv := range s.convs {
		var n uint64
		if id < len(count) {
			n = count[id]
		}
		if last := s.lastSeq[id]; n != last {
			s.violate("", PromiseTotalOrder, conv, nil,
				"store seqs are not gap-free: %d rows, last seq %d", n, last)
		}
	}
}

// acked reports whether op is a send the system acknowledged with a seq.
func acked(op *Op) bool {
	return op.Kind == KindSend && op.Returned() && !op.Unknown && op.Error == "" && op.Out.Seq > 0
}

// observeOps indexes every op of the history.
func (s *structural) observeOps() {
	for i := range s.h.Ops {
		op := &s.h.Ops[i]
		src := source(i)
		if op.User != "" {
			s.userOf[op.Client] = op.User
		}
		conv := s.conv(i)
		switch op.Kind {
		case KindSend:
			s.observeSend(op, i)
		case KindSync:
			s.observeSync(op, src)
		case KindDeliver:
			s.anyDeliver = true
			ids := s.idx.msgs(s.h, i)
			for j, m := range op.Out.Msgs {
				s.observe(conv, ids[j], m.Seq, src)
				k := clientConvSeq{op.Client, conv, m.Seq}
				if at, ok := s.deliverAt[k]; !ok || op.Call < at {
					s.deliverAt[k] = op.Call
				}
			}
		case KindFinal:
			s.hasFinal[op.Client] = true
			if _, ok := s.finals[clientConv{op.Client, conv}]; !ok {
				s.finals[clientConv{op.Client, conv}] = i
			}
			ids := s.idx.msgs(s.h, i)
			for j, m := range op.Out.Msgs {
				s.observe(conv, ids[j], m.Seq, src)
			}
		case KindConvList:
			for _, c := range op.Out.Convs {
				id := s.idx.convIDs[c.Conv]
				if !s.haveDump() && c.LastSeq > s.lastSeq[id] {
					s.lastSeq[id] = c.LastSeq
				}
			}
		case KindLogin:
			if op.Returned() && op.Error == "" {
				s.lastLogin[op.Client] = max(s.lastLogin[op.Client], *op.Return)
			}
		case KindRead:
			if op.Returned() && op.Error == "" {
				uc := userConv{op.User, conv}
				s.maxRead[uc] = max(s.maxRead[uc], op.Out.ReadSeq)
			}
		}
	}
}

func (s *structural) observeSend(op *Op, i int) {
	conv := s.conv(i)
	k := s.idx.opMsg[i]
	if !s.sentBy[k].ok && op.In.ClientMsgID != "" {
		s.sentBy[k] = firstSender{op.Client, true}
	}
	if !acked(op) {
		return
	}
	s.observe(conv, k, op.Out.Seq, source(i))
	cs := seqAt{conv, op.Out.Seq}
	if _, ok := s.ackOf[cs]; !ok {
		s.ackOf[cs] = i
	}
	uc := userConv{op.User, conv}
	s.maxOwnSent[uc] = max(s.maxOwnSent[uc], op.Out.Seq)
}

// observeSync: a page holds after+1, after+2, ... (promise 1: gap-free,
// strictly increasing), and no more than its limit.
func (s *structural) observeSync(op *Op, src source) {
	if !op.Returned() || op.Error != "" || op.Unknown {
		return
	}
	conv := s.conv(int(src))
	ids := s.idx.msgs(s.h, int(src))
	for j, m := range op.Out.Msgs {
		s.observe(conv, ids[j], m.Seq, src)
		if want := op.In.AfterSeq + uint64(j) + 1; m.Seq != want {
			s.violate("", PromiseTotalOrder, op.Conv, []source{src},
				"sync after %d returned seq %d at position %d, want %d", op.In.AfterSeq, m.Seq, j, want)
			break
		}
	}
	if limit := store.ClampSyncLimit(op.In.Limit); len(op.Out.Msgs) > limit {
		s.violate("", PromiseTotalOrder, op.Conv, []source{src},
			"sync returned %d messages, more than its limit %d", len(op.Out.Msgs), limit)
	}
	if !s.haveDump() && op.Out.LastSeq > s.lastSeq[conv] {
		s.lastSeq[conv] = op.Out.LastSeq
	}
}

// checkDurable: promise 2, every acknowledged send is in the store with
// the seq its ack named.
func (s *structural) checkDurable() {
	if !s.haveDump() {
		return
	}
	for i := range s.h.Ops {
		op := &s.h.Ops[i]
		if !acked(op) {
			continue
		}
		k := s.idx.opMsg[i]
		row := s.dumpSeq[k]
		seq := row.seq
		switch {
		case !row.ok:
			s.violate("2|"+fmt.Sprint(k), PromiseDurable, op.Conv, []source{source(i)},
				"acknowledged send %s/%s (seq %d) is not in the store", op.User, op.In.ClientMsgID, op.Out.Seq)
		case seq != op.Out.Seq:
			s.violate("2|"+fmt.Sprint(k), PromiseDurable, op.Conv, []source{source(i)},
				"acknowledged send %s/%s has seq %d, the store has it at %d", op.User, op.In.ClientMsgID, op.Out.Seq, seq)
		}
	}
}

// checkFIFO: promise 4, among one client's acknowledged sends to one
// conversation, seq order equals cseq order; one cseq names one message.
func (s *structural) checkFIFO() {
	type sent struct {
		cseq, seq uint64
		cmid      string
		op        int
	}
	type clientCSeq struct {
		client int
		cseq   uint64
	}
	groups := make(map[clientConv][]sent, s.sizes.finals)
	var order []clientConv
	seen := make([]bool, len(s.idx.refs))
	byCSeq := make(map[clientCSeq]int, s.sizes.sends)
	for i := range s.h.Ops {
		op := &s.h.Ops[i]
		if !acked(op) || op.In.CSeq == 0 {
			continue
		}
		cc := clientCSeq{op.Client, op.In.CSeq}
		if prev, ok := byCSeq[cc]; ok && s.h.Ops[prev].In.ClientMsgID != op.In.ClientMsgID {
			s.violate("", PromiseFIFO, op.Conv, []source{source(prev), source(i)},
				"client %d used cseq %d for two messages", op.Client, op.In.CSeq)
		} else if !ok {
			byCSeq[cc] = i
		}
		k := s.idx.opMsg[i]
		if seen[k] {
			continue
		}
		seen[k] = true
		g := clientConv{op.Client, s.conv(i)}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], sent{op.In.CSeq, op.Out.Seq, op.In.ClientMsgID, i})
	}
	for _, g := range order {
		list := groups[g]
		sort.SliceStable(list, func(a, b int) bool { return list[a].cseq < list[b].cseq })
		for j := 1; j < len(list); j++ {
			a, b := list[j-1], list[j]
			if a.seq >= b.seq && a.cseq != b.cseq {
				s.violate("", PromiseFIFO, s.convs[g.conv], []source{source(a.op), source(b.op)},
					"client %d sent cseq %d before cseq %d, but they got seqs %d and %d", g.client, a.cseq, b.cseq, a.seq, b.seq)
			}
		}
	}
}

// checkDeliveries: promise 6, a client hands each (conv, seq) to its
// application once, in increasing seq order per conversation.
func (s *structural) checkDeliveries() {
	var idx []int
	for i := range s.h.Ops {
		if s.h.Ops[i].Kind == KindDeliver {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return s.h.Ops[idx[a]].Call < s.h.Ops[idx[b]].Call })
	first := make(map[clientConvSeq]int, s.sizes.delivered)
	type last struct {
		seq uint64
		op  int
	}
	prev := map[clientConv]last{}
	for _, i := range idx {
		op := &s.h.Ops[i]
		conv := s.conv(i)
		for _, m := range op.Out.Msgs {
			k := clientConvSeq{op.Client, conv, m.Seq}
			if f, ok := first[k]; ok {
				s.violate("", PromiseNoDuplicates, op.Conv, []source{source(f), source(i)},
					"client %d delivered seq %d twice", op.Client, m.Seq)
				continue
			}
			first[k] = i
			cc := clientConv{op.Client, conv}
			if p, ok := prev[cc]; ok && m.Seq < p.seq {
				s.violate("", PromiseNoDuplicates, op.Conv, []source{source(p.op), source(i)},
					"client %d delivered seq %d after seq %d", op.Client, m.Seq, p.seq)
			}
			if m.Seq > prev[cc].seq {
				prev[cc] = last{m.Seq, i}
			}
		}
	}
}

// recipients returns, for each conversation, the users who read it; ok is
// false for the broadcast conversation (everyone) and unparsable ids.
func recipients(conv string) (users []string, everyone bool, ok bool) {
	c, err := wire.ParseConvID(conv)
	if err != nil {
		return nil, false, false
	}
	switch c.Kind {
	case wire.ConvPair:
		return []string{c.Buyer, c.Seller}, false, true
	case wire.ConvSystem:
		return []string{c.User}, false, true
	case wire.ConvBroadcast:
		return nil, true, true
	}
	return nil, false, false
}

// finalClients lists, per conversation, the clients that must finally hold
// it: clients that recorded final ops, of users that read the conversation.
func (s *structural) finalClients() [][]int {
	if s.recipients != nil {
		return s.recipients
	}
	var clients []int
	byUser := map[string][]int{}
	for c := range s.hasFinal {
		clients = append(clients, c)
	}
	sort.Ints(clients)
	for _, c := range clients {
		byUser[s.userOf[c]] = append(byUser[s.userOf[c]], c)
	}
	out := make([][]int, len(s.convs))
	for id, conv := range s.convs {
		users, everyone, ok := recipients(conv)
		switch {
		case !ok:
		case everyone:
			out[id] = clients
		default:
			for _, u := range users {
				out[id] = append(out[id], byUser[u]...)
			}
		}
	}
	s.recipients = out
	return out
}

// checkFinals: promises 2+5 (every client of a recipient finally holds
// 1..last_seq, so every acknowledged message, and its application got each
// one) and 8 (unread = last_seq - read_seq).
func (s *structural) checkFinals() {
	fc := s.finalClients()
	for id, conv := range s.convs {
		last := s.lastSeq[id]
		for _, c := range fc[id] {
			i, ok := s.finals[clientConv{c, convID(id)}]
			if !ok {
				if last > 0 {
					s.violate("", PromiseNoLoss, conv, s.ackSources(convID(id), 1),
						"client %d (user %s) holds nothing of the conversation, last_seq %d", c, s.userOf[c], last)
				}
				continue
			}
			s.checkHoldings(i, last)
			s.checkUnread(i, last)
		}
	}
}

// ackSources returns the acked send of (conv, seq), if any, as evidence.
func (s *structural) ackSources(conv convID, seq uint64) []source {
	if i, ok := s.ackOf[seqAt{conv, seq}]; ok {
		return []source{source(i)}
	}
	return nil
}

// checkHoldings: a client holds first..last contiguously. A client may
// forget the oldest messages (a bounded view), so first > 1 is allowed when
// every forgotten message was delivered to the application (or was the
// client's own).
func (s *structural) checkHoldings(i int, last uint64) {
	op := &s.h.Ops[i]
	msgs := op.Out.Msgs
	var first uint64 = 1
	if len(msgs) > 0 {
		first = msgs[0].Seq
	}
	held := first - 1
	for _, m := range msgs {
		if m.Seq != held+1 {
			break
		}
		held++
	}
	if held != first-1+uint64(len(msgs)) || held != last {
		missing := held + 1
		s.violate("", PromiseNoLoss, op.Conv, append([]source{source(i)}, s.ackSources(s.conv(i), missing)...),
			"client %d holds %d messages from seq %d, contiguous to seq %d, want through last_seq %d (seq %d missing)",
			op.Client, len(msgs), first, held, last, missing)
	}
	if first > 1 && !s.anyDeliver {
		s.violate("", PromiseNoLoss, op.Conv, append([]source{source(i)}, s.ackSources(s.conv(i), 1)...),
			"client %d holds nothing before seq %d and the history records no deliveries", op.Client, first)
		return
	}
	if !s.anyDeliver {
		return
	}
	for seq := uint64(1); seq < first; seq++ {
		if !s.delivered(i, seq) {
			return
		}
	}
	for _, m := range msgs {
		if !s.delivered(i, m.Seq) {
			return
		}
	}
}

// delivered reports (and flags when not) whether the final op's client
// handed seq to its application; its own messages need no delivery.
func (s *structural) delivered(i int, seq uint64) bool {
	op := &s.h.Ops[i]
	if _, ok := s.deliverAt[clientConvSeq{op.Client, s.conv(i), seq}]; ok {
		return true
	}
	if k, ok := s.seqMsg(s.conv(i), seq); ok {
		if sender := s.sentBy[k.id]; sender.ok && sender.client == op.Client {
			return true
		}
	}
	s.violate("", PromiseNoLoss, op.Conv, append([]source{source(i)}, s.ackSources(s.conv(i), seq)...),
		"client %d held seq %d but never delivered it to the application", op.Client, seq)
	return false
}

func (s *structural) checkUnread(i int, last uint64) {
	op := &s.h.Ops[i]
	rs, unread := op.Out.ReadSeq, op.Out.Unread
	uc := userConv{op.User, s.conv(i)}
	switch {
	case rs > last:
		s.violate("", PromiseUnread, op.Conv, []source{source(i)},
			"client %d has read_seq %d beyond last_seq %d", op.Client, rs, last)
	case unread != last-rs:
		s.violate("", PromiseUnread, op.Conv, []source{source(i)},
			"client %d has unread %d, want last_seq %d - read_seq %d = %d", op.Client, unread, last, rs, last-rs)
	case rs < s.maxOwnSent[uc]:
		s.violate("", PromiseUnread, op.Conv, append([]source{source(i)}, s.ackSources(s.conv(i), s.maxOwnSent[uc])...),
			"user %s has read_seq %d, but sent seq %d (sending advances read_seq)", op.User, rs, s.maxOwnSent[uc])
	case rs < s.maxRead[uc]:
		s.violate("", PromiseUnread, op.Conv, []source{source(i)},
			"user %s has read_seq %d, below the %d a read returned", op.User, rs, s.maxRead[uc])
	}
}

// checkLiveness: promise 9, every acknowledged message reaches every
// recipient client that ends online within the bound, counted from the
// latest of: the ack, the end of the last fault window, the client's last
// login.
func (s *structural) checkLiveness() {
	bound := int64(s.opts.LivenessBound)
	if bound <= 0 || !s.anyDeliver {
		return
	}
	var heal int64
	for _, f := range s.opts.Faults {
		heal = max(heal, f.End)
	}
	fc := s.finalClients()
	type ackTime struct {
		at int64
		ok bool
	}
	ackAt := make([]ackTime, len(s.idx.refs)) // by msgID: its first ack
	var order []int
	for i := range s.h.Ops {
		op := &s.h.Ops[i]
		if !acked(op) {
			continue
		}
		k := s.idx.opMsg[i]
		prev := ackAt[k]
		if !prev.ok {
			order = append(order, i)
		}
		if !prev.ok || *op.Return < prev.at {
			ackAt[k] = ackTime{*op.Return, true}
		}
	}
	for _, i := range order {
		op := &s.h.Ops[i]
		conv := s.conv(i)
		at := ackAt[s.idx.opMsg[i]].at
		for _, c := range fc[conv] {
			if c == op.Client {
				continue
			}
			deadline := max(heal, at, s.lastLogin[c]) + bound
			got, ok := s.deliverAt[clientConvSeq{c, conv, op.Out.Seq}]
			switch {
			case !ok:
				s.violate("", PromiseLiveness, op.Conv, []source{source(i)},
					"client %d never received seq %d (deadline %d)", c, op.Out.Seq, deadline)
			case got > deadline:
				s.violate("", PromiseLiveness, op.Conv, []source{source(i)},
					"client %d received seq %d at %d, %v after its deadline %d",
					c, op.Out.Seq, got, time.Duration(got-deadline), deadline)
			}
		}
	}
}
