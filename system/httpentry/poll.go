package httpentry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// session is a user's long-poll session: a virtual connection that presence
// points at, a bounded buffer of pushed messages, and at most one parked poll.
type session struct {
	user     string
	device   string
	instance string // Login.instance of the latest login (may be empty)
	attempt  uint64 // Login.attempt of the latest login
	vconn    uint64 // virtual connection id of the latest login, named in presence
	id       uint64 // session_id of the latest login
	loggedIn bool   // logic answered LOGIN_ACK
	lane     *entry.Lane

	buffer   []item    // pushed, not yet in a poll answer (re-sent ones first)
	inflight *delivery // the last poll answer with messages, until acked
	pushNext uint64

	poll      node.ConnID // parked poll; 0 if none
	pollTimer node.TimerID
	idleTimer node.TimerID

	lastActive    time.Time // last login or poll
	lastHeartbeat time.Time // last time presence was refreshed at logic
}

// item is one buffered message and who hears if it is not delivered.
type item struct {
	msg        *wire.ChatMessage
	replyTo    string
	deliveries int
}

// delivery is a poll answer awaiting its ack (the next poll's ack=push_id).
type delivery struct {
	id    uint64
	items []item
	timer node.TimerID
}

func (h *HTTPEntry) newSession(env node.Env, user string) *session {
	s := &session{user: user, lane: entry.NewLane(user)}
	s.idleTimer = env.After(h.cfg.SessionIdleMax, idleTag{user: user})
	h.sessions[user] = s
	h.stats.SessionsCreated++
	return s
}

// unpark removes the parked poll and returns its connection.
func (s *session) unpark(env node.Env, h *HTTPEntry) node.ConnID {
	conn := s.poll
	delete(h.polls, conn)
	env.Cancel(s.pollTimer)
	s.poll, s.pollTimer = 0, 0
	return conn
}

