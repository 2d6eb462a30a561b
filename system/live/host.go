// Package live runs zzim's service state machines in production: one
// goroutine per node draining a bounded mailbox, real TCP and HTTP
// listeners, persistent internal links, wall-clock timers, and bounded
// worker pools for dependency requests. It is the thin, goroutine-owning
// adapter around the thread-unsafe services (etcd-io/raft's node.go around
// RawNode); everything worth testing about behaviour lives in the services.
package live

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// Bounds of a host.
const (
	// MailboxMax bounds the events waiting for a node. Producers on the
	// network block when it is full (back-pressure onto TCP); the node's own
	// effects never block (they are queued locally).
	MailboxMax = 1 << 16
	// DepInflightMax bounds dependency requests in flight per host; past it
	// a request completes at once as Failed (overloaded) rather than queueing
	// without bound.
	DepInflightMax = 4096
	// DepTimeoutDefault is how long a dependency request may take before its
	// outcome is reported unknown.
	DepTimeoutDefault = 2 * time.Second
)

// ErrOverloaded completes a dependency request that found no room.
var ErrOverloaded = errors.New("live: too many dependency requests in flight")

// Host runs one node.
type Host struct {
	addr    node.Addr
	inc     node.Incarnation
	newNode func() node.Node
	n       node.Node
	proc    *Process
	log     *slog.Logger
	rnd     *rand.Rand

	mailbox chan node.Event
	inspect chan inspectReq
	local   []node.Event // effects' own events (LinkDown on Send), handled before the mailbox
	done    chan struct{}
	stopped atomic.Bool

	ids      atomic.Uint64
	timers   hostTimers // touched only by the node goroutine (but wake)
	inflight atomic.Int64
	ctx      context.Context
	cancel   context.CancelFunc

	deliveries sync.Map // node.DeliveryID → QueueDelivery

	handled atomic.Uint64

	// due: app connections this round wrote frames to, flushed once each
	// when the round ends (flushWrites); wbuf is the buffer they are
	// encoded into. Node goroutine only.
	due  []*appConn
	wbuf []byte
}

func newHost(p *Process, addr node.Addr, newNode func() node.Node) *Host {
	var seed [16]byte
	_, _ = crand.Read(seed[:])
	ctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		addr:    addr,
		inc:     node.Incarnation(time.Now().UnixNano()),
		newNode: newNode,
		proc:    p,
		log:     p.log.With("node", addr.String()),
		rnd:     rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))),
		mailbox: make(chan node.Event, MailboxMax),
		inspect: make(chan inspectReq),
		done:    make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
	}
	h.timers = hostTimers{epoch: time.Now(), tags: map[node.TimerID]any{}}
	// The one runtime timer of the host: it fires for the earliest of the
	// node's timers and posts the wake-up (a Timer with ID 0, an ID that
	// nextID never gives).
	h.timers.wake = time.AfterFunc(time.Hour, func() { h.post(node.Timer{}) })
	h.timers.wake.Stop()
	return h
}

// Addr is the node's address.
func (h *Host) Addr() node.Addr { return h.addr }

// Stopped reports whether the node was killed or shut down.
func (h *Host) Stopped() bool { return h.stopped.Load() }

// Handled counts events the node has handled.
func (h *Host) Handled() uint64 { return h.handled.Load() }

// Node returns the state machine (for Stats; read it only from tests that
// accept a racy snapshot, or through Inspect).
func (h *Host) Node() node.Node { return h.n }

// Inspect runs fn on the node goroutine and waits for it: the safe way to read
// a service's Stats() while it runs.
func (h *Host) Inspect(fn func(node.Node)) {
	done := make(chan struct{})
	select {
	case h.inspect <- inspectReq{fn: fn, done: done}:
	case <-h.done:
		return
	}
	select {
	case <-done:
	case <-h.done:
	}
}

type inspectReq struct {
	fn   func(node.Node)
	done chan struct{}
}

