package nodetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// recordingStore is a store.Store that only counts appends: the harness's
// own test must not depend on memstore.
type recordingStore struct {
	store.Store
	appends int
}

func (s *recordingStore) Append(_ context.Context, reqs []store.AppendReq) ([]store.AppendResult, error) {
	out := make([]store.AppendResult, len(reqs))
	for i := range reqs {
		s.appends++
		out[i] = store.AppendResult{Seq: uint64(s.appends)}
	}
	return out, nil
}

// echo is a toy service: a ClientRequest makes it append to the store,
// look the user up in presence, publish, and answer with the seq; a timer
// tagged "tick" makes it send a Heartbeat to entry-0.
type echo struct {
	pending map[node.ReqID]*wire.ClientRequest
	seen    []string
}

func (e *echo) Start(env node.Env) { e.pending = map[node.ReqID]*wire.ClientRequest{} }

func (e *echo) Handle(env node.Env, ev node.Event) {
	switch ev := ev.(type) {
	case node.Recv:
		if r, ok := ev.Msg.(*wire.ClientRequest); ok {
			id := env.Store(node.StoreOp{Append: []store.AppendReq{{ConvID: "c", SenderID: r.UserId}}})
			e.pending[id] = r
			env.Presence(node.PresenceOp{Kind: node.PresenceSet, Entry: node.PresenceEntry{User: r.UserId}})
			env.Publish("zzim.events.sent", nil, "m-"+r.UserId)
		}
	case node.Completion:
		r, ok := e.pending[ev.Req]
		if !ok {
			return
		}
		delete(e.pending, ev.Req)
		e.seen = append(e.seen, ev.Outcome.String())
		if ev.Outcome == node.OK {
			body, _ := wire.Marshal(&wire.SendAck{Seq: ev.Store.Append[0].Seq})
			env.Send(node.Addr{Role: node.RoleEntry}, &wire.ClientResponse{
				Origin: r.Origin, Op: uint32(wire.OpSendAck), ReqId: r.ReqId, Body: body,
			})
		}
	case node.Timer:
		if ev.Tag == "tick" {
			env.Send(node.Addr{Role: node.RoleEntry}, &wire.Heartbeat{})
		}
	}
}

func TestClusterStory(t *testing.T) {
	st := &recordingStore{}
	c := nodetest.NewCluster(st)
	logic := node.Addr{Role: node.RoleLogic}
	var current *echo
	c.Add(logic, func() node.Node { current = &echo{}; return current })
	entry := c.AddStandIn(node.Addr{Role: node.RoleEntry})
	alice := entry.Client("alice", "phone")

	// A request, stabilised: stored, presence set, published, answered.
	r1 := alice.Request(logic, &wire.Send{ConvId: "c"})
	if steps := c.Stabilize(); steps == 0 {
		t.Fatal("stabilize: got 0 steps, want some")
	}
	if a, ok := alice.Response(r1).(*wire.SendAck); !ok || a.Seq != 1 {
		t.Fatalf("response: got %v, want SendAck seq 1", alice.Response(r1))
	}
	if got := c.Presence["alice"].User; got != "alice" {
		t.Fatalf("presence: got %q, want alice", got)
	}
	if len(c.Published) != 1 || c.Published[0].MsgID != "m-alice" {
		t.Fatalf("published: got %+v, want one m-alice", c.Published)
	}

	// Unknown without applying: nothing stored, the node hears unknown.
	r2 := alice.Request(logic, &wire.Send{ConvId: "c"})
	c.Deliver(nodetest.To[*wire.ClientRequest](logic))
	c.CompleteStore(nodetest.StoreAppends, nodetest.StoreUnknownLost)
	// Unknown after applying: stored, the node still hears unknown.
	alice.Request(logic, &wire.Send{ConvId: "c"})
	c.Deliver(nodetest.To[*wire.ClientRequest](logic))
	c.CompleteStore(nil, nodetest.StoreUnknownApplied)
	if st.appends != 2 || len(current.seen) != 3 || current.seen[1] != "unknown" || current.seen[2] != "unknown" {
		t.Fatalf("after unknowns: got appends=%d seen=%v, want 2 and [ok unknown unknown]", st.appends, current.seen)
	}
	if r := alice.Response(r2); r != nil {
		t.Fatalf("answer to an unknown outcome: got %v, want none", r)
	}

	// Drop one request, delay another.
	alice.Request(logic, &wire.Send{ConvId: "dropped"})
	alice.Request(logic, &wire.Send{ConvId: "delayed"})
	if e := c.Drop(nodetest.To[*wire.ClientRequest](logic)); e == nil {
		t.Fatal("drop: got nil, want the request")
	}
	late := c.Delay(nodetest.To[*wire.ClientRequest](logic))
	c.Stabilize()
	if !late.Delayed || c.Find(func(e *nodetest.Envelope) bool { return e == late }) == nil {
		t.Fatal("a delayed envelope was delivered by Stabilize")
	}

	// A crash loses the in-flight completion; a restart is a new incarnation.
	c.DeliverEnvelope(late)
	old := c.Node(logic).Env.Inc
	c.Crash(logic)
	c.CompleteStore(nil, nodetest.StoreApply)
	c.Restart(logic)
	if c.Node(logic).Env.Inc != old+1 || len(current.seen) != 0 {
		t.Fatalf("restart: got inc %d, seen %v, want %d and a fresh node", c.Node(logic).Env.Inc, current.seen, old+1)
	}

	// Timers fire on Advance, not before.
	c.Node(logic).Env.After(time.Second, "tick")
	c.Advance(999 * time.Millisecond)
	if c.Find(nodetest.To[*wire.Heartbeat](entry.Addr)) != nil {
		t.Fatal("timer fired early")
	}
	if n := c.Advance(time.Millisecond); n != 1 {
		t.Fatalf("timers fired: got %d, want 1", n)
	}
	c.Deliver(nodetest.To[*wire.Heartbeat](entry.Addr))
}

func TestPresenceSemantics(t *testing.T) {
	c := nodetest.NewCluster(&recordingStore{})
	a := node.Addr{Role: node.RoleLogic}
	var env node.Env
	c.Add(a, func() node.Node { return nodeFunc(func(e node.Env, _ node.Event) { env = e }) })
	c.Handle(a, node.Timer{}) // capture the env
	entry := node.Addr{Role: node.RoleEntry}
	set := func(conn node.ConnID) {
		env.Presence(node.PresenceOp{Kind: node.PresenceSet, Entry: node.PresenceEntry{User: "u", Entry: entry, Conn: conn}})
	}
	set(1)
	set(2)
	env.Presence(node.PresenceOp{Kind: node.PresenceDelete, Entry: node.PresenceEntry{User: "u", Entry: entry, Conn: 1}})
	c.Handle(a, node.Timer{}) // collect
	c.Stabilize()
	if got := c.Presence["u"].Conn; got != 2 {
		t.Fatalf("delete of a replaced connection: got conn %d, want 2 kept", got)
	}
}

type nodeFunc func(node.Env, node.Event)

func (f nodeFunc) Start(node.Env)                     {}
func (f nodeFunc) Handle(env node.Env, ev node.Event) { f(env, ev) }
