package logic_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/wire"
)

// world is the cast of the scripted tests: two logic instances, two das
// instances sharing one memstore, and a stand-in entry with fake clients.
type world struct {
	t      *testing.T
	c      *nodetest.Cluster
	st     *memstore.Store
	entry  *nodetest.StandIn
	logics [2]*logic.Logic // the current incarnations
}

var (
	logic0 = node.Addr{Role: node.RoleLogic, Slot: 0}
	logic1 = node.Addr{Role: node.RoleLogic, Slot: 1}
	das0   = node.Addr{Role: node.RoleDas, Slot: 0}
	das1   = node.Addr{Role: node.RoleDas, Slot: 1}
	entry0 = node.Addr{Role: node.RoleEntry, Slot: 0}
)

var topology = map[node.Role]int{node.RoleEntry: 1, node.RoleLogic: 2, node.RoleDas: 2}

// conv is the conversation of the scripted tests: alice buys bob's bike.
var conv = wire.PairConvID("alice", "bob", "bike")

func newWorld(t *testing.T, set bugs.Set, tweak func(*logic.Config)) *world {
	t.Helper()
	w := &world{t: t, st: memstore.New(memstore.Options{Bugs: set})}
	w.c = nodetest.NewCluster(w.st)
	for _, a := range []node.Addr{das0, das1} {
		w.c.Add(a, func() node.Node { return das.New(das.Config{Topology: topology, Bugs: set}) })
	}
	for i, a := range []node.Addr{logic0, logic1} {
		w.c.Add(a, func() node.Node {
			cfg := logic.Config{Topology: topology, Bugs: set}
			if tweak != nil {
				tweak(&cfg)
			}
			w.logics[i] = logic.New(cfg)
			return w.logics[i]
		})
	}
	w.entry = w.c.AddStandIn(entry0)
	w.c.Stabilize()
	return w
}

// dasOf is the das slot that serves conversation id while both are alive.
func dasOf(id string) node.Addr {
	return node.Addr{Role: node.RoleDas, Slot: route.Home(id, 2)}
}

// send puts a SEND of cseq (body "m<cseq>") from fc into the network towards to.
func send(fc *nodetest.FakeClient, to node.Addr, cseq, ackFloor uint64) uint32 {
	return fc.Request(to, sendBody(fc, cseq, ackFloor))
}

func sendBody(fc *nodetest.FakeClient, cseq, ackFloor uint64) *wire.Send {
	return &wire.Send{
		ConvId: conv, ClientMsgId: fmt.Sprintf("%s-%s-%d", fc.User, fc.Device, cseq), Cseq: cseq,
		Body: fmt.Sprintf("m%d", cseq), AckFloor: ackFloor,
	}
}

// ack returns the SEND_ACK answering req, failing the test otherwise.
func (w *world) ack(fc *nodetest.FakeClient, req uint32) *wire.SendAck {
	w.t.Helper()
	r := fc.Response(req)
	a, ok := r.(*wire.SendAck)
	if !ok {
		w.t.Fatalf("request %d: got %T %v, want SendAck", req, r, r)
	}
	return a
}

// errCode returns the ERROR code answering req, failing the test otherwise.
func (w *world) errCode(fc *nodetest.FakeClient, req uint32) wire.ErrorCode {
	w.t.Helper()
	r := fc.Response(req)
	e, ok := r.(*wire.Error)
	if !ok {
		w.t.Fatalf("request %d: got %T %v, want Error", req, r, r)
	}
	return e.Code
}

// stored lists the conversation as "seq:cseq" pairs, in seq order.
func (w *world) stored() string {
	w.t.Helper()
	msgs, err := w.st.Dump(context.Background())
	if err != nil {
		w.t.Fatalf("dump: %v", err)
	}
	var parts []string
	for _, m := range msgs {
		if m.ConvID == conv {
			parts = append(parts, fmt.Sprintf("%d:%s", m.Seq, m.Body))
		}
	}
	return strings.Join(parts, " ")
}

func (w *world) dump() []store.Message {
	msgs, err := w.st.Dump(context.Background())
	if err != nil {
		w.t.Fatalf("dump: %v", err)
	}
	return msgs
}

// appendOf matches a StoreRequest carrying the append of cseq (from any sender).
func appendOf(cseq uint64) func(*nodetest.Envelope) bool {
	return func(e *nodetest.Envelope) bool {
		r, ok := e.Msg.(*wire.StoreRequest)
		return ok && r.Append != nil && r.Append.Cseq == cseq
	}
}

// appendsInFlight counts appends of cseq at das or in the network.
func (w *world) appendsInFlight(cseq uint64) int {
	n := 0
	for _, e := range w.c.Net {
		if appendOf(cseq)(e) {
			n++
		}
	}
	for _, p := range w.c.Stores {
		for _, a := range p.Op.Append {
			if a.CSeq == cseq {
				n++
			}
		}
	}
	return n
}

// storeAppendOf matches a pending store op that appends cseq.
func storeAppendOf(cseq uint64) func(*nodetest.PendingStore) bool {
	return func(p *nodetest.PendingStore) bool {
		for _, a := range p.Op.Append {
			if a.CSeq == cseq {
				return true
			}
		}
		return false
	}
}

// login logs fc in at logic to and completes it.
func (w *world) login(fc *nodetest.FakeClient, to node.Addr) {
	w.t.Helper()
	req := fc.Request(to, &wire.Login{Token: "checked-by-entry", DeviceId: fc.Device})
	w.c.Stabilize()
	if _, ok := fc.Response(req).(*wire.LoginAck); !ok {
		w.t.Fatalf("login of %s: got %v, want LoginAck", fc.User, fc.Response(req))
	}
}
