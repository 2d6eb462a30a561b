package sim

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
)

// epoch is virtual time zero on every clock.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Run phases.
const (
	phaseTraffic uint64 = iota // workload and faults
	phaseQuiet                 // faults healed, no new traffic
	phaseFinal                 // clients do their final sync
	phaseEnd                   // the run stops
)

// sim is one run. Everything happens on the goroutine that calls Run.
type sim struct {
	cfg      Config
	services *Services

	now    int64
	seq    uint64
	heap   eventHeap
	events uint64
	trace  traceHash
	phase  uint64
	// curKind and curTarget name the event being handled, for panic reports.
	curKind   evKind
	curTarget int32

	wl, flt, net, deps *rand.Rand

	instances []*instance
	byAddr    map[node.Addr]int32
	links     [][]link

	clients      []*simClient
	conns        map[node.ConnID]*conn
	nodeTimers   map[node.TimerID]timerRef
	clientTimers map[uint64]timerRef
	nextID       uint64

	store    *simStore
	presence *simPresence
	queue    *simQueue
	registry *simRegistry
	work     *workload
	faults   *faultState
	recorder opLog
	obs      observer
	stats    map[string]uint64

	discard *slog.Logger
}

// instance is one slot of a role; it survives crashes, its node does not.
type instance struct {
	idx         int32
	addr        node.Addr
	inc         node.Incarnation
	up          bool
	retired     bool // scaled in
	node        node.Node
	env         *nodeEnv
	pausedUntil int64
	skew        int64
}

func newSim(cfg Config, services *Services) *sim {
	s := &sim{
		cfg:          cfg,
		services:     services,
		wl:           newStream(cfg.Seed, streamWorkload),
		flt:          newStream(cfg.Seed, streamFaults),
		net:          newStream(cfg.Seed, streamNetwork),
		deps:         newStream(cfg.Seed, streamDeps),
		byAddr:       map[node.Addr]int32{},
		conns:        map[node.ConnID]*conn{},
		nodeTimers:   map[node.TimerID]timerRef{},
		clientTimers: map[uint64]timerRef{},
		discard:      slog.New(slog.DiscardHandler),
		trace:        newTraceHash(),
	}
	s.heap = newEventHeap(4096)
	return s
}

func (s *sim) id() uint64 { s.nextID++; return s.nextID }

// schedule queues e at virtual time at (never before now) and returns the
// heap slot it waits in.
func (s *sim) schedule(at int64, e event) int32 {
	if at < s.now {
		at = s.now
	}
	e.at = at
	s.seq++
	e.seq = s.seq
	return s.heap.push(e)
}

// timerRef is an armed timer: who armed it and where its event waits, so
// Cancel can take the event out of the heap instead of leaving it to fire
// as a no-op.
type timerRef struct {
	owner int32 // instance or client index
	slot  int32 // heap slot of the timer's event
}

// cancelTimer drops timer id's pending event; removal keeps the order of
// every other event, which is (at, seq) alone. The slot is checked to
// still hold that timer, so a stale reference can never drop another event.
func (s *sim) cancelTimer(kind evKind, id uint64, r timerRef) {
	if h := &s.heap; r.slot >= 0 && int(r.slot) < len(h.slab) && h.pos[r.slot] >= 0 {
		if e := &h.slab[r.slot]; e.kind == kind && e.a == id {
			h.remove(r.slot)
		}
	}
}

// PanicError is a service (or client) that panicked: a bug in the system,
// reported with where and when it happened. The run stops there.
type PanicError struct {
	At     time.Duration // virtual time
	Target string        // "logic-1", "client-3", or "sim"
	Kind   string        // event kind being handled
	Value  any
	Stack  string
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("sim: %s panicked at %v handling a %s event: %v", e.Target, e.At, e.Kind, e.Value)
}

// guardedLoop runs loop and turns a panic into a PanicError.
func (s *sim) guardedLoop(end int64) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{At: time.Duration(s.now), Target: s.targetName(s.curKind, s.curTarget), Kind: s.curKind.String(),
				Value: v, Stack: string(debug.Stack())}
		}
	}()
	return s.loop(end)
}

func (s *sim) targetName(kind evKind, target int32) string {
	switch kind {
	case evNode, evNodeTimer:
		return s.instances[target].addr.String()
	case evClient, evClientTimer:
		return "client-" + itoa(int(target)+1)
	}
	return "sim"
}

