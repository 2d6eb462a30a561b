package check

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
	"github.com/zzim/zzim/system/store"
)

// observation: some op or store row saw message id at seq.
type observation struct {
	id  msgID
	seq uint64
}

// convOps gathers what one conversation's partition is built from.
type convOps struct {
	sends, syncs []int
	seen         []observation
}

// msgFacts is what the partitions know of one message (by msgID).
type msgFacts struct {
	dumpSeq  uint64 // its seq in the store dump, when inDump
	inDump   bool
	observed uint64 // the seq its first observation by an op named (0: none)
	local    uint32 // its id within its conversation's partition (0: none yet)
}

// buildPartitionsIndexed turns the history into one porcupine history per
// conversation (sorted by conversation id):
//   - an acknowledged send returns its seq at its return time;
//   - a send with unknown outcome never returns (+infinity). The dump,
//     when given, resolves it: present means it took effect at its stored
//     seq, absent means it did not (the op is dropped). Without a dump, a
//     seq any op of the history observed resolves it, else it may return
//     any seq (0);
//   - a failed send did not happen and is dropped; a sync that never
//     returned constrains nothing and is dropped;
//   - a message observed (store, sync, delivery, final holdings) that no
//     recorded send explains (a system notice, an unrecorded client) gets
//     a synthetic send that may happen any time;
//   - positions nothing explains get anonymous filler sends, so a history
//     that records only some senders is not called illegal for it.
func buildPartitionsIndexed(x *index, h *History, dump []store.Message) []*partition {
	byConv := map[string]*convOps{}
	get := func(conv string) *convOps {
		c, ok := byConv[conv]
		if !ok {
			c = &convOps{}
			byConv[conv] = c
		}
		return c
	}
	facts := make([]msgFacts, len(x.refs))
	for j, m := range dump {
		k := x.dumpMsg[j]
		facts[k].dumpSeq, facts[k].inDump = m.Seq, true
		c := get(m.ConvID)
		c.seen = append(c.seen, observation{k, m.Seq})
	}
	// Only a message's first observation is kept: addUnexplained acts on
	// the first one of each message and skips the rest (a message is
	// observed once per delivery, sync and final holding, millions of
	// times in a long run).
	note := func(c *convOps, k msgID, seq uint64) {
		if seq == 0 {
			return
		}
		if f := &facts[k]; f.observed == 0 {
			f.observed = seq
			c.seen = append(c.seen, observation{k, seq})
		}
	}
	for i := range h.Ops {
		op := &h.Ops[i]
		switch op.Kind {
		case KindSend:
			c := get(op.Conv)
			c.sends = append(c.sends, i)
			if acked(op) {
				note(c, x.opMsg[i], op.Out.Seq)
			}
		case KindSync, KindDeliver, KindFinal:
			c := get(op.Conv)
			if op.Kind == KindSync {
				c.syncs = append(c.syncs, i)
			}
			ids := x.msgs(h, i)
			for j, m := range op.Out.Msgs {
				note(c, ids[j], m.Seq)
			}
		}
	}
	convs := make([]string, 0, len(byConv))
	for conv := range byConv {
		convs = append(convs, conv)
	}
	sort.Strings(convs)
	parts := make([]*partition, 0, len(convs))
	for _, conv := range convs {
		b := newPartitionBuilder(conv, x, facts)
		parts = append(parts, b.build(h, byConv[conv], dump != nil))
	}
	return parts
}

// partitionBuilder interns message ids and tracks which seq each takes.
type partitionBuilder struct {
	model   *convModel
	x       *index
	facts   []msgFacts // shared by every partition: a message is in one only
	clients map[int]int
	// seqOf[id]: the one seq every send of id names; disputed when they differ.
	seqOf    map[uint32]uint64
	disputed map[uint32]bool
	hasSend  map[uint32]bool
	ops      []porcupine.Operation
	// undecidable says why the partition cannot be checked, if it cannot.
	undecidable string
}

func newPartitionBuilder(conv string, x *index, facts []msgFacts) *partitionBuilder {
	return &partitionBuilder{
		model:    &convModel{conv: conv, names: []string{"", "?"}},
		x:        x,
		facts:    facts,
		clients:  map[int]int{},
		seqOf:    map[uint32]uint64{},
		disputed: map[uint32]bool{},
		hasSend:  map[uint32]bool{},
	}
}

