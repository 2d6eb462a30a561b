package sim

import (
	"strings"
	"time"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
)

// simQueue is JetStream: a stream per mq.StreamOf, durable consumers of
// mq.Consumers shared by every extlogic instance (each message goes to one
// alive instance), redelivery after AckWait (possibly after later
// messages), NakDelivery with a delay, MaxDeliver then a dead letter,
// publish dedup by msgID within mq.DedupWindow. Faults: duplicate
// deliveries, lost acks, outage (publishes fail, nothing is delivered).
type simQueue struct {
	s         *sim
	streams   map[string]*simStream
	consumers []*simConsumer
	// byDelivery finds the consumer of an outstanding delivery.
	byDelivery map[node.DeliveryID]int
}

type simStream struct {
	name  string
	log   []qmsg
	dedup map[string]int64 // msgID → publish time
	// dedupOrder lets old dedup entries expire in publish order; entries
	// before dedupHead have expired. The slice is compacted only once the
	// expired prefix is half of it, so expiry costs O(1) amortised per
	// publish instead of a copy of the whole window each time.
	dedupOrder []dedupMark
	dedupHead  int
	consumers  []int
}

type qmsg struct {
	subject string
	data    []byte
	msgID   string
}

type dedupMark struct {
	msgID string
	at    int64
}

type simConsumer struct {
	c       mq.Consumer
	idx     int
	stream  *simStream
	next    int         // next never-delivered message of the stream log
	again   []redeliver // messages due for redelivery, in due order
	pending map[node.DeliveryID]*outstanding
	rr      int  // round robin over extlogic instances
	pumping bool // a pump event is scheduled
}

type redeliver struct {
	msg int
	num int
}

type outstanding struct {
	msg      int
	num      int
	deadline int64
}

func newSimQueue(s *sim) *simQueue {
	q := &simQueue{s: s, streams: map[string]*simStream{}, byDelivery: map[node.DeliveryID]int{}}
	for _, name := range []string{mq.StreamOffline, mq.StreamPlatform, mq.StreamEvents} {
		q.streams[name] = &simStream{name: name, dedup: map[string]int64{}}
	}
	for i, c := range mq.Consumers {
		st := q.streams[c.Stream]
		sc := &simConsumer{c: c, idx: i, stream: st, pending: map[node.DeliveryID]*outstanding{}}
		st.consumers = append(st.consumers, i)
		q.consumers = append(q.consumers, sc)
	}
	return q
}

func (q *simQueue) publish(in *instance, req node.ReqID, subject string, data []byte, msgID string) {
	s := q.s
	s.obs.publishes++
	if strings.HasPrefix(subject, mq.OfflinePrefix) {
		s.obs.offlinePublishes++
	}
	at := s.now + latency(s.deps, s.cfg.Deps.QueueLatencyMin, s.cfg.Deps.QueueLatency)
	if err := q.append(subject, data, msgID); err != nil {
		s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.Failed, Err: err})
		return
	}
	s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.OK})
}

// append stores a message (or recognises a duplicate) and wakes consumers.
func (q *simQueue) append(subject string, data []byte, msgID string) error {
	s := q.s
	if s.faults.queueOutage() {
		return store.ErrUnavailable
	}
	st := q.streams[mq.StreamOf(subject)]
	if st == nil {
		return store.ErrInvalid // no stream listens: JetStream answers "no responders"
	}
	st.expireDedup(s.now)
	if msgID != "" {
		if _, dup := st.dedup[msgID]; dup {
			s.obs.publishDeduped++
			return nil
		}
		st.dedup[msgID] = s.now
		st.dedupOrder = append(st.dedupOrder, dedupMark{msgID: msgID, at: s.now})
	}
	st.log = append(st.log, qmsg{subject: subject, data: data, msgID: msgID})
	for _, ci := range st.consumers {
		q.wake(ci, s.now+latency(s.deps, s.cfg.Deps.QueueLatencyMin, 0))
	}
	return nil
}

func (st *simStream) expireDedup(now int64) {
	window := int64(mq.DedupWindow)
	i := st.dedupHead
	for ; i < len(st.dedupOrder) && st.dedupOrder[i].at+window <= now; i++ {
		delete(st.dedup, st.dedupOrder[i].msgID)
		st.dedupOrder[i] = dedupMark{}
	}
	st.dedupHead = i
	if i > 0 && i >= len(st.dedupOrder)/2 {
		n := copy(st.dedupOrder, st.dedupOrder[i:])
		st.dedupOrder = st.dedupOrder[:n]
		st.dedupHead = 0
	}
}

// wake schedules one pump of consumer ci (at most one is pending).
func (q *simQueue) wake(ci int, at int64) {
	c := q.consumers[ci]
	if c.pumping {
		return
	}
	c.pumping = true
	q.s.schedule(at, event{kind: evQueuePump, a: uint64(ci)})
}

