package nodetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// Cluster is a scripted multi-node harness: several state machines, each
// with its own Env, connected by a network the test schedules message by
// message, sharing one store, one presence map and one queue recorder.
// Nothing happens unless the test says so: a test reads like a story
// ("deliver the append to das-0, time it out, restart logic-0, ...").
//
// Effects are collected after every event a node handles:
//   - Sent messages become Envelopes in Net (delivered by Deliver*, dropped
//     by Drop, held back by Delay);
//   - Store requests become PendingStore entries completed by CompleteStore
//     (against Store, or as Unknown with or without applying, or as a
//     definite failure);
//   - Presence requests become PendingPresence entries, completed against
//     the in-memory Presence map;
//   - publishes are appended to Published and complete OK when the cluster
//     stabilises; registry requests complete OK likewise;
//   - timers stay in each node's Env until Advance fires the due ones.
type Cluster struct {
	Store    store.Store
	Presence map[string]node.PresenceEntry
	// Published records every publish in order.
	Published []Publish
	// Net holds the internal messages in flight, in send order.
	Net []*Envelope
	// Stores and Presences hold the dependency requests not completed yet.
	Stores    []*PendingStore
	Presences []*PendingPresence
	// HoldStores, when set, marks each new store request it matches as
	// held, so Stabilize leaves it for the test to complete.
	HoldStores func(*PendingStore) bool

	nodes    map[node.Addr]*ClusterNode
	standIns map[node.Addr]*StandIn
	auto     []autoCompletion // publish and registry completions, delivered by Stabilize
	nextEnv  uint64
}

// ClusterNode is one state machine in the cluster.
type ClusterNode struct {
	Addr node.Addr
	Env  *Env
	Node node.Node
	// New builds a fresh state machine on restart.
	New  func() node.Node
	Down bool
}

// Envelope is one internal message in flight.
type Envelope struct {
	From, To node.Addr
	Msg      node.Message
	// Delayed envelopes are skipped by Stabilize and DeliverNext until the
	// test delivers them explicitly.
	Delayed bool
}

func (e *Envelope) String() string { return fmt.Sprintf("%s→%s %T", e.From, e.To, e.Msg) }

// PendingStore is a store request waiting for the test to complete it.
type PendingStore struct {
	Node node.Addr
	Inc  node.Incarnation
	Req  node.ReqID
	Op   node.StoreOp
	Held bool // skipped by Stabilize
}

// PendingPresence is a presence request waiting for completion.
type PendingPresence struct {
	Node node.Addr
	Inc  node.Incarnation
	Req  node.ReqID
	Op   node.PresenceOp
	Held bool
}

// Publish is one recorded publish.
type Publish struct {
	From    node.Addr
	Subject string
	Data    []byte
	MsgID   string
}

type autoCompletion struct {
	node node.Addr
	inc  node.Incarnation
	req  node.ReqID
}

// StoreMode says how CompleteStore completes a store request.
type StoreMode int

const (
	// StoreApply runs the op against the store and reports its result.
	StoreApply StoreMode = iota
	// StoreUnknownApplied runs the op, then reports Unknown: it committed,
	// but the caller cannot know (a timeout after commit).
	StoreUnknownApplied
	// StoreUnknownLost reports Unknown without running the op (a timeout
	// before the request reached the database).
	StoreUnknownLost
	// StoreUnavailable reports a definite failure (store.ErrUnavailable).
	StoreUnavailable
	// StoreDeadlock reports a definite failure (store.ErrDeadlock).
	StoreDeadlock
)

// stabilizeStepMax bounds Stabilize: a scripted test that needs more steps
// is looping.
const stabilizeStepMax = 100000

// NewCluster returns an empty cluster over st.
func NewCluster(st store.Store) *Cluster {
	return &Cluster{
		Store:    st,
		Presence: map[string]node.PresenceEntry{},
		nodes:    map[node.Addr]*ClusterNode{},
		standIns: map[node.Addr]*StandIn{},
	}
}