// loop handles events until the heap is empty, the run ends or the bound is hit.
func (s *sim) loop(end int64) error {
	for s.heap.len() > 0 {
		if s.heap.nextAt() > end {
			s.now = end
			return nil
		}
		e := s.heap.pop()
		s.curKind, s.curTarget = e.kind, e.target
		s.now = e.at
		s.events++
		if s.events > s.cfg.EventsMax {
			return fmt.Errorf("%w: %d events at %v", ErrEventsMax, s.cfg.EventsMax, time.Duration(s.now))
		}
		s.dispatch(&e)
		if s.phase == phaseEnd {
			return nil
		}
	}
	return nil
}

func (s *sim) dispatch(e *event) {
	switch e.kind {
	case evNode:
		s.deliverNode(e)
	case evNodeTimer:
		s.fireNodeTimer(e)
	case evClient, evClientTimer:
		s.deliverClient(e)
	case evStoreApply:
		s.trace.add(s.now, e.target, e.kind, e.a)
		s.store.apply(e.a)
	case evQueuePump:
		s.trace.add(s.now, e.target, e.kind, e.a)
		s.queue.pump(int(e.a))
	case evQueueAckWait:
		s.trace.add(s.now, e.target, e.kind, e.a)
		s.queue.ackWait(e.a, e.b)
	case evRegistryExpire:
		s.trace.add(s.now, e.target, e.kind, 0)
		s.registry.expire(e.target)
	case evRegistryRefresh:
		s.trace.add(s.now, 0, e.kind, 0)
		s.registry.refresh()
	case evFault:
		s.trace.add(s.now, e.target, e.kind, e.a<<1|e.b)
		s.faults.apply(int(e.a), e.b == 1)
	case evWorkload:
		s.trace.add(s.now, e.target, e.kind, e.a)
		s.work.act(e)
	case evHTTPTimeout:
		s.trace.add(s.now, e.target, e.kind, e.a)
		s.httpTimeout(node.ConnID(e.a))
	case evPlatformReply:
		s.trace.add(s.now, e.target, e.kind, e.a)
		s.work.platformReply(e)
	case evPhase:
		s.trace.add(s.now, e.target, e.kind, e.a)
		s.enterPhase(e.a)
	}
}

// deliverNode hands e.p to its instance, unless the instance is down, is
// a later incarnation than the event was meant for, or is paused (then
// the event waits for the pause to end, in order).
func (s *sim) deliverNode(e *event) {
	in := s.instances[e.target]
	if !in.up || node.Incarnation(e.inc) != in.inc {
		s.trace.add(s.now, e.target, e.kind, 0xdead)
		return
	}
	if in.pausedUntil > s.now {
		s.schedule(in.pausedUntil, *e)
		return
	}
	nev := e.p.(node.Event)
	s.trace.add(s.now, e.target, e.kind, digestNodeEvent(nev))
	s.obs.nodeEvent(s, in, nev)
	in.node.Handle(in.env, nev)
}

func (s *sim) fireNodeTimer(e *event) {
	id := node.TimerID(e.a)
	in := s.instances[e.target]
	ref, live := s.nodeTimers[id]
	if !live || ref.owner != e.target {
		return // cancelled (impossible: Cancel removes the event)
	}
	if !in.up || node.Incarnation(e.inc) != in.inc {
		delete(s.nodeTimers, id)
		return // armed by a crashed incarnation
	}
	if in.pausedUntil > s.now {
		ref.slot = s.schedule(in.pausedUntil, *e)
		s.nodeTimers[id] = ref
		return
	}
	delete(s.nodeTimers, id)
	s.trace.add(s.now, e.target, e.kind, e.a)
	in.node.Handle(in.env, node.Timer{ID: id, Tag: e.p})
}

