package sim

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/wire"
)

func TestHeapOrder(t *testing.T) {
	h := newEventHeap(0)
	r := rand.New(rand.NewPCG(1, 2))
	seq := uint64(0)
	push := func(at int64) {
		seq++
		h.push(event{at: at, seq: seq, a: seq})
	}
	for i := 0; i < 1000; i++ {
		push(r.Int64N(50))
	}
	prev := event{at: -1}
	popped := 0
	for h.len() > 0 {
		e := h.pop()
		popped++
		if e.at < prev.at || (e.at == prev.at && e.seq < prev.seq) {
			t.Fatalf("popped (%d,%d) after (%d,%d), want (time, seq) order", e.at, e.seq, prev.at, prev.seq)
		}
		if e.a != e.seq {
			t.Fatalf("popped event seq %d with payload %d, want its own payload", e.seq, e.a)
		}
		prev = e
		// Interleave pushes (never before the last pop) so freed slab slots are reused.
		if popped < 3000 && r.IntN(2) == 0 {
			push(e.at + r.Int64N(50))
			push(e.at)
		}
	}
	if popped != int(seq) {
		t.Errorf("popped %d events, want %d", popped, seq)
	}
	if len(h.slab) >= int(seq) {
		t.Errorf("slab holds %d slots for %d events, want freed slots reused", len(h.slab), seq)
	}
}

// probe is a scripted node: it records what it handles and runs the
// test's reactions.
type probe struct {
	rec     *recording
	addr    node.Addr
	onStart func(env node.Env)
	onEvent func(env node.Env, ev node.Event)
}

type seen struct {
	at   time.Duration
	addr node.Addr
	inc  node.Incarnation
	ev   node.Event
}

type recording struct{ events []seen }

func (p *probe) Start(env node.Env) {
	if p.onStart != nil {
		p.onStart(env)
	}
}

func (p *probe) Handle(env node.Env, ev node.Event) {
	p.rec.events = append(p.rec.events, seen{at: env.Now().Sub(epoch), addr: env.Self(), inc: env.Incarnation(), ev: ev})
	if p.onEvent != nil {
		p.onEvent(env, ev)
	}
}

// of returns the recorded events of type T at addr.
func of[T node.Event](r *recording, addr node.Addr) []seen {
	var out []seen
	for _, s := range r.events {
		if _, ok := s.ev.(T); ok && s.addr == addr {
			out = append(out, s)
		}
	}
	return out
}

// probeSim builds a sim of probe nodes (logic-0, logic-1, extlogic-0,
// extlogic-1) without clients; script picks each node's reactions.
func probeSim(t *testing.T, script func(addr node.Addr, p *probe)) (*sim, *recording) {
	t.Helper()
	rec := &recording{}
	ctor := func(c NodeConfig) node.Node {
		p := &probe{rec: rec, addr: c.Addr}
		script(c.Addr, p)
		return p
	}
	services := &Services{
		Node:     map[node.Role]func(NodeConfig) node.Node{node.RoleLogic: ctor, node.RoleExtLogic: ctor},
		Client:   func(c client.Config) ClientDriver { return client.New(c) },
		NewStore: func(b bugs.Set) store.Store { return memstore.New(memstore.Options{Bugs: b}) },
	}
	cfg := DefaultConfig()
	cfg.Workload = Workload{}
	cfg.Topology = map[node.Role]int{node.RoleLogic: 2, node.RoleExtLogic: 2}
	cfg.Duration, cfg.Quiet = 10*time.Second, 10*time.Second
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(cfg, services)
	if err := s.setup(); err != nil {
		t.Fatal(err)
	}
	return s, rec
}

var (
	logic0 = node.Addr{Role: node.RoleLogic, Slot: 0}
	logic1 = node.Addr{Role: node.RoleLogic, Slot: 1}
)