// Add starts a node built by newNode at addr.
func (c *Cluster) Add(addr node.Addr, newNode func() node.Node) *ClusterNode {
	if c.nodes[addr] != nil || c.standIns[addr] != nil {
		panic(fmt.Sprintf("nodetest: %s added twice", addr))
	}
	env := New(addr)
	c.nextEnv++
	// Each node its own random stream, so adding one does not reshuffle another.
	env.rnd = rand.New(rand.NewPCG(c.nextEnv, 2))
	cn := &ClusterNode{Addr: addr, Env: env, New: newNode, Node: newNode()}
	c.nodes[addr] = cn
	cn.Node.Start(env)
	c.collect(cn)
	return cn
}

// Node returns the node at addr (nil if none).
func (c *Cluster) Node(addr node.Addr) *ClusterNode { return c.nodes[addr] }

// Crash stops the node at addr: it handles nothing until Restart. Its
// messages already in flight stay in Net (they may still arrive), its
// pending store requests may still complete against the store.
func (c *Cluster) Crash(addr node.Addr) {
	cn := c.mustNode(addr)
	cn.Down = true
}

// Restart brings addr back as a fresh state machine with the next
// incarnation; its timers are gone, its clock keeps running.
func (c *Cluster) Restart(addr node.Addr) {
	cn := c.mustNode(addr)
	cn.Down = false
	cn.Env.Inc++
	clear(cn.Env.timers)
	cn.Env.Effects = nil
	cn.Node = cn.New()
	cn.Node.Start(cn.Env)
	c.collect(cn)
}

// Handle delivers ev to addr (dropped if the node is down).
func (c *Cluster) Handle(addr node.Addr, ev node.Event) {
	if s := c.standIns[addr]; s != nil {
		if r, ok := ev.(node.Recv); ok {
			s.Inbox = append(s.Inbox, r.Msg)
		}
		return
	}
	cn := c.mustNode(addr)
	if cn.Down {
		return
	}
	cn.Node.Handle(cn.Env, ev)
	c.collect(cn)
}

// SetView delivers a registry view of role to the given nodes (all nodes when none are named).
func (c *Cluster) SetView(role node.Role, alive []bool, to ...node.Addr) {
	if len(to) == 0 {
		to = c.Addrs()
	}
	for _, a := range to {
		if c.nodes[a] != nil {
			c.Handle(a, node.View{Role: role, Alive: append([]bool(nil), alive...)})
		}
	}
}

// LinkDown tells at that its link to peer went down.
func (c *Cluster) LinkDown(at, peer node.Addr) { c.Handle(at, node.LinkDown{Peer: peer}) }

// Addrs lists the nodes' addresses in a fixed order.
func (c *Cluster) Addrs() []node.Addr {
	out := make([]node.Addr, 0, len(c.nodes))
	for a := range c.nodes {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].Slot < out[j].Slot
	})
	return out
}

func (c *Cluster) mustNode(addr node.Addr) *ClusterNode {
	cn := c.nodes[addr]
	if cn == nil {
		panic(fmt.Sprintf("nodetest: no node %s", addr))
	}
	return cn
}

// collect moves cn's recorded effects into the cluster.
func (c *Cluster) collect(cn *ClusterNode) {
	for _, e := range cn.Env.Take() {
		switch e := e.(type) {
		case Sent:
			c.Net = append(c.Net, &Envelope{From: cn.Addr, To: e.To, Msg: e.Msg})
		case StoreReq:
			p := &PendingStore{Node: cn.Addr, Inc: cn.Env.Inc, Req: e.Req, Op: e.Op}
			p.Held = c.HoldStores != nil && c.HoldStores(p)
			c.Stores = append(c.Stores, p)
		case PresenceReq:
			c.Presences = append(c.Presences, &PendingPresence{Node: cn.Addr, Inc: cn.Env.Inc, Req: e.Req, Op: e.Op})
		case PublishReq:
			c.Published = append(c.Published, Publish{From: cn.Addr, Subject: e.Subject, Data: e.Data, MsgID: e.MsgID})
			c.auto = append(c.auto, autoCompletion{node: cn.Addr, inc: cn.Env.Inc, req: e.Req})
		case RegistryReq:
			c.auto = append(c.auto, autoCompletion{node: cn.Addr, inc: cn.Env.Inc, req: e.Req})
		}
	}
}

