package entry

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// conn is one app connection and, once logged in, its session.
type conn struct {
	id         node.ConnID
	authed     bool // a valid LOGIN token was presented
	user       string
	device     string
	instance   string // Login.instance: the client process (may be empty)
	attempt    uint64 // Login.attempt: that process's login count
	session    uint64
	lane       *Lane
	loginTimer node.TimerID
	idleTimer  node.TimerID
	lastFrame  time.Time
	pushes     []*push // unacknowledged, in push_id order
	pushNext   uint64
	// shedding: admission control refused one of this session's requests.
	// Its later ones are refused too until everything it had in flight is
	// answered: the client resends from the refused one anyway (go-back-N),
	// and forwarding later ones would only park them in logic behind a
	// send that is not coming, holding admission places for nothing.
	shedding bool
	// reqTag is requestTag{conn: id}, boxed once: every forwarded request's
	// attempt timer carries it.
	reqTag any
}

// forwardAlloc holds a forwarded request's pending entry, the request and
// its origin in one allocation: they are made together on every request
// and live as long as each other (the pending entry holds the request).
type forwardAlloc struct {
	pending Pending
	req     wire.ClientRequest
	origin  wire.Origin
}

// Timer tags.
type (
	loginTag   struct{ conn node.ConnID }
	idleTag    struct{ conn node.ConnID }
	requestTag struct{ conn node.ConnID } // attempt timer; the lane finds the request by timer id
	pushTag    struct {
		conn node.ConnID
		push uint64
	}
)

// forwarded lists the ops a logged-in client may send that go to logic.
var forwarded = map[wire.Op]bool{
	wire.OpLogout: true, wire.OpSend: true, wire.OpSync: true,
	wire.OpConvList: true, wire.OpRead: true, wire.OpHeartbeat: true,
}

func (e *Entry) onConnect(env node.Env, ev node.ClientConnect) {
	if _, dup := e.conns[ev.Conn]; dup {
		env.Log().Error("entry: connect for a connection already open", "conn", ev.Conn)
		return
	}
	if len(e.conns) >= e.cfg.ConnsMax {
		e.stats.ConnectionsRejected++
		e.write(env, ev.Conn, errorFrame(0, 0, wire.ErrorCode_OVERLOADED, "too many connections"))
		env.Close(ev.Conn)
		return
	}
	opened := env.Now()
	if !ev.Accepted.IsZero() && ev.Accepted.Before(opened) {
		opened = ev.Accepted // handled late: the client has been waiting since
	}
	c := &conn{id: ev.Conn, lastFrame: opened}
	c.loginTimer = env.After(e.cfg.LoginDeadline, loginTag{conn: c.id})
	c.idleTimer = env.After(e.cfg.IdleTimeout, idleTag{conn: c.id})
	e.conns[c.id] = c
	e.stats.Connections++
}

func (e *Entry) onFrame(env node.Env, ev node.ClientFrame) {
	c := e.conns[ev.Conn]
	if c == nil {
		return // closed by us; the driver may still hold frames read before
	}
	f := ev.Frame
	e.stats.FramesIn[f.Op]++
	e.stats.FramesInTotal++
	// Before a session, lastFrame is when the connection opened: the only
	// frame an unauthenticated connection may send is its LOGIN.
	opened := c.lastFrame
	c.lastFrame = env.Now()
	switch {
	case !c.authed && f.Op == wire.OpLogin && env.Now().Sub(opened) >= e.cfg.LoginDeadline:
		// Handled only after the login deadline (this entry was paused or
		// the frame was delayed): the client has given up on it and may
		// be logged in elsewhere by now. Accepting it would kick that
		// newer session (logic kicks the older presence), and a kicked
		// client does not log in again: it would be lost for good
		// (bench-standard --swarm seed 134: a paused entry resumed and
		// its stale LOGINs kicked 8% of the clients).
		e.stats.LoginDeadlineCloses++
		e.stats.Unauthenticated++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_UNAUTHENTICATED, "login after the deadline")
	case !c.authed && f.Op == wire.OpLogin:
		e.onLogin(env, c, f)
	case !c.authed:
		e.stats.Unauthenticated++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_UNAUTHENTICATED, "the first frame must be LOGIN")
	case f.Op == wire.OpPushAck:
		e.onPushAck(env, c, f)
	case forwarded[f.Op]:
		e.forward(env, c, f)
	default:
		e.stats.BadFrames++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_BAD_REQUEST, fmt.Sprintf("op %s not allowed from a client", f.Op))
	}
}

