package check

import (
	"errors"
	"math/rand/v2"
	"slices"
)

// Mutators break one promise in a legal history, the way a bug would, so
// tests can show the check meant for it bites. Each returns a mutated copy
// (the input is not changed) or ErrNoSite when the history offers no place
// to apply it. seed picks among the possible places.

// ErrNoSite: the history has nothing the mutator can break.
var ErrNoSite = errors.New("mutate: no site in the history")

// Mutator names one mutation, the promise it breaks and the check meant to
// catch it.
type Mutator struct {
	Name    string
	Promise int
	Check   string // CheckStructural or CheckLinearizability
	Apply   func(h *History, seed uint64) (*History, error)
}

// Mutators lists every mutator.
var Mutators = []Mutator{
	{"DropDelivery", PromiseNoLoss, CheckStructural, DropDelivery},
	{"SwapSeqs", PromiseTotalOrder, CheckStructural, SwapSeqs},
	{"DuplicatePush", PromiseNoDuplicates, CheckStructural, DuplicatePush},
	{"SyncBeforeAck", PromiseLinearizableSync, CheckLinearizability, SyncBeforeAck},
	{"ReorderSends", PromiseFIFO, CheckStructural, ReorderSends},
}

func cloneHistory(h *History) *History {
	return &History{Ops: slices.Clone(h.Ops)}
}

func pick(sites []int, seed uint64) (int, error) {
	if len(sites) == 0 {
		return 0, ErrNoSite
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	return sites[r.IntN(len(sites))], nil
}

// DropDelivery loses a message on its way to a recipient: the delivery of
// someone else's message disappears, and so does the message from that
// client's final holdings.
func DropDelivery(h *History, seed uint64) (*History, error) {
	var sites []int
	for i, op := range h.Ops {
		if op.Kind == KindDeliver && len(op.Out.Msgs) == 1 && op.Out.Msgs[0].Sender != op.User {
			sites = append(sites, i)
		}
	}
	i, err := pick(sites, seed)
	if err != nil {
		return nil, err
	}
	lost := h.Ops[i]
	out := &History{Ops: make([]Op, 0, len(h.Ops)-1)}
	for j, op := range h.Ops {
		if j == i {
			continue
		}
		if op.Kind == KindFinal && op.Client == lost.Client && op.Conv == lost.Conv {
			op.Out.Msgs = slices.DeleteFunc(slices.Clone(op.Out.Msgs), func(m MsgRef) bool {
				return m.Seq == lost.Out.Msgs[0].Seq
			})
		}
		out.Ops = append(out.Ops, op)
	}
	return out, nil
}

// SwapSeqs makes the acks of two messages of one conversation name each
// other's seq, as a logic that numbers messages itself would.
func SwapSeqs(h *History, seed uint64) (*History, error) {
	type site struct{ a, b int }
	last := map[string]int{}
	var sites []site
	var idx []int
	for i := range h.Ops {
		op := &h.Ops[i]
		if !acked(op) {
			continue
		}
		if j, ok := last[op.Conv]; ok && h.Ops[j].Out.Seq != op.Out.Seq {
			sites = append(sites, site{j, i})
			idx = append(idx, len(idx))
		}
		last[op.Conv] = i
	}
	n, err := pick(idx, seed)
	if err != nil {
		return nil, err
	}
	s := sites[n]
	out := cloneHistory(h)
	a, b := h.Ops[s.a], h.Ops[s.b]
	for i := range out.Ops {
		op := &out.Ops[i]
		if !acked(op) || op.Conv != a.Conv {
			continue
		}
		switch {
		case op.User == a.User && op.In.ClientMsgID == a.In.ClientMsgID:
			op.Out.Seq = b.Out.Seq
		case op.User == b.User && op.In.ClientMsgID == b.In.ClientMsgID:
			op.Out.Seq = a.Out.Seq
		}
	}
	return out, nil
}

// DuplicatePush hands a pushed message to the application a second time,
// as a client without dedup would.
func DuplicatePush(h *History, seed uint64) (*History, error) {
	var sites []int
	for i, op := range h.Ops {
		if op.Kind == KindDeliver && op.In.Via == "push" {
			sites = append(sites, i)
		}
	}
	i, err := pick(sites, seed)
	if err != nil {
		return nil, err
	}
	out := &History{Ops: make([]Op, 0, len(h.Ops)+1)}
	out.Ops = append(out.Ops, h.Ops[:i+1]...)
	out.Ops = append(out.Ops, h.Ops[i])
	out.Ops = append(out.Ops, h.Ops[i+1:]...)
	return out, nil
}

// SyncBeforeAck moves a sync that missed an acknowledged message to start
// after that message's ack, keeping what it returned: a stale read. Only
// real-time order is wrong, so only the linearizability check can see it.
func SyncBeforeAck(h *History, seed uint64) (*History, error) {
	type site struct{ sync, send int }
	// The earliest ack per (conv, seq); a sync missed seq if its page ended
	// before it (and was not full, so the log ended there).
	firstAck := map[convSeq]int{}
	for i := range h.Ops {
		op := &h.Ops[i]
		if acked(op) {
			k := convSeq{op.Conv, op.Out.Seq}
			if j, ok := firstAck[k]; !ok || *op.Return < *h.Ops[j].Return {
				firstAck[k] = i
			}
		}
	}
	var sites []site
	var idx []int
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Kind != KindSync || !op.Returned() || op.Error != "" || len(op.Out.Msgs) >= clampLimit(op.In.Limit) {
			continue
		}
		missed := convSeq{op.Conv, op.In.AfterSeq + uint64(len(op.Out.Msgs)) + 1}
		if j, ok := firstAck[missed]; ok && op.Call <= *h.Ops[j].Return {
			sites = append(sites, site{i, j})
			idx = append(idx, len(idx))
		}
	}
	n, err := pick(idx, seed)
	if err != nil {
		return nil, err
	}
	s := sites[n]
	out := cloneHistory(h)
	op := &out.Ops[s.sync]
	d := *op.Return - op.Call
	op.Call = *h.Ops[s.send].Return + 1
	ret := op.Call + d
	op.Return = &ret
	return out, nil
}

// ReorderSends swaps the cseqs of two consecutive acknowledged sends of one
// client to one conversation: the later-numbered one got the earlier seq,
// as unserialised appends would.
func ReorderSends(h *History, seed uint64) (*History, error) {
	type site struct{ a, b int }
	type cc struct {
		client int
		conv   string
	}
	last := map[cc]int{}
	var sites []site
	var idx []int
	for i := range h.Ops {
		op := &h.Ops[i]
		if !acked(op) || op.In.CSeq == 0 {
			continue
		}
		k := cc{op.Client, op.Conv}
		if j, ok := last[k]; ok && h.Ops[j].In.ClientMsgID != op.In.ClientMsgID &&
			h.Ops[j].In.CSeq < op.In.CSeq && h.Ops[j].Out.Seq < op.Out.Seq {
			sites = append(sites, site{j, i})
			idx = append(idx, len(idx))
		}
		last[k] = i
	}
	n, err := pick(idx, seed)
	if err != nil {
		return nil, err
	}
	s := sites[n]
	out := cloneHistory(h)
	a, b := h.Ops[s.a], h.Ops[s.b]
	for i := range out.Ops {
		op := &out.Ops[i]
		if op.Kind != KindSend || op.Client != a.Client {
			continue
		}
		switch op.In.ClientMsgID {
		case a.In.ClientMsgID:
			op.In.CSeq = b.In.CSeq
		case b.In.ClientMsgID:
			op.In.CSeq = a.In.CSeq
		}
	}
	return out, nil
}