// completion delivers a completion unless the node restarted since the request.
func (c *Cluster) completion(addr node.Addr, inc node.Incarnation, comp node.Completion) {
	cn := c.mustNode(addr)
	if cn.Env.Inc != inc {
		return // addressed to a previous incarnation
	}
	c.Handle(addr, comp)
}

// ---- network ----

// Find returns the first envelope in flight matching pred, or nil.
func (c *Cluster) Find(pred func(*Envelope) bool) *Envelope {
	for _, e := range c.Net {
		if pred(e) {
			return e
		}
	}
	return nil
}

// DeliverNext delivers the first envelope not delayed; false if none.
func (c *Cluster) DeliverNext() bool {
	e := c.Find(func(e *Envelope) bool { return !e.Delayed })
	if e == nil {
		return false
	}
	c.DeliverEnvelope(e)
	return true
}

// Deliver delivers the first envelope matching pred (delayed or not) and
// returns it; it panics if there is none, since a script expecting a
// message that is not there is broken.
func (c *Cluster) Deliver(pred func(*Envelope) bool) *Envelope {
	e := c.Find(pred)
	if e == nil {
		panic("nodetest: no envelope to deliver matches; in flight:\n" + c.DescribeNet())
	}
	c.DeliverEnvelope(e)
	return e
}

// DeliverEnvelope removes e from Net and hands it to its destination.
func (c *Cluster) DeliverEnvelope(e *Envelope) {
	c.remove(e)
	if c.nodes[e.To] == nil && c.standIns[e.To] == nil {
		return // nobody there: lost
	}
	c.Handle(e.To, node.Recv{From: e.From, Msg: e.Msg})
}

// Drop removes the first envelope matching pred and returns it (nil if none).
func (c *Cluster) Drop(pred func(*Envelope) bool) *Envelope {
	e := c.Find(pred)
	if e != nil {
		c.remove(e)
	}
	return e
}

// Delay marks the first envelope matching pred as delayed and returns it.
func (c *Cluster) Delay(pred func(*Envelope) bool) *Envelope {
	e := c.Find(pred)
	if e == nil {
		panic("nodetest: no envelope to delay matches; in flight:\n" + c.DescribeNet())
	}
	e.Delayed = true
	return e
}

func (c *Cluster) remove(e *Envelope) {
	for i, x := range c.Net {
		if x == e {
			c.Net = append(c.Net[:i], c.Net[i+1:]...)
			return
		}
	}
}

// DescribeNet lists the envelopes in flight, for failure messages.
func (c *Cluster) DescribeNet() string {
	s := ""
	for _, e := range c.Net {
		s += fmt.Sprintf("  %s delayed=%v %v\n", e, e.Delayed, e.Msg)
	}
	return s
}

// To matches envelopes sent to addr carrying a T.
func To[T node.Message](addr node.Addr) func(*Envelope) bool {
	return func(e *Envelope) bool {
		_, ok := e.Msg.(T)
		return ok && e.To == addr
	}
}

// From matches envelopes sent by addr carrying a T.
func From[T node.Message](addr node.Addr) func(*Envelope) bool {
	return func(e *Envelope) bool {
		_, ok := e.Msg.(T)
		return ok && e.From == addr
	}
}

// ---- store ----

// FindStore returns the first pending store request matching pred, or nil.
func (c *Cluster) FindStore(pred func(*PendingStore) bool) *PendingStore {
	for _, p := range c.Stores {
		if pred(p) {
			return p
		}
	}
	return nil
}

