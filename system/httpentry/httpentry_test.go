package httpentry

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

var secret = []byte("httpentry-test-secret")

const (
	logicSlots  = 3
	platformKey = "platform-key-1"
)

type harness struct {
	t    *testing.T
	h    *HTTPEntry
	env  *nodetest.Env
	conn node.ConnID // last HTTP conn id used
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	cfg := Config{Topology: map[node.Role]int{node.RoleLogic: logicSlots}, Secret: secret, PlatformKey: platformKey}
	if mod != nil {
		mod(&cfg)
	}
	x := &harness{t: t, h: New(cfg), env: nodetest.New(node.Addr{Role: node.RoleHTTPEntry, Slot: 0})}
	x.h.Start(x.env)
	x.env.Take()
	return x
}

func (x *harness) handle(ev node.Event) []any {
	x.h.Handle(x.env, ev)
	return x.env.Take()
}

func (x *harness) advance(d time.Duration) []any {
	var out []any
	for _, tm := range x.env.Advance(d) {
		out = append(out, x.handle(tm)...)
	}
	return out
}

// do sends one HTTP request as user (no token when user is "") and returns its conn and effects.
func (x *harness) do(user, method, path string, query map[string]string, body string) (node.ConnID, []any) {
	x.conn++
	hdr := map[string]string{}
	if user != "" {
		hdr["Authorization"] = "Bearer " + wire.SignToken(secret, user, x.env.Now().Add(time.Hour))
	}
	if query == nil {
		query = map[string]string{}
	}
	return x.conn, x.handle(node.HTTPRequest{Conn: x.conn, Method: method, Path: path, Query: query, Header: hdr, Body: []byte(body)})
}

// login logs user in and answers LOGIN_ACK from logic; it returns the session's vconn.
func (x *harness) login(user string) uint64 {
	x.t.Helper()
	return x.loginBody(user, `{"device_id":"web1"}`)
}

func (x *harness) loginBody(user, body string) uint64 {
	x.t.Helper()
	conn, eff := x.do(user, "POST", "/v1/login", nil, body)
	reqs := requests(eff)
	if len(reqs) != 1 || wire.Op(reqs[0].req.Op) != wire.OpLogin {
		x.t.Fatalf("login forwarded %v, want one LOGIN:\n%s", reqs, nodetest.Describe(eff))
	}
	eff = x.respond(reqs[0], wire.OpLoginAck, &wire.LoginAck{UserId: user, SessionId: reqs[0].req.SessionId})
	if r := replyTo(x.t, eff, conn); r.Status != http.StatusOK {
		x.t.Fatalf("got login status %d, want 200", r.Status)
	}
	return reqs[0].req.Origin.Conn
}

func (x *harness) respond(r forwardedReq, op wire.Op, body proto.Message) []any {
	b, _ := proto.Marshal(body)
	return x.handle(node.Recv{From: r.to, Msg: &wire.ClientResponse{Origin: r.req.Origin, Op: uint32(op), ReqId: r.req.ReqId, Body: b}})
}

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

func pushFailed(eff []any) []*wire.PushFailed {
	var out []*wire.PushFailed
	for _, s := range nodetest.Of[nodetest.Sent](eff) {
		if m, ok := s.Msg.(*wire.PushFailed); ok {
			out = append(out, m)
		}
	}
	return out
}

func replies(eff []any, conn node.ConnID) []nodetest.HTTPReply {
	var out []nodetest.HTTPReply
	for _, r := range nodetest.Of[nodetest.HTTPReply](eff) {
		if r.Conn == conn {
			out = append(out, r)
		}
	}
	return out
}

func replyTo(t *testing.T, eff []any, conn node.ConnID) nodetest.HTTPReply {
	t.Helper()
	rs := replies(eff, conn)
	if len(rs) != 1 {
		t.Fatalf("got %d replies to conn %d, want 1:\n%s", len(rs), conn, nodetest.Describe(eff))
	}
	if rs[0].ContentType != "application/json" {
		t.Errorf("got content type %q, want application/json", rs[0].ContentType)
	}
	return rs[0]
}

func decode[T proto.Message](t *testing.T, r nodetest.HTTPReply, m T) T {
	t.Helper()
	if err := protojson.Unmarshal(r.Body, m); err != nil {
		t.Fatalf("reply body %s: %v", r.Body, err)
	}
	return m
}

