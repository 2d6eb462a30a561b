package entry

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

var secret = []byte("entry-test-secret")

const logicSlots = 3

type harness struct {
	t   *testing.T
	e   *Entry
	env *nodetest.Env
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	cfg := Config{Topology: map[node.Role]int{node.RoleLogic: logicSlots}, Secret: secret}
	if mod != nil {
		mod(&cfg)
	}
	h := &harness{t: t, e: New(cfg), env: nodetest.New(node.Addr{Role: node.RoleEntry, Slot: 0})}
	h.e.Start(h.env)
	h.env.Take()
	return h
}

func (h *harness) handle(ev node.Event) []any {
	h.e.Handle(h.env, ev)
	return h.env.Take()
}

// advance moves the clock and delivers every timer that came due.
func (h *harness) advance(d time.Duration) []any {
	var out []any
	for _, tm := range h.env.Advance(d) {
		out = append(out, h.handle(tm)...)
	}
	return out
}

func (h *harness) frame(conn node.ConnID, op wire.Op, reqID uint32, m proto.Message) []any {
	var body []byte
	if m != nil {
		b, err := proto.Marshal(m)
		if err != nil {
			h.t.Fatal(err)
		}
		body = b
	}
	return h.handle(node.ClientFrame{Conn: conn, Frame: wire.Frame{Op: op, ReqID: reqID, Body: body}})
}

func (h *harness) token(user string) string {
	return wire.SignToken(secret, user, h.env.Now().Add(time.Hour))
}

// login connects conn and logs user in, returning the effects of the LOGIN.
func (h *harness) login(conn node.ConnID, user string) []any {
	h.t.Helper()
	h.handle(node.ClientConnect{Conn: conn})
	eff := h.frame(conn, wire.OpLogin, 1, &wire.Login{Token: h.token(user), DeviceId: "d1"})
	if reqs := requests(eff); len(reqs) != 1 {
		h.t.Fatalf("login of %s forwarded %d requests, want 1:\n%s", user, len(reqs), nodetest.Describe(eff))
	}
	return eff
}

func (h *harness) respond(from int, req *wire.ClientRequest, op wire.Op, body proto.Message, closeConn bool) []any {
	b, _ := proto.Marshal(body)
	return h.handle(node.Recv{From: logicAt(from), Msg: &wire.ClientResponse{
		Origin: req.Origin, Op: uint32(op), ReqId: req.ReqId, Body: b, UserId: req.UserId, Close: closeConn,
	}})
}

func logicAt(slot int) node.Addr { return node.Addr{Role: node.RoleLogic, Slot: slot} }

type forwardedReq struct {
	to  node.Addr
	req *wire.ClientRequest
}

func requests(eff []any) []forwardedReq {
	var out []forwardedReq
	for _, s := range nodetest.Of[nodetest.Sent](eff) {
		if r, ok := s.Msg.(*wire.ClientRequest); ok {
			out = append(out, forwardedReq{to: s.To, req: r})
		}
	}
	return out
}

func sentOf[T proto.Message](eff []any) []T {
	var out []T
	for _, s := range nodetest.Of[nodetest.Sent](eff) {
		if m, ok := s.Msg.(T); ok {
			out = append(out, m)
		}
	}
	return out
}

func closed(eff []any) []node.ConnID {
	var out []node.ConnID
	for _, c := range nodetest.Of[nodetest.Closed](eff) {
		out = append(out, c.Conn)
	}
	return out
}

func framesTo(eff []any, conn node.ConnID) []wire.Frame {
	var out []wire.Frame
	for _, f := range nodetest.Of[nodetest.ToClient](eff) {
		if f.Conn == conn {
			out = append(out, f.Frame)
		}
	}
	return out
}