// post delivers ev to the node, blocking while the mailbox is full. It
// returns false once the host has stopped.
func (h *Host) post(ev node.Event) bool {
	if h.stopped.Load() {
		return false
	}
	// The mailbox has room nearly always: a send that cannot block locks
	// one channel, where the select below locks two.
	select {
	case h.mailbox <- ev:
		return true
	default:
	}
	select {
	case h.mailbox <- ev:
		return true
	case <-h.done:
		return false
	}
}

// mailboxDrainMax bounds the events a host takes from its mailbox in one
// go before it looks at inspect requests and done again.
const mailboxDrainMax = 256

func (h *Host) run() {
	env := &hostEnv{h: h}
	h.n = h.newNode()
	h.n.Start(env)
	h.drainLocal(env)
	h.flushWrites()
	for {
		select {
		case ev := <-h.mailbox:
			h.dispatch(env, ev)
			h.drainLocal(env)
			// Under load events wait in the mailbox: take them with a
			// one-channel receive each rather than a three-way select
			// that locks the mailbox, inspect and done channels every time.
			for i := 0; i < mailboxDrainMax && !h.stopped.Load(); i++ {
				select {
				case ev := <-h.mailbox:
					h.dispatch(env, ev)
					h.drainLocal(env)
					continue
				default:
				}
				break
			}
		case r := <-h.inspect:
			r.fn(h.n)
			close(r.done)
		case <-h.done:
			return
		}
		h.flushWrites()
	}
}

// flushWrites writes, once each, the app connections the round's events
// wrote to: every frame of a round to one connection in one write.
func (h *Host) flushWrites() {
	for i, c := range h.due {
		h.due[i] = nil
		h.proc.flushDue(h, c)
	}
	h.due = h.due[:0]
}

// drainLocal handles the events the node's own effects queued (a LinkDown
// on Send, completions of overloaded or inline requests), in order, and
// keeps the queue's array for the next time.
func (h *Host) drainLocal(env *hostEnv) {
	for i := 0; i < len(h.local); i++ {
		ev := h.local[i]
		h.local[i] = nil
		h.dispatch(env, ev)
	}
	h.local = h.local[:0]
}

func (h *Host) dispatch(env *hostEnv, ev node.Event) {
	if e, ok := ev.(node.Timer); ok && e.ID == 0 {
		h.fireTimers(env)
		return
	}
	h.handled.Add(1)
	h.n.Handle(env, ev)
}

// stop ends the node goroutine without any goodbye: a crash.
func (h *Host) stop() {
	if h.stopped.Swap(true) {
		return
	}
	h.cancel()
	h.timers.wake.Stop()
	close(h.done)
}

func (h *Host) nextID() uint64 { return h.ids.Add(1) }

// hostEnv implements node.Env for a Host. Its methods run on the node goroutine.
type hostEnv struct{ h *Host }

var _ node.Env = (*hostEnv)(nil)

func (e *hostEnv) Self() node.Addr               { return e.h.addr }
func (e *hostEnv) Incarnation() node.Incarnation { return e.h.inc }
func (e *hostEnv) Now() time.Time                { return time.Now() }
func (e *hostEnv) Rand() *rand.Rand              { return e.h.rnd }
func (e *hostEnv) Log() *slog.Logger             { return e.h.log }

func (e *hostEnv) Send(to node.Addr, m node.Message) {
	if !e.h.proc.links.send(e.h.addr, to, m) {
		e.h.local = append(e.h.local, node.LinkDown{Peer: to})
	}
}

func (e *hostEnv) ToClient(c node.ConnID, f wire.Frame) { e.h.proc.conns.writeFrom(e.h, c, f) }
func (e *hostEnv) Close(c node.ConnID)                  { e.h.proc.conns.close(c, "closed by server") }
func (e *hostEnv) HTTPReply(c node.ConnID, status int, ct string, body []byte) {
	e.h.proc.https.reply(c, status, ct, body)
}

func (e *hostEnv) After(d time.Duration, tag any) node.TimerID {
	id := node.TimerID(e.h.nextID())
	e.h.timers.add(id, d, tag)
	return id
}

func (e *hostEnv) Cancel(id node.TimerID) { e.h.timers.cancel(id) }

