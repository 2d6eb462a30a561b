package logic

import (
	"slices"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

// dasCall is one attempt of a das request. then runs exactly once: with
// the reply, or with nil when the attempt timed out or its link went down
// (the slot is then marked dead locally, so the caller's next pick moves on).
type dasCall struct {
	slot  int
	timer node.TimerID
	// cut: the attempt's timer was shorter than DasTimeout (the client
	// request's budget was nearly spent), so its expiry says nothing about
	// the das's health and does not mark it dead.
	cut  bool
	then func(env node.Env, reply *wire.StoreReply)
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

// callDas sends a copy of tmpl (business and op) to das slot under a fresh
// req_id, with an attempt timer of timeout. The caller has checked room.
func (l *Logic) callDas(env node.Env, slot int, tmpl *wire.StoreRequest, timeout time.Duration, then func(node.Env, *wire.StoreReply)) {
	l.nextCall++
	id := l.nextCall
	// A fresh envelope per attempt: a sent message must never change (the
	// simulator passes pointers). The op itself is shared, never modified.
	req := &wire.StoreRequest{
		ReqId:             id,
		ReplyTo:           env.Self().String(),
		CallerIncarnation: uint64(env.Incarnation()),
		Business:          tmpl.Business,
		Append:            tmpl.Append,
		Sync:              tmpl.Sync,
		MarkRead:          tmpl.MarkRead,
		ConvList:          tmpl.ConvList,
		TouchContact:      tmpl.TouchContact,
	}
	l.calls[id] = &dasCall{slot: slot, then: then, cut: timeout < l.cfg.DasTimeout, timer: env.After(timeout, dasTimeoutTag{id: id})}
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
	c.then(env, r)
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
	c.then(env, nil)
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
		c.then(env, nil)
	}
}