// logger returns the node's logger: discarding unless verbose.
func (s *sim) logger(addr node.Addr) *slog.Logger {
	if !s.cfg.Verbose {
		return s.discard
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", addr.String())
}

// nodeRand returns the stream of one incarnation of one node.
func (s *sim) nodeRand(addr node.Addr, inc node.Incarnation) *rand.Rand {
	return newStream(s.cfg.Seed, fmt.Sprintf("node/%s/%d", addr, inc))
}

// addInstance creates slot addr (down) and its links.
func (s *sim) addInstance(addr node.Addr) *instance {
	in := &instance{idx: int32(len(s.instances)), addr: addr}
	s.instances = append(s.instances, in)
	s.byAddr[addr] = in.idx
	s.growLinks()
	return in
}

// start brings an instance up as a fresh incarnation of its node.
func (s *sim) start(in *instance) {
	ctor := s.services.Node[in.addr.Role]
	if ctor == nil {
		panic("sim: no constructor for role " + string(in.addr.Role))
	}
	in.inc++
	in.up = true
	in.retired = false
	in.env = &nodeEnv{s: s, in: in, inc: in.inc, rnd: s.nodeRand(in.addr, in.inc), log: s.logger(in.addr)}
	in.node = ctor(s.nodeConfig(in.addr))
	s.trace.add(s.now, in.idx, evPhase, uint64(in.inc)<<8|0x5)
	in.node.Start(in.env)
	s.registry.started(in)
}

// crash takes an instance down: its state, timers and pending requests are
// gone; its clients are disconnected; peers hear LinkDown.
func (s *sim) crash(in *instance) {
	if !in.up {
		return
	}
	in.up = false
	s.collectStats(in)
	in.node = nil
	in.env = nil
	in.pausedUntil = 0
	s.obs.crashes++
	s.dropConnsOf(in)
	s.queue.instanceDown(in)
	for _, peer := range s.instances {
		if peer.up && peer != in {
			s.schedule(s.now+int64(s.cfg.Deps.LinkDownDetect), event{kind: evNode, target: peer.idx,
				inc: uint64(peer.inc), p: node.LinkDown{Peer: in.addr}})
		}
	}
}

// restart starts a crashed instance again; peers hear LinkUp.
func (s *sim) restart(in *instance) {
	if in.up {
		return
	}
	s.start(in)
	for _, peer := range s.instances {
		if peer.up && peer != in {
			s.schedule(s.now+int64(s.cfg.Deps.LinkDownDetect), event{kind: evNode, target: peer.idx,
				inc: uint64(peer.inc), p: node.LinkUp{Peer: in.addr}})
		}
	}
	s.queue.instanceUp(in)
}

// Run executes one simulation. The error is for a config that cannot run
// (bad topology, missing services); a run that starts always returns a
// Result, and a failure during it (a service panicked: PanicError; the
// event limit: ErrEventsMax) is in Result.Err, with the history up to it.
func Run(cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	services := cfg.Services
	if services == nil {
		services = DefaultServices()
	}
	if err := services.check(cfg.Topology); err != nil {
		return nil, err
	}
	wallStart := time.Now() // determinism-ok: wall time is only reported
	s := newSim(cfg, services)
	if err := s.setup(); err != nil {
		return nil, err
	}
	end := int64(cfg.Duration + cfg.Quiet)
	runErr := s.guardedLoop(end)
	return s.result(time.Since(wallStart), runErr) // determinism-ok: reported only
}

// setup builds the dependencies, instances, clients, workload and faults.
func (s *sim) setup() error {
	s.store = newSimStore(s, s.services.NewStore(s.cfg.Bugs))
	s.presence = newSimPresence(s)
	s.queue = newSimQueue(s)
	s.registry = newSimRegistry(s)
	for _, role := range node.Roles {
		for slot := 0; slot < s.cfg.Topology[role]; slot++ {
			s.addInstance(node.Addr{Role: role, Slot: slot})
		}
	}
	s.registry.preload()
	faults, err := newFaultState(s)
	if err != nil {
		return err
	}
	s.faults = faults
	// das first, entries last: a front end that starts before the back end
	// only sees timeouts, which is legal but wastes the first milliseconds.
	for i := len(node.Roles) - 1; i >= 0; i-- {
		for _, in := range s.instances {
			if in.addr.Role == node.Roles[i] {
				s.start(in)
			}
		}
	}
	w, err := newWorkload(s)
	if err != nil {
		return err
	}
	s.work = w
	s.schedule(int64(s.cfg.Duration), event{kind: evPhase, a: phaseQuiet})
	s.schedule(int64(s.cfg.Duration+s.cfg.Settle), event{kind: evPhase, a: phaseFinal})
	s.schedule(int64(s.cfg.Duration+s.cfg.Quiet), event{kind: evPhase, a: phaseEnd})
	return nil
}

func (s *sim) enterPhase(p uint64) {
	s.phase = p
	switch p {
	case phaseQuiet:
		s.faults.healAll()
		s.work.quiet()
	case phaseFinal:
		s.work.final()
	case phaseEnd:
		s.work.finish()
		s.collectAllStats()
	}
}

// nodeConfig is what a constructor gets.
func (s *sim) nodeConfig(addr node.Addr) NodeConfig {
	topo := make(map[node.Role]int, len(s.cfg.Topology))
	for r, n := range s.cfg.Topology {
		topo[r] = n
	}
	return NodeConfig{Addr: addr, Topology: topo, Bugs: s.cfg.Bugs, Secret: s.cfg.Secret,
		PlatformKey: s.cfg.PlatformKey}
}

// storeDump reads the ground truth after the run.
func (s *sim) storeDump() ([]store.Message, error) {
	return s.store.st.Dump(bg)
}
