package logic

import (
	"slices"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

// dasOp is the business and op of a das request; callDas puts them in a
// fresh StoreRequest per attempt. The op messages are shared by the
// attempts, never modified.
type dasOp struct {
	business wire.Business
	append   *wire.AppendItem
	sync     *wire.SyncOp
	markRead *wire.MarkReadOp
	convList *wire.ConvListOp
}

// dasCall is one attempt of a das request. Its answer goes exactly once to
// the append attempt of send or else to the read attempt of read: with the
// reply, or with nil when the attempt timed out or its link went down (the
// slot is then marked dead locally, so the caller's next pick moves on).
// Named callers instead of a callback: a closure per attempt would be one
// more allocation.
type dasCall struct {
	slot  int
	timer node.TimerID
	// cut: the attempt's timer was shorter than DasTimeout (the client
	// request's budget was nearly spent), so its expiry says nothing about
	// the das's health and does not mark it dead.
	cut  bool
	send *sendOp
	read *readCall
}

// done hands the attempt's outcome (nil: none) to its caller.
func (l *Logic) done(env node.Env, c dasCall, reply *wire.StoreReply) {
	if c.send != nil {
		l.onAppendReply(env, c.send, reply)
		return
	}
	l.onReadReply(env, c.read, reply)
}

// room reports whether a new das request may start: the calls in flight
// plus the slots reserved by appends waiting to retry stay under pendingMax.
func (l *Logic) room() bool { return len(l.calls)+l.reserved < l.cfg.PendingMax }

// pickDas returns the das slot for key: its home if believed alive, else the
// next alive one in probe order. When every slot is believed dead it tries
// the home anyway: local beliefs may be stale, and the timeout bounds it.
// ok is false only when no das is configured.
func (l *Logic) pickDas(key string) (int, bool) {
	alive := l.member.Views.Alive(node.RoleDas)
	if len(alive) == 0 {
		return 0, false
	}
	if slot, ok := route.Pick(key, alive); ok {
		return slot, true
	}
	return route.Home(key, len(alive)), true
}

// attemptTimeout is one das attempt's timer when left remains of the
// client request's budget: DasTimeout, cut to left (never below attemptMin,
// which callers check before a retry; a first attempt always gets that much).
func (l *Logic) attemptTimeout(left time.Duration) time.Duration {
	return min(l.cfg.DasTimeout, max(left, attemptMin))
}

// callDas sends op to das slot under a fresh req_id, with an attempt timer
// of timeout; c names the caller its answer goes to. The caller has
// checked room.
func (l *Logic) callDas(env node.Env, slot int, op dasOp, timeout time.Duration, c dasCall) {
	l.nextCall++
	id := l.nextCall
	// A fresh envelope per attempt: a sent message must never change (the
	// simulator passes pointers). The op itself is shared, never modified.
	req := &wire.StoreRequest{
		ReqId:             id,
		ReplyTo:           l.self.Of(env.Self()),
		CallerIncarnation: uint64(env.Incarnation()),
		Business:          op.business,
		Append:            op.append,
		Sync:              op.sync,
		MarkRead:          op.markRead,
		ConvList:          op.convList,
	}
	c.slot, c.cut = slot, timeout < l.cfg.DasTimeout
	c.timer = env.After(timeout, dasTimeoutTag{id: id})
	l.calls[id] = c
	env.Send(node.Addr{Role: node.RoleDas, Slot: slot}, req)
}

func (l *Logic) onStoreReply(env node.Env, from node.Addr, r *wire.StoreReply) {
	if r.CallerIncarnation != uint64(env.Incarnation()) {
		return // addressed to a previous incarnation
	}
	c, ok := l.calls[r.ReqId]
	if !ok {
		return // late answer to an attempt already timed out, or a duplicate
	}
	delete(l.calls, r.ReqId)
	env.Cancel(c.timer)
	if from.Role == node.RoleDas {
		l.member.Views.MarkAlive(from)
	}
	l.done(env, c, r)
}

func (l *Logic) onDasTimeout(env node.Env, id uint64) {
	c, ok := l.calls[id]
	if !ok {
		return
	}
	delete(l.calls, id)
	if !c.cut {
		l.member.Views.MarkDead(node.Addr{Role: node.RoleDas, Slot: c.slot})
	}
	l.done(env, c, nil)
}

// onDasDown ends, in request order, every attempt in flight to peer.
func (l *Logic) onDasDown(env node.Env, peer node.Addr) {
	l.member.Views.MarkDead(peer)
	var ids []uint64
	for id, c := range l.calls {
		if c.slot == peer.Slot {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // map order must not reach the retries
	for _, id := range ids {
		c, ok := l.calls[id]
		if !ok {
			continue
		}
		delete(l.calls, id)
		env.Cancel(c.timer)
		l.done(env, c, nil)
	}
}