func TestTimers(t *testing.T) {
	s, rec := probeSim(t, func(addr node.Addr, p *probe) {
		if addr != logic0 {
			return
		}
		p.onStart = func(env node.Env) {
			env.After(time.Second, "fires")
			id := env.After(2*time.Second, "cancelled")
			env.Cancel(id)
			env.After(5*time.Second, "crashed")
		}
	})
	s.heap.reset() // drop incarnation 1's timers: only incarnation 2's matter
	in := s.instances[s.byAddr[logic0]]
	s.crash(in)
	s.restart(in) // incarnation 2: its Start arms the same three timers again
	s.now = 0
	if err := s.loop(int64(4 * time.Second)); err != nil {
		t.Fatal(err)
	}
	s.crash(in) // the "crashed" timer of incarnation 2 must never fire
	if err := s.loop(int64(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, e := range of[node.Timer](rec, logic0) {
		tags = append(tags, e.ev.(node.Timer).Tag.(string))
	}
	if len(tags) != 1 || tags[0] != "fires" {
		t.Errorf("timers fired %v, want [fires] (cancelled and crashed ones never fire)", tags)
	}
}

func TestCompletionToOldIncarnationDropped(t *testing.T) {
	s, rec := probeSim(t, func(addr node.Addr, p *probe) {
		if addr == logic0 {
			p.onStart = func(env node.Env) {
				env.Presence(node.PresenceOp{Kind: node.PresenceGet, Users: []string{"u1"}})
			}
		}
	})
	in := s.instances[s.byAddr[logic0]]
	s.heap.reset()
	s.crash(in)
	s.restart(in) // incarnation 2 asks again; incarnation 1's request was in flight
	s.now = 0
	if err := s.loop(int64(time.Second)); err != nil {
		t.Fatal(err)
	}
	got := of[node.Completion](rec, logic0)
	if len(got) != 1 || got[0].inc != in.inc {
		t.Errorf("got %d completions (incarnations %v), want 1 for incarnation %d", len(got), got, in.inc)
	}
}

func TestSendToCrashedGivesLinkDown(t *testing.T) {
	s, rec := probeSim(t, func(addr node.Addr, p *probe) {
		if addr == logic0 {
			p.onEvent = func(env node.Env, ev node.Event) {
				if tm, ok := ev.(node.Timer); ok && tm.Tag == "send" {
					env.Send(logic1, &wire.SessionClosed{UserId: "u1"})
				}
			}
			p.onStart = func(env node.Env) { env.After(time.Second, "send") }
		}
	})
	s.crash(s.instances[s.byAddr[logic1]])
	if err := s.loop(int64(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	downs := 0
	for _, e := range of[node.LinkDown](rec, logic0) {
		if e.ev.(node.LinkDown).Peer == logic1 && e.at > time.Second {
			downs++
		}
	}
	if downs != 1 {
		t.Errorf("got %d LinkDown(logic-1) after the send, want 1", downs)
	}
}

// TestLinksFIFOAndPartition: packets on a link arrive in send order; a
// partition drops them silently; heal restores the link.
func TestLinksFIFOAndPartition(t *testing.T) {
	s, rec := probeSim(t, func(addr node.Addr, p *probe) {
		if addr == logic0 {
			p.onEvent = func(env node.Env, ev node.Event) {
				if tm, ok := ev.(node.Timer); ok {
					for i := 0; i < 50; i++ {
						env.Send(logic1, &wire.PushFailed{UserId: tm.Tag.(string), Reason: itoa(i)})
					}
				}
			}
			p.onStart = func(env node.Env) {
				env.After(time.Second, "before")
				env.After(3*time.Second, "during")
				env.After(5*time.Second, "after")
			}
		}
	})
	s.cfg.Network.DelayMean = 10 * time.Millisecond // wide spread: FIFO must hold anyway
	a, b := []int32{s.byAddr[logic0]}, []int32{s.byAddr[logic1]}
	if err := s.loop(int64(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	s.block(a, b, false, 1)
	if err := s.loop(int64(4 * time.Second)); err != nil {
		t.Fatal(err)
	}
	s.block(a, b, false, -1)
	if err := s.loop(int64(6 * time.Second)); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	last := map[string]int{}
	for _, e := range of[node.Recv](rec, logic1) {
		m := e.ev.(node.Recv).Msg.(*wire.PushFailed)
		counts[m.UserId]++
		n := 0
		for _, c := range m.Reason {
			n = n*10 + int(c-'0')
		}
		if prev, ok := last[m.UserId]; ok && n != prev+1 {
			t.Errorf("%s: packet %d after %d, want FIFO", m.UserId, n, prev)
		}
		last[m.UserId] = n
	}
	if counts["before"] != 50 || counts["during"] != 0 || counts["after"] != 50 {
		t.Errorf("delivered before/during/after = %d/%d/%d, want 50/0/50", counts["before"], counts["during"], counts["after"])
	}
}

// TestPause: a paused node's events wait and are handled, in order, when
// the pause ends.
func TestPause(t *testing.T) {
	s, rec := probeSim(t, func(addr node.Addr, p *probe) {
		if addr == logic0 {
			p.onStart = func(env node.Env) {
				for i := 1; i <= 3; i++ {
					env.After(time.Duration(i)*time.Second, i)
				}
			}
		}
	})
	s.instances[s.byAddr[logic0]].pausedUntil = int64(5 * time.Second)
	if err := s.loop(int64(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, e := range of[node.Timer](rec, logic0) {
		if e.at != 5*time.Second {
			t.Errorf("timer %v handled at %v, want 5s (after the pause)", e.ev.(node.Timer).Tag, e.at)
		}
		got = append(got, e.ev.(node.Timer).Tag.(int))
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Errorf("timers handled %v, want [1 2 3]", got)
	}
}

// TestQueue: publish dedup by msgID; an unacked delivery comes back after
// AckWait with NumDelivered 2; acked ones do not.
func TestQueue(t *testing.T) {
	ackOdd := func(env node.Env, ev node.Event) {
		if d, ok := ev.(node.Delivery); ok && (d.MsgID == "m1" || d.NumDelivered > 1) {
			env.AckDelivery(d.ID)
		}
	}
	s, rec := probeSim(t, func(addr node.Addr, p *probe) {
		switch addr.Role {
		case node.RoleLogic:
			if addr.Slot == 0 {
				p.onStart = func(env node.Env) {
					env.Publish(mq.EventSent, []byte("a"), "m1")
					env.Publish(mq.EventSent, []byte("a"), "m1") // deduplicated
					env.Publish(mq.EventSent, []byte("b"), "m2")
				}
			}
		case node.RoleExtLogic:
			p.onEvent = ackOdd
		}
	})
	if err := s.loop(int64(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	byMsg := map[string][]int{}
	for _, e := range rec.events {
		if d, ok := e.ev.(node.Delivery); ok {
			byMsg[d.MsgID] = append(byMsg[d.MsgID], d.NumDelivered)
		}
	}
	if len(byMsg["m1"]) != 1 {
		t.Errorf("m1 delivered %v, want once (dedup, acked)", byMsg["m1"])
	}
	if got := byMsg["m2"]; len(got) != 2 || got[1] != 2 {
		t.Errorf("m2 deliveries %v, want [1 2] (redelivered after AckWait, then acked)", got)
	}
	if s.obs.redeliveriesHandled != 1 {
		t.Errorf("redeliveries handled %d, want 1", s.obs.redeliveriesHandled)
	}
}

// TestRegistryExpiry: a crashed node's key expires after its TTL and every
// live node hears a View with the slot dead.
func TestRegistryExpiry(t *testing.T) {
	s, rec := probeSim(t, func(addr node.Addr, p *probe) {
		ttl := time.Hour // logic-1's key must expire after its crash; nobody else's
		if addr == logic1 {
			ttl = time.Second
		}
		p.onStart = func(env node.Env) {
			env.Registry(node.RegistryOp{Kind: node.RegistryRegister, Addr: env.Self(), TTL: ttl})
		}
	})
	if err := s.loop(int64(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	s.crash(s.instances[s.byAddr[logic1]])
	if err := s.loop(int64(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	views := of[node.View](rec, logic0)
	var last node.View
	for _, v := range views {
		if v.ev.(node.View).Role == node.RoleLogic {
			last = v.ev.(node.View)
		}
	}
	if len(last.Alive) != 2 || !last.Alive[0] || last.Alive[1] {
		t.Errorf("logic-0's last logic view %v, want [true false]", last.Alive)
	}
}

// TestStoreFaults: an outage fails definitely; a deadlock fails and
// writes nothing; unknown outcomes complete Unknown.
func TestStoreFaults(t *testing.T) {
	tests := []struct {
		kind FaultKind
		want node.Outcome
		err  error
	}{
		{FaultDBOutage, node.Failed, store.ErrUnavailable},
		{FaultDBDeadlock, node.Failed, store.ErrDeadlock},
		{FaultDBUnknown, node.Unknown, store.ErrUnknownOutcome},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			s, rec := probeSim(t, func(addr node.Addr, p *probe) {
				if addr == logic0 {
					p.onEvent = func(env node.Env, ev node.Event) {
						if _, ok := ev.(node.Timer); ok {
							env.Store(node.StoreOp{Append: []store.AppendReq{{ConvID: wire.PairConvID("a", "b", "l"),
								SenderID: "a", PeerID: "b", ListingID: "l", ClientMsgID: "c1", CSeq: 1, Body: "x"}}})
						}
					}
					p.onStart = func(env node.Env) { env.After(time.Second, nil) }
				}
			})
			s.faults.list = []Fault{{Kind: tt.kind, Prob: 1}}
			s.faults.active, s.faults.started = []bool{false}, []int64{0}
			s.faults.applied, s.faults.groupB = make([][]int32, 1), make([][]int32, 1)
			s.faults.apply(0, false)
			if err := s.loop(int64(3 * time.Second)); err != nil {
				t.Fatal(err)
			}
			got := of[node.Completion](rec, logic0)
			if len(got) != 1 {
				t.Fatalf("got %d completions, want 1", len(got))
			}
			c := got[0].ev.(node.Completion)
			if c.Outcome != tt.want || c.Err != tt.err {
				t.Errorf("got %v %v, want %v %v", c.Outcome, c.Err, tt.want, tt.err)
			}
			if tt.kind == FaultDBDeadlock {
				if dump, _ := s.store.st.Dump(bg); len(dump) != 0 {
					t.Errorf("deadlock stored %d messages, want 0", len(dump))
				}
			}
		})
	}
}

// TestOpLogMatchesRecorder: the sim's chunked op log returns what
// check.Recorder would for the same ops, across chunk boundaries and with
// ties on (call, client) kept in recording order.
func TestOpLogMatchesRecorder(t *testing.T) {
	var log opLog
	var rec check.Recorder
	r := rand.New(rand.NewPCG(3, 4))
	const n = 3*opChunkLen + 17
	for i := 0; i < n; i++ {
		op := check.Op{Client: r.IntN(5), Call: r.Int64N(100), In: check.Input{CSeq: uint64(i)}}
		log.Add(op)
		rec.Add(op)
	}
	if log.Len() != n {
		t.Fatalf("got Len %d, want %d", log.Len(), n)
	}
	got, want := log.Ops(), rec.Ops()
	for i := range want {
		if got[i].Call != want[i].Call || got[i].Client != want[i].Client || got[i].In.CSeq != want[i].In.CSeq {
			t.Fatalf("op %d: got (call %d, client %d, cseq %d), want (%d, %d, %d)", i,
				got[i].Call, got[i].Client, got[i].In.CSeq, want[i].Call, want[i].Client, want[i].In.CSeq)
		}
	}
}