func pushOf(t *testing.T, r nodetest.HTTPReply) *wire.Push {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("got poll status %d (%s), want 200", r.Status, r.Body)
	}
	return decode(t, r, &wire.Push{})
}

func seqs(p *wire.Push) []uint64 {
	var out []uint64
	for _, m := range p.Messages {
		out = append(out, m.Seq)
	}
	return out
}

func same(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func pushReq(user string, vconn uint64, seq ...uint64) node.Recv {
	m := &wire.PushRequest{ReplyTo: "logic-1", Targets: []*wire.PushTarget{{UserId: user, Conn: vconn, EntryIncarnation: 1}}}
	for _, s := range seq {
		m.Messages = append(m.Messages, &wire.ChatMessage{ConvId: "p:alice:bob:l1", Seq: s, SenderId: "alice", Body: "hi"})
	}
	return node.Recv{From: node.Addr{Role: node.RoleLogic, Slot: 1}, Msg: m}
}

func TestLoginSendPollReceivesPush(t *testing.T) {
	x := newHarness(t, nil)
	conn, eff := x.do("bob", "POST", "/v1/login", nil, `{"device_id":"web1"}`)
	reqs := requests(eff)
	if len(reqs) != 1 {
		t.Fatalf("got %d forwarded, want 1", len(reqs))
	}
	r := reqs[0]
	if want := (node.Addr{Role: node.RoleLogic, Slot: route.Home("bob", logicSlots)}); r.to != want {
		t.Errorf("got target %v, want home %v", r.to, want)
	}
	var login wire.Login
	if err := proto.Unmarshal(r.req.Body, &login); err != nil || login.DeviceId != "web1" || login.Token == "" {
		t.Errorf("got LOGIN body %v (%v), want device web1 and the token", &login, err)
	}
	if r.req.Origin.Entry != "httpentry-0" || r.req.Origin.Conn == 0 || r.req.UserId != "bob" {
		t.Errorf("got origin %v user %q, want httpentry-0, a virtual conn, bob", r.req.Origin, r.req.UserId)
	}
	eff = x.respond(r, wire.OpLoginAck, &wire.LoginAck{UserId: "bob", SessionId: 4})
	ack := decode(t, replyTo(t, eff, conn), &wire.LoginAck{})
	if ack.UserId != "bob" || ack.SessionId != 4 {
		t.Errorf("got %v, want user bob session 4", ack)
	}
	vconn := r.req.Origin.Conn

	conn, eff = x.do("bob", "POST", "/v1/send", nil, `{"conv_id":"p:alice:bob:l1","client_msg_id":"bob-web1-1","cseq":"1","body":"hello"}`)
	reqs = requests(eff)
	if len(reqs) != 1 || wire.Op(reqs[0].req.Op) != wire.OpSend || reqs[0].req.Origin.Conn != vconn {
		t.Fatalf("got %v, want one SEND from the session's vconn", reqs)
	}
	var send wire.Send
	if err := proto.Unmarshal(reqs[0].req.Body, &send); err != nil || send.Cseq != 1 || send.Body != "hello" {
		t.Fatalf("got SEND body %v (%v), want cseq 1 body hello", &send, err)
	}
	eff = x.respond(reqs[0], wire.OpSendAck, &wire.SendAck{ConvId: send.ConvId, Seq: 9, Cseq: 1})
	if got := decode(t, replyTo(t, eff, conn), &wire.SendAck{}); got.Seq != 9 {
		t.Errorf("got seq %d, want 9", got.Seq)
	}

	pollConn, eff := x.do("bob", "GET", "/v1/poll", nil, "")
	if len(replies(eff, pollConn)) != 0 || x.h.Stats().PollsParked != 1 {
		t.Fatalf("the poll was answered at once or not parked: %s", nodetest.Describe(eff))
	}
	eff = x.handle(pushReq("bob", vconn, 3, 4))
	p := pushOf(t, replyTo(t, eff, pollConn))
	if !same(seqs(p), []uint64{3, 4}) || p.PushId == 0 {
		t.Fatalf("got push %v, want seqs [3 4] and a push id", p)
	}
}

func TestLogicErrorStatus(t *testing.T) {
	cases := []struct {
		code wire.ErrorCode
		want int
	}{
		{wire.ErrorCode_OUT_OF_ORDER, 409}, {wire.ErrorCode_FORBIDDEN, 403}, {wire.ErrorCode_RATE_LIMITED, 429},
		{wire.ErrorCode_OVERLOADED, 503}, {wire.ErrorCode_TIMEOUT, 504}, {wire.ErrorCode_BAD_REQUEST, 400},
	}
	for _, c := range cases {
		t.Run(c.code.String(), func(t *testing.T) {
			x := newHarness(t, nil)
			x.login("bob")
			conn, eff := x.do("bob", "POST", "/v1/send", nil, `{"conv_id":"p:alice:bob:l1","cseq":"1"}`)
			eff = x.respond(requests(eff)[0], wire.OpError, &wire.Error{Code: c.code, Cseq: 1})
			r := replyTo(t, eff, conn)
			if r.Status != c.want {
				t.Fatalf("got status %d, want %d", r.Status, c.want)
			}
			if e := decode(t, r, &wire.Error{}); e.Code != c.code || e.Cseq != 1 {
				t.Errorf("got %v, want code %s cseq 1", e, c.code)
			}
		})
	}
}

func TestRoutingErrors(t *testing.T) {
	cases := []struct {
		name         string
		user         string
		method, path string
		query        map[string]string
		body         string
		status       int
		code         wire.ErrorCode
	}{
		{"unknown route", "bob", "GET", "/v1/nope", nil, "", 404, wire.ErrorCode_BAD_REQUEST},
		{"wrong method", "bob", "GET", "/v1/send", nil, "", 404, wire.ErrorCode_BAD_REQUEST},
		{"bad json", "bob", "POST", "/v1/send", nil, `{"conv_id":`, 400, wire.ErrorCode_BAD_REQUEST},
		{"bad query", "bob", "GET", "/v1/sync", map[string]string{"after_seq": "x"}, "", 400, wire.ErrorCode_BAD_REQUEST},
		{"no token", "", "POST", "/v1/send", nil, `{}`, 401, wire.ErrorCode_UNAUTHENTICATED},
		{"no session", "carol", "GET", "/v1/convs", nil, "", 401, wire.ErrorCode_UNAUTHENTICATED},
		{"poll without session", "carol", "GET", "/v1/poll", nil, "", 401, wire.ErrorCode_UNAUTHENTICATED},
		{"bad timeout", "bob", "GET", "/v1/poll", map[string]string{"timeout_ms": "-1"}, "", 400, wire.ErrorCode_BAD_REQUEST},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newHarness(t, nil)
			x.login("bob")
			conn, eff := x.do(c.user, c.method, c.path, c.query, c.body)
			r := replyTo(t, eff, conn)
			if r.Status != c.status {
				t.Fatalf("got status %d (%s), want %d", r.Status, r.Body, c.status)
			}
			if e := decode(t, r, &wire.Error{}); e.Code != c.code {
				t.Errorf("got code %s, want %s", e.Code, c.code)
			}
			if len(requests(eff)) != 0 {
				t.Errorf("a rejected request was forwarded")
			}
		})
	}
}