func errorCode(t *testing.T, f wire.Frame) wire.ErrorCode {
	t.Helper()
	if f.Op != wire.OpError {
		t.Fatalf("got frame op %s, want ERROR", f.Op)
	}
	var e wire.Error
	if err := proto.Unmarshal(f.Body, &e); err != nil {
		t.Fatal(err)
	}
	return e.Code
}

// userWithHome finds a user id whose home logic slot is slot.
func userWithHome(slot int) string {
	for i := 0; ; i++ {
		u := fmt.Sprintf("user%d", i)
		if route.Home(u, logicSlots) == slot {
			return u
		}
	}
}

func TestLoginHandshake(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		token string
		ok    bool
	}{
		{"good", wire.SignToken(secret, "alice", now.Add(time.Hour)), true},
		{"forged", wire.SignToken([]byte("other-secret"), "alice", now.Add(time.Hour)), false},
		{"expired", wire.SignToken(secret, "alice", now.Add(-time.Second)), false},
		{"missing", "", false},
		{"malformed", "alice.notanumber.sig", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.login(1, "bystander")
			h.handle(node.ClientConnect{Conn: 2})
			eff := h.frame(2, wire.OpLogin, 7, &wire.Login{Token: c.token, DeviceId: "phone"})
			reqs := requests(eff)
			if !c.ok {
				if len(reqs) != 0 {
					t.Fatalf("got %d forwarded requests, want 0", len(reqs))
				}
				fs := framesTo(eff, 2)
				if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_UNAUTHENTICATED || fs[0].ReqID != 7 {
					t.Fatalf("got frames %v, want one ERROR UNAUTHENTICATED with reqID 7", fs)
				}
				if got := closed(eff); len(got) != 1 || got[0] != 2 {
					t.Fatalf("got closed %v, want only [2]", got)
				}
				if len(framesTo(eff, 1)) != 0 || h.e.Stats().ConnectionsOpen != 1 {
					t.Fatalf("the bystander connection was touched: open %d", h.e.Stats().ConnectionsOpen)
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("got %d forwarded requests, want 1", len(reqs))
			}
			r := reqs[0]
			if want := logicAt(route.Home("alice", logicSlots)); r.to != want {
				t.Errorf("got target %v, want home %v", r.to, want)
			}
			if r.req.UserId != "alice" || r.req.DeviceId != "phone" || wire.Op(r.req.Op) != wire.OpLogin || r.req.ReqId != 7 {
				t.Errorf("got request %v, want alice/phone LOGIN reqID 7", r.req)
			}
			o := r.req.Origin
			if o.Entry != "entry-0" || o.Conn != 2 || o.EntryIncarnation != 1 || r.req.SessionId == 0 {
				t.Errorf("got origin %v session %d, want entry-0 conn 2 incarnation 1 and a session id", o, r.req.SessionId)
			}
			if len(closed(eff)) != 0 {
				t.Errorf("got closes %v, want none", closed(eff))
			}
		})
	}
}

func TestFrameBeforeLoginUnauthenticated(t *testing.T) {
	h := newHarness(t, nil)
	h.handle(node.ClientConnect{Conn: 1})
	eff := h.frame(1, wire.OpSend, 3, &wire.Send{ConvId: "p:a:b:l", Cseq: 1})
	fs := framesTo(eff, 1)
	if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_UNAUTHENTICATED {
		t.Fatalf("got frames %v, want ERROR UNAUTHENTICATED", fs)
	}
	if len(requests(eff)) != 0 || len(closed(eff)) != 1 {
		t.Fatalf("got %d requests and closes %v, want 0 and [1]", len(requests(eff)), closed(eff))
	}
}

func TestLoginDeadline(t *testing.T) {
	h := newHarness(t, nil)
	h.handle(node.ClientConnect{Conn: 1}) // never logs in
	h.login(2, "bob")                     // logs in in time
	eff := h.advance(LoginDeadlineDefault - time.Millisecond)
	if len(closed(eff)) != 0 {
		t.Fatalf("got closes %v before the deadline, want none", closed(eff))
	}
	eff = h.advance(time.Millisecond)
	if got := closed(eff); len(got) != 1 || got[0] != 1 {
		t.Fatalf("got closes %v at the deadline, want [1]", got)
	}
	if got := h.e.Stats().LoginDeadlineCloses; got != 1 {
		t.Errorf("got LoginDeadlineCloses %d, want 1", got)
	}
}

