package live

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
)

// timerNode sets timers from Start as its script says, cancels some, and
// reports the tags that fire, in order.
type timerNode struct {
	start func(env node.Env)
	fired chan any
	then  func(env node.Env, tag any)
}

func (n *timerNode) Start(env node.Env) { n.start(env) }
func (n *timerNode) Handle(env node.Env, ev node.Event) {
	if t, ok := ev.(node.Timer); ok {
		n.fired <- t.Tag
		if n.then != nil {
			n.then(env, t.Tag)
		}
	}
}

func startNode(t *testing.T, deps Deps, n node.Node) *Process {
	t.Helper()
	p := NewProcess(Config{Topology: map[node.Role]int{node.RoleLogic: 1}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, deps)
	t.Cleanup(func() { p.Shutdown(context.Background(), 0) })
	if err := p.Start(NodeSpec{Addr: node.Addr{Role: node.RoleLogic}, New: func() node.Node { return n }}); err != nil {
		t.Fatal(err)
	}
	return p
}

func nextFired(t *testing.T, fired chan any) any {
	t.Helper()
	select {
	case tag := <-fired:
		return tag
	case <-time.After(5 * time.Second):
		t.Fatal("no timer fired within 5s")
		return nil
	}
}

// Timers fire in deadline order, cancelled ones never, one set at zero at
// once, and a timer set by a firing one fires too.
func TestHostTimersOrderAndCancel(t *testing.T) {
	n := &timerNode{fired: make(chan any, 16)}
	n.start = func(env node.Env) {
		// c is far after b+10ms: "set by b" is armed when b fires, and a
		// loaded machine may fire b late (at 60ms, c would race it).
		env.After(400*time.Millisecond, "c")
		env.After(20*time.Millisecond, "a")
		env.Cancel(env.After(30*time.Millisecond, "cancelled"))
		env.After(40*time.Millisecond, "b")
		env.After(0, "now")
		env.Cancel(env.After(0, "cancelled too"))
	}
	n.then = func(env node.Env, tag any) {
		if tag == "b" {
			env.After(10*time.Millisecond, "set by b")
		}
	}
	startNode(t, Deps{}, n)
	for _, want := range []string{"now", "a", "b", "set by b", "c"} {
		if got := nextFired(t, n.fired); got != want {
			t.Fatalf("fired %v, want %s", got, want)
		}
	}
	select {
	case tag := <-n.fired:
		t.Fatalf("fired %v after the last timer", tag)
	case <-time.After(100 * time.Millisecond):
	}
}

// Cancelled timers do not pile up: a node that sets and cancels a timer
// per request keeps its heap within twice its pending timers plus
// timerSlack, and a timer set afterwards still fires on time.
func TestHostTimersCancelledAreDropped(t *testing.T) {
	const requests = 20 * timerSlack
	n := &timerNode{fired: make(chan any, 1)}
	n.start = func(env node.Env) {
		// The pending timer is due before the cancelled ones: they are
		// never at the top of the heap, only a rebuild drops them.
		env.After(time.Minute, "pending")
		for i := 0; i < requests; i++ {
			env.Cancel(env.After(time.Hour, i))
		}
		env.After(10*time.Millisecond, "after")
	}
	p := startNode(t, Deps{}, n)
	if got := nextFired(t, n.fired); got != "after" {
		t.Fatalf("fired %v, want after", got)
	}
	h := p.Host(node.Addr{Role: node.RoleLogic})
	var heap, pending int
	h.Inspect(func(node.Node) { heap, pending = len(h.timers.heap), len(h.timers.tags) })
	if pending != 1 || heap > 2+timerSlack {
		t.Fatalf("after %d cancelled timers: heap %d entries, %d pending; want at most %d, 1", requests, heap, pending, 2+timerSlack)
	}
}

// depNode makes dependency requests from Start (and a presence lookup once
// its presence write is done) and checks each
// completion names a request whose ReqID it already holds (an inline
// completion must come as a later event, never inside the call).
type depNode struct {
	mu   sync.Mutex
	reqs map[node.ReqID]string
	done chan node.Completion
	bad  chan string
}

func (n *depNode) Start(env node.Env) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := node.PresenceEntry{User: "u1", Entry: node.Addr{Role: node.RoleEntry}, Conn: 7}
	n.reqs[env.Presence(node.PresenceOp{Kind: node.PresenceSet, Entry: e, TTL: time.Minute})] = "set"
	n.reqs[env.Store(node.StoreOp{Append: []store.AppendReq{{ConvID: "p:u1:u2:x", SenderID: "u1", PeerID: "u2",
		ListingID: "x", ClientMsgID: "m1", CSeq: 1, Body: "hi", CreatedAtMs: 1}}})] = "append"
	n.reqs[env.Publish("subj", []byte("data"), "id1")] = "publish"
}