func TestForwardedQueries(t *testing.T) {
	x := newHarness(t, nil)
	x.login("bob")
	_, eff := x.do("bob", "GET", "/v1/sync", map[string]string{"conv_id": "p:alice:bob:l1", "after_seq": "17", "limit": "5"}, "")
	var s wire.Sync
	if r := requests(eff); len(r) != 1 || proto.Unmarshal(r[0].req.Body, &s) != nil || s.AfterSeq != 17 || s.Limit != 5 || s.ConvId != "p:alice:bob:l1" {
		t.Fatalf("got %v / %v, want SYNC after 17 limit 5", r, &s)
	}
	_, eff = x.do("bob", "GET", "/v1/convs", map[string]string{"limit": "20"}, "")
	var cl wire.ConvList
	if r := requests(eff); len(r) != 1 || wire.Op(r[0].req.Op) != wire.OpConvList || proto.Unmarshal(r[0].req.Body, &cl) != nil || cl.Limit != 20 {
		t.Fatalf("got %v / %v, want CONV_LIST limit 20", r, &cl)
	}
}

func TestSecondPollAnswersFirstEmpty(t *testing.T) {
	x := newHarness(t, nil)
	x.login("bob")
	first, _ := x.do("bob", "GET", "/v1/poll", nil, "")
	second, eff := x.do("bob", "GET", "/v1/poll", nil, "")
	if p := pushOf(t, replyTo(t, eff, first)); len(p.Messages) != 0 {
		t.Fatalf("got %v for the first poll, want an empty push", p)
	}
	if len(replies(eff, second)) != 0 {
		t.Fatalf("the second poll was answered, want it parked")
	}
	if s := x.h.Stats(); s.PollsParked != 1 || s.PollsReplaced != 1 {
		t.Errorf("got parked %d replaced %d, want 1 1", s.PollsParked, s.PollsReplaced)
	}
}