// TestLoginAfterDeadlineRefused: a connection the transport accepted a
// login deadline ago, handled only now (the entry was paused), must not log
// in: the client gave up on it and may hold a newer session elsewhere, which
// logic would kick. One accepted just now logs in as usual.
func TestLoginAfterDeadlineRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.env.Advance(time.Hour)
	now := h.env.Now()
	h.handle(node.ClientConnect{Conn: 1, Accepted: now.Add(-LoginDeadlineDefault)})
	eff := h.frame(1, wire.OpLogin, 1, &wire.Login{Token: h.token("alice"), DeviceId: "d1"})
	if reqs := requests(eff); len(reqs) != 0 {
		t.Fatalf("a login handled after its deadline forwarded %d requests, want 0:\n%s", len(reqs), nodetest.Describe(eff))
	}
	if got := closed(eff); len(got) != 1 || got[0] != 1 {
		t.Fatalf("got closes %v, want [1]", got)
	}
	h.handle(node.ClientConnect{Conn: 2, Accepted: now.Add(-LoginDeadlineDefault / 2)})
	eff = h.frame(2, wire.OpLogin, 1, &wire.Login{Token: h.token("bob"), DeviceId: "d1"})
	if reqs := requests(eff); len(reqs) != 1 {
		t.Fatalf("a login within its deadline forwarded %d requests, want 1:\n%s", len(reqs), nodetest.Describe(eff))
	}
}

func TestIdleTimeout(t *testing.T) {
	h := newHarness(t, nil)
	h.login(1, "alice")
	h.advance(IdleTimeoutDefault / 2)
	h.frame(1, wire.OpHeartbeat, 2, &wire.Heartbeat{})
	if eff := h.advance(IdleTimeoutDefault / 2); len(closed(eff)) != 0 {
		t.Fatalf("got closes %v after a heartbeat, want none", closed(eff))
	}
	eff := h.advance(IdleTimeoutDefault / 2)
	if got := closed(eff); len(got) != 1 || got[0] != 1 {
		t.Fatalf("got closes %v after idleTimeout without frames, want [1]", got)
	}
	if n := len(sentOf[*wire.SessionClosed](eff)); n != 1 {
		t.Errorf("got %d SessionClosed, want 1", n)
	}
}

// Entry does no business processing: a SEND naming another sender is
// forwarded byte for byte, with the session's user beside it.
func TestForgedSenderForwardedUntouched(t *testing.T) {
	h := newHarness(t, nil)
	h.login(1, "alice")
	body, _ := proto.Marshal(&wire.Send{ConvId: "p:alice:bob:l1", ClientMsgId: "m1", Cseq: 1, Body: "hi", SenderId: "mallory"})
	eff := h.handle(node.ClientFrame{Conn: 1, Frame: wire.Frame{Op: wire.OpSend, ReqID: 2, Body: body}})
	reqs := requests(eff)
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	if !bytes.Equal(reqs[0].req.Body, body) {
		t.Errorf("got body %x, want the client's bytes %x", reqs[0].req.Body, body)
	}
	if reqs[0].req.UserId != "alice" {
		t.Errorf("got user %q, want the session's alice", reqs[0].req.UserId)
	}
}

