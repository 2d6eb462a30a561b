// Package clustertest runs entry with real logic and das instances in the
// scripted nodetest.Cluster. It lives apart from package entry so entry's
// own tests never depend on the other services compiling.
package clustertest

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/wire"
)

var secret = []byte("cluster-secret")

// clientSide records what entry writes to its app connections: the
// cluster harness keeps only internal effects.
type clientSide struct {
	frames map[node.ConnID][]wire.Frame
	closed map[node.ConnID]bool
}

type recordingEnv struct {
	node.Env
	rec *clientSide
}

func (r recordingEnv) ToClient(c node.ConnID, f wire.Frame) {
	r.rec.frames[c] = append(r.rec.frames[c], f)
	r.Env.ToClient(c, f)
}

func (r recordingEnv) Close(c node.ConnID) {
	r.rec.closed[c] = true
	r.Env.Close(c)
}

type tap struct {
	n   node.Node
	rec *clientSide
}

func (t *tap) Start(env node.Env)                 { t.n.Start(recordingEnv{env, t.rec}) }
func (t *tap) Handle(env node.Env, ev node.Event) { t.n.Handle(recordingEnv{env, t.rec}, ev) }

type world struct {
	t     *testing.T
	c     *nodetest.Cluster
	rec   *clientSide
	entry *entry.Entry
	at    node.Addr
}

func newWorld(t *testing.T) *world {
	topo := map[node.Role]int{node.RoleEntry: 1, node.RoleLogic: 2, node.RoleDas: 1}
	w := &world{t: t, c: nodetest.NewCluster(memstore.New(memstore.Options{})),
		rec: &clientSide{frames: map[node.ConnID][]wire.Frame{}, closed: map[node.ConnID]bool{}},
		at:  node.Addr{Role: node.RoleEntry, Slot: 0}}
	w.c.Add(node.Addr{Role: node.RoleDas, Slot: 0}, func() node.Node { return das.New(das.Config{Topology: topo}) })
	for s := 0; s < 2; s++ {
		w.c.Add(node.Addr{Role: node.RoleLogic, Slot: s}, func() node.Node { return logic.New(logic.Config{Topology: topo}) })
	}
	w.c.Add(w.at, func() node.Node {
		w.entry = entry.New(entry.Config{Topology: topo, Secret: secret})
		return &tap{n: w.entry, rec: w.rec}
	})
	w.c.Stabilize()
	return w
}

func (w *world) frame(conn node.ConnID, op wire.Op, reqID uint32, m proto.Message) {
	body, err := proto.Marshal(m)
	if err != nil {
		w.t.Fatal(err)
	}
	w.c.Handle(w.at, node.ClientFrame{Conn: conn, Frame: wire.Frame{Op: op, ReqID: reqID, Body: body}})
	w.c.Stabilize()
}

// answer returns the frame answering reqID on conn, or fails.
func (w *world) answer(conn node.ConnID, reqID uint32, want wire.Op) wire.Frame {
	w.t.Helper()
	for _, f := range w.rec.frames[conn] {
		if f.ReqID == reqID && f.Op != wire.OpPush {
			if f.Op != want {
				m, _ := wire.DecodeBody(f)
				w.t.Fatalf("conn %d reqID %d: got %s %v, want %s", conn, reqID, f.Op, m, want)
			}
			return f
		}
	}
	w.t.Fatalf("conn %d: no answer to reqID %d, want %s", conn, reqID, want)
	return wire.Frame{}
}

// pushedSeqs lists the seqs pushed to conn, acknowledging each push.
func (w *world) pushedSeqs(conn node.ConnID) []uint64 {
	var out []uint64
	for _, f := range w.rec.frames[conn] {
		if f.Op != wire.OpPush {
			continue
		}
		var p wire.Push
		if err := proto.Unmarshal(f.Body, &p); err != nil {
			w.t.Fatal(err)
		}
		for _, m := range p.Messages {
			out = append(out, m.Seq)
		}
	}
	return out
}

func (w *world) login(conn node.ConnID, user string) {
	w.t.Helper()
	w.c.Handle(w.at, node.ClientConnect{Conn: conn})
	w.frame(conn, wire.OpLogin, 1, &wire.Login{Token: wire.SignToken(secret, user, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)), DeviceId: "d"})
	w.answer(conn, 1, wire.OpLoginAck)
}

func (w *world) send(conn node.ConnID, user string, cseq uint64, floor uint64) {
	w.frame(conn, wire.OpSend, uint32(10+cseq), &wire.Send{
		ConvId: wire.PairConvID("alice", "bob", "l1"), ClientMsgId: user + "-d-" + strconv.FormatUint(cseq, 10),
		Cseq: cseq, Body: "hello", AckFloor: floor,
	})
}

func seqOf(t *testing.T, f wire.Frame) uint64 {
	var a wire.SendAck
	if err := proto.Unmarshal(f.Body, &a); err != nil {
		t.Fatal(err)
	}
	return a.Seq
}

// A send through entry reaches logic and das and is pushed to the peer; when
// the sender's home logic dies, entry fails over and the resent send is
// acknowledged by the other logic; restarting the dead logic never closes
// a client connection, and the session goes home again after a view.
func TestEntryWithLogicFailover(t *testing.T) {
	w := newWorld(t)
	w.login(1, "alice")
	w.login(2, "bob")

	w.send(1, "alice", 1, 1)
	if got := seqOf(t, w.answer(1, 11, wire.OpSendAck)); got != 1 {
		t.Fatalf("got seq %d, want 1", got)
	}
	if got := w.pushedSeqs(2); len(got) != 1 || got[0] != 1 {
		t.Fatalf("got pushes to bob %v, want [1]", got)
	}

	home := node.Addr{Role: node.RoleLogic, Slot: route.Home("alice", 2)}
	w.c.Crash(home)
	w.send(1, "alice", 2, 2) // lost at the crashed logic
	w.c.Advance(entry.LogicTimeoutDefault)
	w.c.Stabilize()
	if got := seqOf(t, w.answer(1, 12, wire.OpSendAck)); got != 2 {
		t.Fatalf("got seq %d after failover, want 2", got)
	}
	if s := w.entry.Stats(); s.Failovers == 0 || s.Resends == 0 {
		t.Fatalf("got failovers %d resends %d, want both non-zero", s.Failovers, s.Resends)
	}

	w.c.Restart(home)
	w.c.LinkDown(w.at, home)
	w.c.Handle(w.at, node.LinkUp{Peer: home})
	w.c.SetView(node.RoleLogic, []bool{true, true})
	w.c.Stabilize()
	w.send(1, "alice", 3, 3)
	if got := seqOf(t, w.answer(1, 13, wire.OpSendAck)); got != 3 {
		t.Fatalf("got seq %d after restart, want 3", got)
	}
	if len(w.rec.closed) != 0 {
		t.Fatalf("got closed connections %v, want none", w.rec.closed)
	}
	if got := w.pushedSeqs(2); len(got) < 3 {
		t.Errorf("got pushes to bob %v, want seqs 1..3", got)
	}
}
