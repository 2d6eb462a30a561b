package check

import "github.com/zzim/zzim/system/store"

// msgID numbers a message (a msgRef) densely within one check, in the
// order the index first meets it.
type msgID int32

const noMsg msgID = -1

// index numbers a history's conversations and messages once, for every
// pass of a check. A swarm seed's history holds about 400,000 ops and
// millions of message observations (every delivery, sync page and final
// holding names its messages again); hashing (conv, sender,
// client_msg_id) at each of them, once per map of each pass, was most of
// the checkers' time. Here a message is hashed about once: an
// observation of the message already met at its (conv, seq) is recognised
// by comparing it with that one, and the passes index slices by msgID.
type index struct {
	convIDs map[string]convID
	convs   []string // by convID, in the structural pass's numbering order

	opConv  []convID // op i's conversation (-1: none)
	opMsg   []msgID  // a send op's message (noMsg for other ops)
	outAt   []int32  // op i's Out.Msgs are outMsg[outAt[i]:][:len(Out.Msgs)]
	outMsg  []msgID
	dumpMsg []msgID // by dump row

	ids  map[msgRef]msgID
	refs []msgRef // by msgID
	// atSeq[conv][seq-1] is the message the index first met at (conv,
	// seq), plus one (0: none yet): the fast path of intern.
	atSeq [][]msgID
}

// newIndex numbers conversations in the order the structural pass has
// always met them (dump rows, then each op by its kind's rules), so its
// reports list conversations in the same order.
func newIndex(h *History, dump []store.Message) *index {
	z := sizesOf(h, dump)
	x := &index{
		convIDs: map[string]convID{},
		opConv:  make([]convID, len(h.Ops)),
		opMsg:   make([]msgID, len(h.Ops)),
		outAt:   make([]int32, len(h.Ops)),
		outMsg:  make([]msgID, 0, z.delivered+z.sends),
		dumpMsg: make([]msgID, len(dump)),
		ids:     make(map[msgRef]msgID, z.msgs),
		refs:    make([]msgRef, 0, z.msgs),
	}
	for j := range dump {
		m := &dump[j]
		conv := x.noteConv(m.ConvID)
		x.dumpMsg[j] = x.intern(conv, m.SenderID, m.ClientMsgID, m.Seq)
	}
	for i := range h.Ops {
		op := &h.Ops[i]
		conv := convID(-1)
		if op.Conv != "" {
			conv = x.noteConv(op.Conv)
		}
		x.opMsg[i] = noMsg
		x.outAt[i] = int32(len(x.outMsg))
		switch op.Kind {
		case KindSend:
			conv = x.noteConv(op.Conv)
			x.opMsg[i] = x.intern(conv, op.User, op.In.ClientMsgID, op.Out.Seq)
		case KindSync:
			if op.Returned() && op.Error == "" && !op.Unknown {
				conv = x.noteConv(op.Conv)
			}
		case KindDeliver:
			if len(op.Out.Msgs) > 0 {
				conv = x.noteConv(op.Conv)
			}
		case KindFinal:
			conv = x.noteConv(op.Conv)
		case KindConvList:
			for _, c := range op.Out.Convs {
				x.noteConv(c.Conv)
			}
		case KindRead:
			if op.Returned() && op.Error == "" {
				conv = x.noteConv(op.Conv)
			}
		}
		x.opConv[i] = conv
		switch op.Kind {
		case KindSync, KindDeliver, KindFinal:
			if len(op.Out.Msgs) == 0 {
				break
			}
			// A sync that failed may name no conversation the pass
			// numbered; its messages are still numbered (under the name
			// it gave), since the partitions read every sync's page.
			mc := conv
			if mc < 0 {
				mc = x.noteConv(op.Conv)
			}
			for _, m := range op.Out.Msgs {
				x.outMsg = append(x.outMsg, x.intern(mc, m.Sender, m.ClientMsgID, m.Seq))
			}
		}
	}
	return x
}

func (x *index) noteConv(conv string) convID {
	if id, ok := x.convIDs[conv]; ok {
		return id
	}
	id := convID(len(x.convs))
	x.convIDs[conv] = id
	x.convs = append(x.convs, conv)
	x.atSeq = append(x.atSeq, nil)
	return id
}

// msgs returns the ids of op i's Out.Msgs.
func (x *index) msgs(h *History, i int) []msgID {
	n := len(h.Ops[i].Out.Msgs)
	if n == 0 {
		return nil
	}
	at := int(x.outAt[i])
	return x.outMsg[at : at+n]
}

// intern returns the number of message (conv, sender, cmid), or of the
// notice at seq when cmid is empty.
func (x *index) intern(conv convID, sender, cmid string, seq uint64) msgID {
	slots := x.atSeq[conv]
	if seq > 0 && seq-1 < uint64(len(slots)) {
		if id := slots[seq-1] - 1; id >= 0 {
			r := &x.refs[id]
			if r.sender == sender && r.cmid == cmid && (cmid != "" || r.noticeSeq == seq) {
				return id
			}
		}
	}
	k := refOf(conv, sender, cmid, seq)
	id, ok := x.ids[k]
	if !ok {
		id = msgID(len(x.refs))
		x.ids[k] = id
		x.refs = append(x.refs, k)
	}
	x.noteAt(conv, seq, id)
	return id
}

// noteAt records id as the first message met at (conv, seq) if none was.
// A seq far beyond the slice (only a corrupt history has one) is not
// recorded: its messages take the hashed path, and a wild seq cannot make
// the index allocate for it.
func (x *index) noteAt(conv convID, seq uint64, id msgID) {
	if seq == 0 {
		return
	}
	slots := x.atSeq[conv]
	switch i := seq - 1; {
	case i < uint64(len(slots)):
		if slots[i] == 0 {
			slots[i] = id + 1
		}
	case i < 2*uint64(len(slots))+seqSlack:
		slots = append(slots, make([]msgID, int(i)+1-len(slots))...)
		slots[i] = id + 1
		x.atSeq[conv] = slots
	}
}