func TestPollTimeout(t *testing.T) {
	cases := []struct {
		name  string
		query map[string]string
		wait  time.Duration
	}{
		{"default", nil, PollTimeoutDefault},
		{"asked", map[string]string{"timeout_ms": "1500"}, 1500 * time.Millisecond},
		{"capped", map[string]string{"timeout_ms": "600000"}, PollTimeoutMax},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newHarness(t, nil)
			x.login("bob")
			conn, _ := x.do("bob", "GET", "/v1/poll", c.query, "")
			if eff := x.advance(c.wait - time.Millisecond); len(replies(eff, conn)) != 0 {
				t.Fatalf("answered before %v", c.wait)
			}
			eff := x.advance(time.Millisecond)
			if p := pushOf(t, replyTo(t, eff, conn)); len(p.Messages) != 0 {
				t.Fatalf("got %v, want an empty push", p)
			}
			if x.h.Stats().PollsParked != 0 {
				t.Errorf("the poll is still parked")
			}
		})
	}
}

func TestParkedPollsCap(t *testing.T) {
	x := newHarness(t, func(c *Config) { c.ParkedPollsMax = 2 })
	for _, u := range []string{"u1", "u2", "u3"} {
		x.login(u)
	}
	x.do("u1", "GET", "/v1/poll", nil, "")
	x.do("u2", "GET", "/v1/poll", nil, "")
	// u1 replacing its own poll does not count twice.
	if _, eff := x.do("u1", "GET", "/v1/poll", nil, ""); len(nodetest.Of[nodetest.HTTPReply](eff)) != 1 {
		t.Fatalf("got %v, want only the replaced poll answered", nodetest.Describe(eff))
	}
	conn, eff := x.do("u3", "GET", "/v1/poll", nil, "")
	r := replyTo(t, eff, conn)
	if r.Status != http.StatusServiceUnavailable || decode(t, r, &wire.Error{}).Code != wire.ErrorCode_OVERLOADED {
		t.Fatalf("got %d %s, want 503 OVERLOADED", r.Status, r.Body)
	}
}

func TestCanceledPollIsCleared(t *testing.T) {
	x := newHarness(t, nil)
	vconn := x.login("bob")
	conn, _ := x.do("bob", "GET", "/v1/poll", nil, "")
	x.handle(node.HTTPCanceled{Conn: conn})
	if x.h.Stats().PollsParked != 0 {
		t.Fatalf("the canceled poll is still parked")
	}
	eff := x.handle(pushReq("bob", vconn, 1))
	if len(nodetest.Of[nodetest.HTTPReply](eff)) != 0 {
		t.Fatalf("a push answered a canceled poll")
	}
	// The push waits in the buffer for the next poll.
	conn, eff = x.do("bob", "GET", "/v1/poll", nil, "")
	if p := pushOf(t, replyTo(t, eff, conn)); !same(seqs(p), []uint64{1}) {
		t.Fatalf("got %v, want seq 1", seqs(p))
	}
}