func TestBadOpClosesOnlyItsConnection(t *testing.T) {
	for _, op := range []wire.Op{wire.OpSendAck, wire.OpPush, wire.OpLoginAck, wire.OpKick, wire.OpError, wire.OpLogin, wire.OpClientRequest, wire.OpPushFailed} {
		t.Run(op.String(), func(t *testing.T) {
			h := newHarness(t, nil)
			h.login(1, "alice")
			h.login(2, "bob")
			eff := h.frame(1, op, 9, nil)
			fs := framesTo(eff, 1)
			if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_BAD_REQUEST {
				t.Fatalf("got frames %v, want ERROR BAD_REQUEST", fs)
			}
			if got := closed(eff); len(got) != 1 || got[0] != 1 {
				t.Fatalf("got closes %v, want [1]", got)
			}
			if len(requests(eff)) != 0 {
				t.Errorf("a bad frame was forwarded")
			}
			if eff := h.frame(2, wire.OpSync, 5, &wire.Sync{ConvId: "p:alice:bob:l"}); len(requests(eff)) != 1 {
				t.Errorf("the other connection no longer forwards")
			}
		})
	}
}

func TestPendingMaxOverloaded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PendingMax = 3 })
	h.login(1, "alice") // LOGIN is pending: 1
	h.frame(1, wire.OpSync, 2, &wire.Sync{})
	h.frame(1, wire.OpSync, 3, &wire.Sync{})
	eff := h.frame(1, wire.OpSync, 4, &wire.Sync{})
	fs := framesTo(eff, 1)
	if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_OVERLOADED || fs[0].ReqID != 4 {
		t.Fatalf("got frames %v, want ERROR OVERLOADED for reqID 4", fs)
	}
	if len(requests(eff)) != 0 || len(closed(eff)) != 0 {
		t.Fatalf("got %d forwarded, closes %v; want none", len(requests(eff)), closed(eff))
	}
}

func reqIDs(reqs []forwardedReq) []uint32 {
	var out []uint32
	for _, r := range reqs {
		out = append(out, r.req.ReqId)
	}
	return out
}

func targets(reqs []forwardedReq) map[node.Addr]bool {
	out := map[node.Addr]bool{}
	for _, r := range reqs {
		out[r.to] = true
	}
	return out
}

// A hung logic instance: the session's pending requests move in order to
// (x+1)%n, then back to x when a view shows x alive, resent in order again;
// a late answer from the old target counts when still pending and is
// dropped once answered.
func TestFailoverAndFailback(t *testing.T) {
	const x = 1
	user := userWithHome(x)
	h := newHarness(t, nil)
	h.login(1, user)
	var first []forwardedReq
	for id := uint32(2); id <= 3; id++ {
		first = append(first, requests(h.frame(1, wire.OpSend, id, &wire.Send{Cseq: uint64(id)}))...)
	}
	if got := targets(first); len(got) != 1 || !got[logicAt(x)] {
		t.Fatalf("got targets %v, want only home %v", got, logicAt(x))
	}

	eff := h.advance(LogicTimeoutDefault) // logic-x hangs
	moved := requests(eff)
	if got, want := fmt.Sprint(reqIDs(moved)), "[1 2 3]"; got != want {
		t.Fatalf("got resent reqIDs %s, want %s in order", got, want)
	}
	if got := targets(moved); len(got) != 1 || !got[logicAt((x+1)%logicSlots)] {
		t.Fatalf("got targets %v, want only %v", got, logicAt((x+1)%logicSlots))
	}
	// A new request follows the session to its new target.
	if r := requests(h.frame(1, wire.OpSend, 4, &wire.Send{Cseq: 4})); len(r) != 1 || r[0].to != logicAt((x+1)%logicSlots) {
		t.Fatalf("got %v, want reqID 4 to %v", r, logicAt((x+1)%logicSlots))
	}
	// logic-(x+1) answers LOGIN.
	if fs := framesTo(h.respond((x+1)%logicSlots, moved[0].req, wire.OpLoginAck, &wire.LoginAck{UserId: user}, false), 1); len(fs) != 1 || fs[0].Op != wire.OpLoginAck {
		t.Fatalf("got frames %v, want LOGIN_ACK", fs)
	}

	eff = h.handle(node.View{Role: node.RoleLogic, Alive: []bool{true, true, true}}) // x is back
	back := requests(eff)
	if got, want := fmt.Sprint(reqIDs(back)), "[2 3 4]"; got != want {
		t.Fatalf("got fail-back reqIDs %s, want %s in order", got, want)
	}
	if got := targets(back); len(got) != 1 || !got[logicAt(x)] {
		t.Fatalf("got targets %v, want only home %v", got, logicAt(x))
	}

	// The old target answers reqID 2 late: still pending, so it is written.
	if fs := framesTo(h.respond((x+1)%logicSlots, back[0].req, wire.OpSendAck, &wire.SendAck{Seq: 1}, false), 1); len(fs) != 1 || fs[0].ReqID != 2 {
		t.Fatalf("got frames %v, want the SEND_ACK for reqID 2", fs)
	}
	// The home answers reqID 2 too: a duplicate, dropped.
	if fs := framesTo(h.respond(x, back[0].req, wire.OpSendAck, &wire.SendAck{Seq: 1}, false), 1); len(fs) != 0 {
		t.Fatalf("got frames %v for a duplicate answer, want none", fs)
	}
	s := h.e.Stats()
	if s.Failovers != 1 || s.Failbacks != 1 || s.Resends != 6 || s.DuplicatesDropped != 1 {
		t.Errorf("got failovers %d failbacks %d resends %d duplicates %d, want 1 1 6 1", s.Failovers, s.Failbacks, s.Resends, s.DuplicatesDropped)
	}
}