// CompleteStore completes the first pending store request matching pred
// (nil: the first one) as mode says, and returns it; it panics if none.
func (c *Cluster) CompleteStore(pred func(*PendingStore) bool, mode StoreMode) *PendingStore {
	if pred == nil {
		pred = func(*PendingStore) bool { return true }
	}
	p := c.FindStore(pred)
	if p == nil {
		panic("nodetest: no pending store request matches")
	}
	c.removeStore(p)
	comp := node.Completion{Req: p.Req}
	switch mode {
	case StoreApply:
		res, err := c.apply(p.Op)
		if err != nil {
			comp.Outcome, comp.Err = node.Failed, err
		} else {
			comp.Store = res
		}
	case StoreUnknownApplied:
		_, err := c.apply(p.Op)
		comp.Outcome, comp.Err = node.Unknown, fmt.Errorf("%w (applied: err=%v)", store.ErrUnknownOutcome, err)
	case StoreUnknownLost:
		comp.Outcome, comp.Err = node.Unknown, store.ErrUnknownOutcome
	case StoreUnavailable:
		comp.Outcome, comp.Err = node.Failed, store.ErrUnavailable
	case StoreDeadlock:
		comp.Outcome, comp.Err = node.Failed, store.ErrDeadlock
	}
	c.completion(p.Node, p.Inc, comp)
	return p
}

// HoldStore marks every pending store request matching pred as held:
// Stabilize leaves it. (HoldStores does the same for requests not made yet.)
func (c *Cluster) HoldStore(pred func(*PendingStore) bool) int {
	n := 0
	for _, p := range c.Stores {
		if pred(p) {
			p.Held = true
			n++
		}
	}
	return n
}

func (c *Cluster) removeStore(p *PendingStore) {
	for i, x := range c.Stores {
		if x == p {
			c.Stores = append(c.Stores[:i], c.Stores[i+1:]...)
			return
		}
	}
}

// apply runs op against the store.
func (c *Cluster) apply(op node.StoreOp) (*node.StoreResult, error) {
	ctx := context.Background()
	res := &node.StoreResult{}
	var err error
	switch {
	case op.Append != nil:
		res.Append, err = c.Store.Append(ctx, op.Append)
	case op.Sync != nil:
		res.Sync, err = c.Store.Sync(ctx, *op.Sync)
	case op.MarkRead != nil:
		res.Read, err = c.Store.MarkRead(ctx, *op.MarkRead)
	case op.ConvList != nil:
		res.ConvList, err = c.Store.ConvList(ctx, *op.ConvList)
	case op.Touch != nil:
		err = c.Store.Touch(ctx, *op.Touch)
	default:
		err = fmt.Errorf("%w: empty store op", store.ErrInvalid)
	}
	return res, err
}

// StoreAppends matches pending store requests that are appends.
func StoreAppends(p *PendingStore) bool { return p.Op.Append != nil }

// ---- presence ----

// CompletePresence completes the first pending presence request matching
// pred (nil: the first) against the Presence map; ok=false reports a
// definite failure instead.
func (c *Cluster) CompletePresence(pred func(*PendingPresence) bool, ok bool) *PendingPresence {
	if pred == nil {
		pred = func(*PendingPresence) bool { return true }
	}
	var p *PendingPresence
	for _, x := range c.Presences {
		if pred(x) {
			p = x
			break
		}
	}
	if p == nil {
		panic("nodetest: no pending presence request matches")
	}
	for i, x := range c.Presences {
		if x == p {
			c.Presences = append(c.Presences[:i], c.Presences[i+1:]...)
			break
		}
	}
	comp := node.Completion{Req: p.Req}
	if ok {
		comp.Presence = c.applyPresence(p.Op)
	} else {
		comp.Outcome, comp.Err = node.Failed, fmt.Errorf("nodetest: presence unavailable")
	}
	c.completion(p.Node, p.Inc, comp)
	return p
}

// applyPresence runs op against the map. TTLs are not modelled.
func (c *Cluster) applyPresence(op node.PresenceOp) *node.PresenceResult {
	res := &node.PresenceResult{}
	switch op.Kind {
	case node.PresenceSet:
		if prev, ok := c.Presence[op.Entry.User]; ok {
			res.Previous = &prev
		}
		c.Presence[op.Entry.User] = op.Entry
	case node.PresenceGet:
		res.Found = make([]node.PresenceEntry, len(op.Users))
		for i, u := range op.Users {
			res.Found[i] = c.Presence[u]
		}
	case node.PresenceDelete:
		cur, ok := c.Presence[op.Entry.User]
		if ok && cur.Entry == op.Entry.Entry && cur.Conn == op.Entry.Conn && cur.Incarnation == op.Entry.Incarnation {
			delete(c.Presence, op.Entry.User)
		}
	case node.PresenceScan:
		users := make([]string, 0, len(c.Presence))
		for u := range c.Presence {
			users = append(users, u)
		}
		sort.Strings(users)
		start := int(op.Cursor)
		end := min(len(users), start+max(op.Count, 1))
		for _, u := range users[min(start, len(users)):end] {
			res.Found = append(res.Found, c.Presence[u])
		}
		if end < len(users) {
			res.Cursor = uint64(end)
		}
	}
	return res
}