func (n *depNode) Handle(env node.Env, ev node.Event) {
	c, ok := ev.(node.Completion)
	if !ok {
		return
	}
	n.mu.Lock()
	what, known := n.reqs[c.Req]
	if what == "set" {
		// Pool workers may run requests in any order: look up once set.
		n.reqs[env.Presence(node.PresenceOp{Kind: node.PresenceGet, Users: []string{"u1", "u2"}})] = "get"
		n.reqs[env.Presence(node.PresenceOp{Kind: node.PresenceScan, Count: 10})] = "scan"
	}
	n.mu.Unlock()
	if !known {
		n.bad <- "completion of an unknown request"
	}
	n.done <- c
}

// In-memory dependencies run on the node goroutine; the node gets the same
// completions it would get from the pools, after its call returned.
func TestInlineDependencies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deps   Deps
		inline inlineDeps
	}{
		{"inline", Deps{Presence: NewMemPresence(), Store: InlineStore(memstore.New(memstore.Options{})), Queue: NewMemQueue()},
			inlineDeps{store: true, presence: true, queue: true}},
		{"pools", Deps{Presence: poolPresence{NewMemPresence()}, Store: memstore.New(memstore.Options{}), Queue: poolQueue{NewMemQueue()}},
			inlineDeps{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &depNode{reqs: map[node.ReqID]string{}, done: make(chan node.Completion, 8), bad: make(chan string, 8)}
			p := startNode(t, tc.deps, n)
			if p.inline != tc.inline {
				t.Fatalf("inline deps: got %+v, want %+v", p.inline, tc.inline)
			}
			got := map[string]node.Completion{}
			for len(got) < 5 {
				select {
				case c := <-n.done:
					n.mu.Lock()
					got[n.reqs[c.Req]] = c
					n.mu.Unlock()
				case msg := <-n.bad:
					t.Fatal(msg)
				case <-time.After(5 * time.Second):
					t.Fatalf("completions: got %d of 5", len(got))
				}
			}
			for what, c := range got {
				if c.Outcome != node.OK {
					t.Fatalf("%s: outcome %v (%v)", what, c.Outcome, c.Err)
				}
			}
			if f := got["get"].Presence.Found; len(f) != 2 || f[0].User != "u1" || f[0].Conn != 7 || f[1].User != "" {
				t.Fatalf("get: found %+v, want u1 on conn 7 and nobody", f)
			}
			if f := got["scan"].Presence.Found; len(f) != 1 || f[0].User != "u1" {
				t.Fatalf("scan: found %+v, want u1", f)
			}
			if a := got["append"].Store.Append; len(a) != 1 || a[0].Seq != 1 {
				t.Fatalf("append: %+v, want seq 1", a)
			}
		})
	}
}

// An inline store's error is classified as a pool's is.
func TestInlineStoreErrors(t *testing.T) {
	n := &depNode{reqs: map[node.ReqID]string{}, done: make(chan node.Completion, 8), bad: make(chan string, 8)}
	st := InlineStore(failingStore{memstore.New(memstore.Options{})})
	startNode(t, Deps{Presence: NewMemPresence(), Store: st, Queue: NewMemQueue()}, n)
	for i := 0; i < 4; i++ {
		select {
		case c := <-n.done:
			n.mu.Lock()
			what := n.reqs[c.Req]
			n.mu.Unlock()
			if what == "append" && (c.Outcome != node.Failed || !errors.Is(c.Err, store.ErrUnavailable)) {
				t.Fatalf("append on a failing store: outcome %v err %v, want Failed, unavailable", c.Outcome, c.Err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("completions missing")
		}
	}
}

// poolPresence and poolQueue hide the in-memory types' Inline marker.
type poolPresence struct{ Presence }
type poolQueue struct{ Queue }

type failingStore struct{ store.Store }

func (failingStore) Append(context.Context, []store.AppendReq) ([]store.AppendResult, error) {
	return nil, store.ErrUnavailable
}
