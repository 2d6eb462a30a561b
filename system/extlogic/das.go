package extlogic

import (
	"slices"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

// storeCall is one das request, retried on the next das slot on an unknown
// outcome, a timeout or a link down, up to RetryMax attempts. Every op
// extlogic sends is idempotent (appends by client_msg_id, touches by
// last-writer-wins), so a retry after an unknown outcome is safe.
type storeCall struct {
	job      *job
	req      *wire.StoreRequest // op and business; req_id set per attempt
	home     int                // home slot of the routing key
	slot     int                // slot of the current attempt
	attempts int
	timer    node.TimerID
	// then runs once: with the reply on OK, or with nil when the call failed
	// definitely or ran out of attempts.
	then func(env node.Env, reply *wire.StoreReply)
}

type storeTimeoutTag struct{ req uint64 }

// callDas sends req to the das instance that serves key.
func (x *ExtLogic) callDas(env node.Env, j *job, key string, req *wire.StoreRequest, then func(node.Env, *wire.StoreReply)) {
	alive := x.Views.Alive(node.RoleDas)
	c := &storeCall{job: j, req: req, then: then}
	if len(alive) == 0 {
		x.stats.StoreFailures++
		then(env, nil)
		return
	}
	c.home = route.Home(key, len(alive))
	slot, ok := route.Pick(key, alive)
	if !ok {
		// Every das believed dead: try home anyway; a view may be stale.
		slot = c.home
	}
	c.slot = slot
	x.attempt(env, c)
}

// attempt sends c to c.slot under a fresh request id.
func (x *ExtLogic) attempt(env node.Env, c *storeCall) {
	c.attempts++
	x.nextReq++
	id := x.nextReq
	// The first attempt sends the request callDas was given (its caller
	// made it for this call); a retry sends a copy, since a message once
	// sent must not change.
	req := c.req
	if c.attempts > 1 {
		req = cloneRequest(c.req)
	}
	req.ReqId = id
	req.ReplyTo = x.self.Of(env.Self())
	req.CallerIncarnation = uint64(env.Incarnation())
	x.calls[id] = c
	c.timer = env.After(x.cfg.StoreTimeout, storeTimeoutTag{req: id})
	env.Send(node.Addr{Role: node.RoleDas, Slot: c.slot}, req)
}

// cloneRequest copies the envelope; the op itself is shared and never
// modified (a sent message must not change: the simulator passes pointers).
func cloneRequest(r *wire.StoreRequest) *wire.StoreRequest {
	return &wire.StoreRequest{
		Business:     r.Business,
		Append:       r.Append,
		TouchContact: r.TouchContact,
	}
}

func (x *ExtLogic) onStoreReply(env node.Env, from node.Addr, r *wire.StoreReply) {
	if r.CallerIncarnation != uint64(env.Incarnation()) {
		return // addressed to a previous incarnation
	}
	c, ok := x.calls[r.ReqId]
	if !ok {
		return // late answer to an attempt already retried or finished
	}
	delete(x.calls, r.ReqId)
	env.Cancel(c.timer)
	x.Views.MarkAlive(from)
	switch r.Outcome {
	case wire.Outcome_OUTCOME_OK:
		c.then(env, r)
	case wire.Outcome_OUTCOME_UNKNOWN:
		x.retry(env, c)
	default:
		// Definite: nothing happened. The delivery is nakked; a redelivery
		// tries again later (OVERLOADED, UNAVAILABLE pass with time).
		x.stats.StoreFailures++
		env.Log().Info("extlogic: das refused", "code", r.Code.String(), "error", r.Error)
		c.then(env, nil)
	}
}

func (x *ExtLogic) onStoreTimeout(env node.Env, id uint64) {
	c, ok := x.calls[id]
	if !ok {
		return
	}
	delete(x.calls, id)
	x.Views.MarkDead(node.Addr{Role: node.RoleDas, Slot: c.slot})
	x.retry(env, c)
}

// onDasDown retries, in request order, every call in flight to peer.
func (x *ExtLogic) onDasDown(env node.Env, peer node.Addr) {
	x.Views.MarkDead(peer)
	var ids []uint64
	for id, c := range x.calls {
		if c.slot == peer.Slot {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // map order must not reach the retries
	for _, id := range ids {
		c := x.calls[id]
		delete(x.calls, id)
		env.Cancel(c.timer)
		x.retry(env, c)
	}
}

// retry moves c to the next das slot in its probe order, or fails it after
// RetryMax attempts.
func (x *ExtLogic) retry(env node.Env, c *storeCall) {
	if c.attempts >= x.cfg.RetryMax {
		x.stats.StoreFailures++
		c.then(env, nil)
		return
	}
	x.stats.StoreRetries++
	c.slot = nextSlot(c.home, c.slot, x.Views.Alive(node.RoleDas))
	x.attempt(env, c)
}

// nextSlot is the slot after slot in home's probe order that is believed
// alive (slot itself when it is the only one); when none is, the next one on
// the ring anyway (a view may be stale).
func nextSlot(home, slot int, alive []bool) int {
	n := len(alive)
	if n == 0 {
		return slot
	}
	if home < n {
		if next, ok := route.Next(home, slot, alive); ok {
			return next
		}
	}
	return (slot + 1) % n
}