// request queues fn on the pool of its kind with the dependency timeout
// and posts its completion. Exactly one completion per ReqID: overload (too
// many in flight for this host, or the pool's queue full) completes at once.
func (e *hostEnv) request(kind string, fn func(ctx context.Context) (node.Completion, error)) node.ReqID {
	return e.submit(depJob{kind: kind, run: fn})
}

// requestAsync is request for a dependency that completes on its own
// goroutine (an async publish): the worker only starts it.
func (e *hostEnv) requestAsync(kind string, fn func(done func(node.Completion, error)) bool) node.ReqID {
	return e.submit(depJob{kind: kind, async: fn})
}

// Inline is implemented by dependencies whose calls are done in
// microseconds without waiting on I/O (the in-memory ones: MemPresence,
// MemQueue, and a store wrapped by InlineStore; a presence scan is the
// exception, see Presence). A host calls them on its
// own goroutine and queues the completion as the node's next event, as it
// does for an overloaded request, instead of a round trip through a worker
// pool: for a map lookup that round trip (two goroutine wake-ups, a
// context with a deadline timer, a bounded queue) is most of the cost. The
// node sees what it sees from a pool, a Completion event after the call
// returned, only sooner; no timeout applies, as nothing can hang.
type Inline interface{ inlineDep() }

// inlineDeps records which of a process's dependencies are Inline.
type inlineDeps struct{ store, presence, queue bool }

func inlineOf(d Deps) inlineDeps {
	_, st := d.Store.(Inline)
	_, pr := d.Presence.(Inline)
	_, q := d.Queue.(Inline)
	if _, async := d.Queue.(AsyncQueue); async {
		q = false
	}
	return inlineDeps{store: st, presence: pr, queue: q}
}

// InlineStore marks st as safe to call on a node's goroutine (Inline): it
// must never block for long. memstore qualifies; a database does not.
func InlineStore(st store.Store) store.Store { return inlineStore{st} }

type inlineStore struct{ store.Store }

func (inlineStore) inlineDep() {}

// inline runs fn now, on the node goroutine, and queues its completion.
func (e *hostEnv) inline(kind string, fn func(ctx context.Context) (node.Completion, error)) node.ReqID {
	h := e.h
	id := node.ReqID(h.nextID())
	start := time.Now()
	c, err := fn(h.ctx)
	h.proc.metrics.depLatency(kind, time.Since(start), err)
	c.Req = id
	if err != nil {
		c.Outcome, c.Err = classify(err), err
	}
	h.local = append(h.local, c)
	return id
}

func (e *hostEnv) submit(j depJob) node.ReqID {
	h := e.h
	id := node.ReqID(h.nextID())
	if h.inflight.Add(1) > DepInflightMax {
		h.inflight.Add(-1)
		h.local = append(h.local, node.Completion{Req: id, Outcome: node.Failed, Err: ErrOverloaded})
		return id
	}
	j.h, j.id, j.deadline = h, id, time.Now().Add(h.proc.cfg.DepTimeout)
	if !h.proc.pools.of(j.kind).submit(j) {
		h.inflight.Add(-1)
		h.proc.metrics.depLatency(j.kind, 0, ErrOverloaded)
		h.local = append(h.local, node.Completion{Req: id, Outcome: node.Failed, Err: ErrOverloaded})
	}
	return id
}

// classify maps a dependency error to an outcome: definite failures are
// those where the request certainly did not take effect.
func classify(err error) node.Outcome {
	switch {
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrDeadlock),
		errors.Is(err, store.ErrInvalid), errors.Is(err, ErrOverloaded):
		return node.Failed
	}
	return node.Unknown
}

func (e *hostEnv) Store(op node.StoreOp) node.ReqID {
	st := e.h.proc.deps.Store
	run := func(ctx context.Context) (node.Completion, error) {
		if st == nil {
			return node.Completion{}, fmt.Errorf("%w: no store configured", store.ErrUnavailable)
		}
		res, err := runStoreOp(ctx, st, op)
		return node.Completion{Outcome: node.OK, Store: &res}, err
	}
	if e.h.proc.inline.store {
		return e.inline("store", run)
	}
	return e.request("store", run)
}