// ---- scheduling ----

// Stabilize delivers every message not delayed and completes every store and
// presence request not held (StoreApply, presence OK) and every publish and
// registry request, until nothing is left. Time does not move. It returns
// the number of steps taken.
func (c *Cluster) Stabilize() int {
	steps := 0
	for ; steps < stabilizeStepMax; steps++ {
		switch {
		case len(c.auto) > 0:
			a := c.auto[0]
			c.auto = c.auto[1:]
			c.completion(a.node, a.inc, node.Completion{Req: a.req})
		case c.DeliverNext():
		case c.FindStore(func(p *PendingStore) bool { return !p.Held }) != nil:
			c.CompleteStore(func(p *PendingStore) bool { return !p.Held }, StoreApply)
		case c.hasPresence():
			c.CompletePresence(func(p *PendingPresence) bool { return !p.Held }, true)
		default:
			return steps
		}
	}
	panic(fmt.Sprintf("nodetest: cluster did not stabilise in %d steps", stabilizeStepMax))
}

func (c *Cluster) hasPresence() bool {
	for _, p := range c.Presences {
		if !p.Held {
			return true
		}
	}
	return false
}

// Advance moves every node's clock by d and fires the timers now due, node
// by node in address order, each node's in due order. Timers a handler sets
// that fall due within the same Advance are fired too.
func (c *Cluster) Advance(d time.Duration) int {
	fired := 0
	for _, a := range c.Addrs() {
		cn := c.nodes[a]
		due := cn.Env.Advance(d)
		for len(due) > 0 {
			for _, t := range due {
				if !cn.Down {
					c.Handle(a, t)
					fired++
				}
			}
			if fired > stabilizeStepMax {
				panic(fmt.Sprintf("nodetest: %s keeps setting timers due now", a))
			}
			due = cn.Env.Advance(0)
		}
	}
	return fired
}

// FireTimers fires, at addr, the pending timers whose tag matches pred,
// without moving the clock. It returns how many fired.
func (c *Cluster) FireTimers(addr node.Addr, pred func(tag any) bool) int {
	cn := c.mustNode(addr)
	var ids []node.TimerID
	for id, t := range cn.Env.timers {
		if pred(t.Tag) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		t := cn.Env.timers[id]
		delete(cn.Env.timers, id)
		c.Handle(addr, node.Timer{ID: id, Tag: t.Tag})
	}
	return len(ids)
}

// ---- stand-in entry ----

// StandIn plays an entry instance: fake clients send ClientRequests through
// it, and it collects what logic sends back (ClientResponse, PushRequest,
// KickRequest) in Inbox.
type StandIn struct {
	c     *Cluster
	Addr  node.Addr
	Inc   node.Incarnation
	Inbox []node.Message
	conns node.ConnID
}

// AddStandIn registers a stand-in entry at addr.
func (c *Cluster) AddStandIn(addr node.Addr) *StandIn {
	if c.nodes[addr] != nil || c.standIns[addr] != nil {
		panic(fmt.Sprintf("nodetest: %s added twice", addr))
	}
	s := &StandIn{c: c, Addr: addr, Inc: 1}
	c.standIns[addr] = s
	return s
}

// FakeClient is one app connection at a stand-in entry.
type FakeClient struct {
	entry   *StandIn
	User    string
	Device  string
	Conn    node.ConnID
	Session uint64
	nextReq uint32
}