// ack acknowledges the previous poll's messages; without it they are sent
// again in the next poll answer; never acknowledged, they go to PushFailed.
func TestPollAckAndRedelivery(t *testing.T) {
	x := newHarness(t, nil)
	vconn := x.login("bob")
	x.handle(pushReq("bob", vconn, 1, 2))
	conn, eff := x.do("bob", "GET", "/v1/poll", nil, "")
	first := pushOf(t, replyTo(t, eff, conn))
	if !same(seqs(first), []uint64{1, 2}) {
		t.Fatalf("got %v, want [1 2]", seqs(first))
	}
	x.handle(pushReq("bob", vconn, 3))
	// No ack: 1 and 2 come again, before 3.
	conn, eff = x.do("bob", "GET", "/v1/poll", nil, "")
	second := pushOf(t, replyTo(t, eff, conn))
	if !same(seqs(second), []uint64{1, 2, 3}) || second.PushId == first.PushId {
		t.Fatalf("got %v id %d, want [1 2 3] with a new push id", seqs(second), second.PushId)
	}
	// Ack: nothing is re-sent, the poll parks, nothing fails later.
	conn, eff = x.do("bob", "GET", "/v1/poll", map[string]string{"ack": strconv.FormatUint(second.PushId, 10), "timeout_ms": "100000"}, "")
	if len(replies(eff, conn)) != 0 {
		t.Fatalf("got a reply after the ack, want the poll parked")
	}
	if pf := pushFailed(x.advance(PushAckTimeoutDefault)); len(pf) != 0 {
		t.Fatalf("got %d PushFailed after the ack, want 0", len(pf))
	}
	if s := x.h.Stats(); s.PushAcks != 1 || s.Redeliveries != 2 {
		t.Errorf("got acks %d redeliveries %d, want 1 2", s.PushAcks, s.Redeliveries)
	}
}

func TestUnackedPollAnswerGoesToPushFailed(t *testing.T) {
	x := newHarness(t, nil)
	vconn := x.login("bob")
	conn, _ := x.do("bob", "GET", "/v1/poll", nil, "")
	eff := x.handle(pushReq("bob", vconn, 5))
	pushOf(t, replyTo(t, eff, conn))
	if pf := pushFailed(x.advance(PushAckTimeoutDefault - time.Millisecond)); len(pf) != 0 {
		t.Fatalf("got PushFailed before pushAckTimeout")
	}
	eff = x.advance(time.Millisecond)
	sent := nodetest.Of[nodetest.Sent](eff)
	if len(sent) != 1 || sent[0].To != (node.Addr{Role: node.RoleLogic, Slot: 1}) {
		t.Fatalf("got %v, want one PushFailed to logic-1", sent)
	}
	if pf := sent[0].Msg.(*wire.PushFailed); pf.UserId != "bob" || len(pf.Messages) != 1 || pf.Messages[0].Seq != 5 {
		t.Fatalf("got %v, want bob seq 5", pf)
	}
}

func TestPushBufferOverflow(t *testing.T) {
	x := newHarness(t, func(c *Config) { c.PushBufferMax = 2 })
	vconn := x.login("bob")
	eff := x.handle(pushReq("bob", vconn, 1, 2, 3))
	pf := pushFailed(eff)
	if len(pf) != 1 || len(pf[0].Messages) != 1 || pf[0].Messages[0].Seq != 1 {
		t.Fatalf("got %v, want PushFailed for the oldest, seq 1", pf)
	}
	conn, eff := x.do("bob", "GET", "/v1/poll", nil, "")
	if p := pushOf(t, replyTo(t, eff, conn)); !same(seqs(p), []uint64{2, 3}) {
		t.Fatalf("got %v, want [2 3]", seqs(p))
	}
}

func TestPushToUnknownSessionFails(t *testing.T) {
	x := newHarness(t, nil)
	vconn := x.login("bob")
	for name, ev := range map[string]node.Recv{"old vconn": pushReq("bob", vconn+100, 1), "no session": pushReq("zed", 1, 1)} {
		t.Run(name, func(t *testing.T) {
			if pf := pushFailed(x.handle(ev)); len(pf) != 1 {
				t.Fatalf("got %d PushFailed, want 1", len(pf))
			}
		})
	}
}