func (h *HTTPEntry) poll(env node.Env, r node.HTTPRequest) {
	s := h.sessionOf(env, r)
	if s == nil {
		return
	}
	ack, err := queryUint(r.Query, "ack", 64)
	if err != nil {
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	timeout, err := pollTimeout(r.Query)
	if err != nil {
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	h.stats.Polls++
	s.lastActive = env.Now()
	h.acknowledge(env, s, ack)
	h.heartbeat(env, s)
	if s.poll != 0 {
		// One parked poll per user: the newer one wins.
		h.stats.PollsReplaced++
		h.answerPoll(env, s, s.unpark(env, h), false)
	}
	switch {
	case len(s.buffer) > 0 || timeout == 0:
		h.answerPoll(env, s, r.Conn, true)
	case len(h.polls) >= h.cfg.ParkedPollsMax:
		h.overloaded(env, r.Conn, "too many parked polls")
	default:
		s.poll = r.Conn
		s.pollTimer = env.After(timeout, pollTag{user: s.user})
		h.polls[r.Conn] = s
	}
}

// pollTimeout reads timeout_ms: absent → PollTimeoutDefault, capped at PollTimeoutMax.
func pollTimeout(q map[string]string) (time.Duration, error) {
	v, ok := q["timeout_ms"]
	if !ok || v == "" {
		return PollTimeoutDefault, nil
	}
	ms, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, err
	}
	return min(time.Duration(ms)*time.Millisecond, PollTimeoutMax), nil
}

// acknowledge settles the previous poll answer: acked, it is done; not
// acked, its messages go back to the front of the buffer to be re-sent
// (each at most DeliveriesMax times, then PushFailed).
func (h *HTTPEntry) acknowledge(env node.Env, s *session, ack uint64) {
	d := s.inflight
	if d == nil {
		return
	}
	s.inflight = nil
	env.Cancel(d.timer)
	if ack == d.id {
		h.stats.PushAcks++
		return
	}
	var again, failed []item
	for _, it := range d.items {
		if it.deliveries >= DeliveriesMax {
			failed = append(failed, it)
		} else {
			again = append(again, it)
		}
	}
	h.stats.Redeliveries += uint64(len(again))
	h.failItems(env, s.user, failed, "poll answer never acknowledged")
	s.buffer = append(again, s.buffer...)
}

// answerPoll answers a poll with what the buffer holds (at most
// PushBatchMax messages) when withData, else with an empty Push.
func (h *HTTPEntry) answerPoll(env node.Env, s *session, conn node.ConnID, withData bool) {
	if !withData || len(s.buffer) == 0 {
		h.reply(env, conn, http.StatusOK, &wire.Push{})
		return
	}
	n := min(len(s.buffer), PushBatchMax)
	items := make([]item, n)
	copy(items, s.buffer[:n])
	s.buffer = s.buffer[n:]
	msgs := make([]*wire.ChatMessage, n)
	for i := range items {
		items[i].deliveries++
		msgs[i] = items[i].msg
	}
	s.pushNext++
	s.inflight = &delivery{id: s.pushNext, items: items, timer: env.After(h.cfg.PushAckTimeout, deliveryTag{user: s.user})}
	h.stats.PushesDelivered++
	h.reply(env, conn, http.StatusOK, &wire.Push{Messages: msgs, PushId: s.pushNext})
}

// heartbeat keeps the session's presence fresh at logic: a long-poll client
// sends no HEARTBEAT of its own, its polls are its sign of life.
func (h *HTTPEntry) heartbeat(env node.Env, s *session) {
	if env.Now().Sub(s.lastHeartbeat) < h.cfg.HeartbeatEvery || !s.loggedIn {
		return
	}
	s.lastHeartbeat = env.Now()
	h.forward(env, s, 0, wire.OpHeartbeat, mustMarshal(&wire.Heartbeat{ClientTimeMs: env.Now().UnixMilli()}))
}

// onPush buffers messages for sessions that match the target (same user,
// latest login's virtual connection, this incarnation) and wakes their poll.
func (h *HTTPEntry) onPush(env node.Env, m *wire.PushRequest) {
	for _, t := range m.Targets {
		s := h.sessions[t.UserId]
		if s == nil || s.vconn != t.Conn || t.EntryIncarnation != uint64(env.Incarnation()) {
			h.failItems(env, t.UserId, itemsOf(m), "no such session")
			continue
		}
		s.buffer = append(s.buffer, itemsOf(m)...)
		h.stats.PushesBuffered += uint64(len(m.Messages))
		if over := len(s.buffer) - h.cfg.PushBufferMax; over > 0 {
			// Drop the oldest: logic takes the offline path for them, and the
			// client's periodic sync fills the gap.
			h.stats.BufferOverflows += uint64(over)
			h.failItems(env, s.user, s.buffer[:over], "push buffer full")
			s.buffer = append([]item(nil), s.buffer[over:]...)
		}
		if s.poll != 0 {
			h.answerPoll(env, s, s.unpark(env, h), true)
		}
	}
}

func itemsOf(m *wire.PushRequest) []item {
	out := make([]item, len(m.Messages))
	for i, msg := range m.Messages {
		out[i] = item{msg: msg, replyTo: m.ReplyTo}
	}
	return out
}

// failItems sends PushFailed for items, one message per run of items with
// the same reply_to, in buffer order.
func (h *HTTPEntry) failItems(env node.Env, user string, items []item, reason string) {
	for i := 0; i < len(items); {
		j := i
		var msgs []*wire.ChatMessage
		for ; j < len(items) && items[j].replyTo == items[i].replyTo; j++ {
			msgs = append(msgs, items[j].msg)
		}
		to, err := node.ParseAddr(items[i].replyTo)
		if err != nil {
			env.Log().Error("httpentry: push with a bad reply_to", "reply_to", items[i].replyTo, "err", err)
		} else {
			h.stats.PushesFailed++
			env.Send(to, &wire.PushFailed{UserId: user, Messages: msgs, Reason: reason})
		}
		i = j
	}
}

func (h *HTTPEntry) onKick(env node.Env, m *wire.KickRequest) {
	t := m.GetTarget()
	s := h.sessions[t.GetUserId()]
	if s == nil || s.vconn != t.GetConn() || t.GetEntryIncarnation() != uint64(env.Incarnation()) {
		h.stats.StaleDropped++
		return
	}
	if entry.StaleKick(m, s.instance, s.attempt) {
		// Not KICKED, which stops the client: the login that replaced the
		// session is an older attempt of the same client process, handled
		// late; the client logs in again.
		h.stats.Replaced++
		h.endSession(env, s, wire.ErrorCode_UNAUTHENTICATED, "replaced: "+m.Reason)
		return
	}
	h.stats.Kicks++
	h.endSession(env, s, wire.ErrorCode_KICKED, "kicked: "+m.Reason)
}

func (h *HTTPEntry) onIdle(env node.Env, s *session) {
	idle := env.Now().Sub(s.lastActive)
	if s.poll != 0 || idle < h.cfg.SessionIdleMax {
		s.idleTimer = env.After(max(h.cfg.SessionIdleMax-idle, time.Second), idleTag{user: s.user})
		return
	}
	h.stats.SessionsExpired++
	h.endSession(env, s, wire.ErrorCode_UNAUTHENTICATED, "session expired")
}

// endSession removes a session: its parked poll and waiting requests are
// answered with code, undelivered messages go to PushFailed, and logic hears
// SessionClosed so presence stops naming it.
func (h *HTTPEntry) endSession(env node.Env, s *session, code wire.ErrorCode, reason string) {
	delete(h.sessions, s.user)
	env.Cancel(s.idleTimer)
	if s.poll != 0 {
		h.replyError(env, s.unpark(env, h), code, reason)
	}
	var held []item
	if s.inflight != nil {
		env.Cancel(s.inflight.timer)
		held = append(held, s.inflight.items...)
		s.inflight = nil
	}
	held = append(held, s.buffer...)
	s.buffer = nil
	h.failItems(env, s.user, held, reason)
	target, hasTarget := h.router.SessionTarget(s.lane)
	for _, p := range h.router.Drop(env, s.lane) {
		if c := h.calls[p.Req.ReqId]; c != nil {
			h.finish(env, c)
			h.replyError(env, c.conn, code, reason)
		}
	}
	if hasTarget {
		env.Send(node.Addr{Role: node.RoleLogic, Slot: target}, &wire.SessionClosed{
			Origin: &wire.Origin{Entry: env.Self().String(), Conn: s.vconn, EntryIncarnation: uint64(env.Incarnation())},
			UserId: s.user,
		})
	}
}