// Restarting logic (its link goes down, then up) moves the session but
// never closes a client connection.
func TestLogicRestartKeepsConnections(t *testing.T) {
	const x = 0
	h := newHarness(t, nil)
	h.login(1, userWithHome(x))
	h.login(2, userWithHome(2))
	var eff []any
	eff = append(eff, h.handle(node.LinkDown{Peer: logicAt(x)})...)
	if r := requests(eff); len(r) != 1 || r[0].to != logicAt(x+1) || r[0].req.ReqId != 1 {
		t.Fatalf("got %v, want the pending LOGIN resent to %v", r, logicAt(x+1))
	}
	eff = append(eff, h.handle(node.LinkUp{Peer: logicAt(x)})...)
	eff = append(eff, h.advance(time.Minute)...)
	if got := closed(eff); len(got) != 0 {
		t.Fatalf("got closes %v, want none", got)
	}
	if h.e.Stats().ConnectionsOpen != 2 {
		t.Fatalf("got %d open connections, want 2", h.e.Stats().ConnectionsOpen)
	}
}

// With every attempt timing out, a request is answered TIMEOUT after
// AttemptsMax sends instead of circling forever.
func TestAttemptsExhausted(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AttemptsMax = 2 })
	h.login(1, "alice")
	h.advance(LogicTimeoutDefault)
	eff := h.advance(LogicTimeoutDefault)
	fs := framesTo(eff, 1)
	if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_TIMEOUT || fs[0].ReqID != 1 {
		t.Fatalf("got frames %v, want ERROR TIMEOUT for reqID 1", fs)
	}
	if len(requests(eff)) != 0 || len(closed(eff)) != 0 {
		t.Fatalf("got %d requests and closes %v, want none", len(requests(eff)), closed(eff))
	}
}