func TestRequestTimeoutAndFailover(t *testing.T) {
	x := newHarness(t, nil)
	x.login("bob")
	home := route.Home("bob", logicSlots)
	conn, eff := x.do("bob", "POST", "/v1/send", nil, `{"conv_id":"p:alice:bob:l1","cseq":"1"}`)
	first := requests(eff)
	eff = x.advance(LogicTimeoutDefault)
	moved := requests(eff)
	if len(moved) != 1 || moved[0].to.Slot != (home+1)%logicSlots || moved[0].req != first[0].req {
		t.Fatalf("got %v, want the same request resent to slot %d", moved, (home+1)%logicSlots)
	}
	eff = x.advance(RequestTimeoutDefault - LogicTimeoutDefault)
	r := replyTo(t, eff, conn)
	if r.Status != http.StatusGatewayTimeout || decode(t, r, &wire.Error{}).Code != wire.ErrorCode_TIMEOUT {
		t.Fatalf("got %d %s, want 504 TIMEOUT", r.Status, r.Body)
	}
	// A late answer is dropped.
	if eff := x.respond(moved[0], wire.OpSendAck, &wire.SendAck{Seq: 1}); len(nodetest.Of[nodetest.HTTPReply](eff)) != 0 {
		t.Fatalf("a late answer was written")
	}
	// Attempts at 0s, 2s (slot x+1) and 4s (slot x+2), then the 5s deadline.
	if s := x.h.Stats(); s.Failovers != 2 || s.RequestTimeouts != 1 || s.DuplicatesDropped != 1 {
		t.Errorf("got failovers %d timeouts %d duplicates %d, want 2 1 1", s.Failovers, s.RequestTimeouts, s.DuplicatesDropped)
	}
}

func TestKickEndsSession(t *testing.T) {
	x := newHarness(t, nil)
	vconn := x.login("bob")
	conn, _ := x.do("bob", "GET", "/v1/poll", nil, "")
	x.handle(pushReq("bob", vconn, 8))
	x.handle(pushReq("bob", vconn, 9)) // buffered: the poll was answered with 8
	eff := x.handle(node.Recv{From: node.Addr{Role: node.RoleLogic, Slot: 0}, Msg: &wire.KickRequest{Target: &wire.PushTarget{UserId: "bob", Conn: vconn, EntryIncarnation: 1}}})
	var failed []uint64
	for _, pf := range pushFailed(eff) {
		for _, m := range pf.Messages {
			failed = append(failed, m.Seq)
		}
	}
	if !same(failed, []uint64{8, 9}) {
		t.Fatalf("got PushFailed %v, want [8 9]", failed)
	}
	if len(nodetest.Of[nodetest.Sent](eff)) != 2 || x.h.Stats().SessionsOpen != 0 {
		t.Fatalf("got %s, want PushFailed and SessionClosed and no session", nodetest.Describe(eff))
	}
	_ = conn
}

// A kick by an older login attempt of the session's own process ends the
// session UNAUTHENTICATED (the client logs in again), not KICKED (it stops).
func TestStaleKickEndsSessionUnauthenticated(t *testing.T) {
	x := newHarness(t, nil)
	vconn := x.loginBody("bob", `{"device_id":"web1","instance":"p1","attempt":"3"}`)
	conn, _ := x.do("bob", "GET", "/v1/poll", nil, "")
	eff := x.handle(node.Recv{From: node.Addr{Role: node.RoleLogic, Slot: 0}, Msg: &wire.KickRequest{Target: &wire.PushTarget{UserId: "bob", Conn: vconn, EntryIncarnation: 1}, ByInstance: "p1", ByAttempt: 2}})
	r := replyTo(t, eff, conn)
	if r.Status != http.StatusUnauthorized || decode(t, r, &wire.Error{}).Code != wire.ErrorCode_UNAUTHENTICATED {
		t.Fatalf("parked poll got %d %s, want 401 UNAUTHENTICATED", r.Status, r.Body)
	}
	if s := x.h.Stats(); s.Replaced != 1 || s.Kicks != 0 || s.SessionsOpen != 0 {
		t.Fatalf("replaced %d kicks %d sessions %d, want 1 0 0", s.Replaced, s.Kicks, s.SessionsOpen)
	}
	// A newer attempt of the same process kicks.
	vconn = x.loginBody("bob", `{"device_id":"web1","instance":"p1","attempt":"4"}`)
	x.handle(node.Recv{From: node.Addr{Role: node.RoleLogic, Slot: 0}, Msg: &wire.KickRequest{Target: &wire.PushTarget{UserId: "bob", Conn: vconn, EntryIncarnation: 1}, ByInstance: "p1", ByAttempt: 5}})
	if s := x.h.Stats(); s.Kicks != 1 {
		t.Fatalf("kicks %d after a newer attempt's kick, want 1", s.Kicks)
	}
}

