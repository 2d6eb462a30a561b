package sim

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// bg is the context of store calls: the simulated store never blocks.
var bg = context.Background()

// nodeEnv is node.Env for one incarnation of one instance.
type nodeEnv struct {
	s   *sim
	in  *instance
	inc node.Incarnation
	rnd *rand.Rand
	log *slog.Logger
}

var _ node.Env = (*nodeEnv)(nil)

func (e *nodeEnv) Self() node.Addr               { return e.in.addr }
func (e *nodeEnv) Incarnation() node.Incarnation { return e.inc }
func (e *nodeEnv) Now() time.Time                { return epoch.Add(time.Duration(e.s.now + e.in.skew)) }
func (e *nodeEnv) Rand() *rand.Rand              { return e.rnd }
func (e *nodeEnv) Log() *slog.Logger             { return e.log }

// live reports whether the calling node is the current incarnation; a
// stale one (impossible unless a node kept its env) affects nothing.
func (e *nodeEnv) live() bool { return e.in.up && e.in.inc == e.inc }

func (e *nodeEnv) Send(to node.Addr, m node.Message) {
	if e.live() {
		e.s.send(e.in, to, m)
	}
}

func (e *nodeEnv) ToClient(c node.ConnID, f wire.Frame) {
	if e.live() {
		e.s.toClient(e.in, c, f)
	}
}

func (e *nodeEnv) Close(c node.ConnID) {
	if e.live() {
		e.s.closeByServer(e.in, c)
	}
}

func (e *nodeEnv) HTTPReply(c node.ConnID, status int, contentType string, body []byte) {
	if e.live() {
		e.s.httpReply(e.in, c, status, body)
	}
}

func (e *nodeEnv) After(d time.Duration, tag any) node.TimerID {
	id := node.TimerID(e.s.id())
	if !e.live() {
		return id
	}
	if d < 0 {
		d = 0
	}
	slot := e.s.schedule(e.s.now+int64(d), event{kind: evNodeTimer, target: e.in.idx, inc: uint64(e.inc),
		a: uint64(id), p: tag})
	e.s.nodeTimers[id] = timerRef{owner: e.in.idx, slot: slot}
	return id
}

func (e *nodeEnv) Cancel(id node.TimerID) {
	if ref, ok := e.s.nodeTimers[id]; ok && ref.owner == e.in.idx {
		delete(e.s.nodeTimers, id)
		e.s.cancelTimer(evNodeTimer, uint64(id), ref)
	}
}

func (e *nodeEnv) Store(op node.StoreOp) node.ReqID {
	req := node.ReqID(e.s.id())
	if e.live() {
		e.s.store.submit(e.in, req, op)
	}
	return req
}

func (e *nodeEnv) Presence(op node.PresenceOp) node.ReqID {
	req := node.ReqID(e.s.id())
	if e.live() {
		e.s.presence.submit(e.in, req, op)
	}
	return req
}

func (e *nodeEnv) Publish(subject string, data []byte, msgID string) node.ReqID {
	req := node.ReqID(e.s.id())
	if e.live() {
		e.s.queue.publish(e.in, req, subject, data, msgID)
	}
	return req
}

func (e *nodeEnv) Registry(op node.RegistryOp) node.ReqID {
	req := node.ReqID(e.s.id())
	if e.live() {
		e.s.registry.submit(e.in, req, op)
	}
	return req
}

func (e *nodeEnv) AckDelivery(id node.DeliveryID) {
	if e.live() {
		e.s.queue.ack(e.in, id)
	}
}

func (e *nodeEnv) NakDelivery(id node.DeliveryID, delay time.Duration) {
	if e.live() {
		e.s.queue.nak(e.in, id, delay)
	}
}

// complete schedules the one Completion of req for in's current incarnation.
func (s *sim) complete(in *instance, inc node.Incarnation, at int64, c node.Completion) {
	s.schedule(at, event{kind: evNode, target: in.idx, inc: uint64(inc), p: c})
}
