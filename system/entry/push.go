package entry

import (
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// push is one PUSH frame awaiting its PUSH_ACK.
type push struct {
	id       uint64
	replyTo  string
	user     string
	messages []*wire.ChatMessage
	timer    node.TimerID
	// frame is the PUSH body's message, made with the push (one allocation
	// for both); it holds nothing the push does not hold already.
	frame wire.Push
}

// onPush writes the messages to every target that is a live session of its
// user at this incarnation; the others fail at once so logic takes the
// offline path without waiting.
func (e *Entry) onPush(env node.Env, m *wire.PushRequest) {
	for _, t := range m.Targets {
		c := e.conns[node.ConnID(t.Conn)]
		if t.EntryIncarnation != uint64(env.Incarnation()) || c == nil || !c.authed || c.user != t.UserId {
			e.pushFailed(env, m.ReplyTo, t.UserId, m.Messages, "no such connection")
			continue
		}
		e.pushTo(env, c, m)
	}
}

func (e *Entry) pushTo(env node.Env, c *conn, m *wire.PushRequest) {
	c.pushNext++
	p := &push{id: c.pushNext, replyTo: m.ReplyTo, user: c.user, messages: m.Messages}
	c.pushes = append(c.pushes, p)
	if len(c.pushes) > e.cfg.PushesPendingMax {
		// A client that does not keep up would make entry hold its pushes
		// without bound: cut it off (nats-server's slow consumer).
		e.stats.SlowConsumerCloses++
		e.drop(env, c, "slow consumer")
		env.Close(c.id)
		return
	}
	p.frame.Messages, p.frame.PushId = m.Messages, p.id
	body := mustMarshal(&p.frame)
	e.write(env, c.id, wire.Frame{Op: wire.OpPush, Body: body})
	p.timer = env.After(e.cfg.PushAckTimeout, pushTag{conn: c.id, push: p.id})
	e.stats.Pushes++
}

func (e *Entry) onPushAck(env node.Env, c *conn, f wire.Frame) {
	var ack wire.PushAck
	if err := proto.Unmarshal(f.Body, &ack); err != nil {
		e.stats.BadFrames++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_BAD_REQUEST, "bad PUSH_ACK body")
		return
	}
	// More ids than pushes can be pending is no honest client's ack, and
	// each id is a scan of the pending pushes.
	if len(ack.MorePushIds) >= e.cfg.PushesPendingMax {
		e.stats.BadFrames++
		e.fail(env, c, f.ReqID, f.Op, wire.ErrorCode_BAD_REQUEST, "PUSH_ACK with too many ids")
		return
	}
	e.ackPush(env, c, ack.PushId)
	for _, id := range ack.MorePushIds {
		e.ackPush(env, c, id)
	}
}

// ackPush forgets push id of c. An ack after the timeout finds nothing:
// the messages already took the offline path.
func (e *Entry) ackPush(env node.Env, c *conn, id uint64) {
	for i, p := range c.pushes {
		if p.id == id {
			env.Cancel(p.timer)
			c.pushes = append(c.pushes[:i], c.pushes[i+1:]...)
			e.stats.PushAcks++
			return
		}
	}
}

func (e *Entry) onPushTimeout(env node.Env, c *conn, id uint64, timer node.TimerID) {
	for i, p := range c.pushes {
		if p.id == id && p.timer == timer {
			c.pushes = append(c.pushes[:i], c.pushes[i+1:]...)
			e.stats.PushTimeouts++
			e.pushFailed(env, p.replyTo, p.user, p.messages, "push not acknowledged in time")
			return
		}
	}
}

// failPushes sends PushFailed for every unacknowledged push of c, in push order.
func (e *Entry) failPushes(env node.Env, c *conn, reason string) {
	for _, p := range c.pushes {
		stop(env, &p.timer)
		e.pushFailed(env, p.replyTo, p.user, p.messages, reason)
	}
	c.pushes = nil
}

func (e *Entry) pushFailed(env node.Env, replyTo, user string, msgs []*wire.ChatMessage, reason string) {
	to, err := node.ParseAddr(replyTo)
	if err != nil {
		env.Log().Error("entry: push with a bad reply_to", "reply_to", replyTo, "err", err)
		return
	}
	e.stats.PushesFailed++
	env.Send(to, &wire.PushFailed{UserId: user, Messages: msgs, Reason: reason})
}

// onKick closes the named connection if it is still that user's session here.
func (e *Entry) onKick(env node.Env, m *wire.KickRequest) {
	t := m.GetTarget()
	c := e.conns[node.ConnID(t.GetConn())]
	if t.GetEntryIncarnation() != uint64(env.Incarnation()) || c == nil || !c.authed || c.user != t.GetUserId() {
		e.stats.StaleDropped++
		return
	}
	if StaleKick(m, c.instance, c.attempt) {
		// No KICK frame: the login that replaced this session is an older
		// attempt of the same client process, handled late. The client
		// reconnects and logs in again, which puts presence back.
		e.stats.Replaced++
		e.drop(env, c, "replaced")
		env.Close(c.id)
		return
	}
	e.stats.Kicks++
	e.write(env, c.id, wire.Frame{Op: wire.OpKick, Body: mustMarshal(&wire.Kick{Reason: m.Reason})})
	e.drop(env, c, "kicked")
	env.Close(c.id)
}

// StaleKick: the login behind kick is an older attempt of the same client
// process than the session's own login (instance, attempt). Without an
// instance on both sides nothing can be told, and the kick stands.
func StaleKick(kick *wire.KickRequest, instance string, attempt uint64) bool {
	return instance != "" && kick.GetByInstance() == instance && kick.GetByAttempt() < attempt
}