func TestSessionExpires(t *testing.T) {
	x := newHarness(t, nil)
	x.login("bob")
	eff := x.advance(SessionIdleMaxDefault)
	if x.h.Stats().SessionsOpen != 0 {
		t.Fatalf("the session did not expire")
	}
	var closed int
	for _, s := range nodetest.Of[nodetest.Sent](eff) {
		if _, ok := s.Msg.(*wire.SessionClosed); ok {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("got %d SessionClosed, want 1", closed)
	}
}

func TestPlatformAPI(t *testing.T) {
	notice := `{"notice_id":"n-1","user_id":"bob","kind":"order_paid","body":"paid"}`
	cases := []struct {
		name    string
		path    string
		key     string
		body    string
		status  int    // immediate answer; 0 when it waits for the publish
		subject string // expected publish
		msgID   string
		outcome node.Outcome
	}{
		{"notice ok", "/v1/platform/notice", platformKey, notice, 0, mq.PlatformNotice, "n-1", node.OK},
		{"notice publish failed", "/v1/platform/notice", platformKey, notice, 0, mq.PlatformNotice, "n-1", node.Unknown},
		{"broadcast ok", "/v1/platform/broadcast", platformKey, `{"broadcast_id":"b-1","kind":"promo","body":"sale"}`, 0, mq.PlatformBroadcast, "b-1", node.OK},
		{"no key", "/v1/platform/notice", "", notice, 401, "", "", 0},
		{"wrong key", "/v1/platform/notice", "platform-key-2", notice, 401, "", "", 0},
		{"bad json", "/v1/platform/notice", platformKey, `{"notice_id":1`, 400, "", "", 0},
		{"bad user", "/v1/platform/notice", platformKey, `{"notice_id":"n-1","user_id":"b ob","kind":"k","body":"x"}`, 400, "", "", 0},
		{"no id", "/v1/platform/broadcast", platformKey, `{"kind":"k","body":"x"}`, 400, "", "", 0},
		{"bad utf8", "/v1/platform/broadcast", platformKey, "{\"broadcast_id\":\"b\",\"kind\":\"k\",\"body\":\"\xff\"}", 400, "", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newHarness(t, nil)
			hdr := map[string]string{}
			if c.key != "" {
				hdr["X-Platform-Key"] = c.key
			}
			eff := x.handle(node.HTTPRequest{Conn: 77, Method: "POST", Path: c.path, Header: hdr, Body: []byte(c.body)})
			pubs := nodetest.Of[nodetest.PublishReq](eff)
			if c.status != 0 {
				if r := replyTo(t, eff, 77); r.Status != c.status || len(pubs) != 0 {
					t.Fatalf("got status %d and %d publishes, want %d and none", r.Status, len(pubs), c.status)
				}
				return
			}
			if len(pubs) != 1 || pubs[0].Subject != c.subject || pubs[0].MsgID != c.msgID {
				t.Fatalf("got %v, want one publish to %s with msgID %s", pubs, c.subject, c.msgID)
			}
			if len(replies(eff, 77)) != 0 {
				t.Fatalf("answered before the publish completed")
			}
			var err error
			if c.outcome != node.OK {
				err = errTest
			}
			eff = x.handle(node.Completion{Req: pubs[0].Req, Outcome: c.outcome, Err: err})
			want := http.StatusAccepted
			if c.outcome != node.OK {
				want = http.StatusServiceUnavailable
			}
			if r := replyTo(t, eff, 77); r.Status != want {
				t.Fatalf("got status %d, want %d", r.Status, want)
			}
		})
	}
}

type testError struct{}

func (testError) Error() string { return "test: publish timed out" }

var errTest = testError{}

func TestPlatformPayloadDecodes(t *testing.T) {
	x := newHarness(t, nil)
	eff := x.handle(node.HTTPRequest{Conn: 1, Method: "POST", Path: "/v1/platform/notice", Header: map[string]string{"X-Platform-Key": platformKey},
		Body: []byte(`{"notice_id":"n-9","user_id":"bob","kind":"trade","body":"shipped"}`)})
	pubs := nodetest.Of[nodetest.PublishReq](eff)
	var n wire.PlatformNotice
	if len(pubs) != 1 || proto.Unmarshal(pubs[0].Data, &n) != nil || n.UserId != "bob" || n.Body != "shipped" {
		t.Fatalf("got %v, want the protobuf notice for bob", pubs)
	}
}