// Client opens a fake connection for user on device.
func (s *StandIn) Client(user, device string) *FakeClient {
	s.conns++
	return &FakeClient{entry: s, User: user, Device: device, Conn: s.conns, Session: uint64(s.conns)}
}

// Origin is where responses to this client go.
func (fc *FakeClient) Origin() *wire.Origin {
	return &wire.Origin{Entry: fc.entry.Addr.String(), Conn: uint64(fc.Conn), EntryIncarnation: uint64(fc.entry.Inc)}
}

// Request puts a ClientRequest carrying body into the network towards to,
// and returns its req_id.
func (fc *FakeClient) Request(to node.Addr, body node.Message) uint32 {
	op, err := wire.OpOf(body)
	if err != nil {
		panic(err)
	}
	raw, err := wire.Marshal(body)
	if err != nil {
		panic(err)
	}
	fc.nextReq++
	fc.entry.c.Net = append(fc.entry.c.Net, &Envelope{From: fc.entry.Addr, To: to, Msg: &wire.ClientRequest{
		Origin: fc.Origin(), UserId: fc.User, DeviceId: fc.Device, Op: uint32(op),
		ReqId: fc.nextReq, Body: raw, SessionId: fc.Session,
	}})
	return fc.nextReq
}

// Resend puts the same request again (a failover or a retry: same req_id).
func (fc *FakeClient) Resend(to node.Addr, reqID uint32, body node.Message) {
	op, _ := wire.OpOf(body)
	raw, _ := wire.Marshal(body)
	fc.entry.c.Net = append(fc.entry.c.Net, &Envelope{From: fc.entry.Addr, To: to, Msg: &wire.ClientRequest{
		Origin: fc.Origin(), UserId: fc.User, DeviceId: fc.Device, Op: uint32(op),
		ReqId: reqID, Body: raw, SessionId: fc.Session,
	}})
}

// Closed tells to that this connection ended.
func (fc *FakeClient) Closed(to node.Addr) {
	fc.entry.c.Net = append(fc.entry.c.Net, &Envelope{From: fc.entry.Addr, To: to, Msg: &wire.SessionClosed{
		Origin: fc.Origin(), UserId: fc.User,
	}})
}

// Responses returns, in arrival order, the decoded bodies answering reqID
// on this connection.
func (fc *FakeClient) Responses(reqID uint32) []node.Message {
	var out []node.Message
	for _, m := range fc.entry.Inbox {
		r, ok := m.(*wire.ClientResponse)
		if !ok || r.Origin.GetConn() != uint64(fc.Conn) || r.ReqId != reqID {
			continue
		}
		body, err := wire.DecodeBody(wire.Frame{Op: wire.Op(r.Op), Body: r.Body})
		if err != nil {
			panic(fmt.Sprintf("nodetest: undecodable response %s: %v", wire.Op(r.Op), err))
		}
		out = append(out, body)
	}
	return out
}

// Response returns the last answer to reqID, or nil.
func (fc *FakeClient) Response(reqID uint32) node.Message {
	rs := fc.Responses(reqID)
	if len(rs) == 0 {
		return nil
	}
	return rs[len(rs)-1]
}

// Pushes returns the messages pushed to this connection, in arrival order.
func (fc *FakeClient) Pushes() []*wire.ChatMessage {
	var out []*wire.ChatMessage
	for _, m := range fc.entry.Inbox {
		p, ok := m.(*wire.PushRequest)
		if !ok {
			continue
		}
		for _, t := range p.Targets {
			if t.Conn == uint64(fc.Conn) && t.UserId == fc.User {
				out = append(out, p.Messages...)
			}
		}
	}
	return out
}

// Kicked reports whether a KickRequest named this connection.
func (fc *FakeClient) Kicked() bool { return fc.KickRequest() != nil }

// KickRequest is the first KickRequest that named this connection, or nil.
func (fc *FakeClient) KickRequest() *wire.KickRequest {
	for _, m := range fc.entry.Inbox {
		if k, ok := m.(*wire.KickRequest); ok && k.Target.GetConn() == uint64(fc.Conn) && k.Target.GetUserId() == fc.User {
			return k
		}
	}
	return nil
}