// pump hands ready messages to alive extlogic instances, up to MaxAckPending.
func (q *simQueue) pump(ci int) {
	s := q.s
	c := q.consumers[ci]
	c.pumping = false
	if s.faults.queueOutage() {
		return // the outage's end wakes every consumer
	}
	for len(c.pending) < s.cfg.Deps.MaxAckPending {
		var r redeliver
		switch {
		case len(c.again) > 0:
			r = c.again[0]
			c.again = c.again[1:]
		case c.next < len(c.stream.log):
			r = redeliver{msg: c.next, num: 1}
			c.next++
		default:
			return
		}
		target := q.pickInstance(c)
		if target == nil {
			// Nobody consumes: put it back in front and wait for an instance.
			c.again = append([]redeliver{r}, c.again...)
			return
		}
		q.deliver(c, target, r)
	}
}

func (q *simQueue) pickInstance(c *simConsumer) *instance {
	s := q.s
	n := len(s.instances)
	for i := 0; i < n; i++ {
		in := s.instances[(c.rr+i)%n]
		if in.up && in.addr.Role == node.RoleExtLogic {
			c.rr = (c.rr + i + 1) % n
			return in
		}
	}
	return nil
}

func (q *simQueue) deliver(c *simConsumer, target *instance, r redeliver) {
	s := q.s
	id := node.DeliveryID(s.id())
	ackWait := c.c.AckWait
	if ackWait <= 0 {
		ackWait = mq.AckWaitDefault
	}
	c.pending[id] = &outstanding{msg: r.msg, num: r.num, deadline: s.now + int64(ackWait)}
	q.byDelivery[id] = c.idx
	m := &c.stream.log[r.msg]
	ev := event{kind: evNode, target: target.idx, inc: uint64(target.inc),
		p: node.Delivery{ID: id, Subject: m.subject, Data: m.data, MsgID: m.msgID, NumDelivered: r.num}}
	at := s.now + latency(s.deps, s.cfg.Deps.QueueLatencyMin, s.cfg.Deps.QueueLatency)
	s.schedule(at, ev)
	s.schedule(s.now+int64(ackWait), event{kind: evQueueAckWait, a: uint64(id), b: uint64(c.idx)})
	if r.num > 1 {
		s.obs.redeliveries++
	}
	if coin(s.flt, s.faults.queueDuplicate()) {
		s.obs.queueDuplicates++
		if other := q.pickInstance(c); other != nil {
			ev.target, ev.inc = other.idx, uint64(other.inc)
			s.schedule(at+latency(s.deps, s.cfg.Deps.QueueLatencyMin, s.cfg.Deps.QueueLatency), ev)
		}
	}
}

// ackWait redelivers delivery id if it is still unacknowledged at its deadline.
func (q *simQueue) ackWait(id, ci uint64) {
	c := q.consumers[ci]
	o, ok := c.pending[node.DeliveryID(id)]
	if !ok || o.deadline > q.s.now {
		return
	}
	q.forget(c, node.DeliveryID(id))
	if o.num >= mq.MaxDeliver {
		q.s.obs.deadLetters++
		return
	}
	c.again = append(c.again, redeliver{msg: o.msg, num: o.num + 1})
	q.wake(c.idx, q.s.now)
}

func (q *simQueue) forget(c *simConsumer, id node.DeliveryID) {
	delete(c.pending, id)
	delete(q.byDelivery, id)
}

func (q *simQueue) ack(in *instance, id node.DeliveryID) {
	ci, ok := q.byDelivery[id]
	if !ok {
		return // already acked, or redelivered under a new id
	}
	if coin(q.s.flt, q.s.faults.queueLostAck()) {
		q.s.obs.lostAcks++
		return
	}
	c := q.consumers[ci]
	if o := c.pending[id]; o != nil && o.num > 1 {
		q.s.obs.redeliveriesHandled++
	}
	full := len(c.pending) >= q.s.cfg.Deps.MaxAckPending
	q.forget(c, id)
	if full || len(c.again) > 0 {
		q.wake(ci, q.s.now)
	}
}

func (q *simQueue) nak(in *instance, id node.DeliveryID, delay time.Duration) {
	ci, ok := q.byDelivery[id]
	if !ok {
		return
	}
	c := q.consumers[ci]
	o := c.pending[id]
	o.deadline = q.s.now + int64(max(delay, 0))
	q.s.obs.naks++
	q.s.schedule(o.deadline, event{kind: evQueueAckWait, a: uint64(id), b: uint64(ci)})
}

// instanceDown: a dead consumer's deliveries stay outstanding until their
// AckWait, as in JetStream.
func (q *simQueue) instanceDown(in *instance) {}

// instanceUp wakes every consumer: a waiting message may now have a taker.
func (q *simQueue) instanceUp(in *instance) {
	if in.addr.Role != node.RoleExtLogic {
		return
	}
	for i := range q.consumers {
		q.wake(i, q.s.now)
	}
}

// wakeAll restarts delivery after an outage.
func (q *simQueue) wakeAll() {
	for i := range q.consumers {
		q.wake(i, q.s.now)
	}
}