// onLogin checks the token itself (the one thing entry decodes besides
// PUSH_ACK), then forwards LOGIN with its raw body.
func (e *Entry) onLogin(env node.Env, c *conn, f wire.Frame) {
	var login wire.Login
	if err := proto.Unmarshal(f.Body, &login); err != nil {
		e.stats.BadFrames++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_BAD_REQUEST, "bad LOGIN body")
		return
	}
	user, err := wire.VerifyToken(e.cfg.Secret, login.Token, env.Now())
	if err != nil {
		e.stats.Unauthenticated++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_UNAUTHENTICATED, err.Error())
		return
	}
	// The device id keys logic's FIFO sessions and is stored in presence:
	// the same rule as ids (and as httpentry's), so it cannot grow them
	// without bound or carry separators. Empty is one unnamed device.
	if login.DeviceId != "" {
		if err := wire.ValidClientMsgID(login.DeviceId); err != nil {
			e.stats.BadFrames++
			e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_BAD_REQUEST, "device_id: "+err.Error())
			return
		}
	}
	if login.Instance != "" {
		if err := wire.ValidClientMsgID(login.Instance); err != nil {
			e.stats.BadFrames++
			e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_BAD_REQUEST, "instance: "+err.Error())
			return
		}
	}
	if e.userConns[user] >= e.cfg.ConnsPerUserMax {
		e.stats.UserConnsRejected++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_RATE_LIMITED,
			fmt.Sprintf("%d connections of this user are open on this entry", e.userConns[user]))
		return
	}
	stop(env, &c.loginTimer)
	e.sessionNext++
	// user is a substring of the token: a copy keeps the session from
	// holding the whole token for as long as it lasts.
	user = strings.Clone(user)
	c.authed, c.user, c.device, c.session = true, user, login.DeviceId, e.sessionNext
	c.instance, c.attempt = strings.Clone(login.Instance), login.Attempt
	e.userConns[user]++
	c.lane = NewLane(user)
	e.forward(env, c, f)
}

func (e *Entry) forward(env node.Env, c *conn, f wire.Frame) {
	if c.lane.Find(f.ReqID) != nil {
		// The answer could not be told apart from the pending one's.
		e.stats.BadFrames++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_BAD_REQUEST, "reqID already pending")
		return
	}
	if c.lane.Len() >= e.cfg.PendingMax {
		e.stats.Overloaded++
		e.write(env, c.id, errorFrame(f.ReqID, f.Op, wire.ErrorCode_OVERLOADED, "too many requests pending"))
		return
	}
	if e.router.Views.Slots(node.RoleLogic) == 0 {
		e.write(env, c.id, errorFrame(f.ReqID, f.Op, wire.ErrorCode_UNAVAILABLE, "no logic configured"))
		return
	}
	if !e.router.Serves(f.Op) {
		e.write(env, c.id, errorFrame(f.ReqID, f.Op, wire.ErrorCode_UNAVAILABLE, "no logic slot serves "+string(BusinessOf(f.Op))))
		return
	}
	if admitted[f.Op] && !e.admitFor(c) {
		e.write(env, c.id, errorFrame(f.ReqID, f.Op, wire.ErrorCode_OVERLOADED, "entry is shedding load: resend later"))
		return
	}
	if c.reqTag == nil {
		c.reqTag = requestTag{conn: c.id}
	}
	fr := &forwardAlloc{}
	fr.origin.Entry = e.self.Of(env.Self())
	fr.origin.Conn = uint64(c.id)
	fr.origin.EntryIncarnation = uint64(env.Incarnation())
	req := &fr.req
	req.Origin = &fr.origin
	req.UserId = c.user
	req.DeviceId = c.device
	req.Op = uint32(f.Op)
	req.ReqId = f.ReqID
	req.Body = slices.Clone(f.Body) // the driver may reuse its read buffer
	req.SessionId = c.session
	e.stats.Forwarded++
	p := &fr.pending
	p.Req, p.Tag, p.admitted, p.sentAt = req, c.reqTag, admitted[f.Op], env.Now()
	e.timedOut(env, c, e.router.Forward(env, c.lane, p))
	if f.Op == wire.OpLogout {
		e.drop(env, c, "logout")
		env.Close(c.id)
	}
}

// timedOut answers requests that ran out of attempts: their outcome is
// unknown, and the client resends them.
func (e *Entry) timedOut(env node.Env, c *conn, exhausted []*Pending) {
	for _, p := range exhausted {
		e.release(env, p, false)
		e.stats.TimedOut++
		e.write(env, c.id, errorFrame(p.Req.ReqId, wire.Op(p.Req.Op), wire.ErrorCode_TIMEOUT, "logic did not answer"))
	}
}