// id is message k's number within the partition.
func (b *partitionBuilder) id(k msgID) uint32 {
	f := &b.facts[k]
	if f.local != 0 {
		return f.local
	}
	f.local = uint32(len(b.model.names))
	r := &b.x.refs[k]
	b.model.names = append(b.model.names, r.sender+"/"+r.cmidText())
	return f.local
}

// clientID numbers clients densely from 0 for the visualization.
func (b *partitionBuilder) clientID(client int) int {
	if c, ok := b.clients[client]; ok {
		return c
	}
	c := len(b.clients)
	b.clients[client] = c
	return c
}

func (b *partitionBuilder) addSend(id uint32, seq uint64, client int, call, ret int64, meta opMeta) {
	b.hasSend[id] = true
	if prev, ok := b.seqOf[id]; ok && prev != seq || seq == 0 {
		b.disputed[id] = true
	}
	b.seqOf[id] = seq
	b.ops = append(b.ops, porcupine.Operation{
		ClientId: client, Input: linInput{id: id}, Output: linOutput{seq: seq},
		Call: call, Return: ret, Metadata: meta,
	})
}

func (b *partitionBuilder) build(h *History, c *convOps, haveDump bool) *partition {
	minCall := int64(math64Max)
	for _, i := range c.sends {
		op := &h.Ops[i]
		if op.Error != "" {
			continue // definitely failed: it did not happen
		}
		k := b.x.opMsg[i]
		seq, ret, note := op.Out.Seq, int64(neverReturned), "outcome unknown"
		switch f := &b.facts[k]; {
		case acked(op):
			ret, note = *op.Return, "acknowledged"
		case haveDump:
			if !f.inDump {
				continue // not in the store: it never took effect
			}
			seq, note = f.dumpSeq, "outcome unknown, resolved by the store"
		default:
			seq = f.observed
		}
		b.addSend(b.id(k), seq, b.clientID(op.Client), op.Call, ret, opMeta{i, note})
		minCall = min(minCall, op.Call)
	}
	for _, i := range c.syncs {
		op := &h.Ops[i]
		if !op.Returned() || op.Error != "" || op.Unknown {
			continue
		}
		out := linOutput{seqs: make([]uint64, len(op.Out.Msgs)), ids: make([]uint32, len(op.Out.Msgs))}
		ids := b.x.msgs(h, i)
		for j, m := range op.Out.Msgs {
			out.seqs[j] = m.Seq
			out.ids[j] = b.id(ids[j])
		}
		b.ops = append(b.ops, porcupine.Operation{
			ClientId: b.clientID(op.Client), Input: linInput{sync: true, after: op.In.AfterSeq, limit: clampLimit(op.In.Limit)},
			Output: out, Call: op.Call, Return: *op.Return, Metadata: opMeta{i, "sync"},
		})
		minCall = min(minCall, op.Call)
	}
	if minCall == math64Max {
		minCall = 0
	}
	b.addUnexplained(c, minCall-1)
	return b.finish()
}

const math64Max = int64(neverReturned)

// addUnexplained adds synthetic sends for observed messages no send op
// explains, then fillers for positions nothing explains.
func (b *partitionBuilder) addUnexplained(c *convOps, at int64) {
	storeClient := len(b.clients)
	for _, o := range c.seen {
		id := b.id(o.id)
		if b.hasSend[id] {
			continue
		}
		b.addSend(id, o.seq, storeClient, at, neverReturned, opMeta{-1, "seen but never sent by a recorded client"})
	}
	taken := map[uint64]bool{}
	var last uint64
	for id, seq := range b.seqOf {
		if seq > 0 && !b.disputed[id] {
			taken[seq] = true
			last = max(last, seq)
		}
	}
	if gaps := last - uint64(len(taken)); gaps > fillersMax {
		b.undecidable = fmt.Sprintf("%d positions up to seq %d that no operation explains (more than %d)", gaps, last, fillersMax)
		return
	}
	for seq := uint64(1); seq <= last; seq++ {
		if !taken[seq] {
			b.addSend(fillerID, 0, storeClient, at, neverReturned, opMeta{-1, "filler: a message no operation explains"})
		}
	}
}

// fillersMax bounds the filler operations of one partition; a history
// with more unexplained positions is reported unknown, not judged.
const fillersMax = 1000

func (b *partitionBuilder) finish() *partition {
	b.model.fixed = make([]uint64, len(b.model.names))
	for id, seq := range b.seqOf {
		if !b.disputed[id] && id != fillerID {
			b.model.fixed[id] = seq
		}
	}
	return &partition{model: b.model, ops: b.ops, undecidable: b.undecidable}
}