func TestResponseWithCloseAndLogout(t *testing.T) {
	h := newHarness(t, nil)
	eff := h.login(1, "alice")
	eff = h.respond(0, requests(eff)[0].req, wire.OpError, &wire.Error{Code: wire.ErrorCode_UNAUTHENTICATED}, true)
	if fs := framesTo(eff, 1); len(fs) != 1 || got(closed(eff)) != "[1]" {
		t.Fatalf("got frames %v closes %v, want one frame then close [1]", fs, closed(eff))
	}
	if n := len(sentOf[*wire.SessionClosed](eff)); n != 1 {
		t.Errorf("got %d SessionClosed, want 1", n)
	}

	h.login(2, "bob")
	eff = h.frame(2, wire.OpLogout, 5, &wire.Logout{})
	if r := requests(eff); len(r) != 1 || wire.Op(r[0].req.Op) != wire.OpLogout {
		t.Fatalf("got %v, want LOGOUT forwarded", r)
	}
	if got(closed(eff)) != "[2]" {
		t.Fatalf("got closes %v, want [2]", closed(eff))
	}
}

func got(v any) string { return fmt.Sprint(v) }

func pushReq(user string, conn node.ConnID, inc node.Incarnation, seqs ...uint64) *wire.PushRequest {
	m := &wire.PushRequest{ReplyTo: "logic-2", Targets: []*wire.PushTarget{{UserId: user, Conn: uint64(conn), EntryIncarnation: uint64(inc)}}}
	for _, s := range seqs {
		m.Messages = append(m.Messages, &wire.ChatMessage{ConvId: "p:a:b:l", Seq: s, Body: "x"})
	}
	return m
}