func runStoreOp(ctx context.Context, st store.Store, op node.StoreOp) (node.StoreResult, error) {
	var res node.StoreResult
	var err error
	switch {
	case op.Append != nil:
		res.Append, err = st.Append(ctx, op.Append)
	case op.Sync != nil:
		res.Sync, err = st.Sync(ctx, *op.Sync)
	case op.MarkRead != nil:
		res.Read, err = st.MarkRead(ctx, *op.MarkRead)
	case op.ConvList != nil:
		res.ConvList, err = st.ConvList(ctx, *op.ConvList)
	case op.Touch != nil:
		err = st.Touch(ctx, *op.Touch)
	default:
		err = fmt.Errorf("%w: empty store op", store.ErrInvalid)
	}
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, store.ErrUnknownOutcome) {
		err = fmt.Errorf("%w: %v", store.ErrUnknownOutcome, err)
	}
	return res, err
}

func (e *hostEnv) Presence(op node.PresenceOp) node.ReqID {
	p := e.h.proc.deps.Presence
	run := func(ctx context.Context) (node.Completion, error) {
		res, err := p.Do(ctx, op)
		return node.Completion{Outcome: node.OK, Presence: &res}, err
	}
	// A scan pages through every online user (MemPresence sorts them all
	// per page): it goes to the pool even from an inline presence, so a
	// broadcast fan-out never holds its node for long.
	if e.h.proc.inline.presence && op.Kind != node.PresenceScan {
		return e.inline("presence", run)
	}
	return e.request("presence", run)
}

func (e *hostEnv) Publish(subject string, data []byte, msgID string) node.ReqID {
	q := e.h.proc.deps.Queue
	if e.h.proc.inline.queue {
		return e.inline("publish", func(ctx context.Context) (node.Completion, error) {
			return node.Completion{Outcome: node.OK}, q.Publish(ctx, subject, data, msgID)
		})
	}
	if aq, ok := q.(AsyncQueue); ok {
		return e.requestAsync("publish", func(done func(node.Completion, error)) bool {
			err := aq.PublishAsync(subject, data, msgID, func(err error) { done(node.Completion{Outcome: node.OK}, err) })
			return err == nil
		})
	}
	return e.request("publish", func(ctx context.Context) (node.Completion, error) {
		return node.Completion{Outcome: node.OK}, q.Publish(ctx, subject, data, msgID)
	})
}

func (e *hostEnv) Registry(op node.RegistryOp) node.ReqID {
	r := e.h.proc.deps.Registry
	return e.request("registry", func(ctx context.Context) (node.Completion, error) {
		var err error
		switch op.Kind {
		case node.RegistryRegister, node.RegistryHeartbeat:
			err = r.Put(ctx, op.Addr, op.TTL)
		case node.RegistryDeregister:
			err = r.Delete(ctx, op.Addr)
		default:
			err = fmt.Errorf("live: unknown registry op %d", op.Kind)
		}
		return node.Completion{Outcome: node.OK}, err
	})
}

func (e *hostEnv) AckDelivery(id node.DeliveryID) {
	if d, ok := e.h.deliveries.LoadAndDelete(id); ok {
		e.h.proc.pools.ackLater(func() { _ = d.(QueueDelivery).Ack() })
	}
}

func (e *hostEnv) NakDelivery(id node.DeliveryID, delay time.Duration) {
	if d, ok := e.h.deliveries.LoadAndDelete(id); ok {
		e.h.proc.pools.ackLater(func() { _ = d.(QueueDelivery).Nak(delay) })
	}
}

// deliver hands a queue message to the node.
func (h *Host) deliver(d QueueDelivery) {
	id := node.DeliveryID(h.nextID())
	h.deliveries.Store(id, d)
	if !h.post(node.Delivery{ID: id, Subject: d.Subject, Data: d.Data, MsgID: d.MsgID, NumDelivered: d.NumDelivered}) {
		h.deliveries.Delete(id)
	}
}