func (e *Entry) onResponse(env node.Env, m *wire.ClientResponse) {
	o := m.GetOrigin()
	c := e.conns[node.ConnID(o.GetConn())]
	if o.GetEntryIncarnation() != uint64(env.Incarnation()) || c == nil || !c.authed {
		e.stats.StaleDropped++
		return
	}
	p := e.router.Answer(env, c.lane, m.ReqId)
	if p == nil {
		e.stats.DuplicatesDropped++
		return
	}
	e.release(env, p, true)
	op := wire.Op(m.Op)
	if !op.IsApp() {
		env.Log().Error("entry: logic answered with a non-app op", "op", op.String())
		op = wire.OpError
		m = &wire.ClientResponse{Body: mustMarshal(&wire.Error{Code: wire.ErrorCode_INTERNAL, Message: "bad answer op"}), Close: m.Close}
	}
	e.write(env, c.id, wire.Frame{Op: op, ReqID: m.ReqId, Body: m.Body})
	if m.Close {
		e.drop(env, c, "closed by logic")
		env.Close(c.id)
	}
}

// admitFor applies admission control to one request of c's session.
func (e *Entry) admitFor(c *conn) bool {
	if c.shedding && c.lane.Len() == 0 {
		c.shedding = false // the refused round is over: try again
	}
	if c.shedding {
		e.admit.refused++
		return false
	}
	if !e.admit.admit() {
		c.shedding = true
		return false
	}
	return true
}

// release ends p's admission, learning from its round trip if answered.
func (e *Entry) release(env node.Env, p *Pending, answered bool) {
	if !p.admitted {
		return
	}
	p.admitted = false
	now := env.Now()
	e.admit.done(now, now.Sub(p.sentAt), answered)
}

func (e *Entry) onIdle(env node.Env, c *conn) {
	idle := env.Now().Sub(c.lastFrame)
	if idle < e.cfg.IdleTimeout {
		c.idleTimer = env.After(e.cfg.IdleTimeout-idle, idleTag{conn: c.id})
		return
	}
	e.stats.IdleCloses++
	e.drop(env, c, "idle")
	env.Close(c.id)
}

// fail writes an ERROR and closes only this connection.
func (e *Entry) fail(env node.Env, c *conn, reqID uint32, op wire.Op, code wire.ErrorCode, msg string) {
	e.write(env, c.id, errorFrame(reqID, op, code, msg))
	e.drop(env, c, code.String())
	env.Close(c.id)
}

// drop forgets a connection: its timers stop, its unacknowledged pushes go
// to PushFailed, and logic hears SessionClosed so presence stops naming it.
// Its pending requests are forgotten; logic's answers to them are dropped.
func (e *Entry) drop(env node.Env, c *conn, reason string) {
	delete(e.conns, c.id)
	stop(env, &c.loginTimer)
	stop(env, &c.idleTimer)
	e.failPushes(env, c, "connection closed: "+reason)
	if !c.authed {
		return
	}
	if e.userConns[c.user]--; e.userConns[c.user] <= 0 {
		delete(e.userConns, c.user)
	}
	for _, p := range e.router.Drop(env, c.lane) {
		e.release(env, p, false)
	}
	if t, ok := e.router.SessionTarget(c.lane); ok {
		env.Send(node.Addr{Role: node.RoleLogic, Slot: t}, &wire.SessionClosed{
			Origin: &wire.Origin{Entry: env.Self().String(), Conn: uint64(c.id), EntryIncarnation: uint64(env.Incarnation())},
			UserId: c.user,
		})
	}
}

func (e *Entry) write(env node.Env, id node.ConnID, f wire.Frame) {
	e.stats.FramesOut[f.Op]++
	e.stats.FramesOutTotal++
	env.ToClient(id, f)
}

func errorFrame(reqID uint32, op wire.Op, code wire.ErrorCode, msg string) wire.Frame {
	return wire.Frame{Op: wire.OpError, ReqID: reqID, Body: mustMarshal(&wire.Error{Code: code, Message: msg, Op: uint32(op)})}
}

// mustMarshal encodes messages entry builds itself; failing is a bug.
func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("entry: marshal %T: %v", m, err))
	}
	return b
}

// stop cancels a timer if one is set and forgets it.
func stop(env node.Env, id *node.TimerID) {
	if *id != 0 {
		env.Cancel(*id)
		*id = 0
	}
}

func sortConnIDs(ids []node.ConnID) { slices.Sort(ids) }

func typeName(m any) string { return fmt.Sprintf("%T", m) }