func pushOf(t *testing.T, f wire.Frame) *wire.Push {
	t.Helper()
	if f.Op != wire.OpPush || f.ReqID != 0 {
		t.Fatalf("got %s reqID %d, want PUSH reqID 0", f.Op, f.ReqID)
	}
	var p wire.Push
	if err := proto.Unmarshal(f.Body, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestPushAckClears(t *testing.T) {
	h := newHarness(t, nil)
	h.login(1, "bob")
	eff := h.handle(node.Recv{From: logicAt(2), Msg: pushReq("bob", 1, 1, 5, 6)})
	fs := framesTo(eff, 1)
	if len(fs) != 1 {
		t.Fatalf("got %d frames, want 1 PUSH", len(fs))
	}
	p := pushOf(t, fs[0])
	if len(p.Messages) != 2 || p.PushId == 0 {
		t.Fatalf("got push %v, want 2 messages and a push id", p)
	}
	h.frame(1, wire.OpPushAck, 0, &wire.PushAck{PushId: p.PushId})
	eff = h.advance(PushAckTimeoutDefault)
	if n := len(sentOf[*wire.PushFailed](eff)); n != 0 {
		t.Fatalf("got %d PushFailed after the ack, want 0", n)
	}
	if s := h.e.Stats(); s.Pushes != 1 || s.PushAcks != 1 || s.PushTimeouts != 0 {
		t.Errorf("got pushes %d acks %d timeouts %d, want 1 1 0", s.Pushes, s.PushAcks, s.PushTimeouts)
	}
}

// One PUSH_ACK acknowledges several pushes; the one it leaves out still
// times out; one naming more ids than pushes may be pending is refused.
func TestPushAckOfSeveralPushes(t *testing.T) {
	h := newHarness(t, nil)
	h.login(1, "bob")
	var ids []uint64
	for seq := uint64(1); seq <= 3; seq++ {
		fs := framesTo(h.handle(node.Recv{From: logicAt(2), Msg: pushReq("bob", 1, 1, seq)}), 1)
		if len(fs) != 1 {
			t.Fatalf("got %d frames, want 1 PUSH", len(fs))
		}
		ids = append(ids, pushOf(t, fs[0]).PushId)
	}
	h.frame(1, wire.OpPushAck, 0, &wire.PushAck{PushId: ids[0], MorePushIds: []uint64{ids[2]}})
	failed := sentOf[*wire.PushFailed](h.advance(PushAckTimeoutDefault))
	if len(failed) != 1 || len(failed[0].Messages) != 1 || failed[0].Messages[0].Seq != 2 {
		t.Fatalf("got PushFailed %v, want one of seq 2", failed)
	}
	if s := h.e.Stats(); s.PushAcks != 2 || s.PushTimeouts != 1 {
		t.Errorf("got acks %d timeouts %d, want 2 1", s.PushAcks, s.PushTimeouts)
	}
	eff := h.frame(1, wire.OpPushAck, 0, &wire.PushAck{PushId: 1, MorePushIds: make([]uint64, PushesPendingMaxDefault)})
	if fs := framesTo(eff, 1); len(fs) != 1 || fs[0].Op != wire.OpError {
		t.Fatalf("an ack of %d ids got %v, want an ERROR", PushesPendingMaxDefault+1, fs)
	}
}

func TestPushFailed(t *testing.T) {
	cases := []struct {
		name   string
		target func(h *harness) *wire.PushRequest
		after  func(h *harness) []any
	}{
		{"ack timeout", func(h *harness) *wire.PushRequest { return pushReq("bob", 1, 1, 7) },
			func(h *harness) []any { return h.advance(PushAckTimeoutDefault) }},
		{"connection gone", func(h *harness) *wire.PushRequest { return pushReq("bob", 1, 1, 7) },
			func(h *harness) []any { return h.handle(node.ClientDisconnect{Conn: 1, Reason: "eof"}) }},
		{"unknown connection", func(h *harness) *wire.PushRequest { return pushReq("bob", 9, 1, 7) }, nil},
		{"old incarnation", func(h *harness) *wire.PushRequest { return pushReq("bob", 1, 0, 7) }, nil},
		{"other user", func(h *harness) *wire.PushRequest { return pushReq("carol", 1, 1, 7) }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.login(1, "bob")
			eff := h.handle(node.Recv{From: logicAt(2), Msg: c.target(h)})
			if c.after != nil {
				if n := len(sentOf[*wire.PushFailed](eff)); n != 0 {
					t.Fatalf("got %d PushFailed at once, want 0", n)
				}
				eff = c.after(h)
			}
			var failed []nodetest.Sent
			for _, s := range nodetest.Of[nodetest.Sent](eff) {
				if _, ok := s.Msg.(*wire.PushFailed); ok {
					failed = append(failed, s)
				}
			}
			if len(failed) != 1 || failed[0].To != logicAt(2) {
				t.Fatalf("got %v, want one PushFailed to logic-2", failed)
			}
			pf := failed[0].Msg.(*wire.PushFailed)
			if len(pf.Messages) != 1 || pf.Messages[0].Seq != 7 {
				t.Errorf("got messages %v, want seq 7", pf.Messages)
			}
		})
	}
}

func TestSlowConsumerClosed(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PushesPendingMax = 2 })
	h.login(1, "bob")
	h.login(2, "carol")
	h.handle(node.Recv{From: logicAt(2), Msg: pushReq("bob", 1, 1, 1)})
	h.handle(node.Recv{From: logicAt(2), Msg: pushReq("bob", 1, 1, 2)})
	eff := h.handle(node.Recv{From: logicAt(2), Msg: pushReq("bob", 1, 1, 3)})
	if got(closed(eff)) != "[1]" {
		t.Fatalf("got closes %v, want [1]", closed(eff))
	}
	var seqs []uint64
	for _, pf := range sentOf[*wire.PushFailed](eff) {
		for _, m := range pf.Messages {
			seqs = append(seqs, m.Seq)
		}
	}
	if got(seqs) != "[1 2 3]" {
		t.Fatalf("got PushFailed seqs %v, want [1 2 3]", seqs)
	}
	if s := h.e.Stats(); s.SlowConsumerCloses != 1 || s.ConnectionsOpen != 1 {
		t.Errorf("got slow consumer closes %d open %d, want 1 1", s.SlowConsumerCloses, s.ConnectionsOpen)
	}
}

func TestKickClosesOnlyKicked(t *testing.T) {
	h := newHarness(t, nil)
	h.login(1, "bob")
	h.login(2, "bob")
	stale := h.handle(node.Recv{From: logicAt(0), Msg: &wire.KickRequest{Target: &wire.PushTarget{UserId: "bob", Conn: 1, EntryIncarnation: 7}}})
	if len(stale) != 0 {
		t.Fatalf("got %v for a kick of another incarnation, want nothing", nodetest.Describe(stale))
	}
	eff := h.handle(node.Recv{From: logicAt(0), Msg: &wire.KickRequest{Target: &wire.PushTarget{UserId: "bob", Conn: 1, EntryIncarnation: 1}, Reason: "newer login"}})
	fs := framesTo(eff, 1)
	if len(fs) != 1 || fs[0].Op != wire.OpKick {
		t.Fatalf("got frames %v, want KICK", fs)
	}
	if got(closed(eff)) != "[1]" || len(framesTo(eff, 2)) != 0 {
		t.Fatalf("got closes %v, want only [1]", closed(eff))
	}
	if h.e.Stats().ConnectionsOpen != 1 {
		t.Errorf("got %d open, want 1", h.e.Stats().ConnectionsOpen)
	}
}

// A kick by an older login attempt of the session's own process closes the
// connection without a KICK frame (the client logs in again); a newer
// attempt, another process or a kick that names none gets KICK (the client
// stops).
func TestStaleKickClosesWithoutKickFrame(t *testing.T) {
	for _, tc := range []struct {
		name     string
		instance string
		attempt  uint64
		wantKick bool
	}{
		{"older attempt of the same process", "p1", 2, false},
		{"newer attempt of the same process", "p1", 4, true},
		{"another process", "p2", 1, true},
		{"a login that names no process", "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.handle(node.ClientConnect{Conn: 1})
			h.frame(1, wire.OpLogin, 1, &wire.Login{Token: h.token("bob"), DeviceId: "phone", Instance: "p1", Attempt: 3})
			eff := h.handle(node.Recv{From: logicAt(0), Msg: &wire.KickRequest{Target: &wire.PushTarget{UserId: "bob", Conn: 1, EntryIncarnation: 1}, Reason: "newer login", ByInstance: tc.instance, ByAttempt: tc.attempt}})
			fs := framesTo(eff, 1)
			if gotKick := len(fs) == 1 && fs[0].Op == wire.OpKick; gotKick != tc.wantKick || (!tc.wantKick && len(fs) != 0) {
				t.Fatalf("got frames %v, want KICK %v", fs, tc.wantKick)
			}
			if got(closed(eff)) != "[1]" {
				t.Fatalf("got closes %v, want [1]", closed(eff))
			}
			s := h.e.Stats()
			if tc.wantKick && (s.Kicks != 1 || s.Replaced != 0) || !tc.wantKick && (s.Kicks != 0 || s.Replaced != 1) {
				t.Errorf("got kicks %d replaced %d", s.Kicks, s.Replaced)
			}
		})
	}
}

func TestConnsMax(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ConnsMax = 1 })
	h.handle(node.ClientConnect{Conn: 1})
	eff := h.handle(node.ClientConnect{Conn: 2})
	if got(closed(eff)) != "[2]" || h.e.Stats().ConnectionsRejected != 1 {
		t.Fatalf("got closes %v, want [2]", closed(eff))
	}
}

// Regression (found by the simulator, seed 14): a logic link going down while
// a connection has not logged in yet must not touch its (absent) lane.
func TestLinkDownWithUnauthenticatedConnection(t *testing.T) {
	h := newHarness(t, nil)
	h.handle(node.ClientConnect{Conn: 7, Remote: "test"})
	h.login(1, userWithHome(0))
	eff := h.handle(node.LinkDown{Peer: logicAt(0)})
	if got := closed(eff); len(got) != 0 {
		t.Fatalf("got closes %v, want none", got)
	}
	h.handle(node.View{Role: node.RoleLogic, Alive: []bool{true, true, true}})
}
