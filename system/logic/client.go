package logic

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// businessOf names the business an app op belongs to ("" for ops logic
// does not take).
func businessOf(op wire.Op) Business {
	switch op {
	case wire.OpLogin, wire.OpLogout, wire.OpHeartbeat:
		return BusinessLogin
	case wire.OpSend, wire.OpSync:
		return BusinessMsg
	case wire.OpConvList, wire.OpRead:
		return BusinessContact
	}
	return ""
}

func (l *Logic) onClientRequest(env node.Env, req *wire.ClientRequest) {
	w := waiter{origin: req.Origin, user: req.UserId, reqID: req.ReqId, deadline: env.Now().Add(l.cfg.AnswerWithin)}
	op := wire.Op(req.Op)
	b := businessOf(op)
	if b == "" {
		l.respondError(env, w, op, wire.ErrorCode_BAD_REQUEST, fmt.Sprintf("logic: op %s is not a request", op))
		return
	}
	if !l.serves[b] {
		l.respondError(env, w, op, wire.ErrorCode_UNAVAILABLE, fmt.Sprintf("logic: this instance does not serve %s", b))
		return
	}
	if wire.ValidUserID(req.UserId) != nil {
		// Entry authenticated the user: a bad id here is entry's bug.
		l.respondError(env, w, op, wire.ErrorCode_INTERNAL, "logic: request without a valid user")
		return
	}
	body, err := wire.DecodeBody(wire.Frame{Op: op, Body: req.Body})
	if err != nil {
		l.respondError(env, w, op, wire.ErrorCode_BAD_REQUEST, fmt.Sprintf("logic: %v", err))
		return
	}
	switch m := body.(type) {
	case *wire.Login:
		l.onLogin(env, w, req)
	case *wire.Logout:
		l.presenceDelete(env, req.Origin, req.UserId)
		l.respond(env, w, &wire.Logout{}, true)
	case *wire.Heartbeat:
		l.onHeartbeat(env, w, req)
	case *wire.Send:
		l.onSend(env, w, req, m)
	case *wire.Sync:
		l.onSync(env, w, m)
	case *wire.ConvList:
		req := dasOp{business: wire.Business_BUSINESS_CONTACT,
			convList: &wire.ConvListOp{UserId: w.user, Limit: m.Limit}}
		l.read(env, w, wire.OpConvList, w.user, req, func(r *wire.StoreReply) proto.Message { return r.ConvList })
	case *wire.Read:
		l.onRead(env, w, m)
	}
}

// presenceEntry is where the request's connection lives.
func presenceEntry(origin *wire.Origin, user, device string) (node.PresenceEntry, bool) {
	entry, err := node.ParseAddr(origin.GetEntry())
	if err != nil {
		return node.PresenceEntry{}, false
	}
	return node.PresenceEntry{
		User: user, Entry: entry, Conn: node.ConnID(origin.GetConn()),
		Incarnation: node.Incarnation(origin.GetEntryIncarnation()), Device: device,
	}, true
}

func previous(r *node.PresenceResult) *node.PresenceEntry {
	if r == nil {
		return nil
	}
	return r.Previous
}

func sameConn(a, b node.PresenceEntry) bool {
	return a.Entry == b.Entry && a.Conn == b.Conn && a.Incarnation == b.Incarnation
}

// onLogin records presence, kicks an older connection of the user, then
// answers LOGIN_ACK.
func (l *Logic) onLogin(env node.Env, w waiter, req *wire.ClientRequest) {
	pe, ok := presenceEntry(req.Origin, req.UserId, req.DeviceId)
	if !ok {
		return // no entry to answer
	}
	if len(l.deps) >= depsMax {
		l.respondError(env, w, wire.OpLogin, wire.ErrorCode_OVERLOADED, "logic: too many presence requests in flight")
		return
	}
	id := env.Presence(node.PresenceOp{Kind: node.PresenceSet, Entry: pe, TTL: l.cfg.PresenceTTL})
	sessionID := req.SessionId
	l.deps[id] = func(env node.Env, c node.Completion) {
		if c.Outcome != node.OK {
			l.respondError(env, w, wire.OpLogin, wire.ErrorCode_UNAVAILABLE, "logic: presence unavailable")
			return
		}
		if prev := previous(c.Presence); prev != nil && !sameConn(*prev, pe) {
			// The kick names this login's process and attempt: the entry
			// holding the older session tells a stale login of the same
			// process (held by a paused logic past the client's login
			// timeout, while the client logged in again elsewhere) from a
			// newer one, and only a newer one stops the client
			// (bench-standard --swarm seed 253: 633 deliveries missing).
			l.stats.Kicks++
			var lg wire.Login
			_ = proto.Unmarshal(req.Body, &lg) // entry parsed it; without it the kick is plain
			env.Send(prev.Entry, &wire.KickRequest{
				Target: &wire.PushTarget{UserId: prev.User, Conn: uint64(prev.Conn), EntryIncarnation: uint64(prev.Incarnation)},
				Reason: "logged in elsewhere", ByInstance: lg.Instance, ByAttempt: lg.Attempt,
			})
		}
		l.respond(env, w, &wire.LoginAck{UserId: w.user, ServerTimeMs: env.Now().UnixMilli(), SessionId: sessionID}, false)
	}
}

// onHeartbeat refreshes presence and answers at once: a lost refresh is
// repaired by the next heartbeat, well within the presence TTL.
func (l *Logic) onHeartbeat(env node.Env, w waiter, req *wire.ClientRequest) {
	if pe, ok := presenceEntry(req.Origin, req.UserId, req.DeviceId); ok && len(l.deps) < depsMax {
		id := env.Presence(node.PresenceOp{Kind: node.PresenceSet, Entry: pe, TTL: l.cfg.PresenceTTL})
		l.deps[id] = func(node.Env, node.Completion) {}
	}
	l.respond(env, w, &wire.Heartbeat{ClientTimeMs: env.Now().UnixMilli()}, false)
}

func (l *Logic) onSessionClosed(env node.Env, m *wire.SessionClosed) {
	l.presenceDelete(env, m.Origin, m.UserId)
}

// presenceDelete removes the user's presence if it still names this
// connection (presence checks that). A lost delete leaves a stale entry that
// the TTL ends; pushes to it fail over to the offline path meanwhile.
func (l *Logic) presenceDelete(env node.Env, origin *wire.Origin, user string) {
	pe, ok := presenceEntry(origin, user, "")
	if !ok || len(l.deps) >= depsMax {
		return
	}
	id := env.Presence(node.PresenceOp{Kind: node.PresenceDelete, Entry: pe})
	l.deps[id] = func(node.Env, node.Completion) {}
}

func (l *Logic) onSync(env node.Env, w waiter, m *wire.Sync) {
	if !l.mayRead(env, w, wire.OpSync, m.ConvId) {
		return
	}
	req := dasOp{business: wire.Business_BUSINESS_MESSAGE,
		sync: &wire.SyncOp{ConvId: m.ConvId, AfterSeq: m.AfterSeq, Limit: m.Limit}}
	l.read(env, w, wire.OpSync, m.ConvId, req, func(r *wire.StoreReply) proto.Message { return r.Sync })
}

func (l *Logic) onRead(env node.Env, w waiter, m *wire.Read) {
	if !l.mayRead(env, w, wire.OpRead, m.ConvId) {
		return
	}
	req := dasOp{business: wire.Business_BUSINESS_UNREAD,
		markRead: &wire.MarkReadOp{UserId: w.user, ConvId: m.ConvId, Seq: m.Seq}}
	l.read(env, w, wire.OpRead, w.user, req, func(r *wire.StoreReply) proto.Message { return r.Read })
}

// mayRead checks that the user takes part in conv, answering the error if not.
func (l *Logic) mayRead(env node.Env, w waiter, op wire.Op, convID string) bool {
	conv, err := wire.ParseConvID(convID)
	if err != nil {
		l.respondError(env, w, op, wire.ErrorCode_BAD_REQUEST, fmt.Sprintf("logic: %v", err))
		return false
	}
	if _, ok := conv.Participant(w.user); !ok {
		l.respondError(env, w, op, wire.ErrorCode_FORBIDDEN, fmt.Sprintf("logic: %s does not take part in %s", w.user, convID))
		return false
	}
	return true
}

// readCall is one client read (sync, conv list, mark read) on its way
// through das: key picks the das, body picks the answer out of the reply.
type readCall struct {
	w        waiter
	op       wire.Op
	key      string
	req      dasOp
	body     func(*wire.StoreReply) proto.Message
	attempts int
}

// read sends one read request to das and answers the client with body(reply).
// Reads are idempotent: a timeout, a link down or an unknown outcome is
// retried on the das now picked, up to readAttemptMax attempts.
func (l *Logic) read(env node.Env, w waiter, op wire.Op, key string, req dasOp, body func(*wire.StoreReply) proto.Message) {
	if !l.room() {
		l.respondError(env, w, op, wire.ErrorCode_OVERLOADED, "logic: too many das requests in flight")
		return
	}
	l.tryRead(env, &readCall{w: w, op: op, key: key, req: req, body: body})
}

// tryRead makes rc's next attempt, or answers the client if none may start.
func (l *Logic) tryRead(env node.Env, rc *readCall) {
	slot, ok := l.pickDas(rc.key)
	if !ok {
		l.respondError(env, rc.w, rc.op, wire.ErrorCode_UNAVAILABLE, "logic: no das configured")
		return
	}
	left := rc.w.deadline.Sub(env.Now())
	if rc.attempts > 0 && left < attemptMin {
		l.respondError(env, rc.w, rc.op, wire.ErrorCode_TIMEOUT, fmt.Sprintf("logic: no answer within %s (%d attempts)", l.cfg.AnswerWithin, rc.attempts))
		return
	}
	rc.attempts++
	l.callDas(env, slot, rc.req, l.attemptTimeout(left), dasCall{read: rc})
}

// onReadReply takes the outcome of rc's attempt (r nil: none).
func (l *Logic) onReadReply(env node.Env, rc *readCall, r *wire.StoreReply) {
	w, op := rc.w, rc.op
	switch {
	case r != nil && r.Outcome == wire.Outcome_OUTCOME_OK:
		if b := rc.body(r); b != nil && b.ProtoReflect().IsValid() {
			l.respond(env, w, b, false)
		} else {
			l.respondError(env, w, op, wire.ErrorCode_INTERNAL, "logic: das answered without a result")
		}
	case r != nil && r.Outcome == wire.Outcome_OUTCOME_FAILED:
		l.respondError(env, w, op, r.Code, "logic: das: "+r.Error)
	case rc.attempts < readAttemptMax:
		l.tryRead(env, rc) // the slot that timed out is marked dead: this picks the next
	default:
		l.respondError(env, w, op, wire.ErrorCode_TIMEOUT, fmt.Sprintf("logic: no answer after %d attempts", rc.attempts))
	}
}

// respond sends body to the client of w (through its entry).
func (l *Logic) respond(env node.Env, w waiter, body proto.Message, closeAfter bool) {
	entry, err := node.ParseAddr(w.origin.GetEntry())
	if err != nil {
		env.Log().Warn("logic: request origin names no entry", "origin", w.origin.GetEntry())
		return
	}
	op, err := wire.OpOf(body)
	if err != nil {
		panic(fmt.Sprintf("logic: responding with %T: %v", body, err)) // a bug in this package
	}
	raw, err := wire.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("logic: marshal %s: %v", op, err))
	}
	env.Send(entry, &wire.ClientResponse{Origin: w.origin, Op: uint32(op), ReqId: w.reqID, Body: raw, UserId: w.user, Close: closeAfter})
}

func (l *Logic) respondError(env node.Env, w waiter, op wire.Op, code wire.ErrorCode, text string) {
	l.respond(env, w, &wire.Error{Code: code, Message: text, Op: uint32(op)}, false)
}

func (l *Logic) respondSendError(env node.Env, w waiter, conv, clientMsgID string, cseq uint64, code wire.ErrorCode, text string) {
	l.respond(env, w, &wire.Error{Code: code, Message: text, Op: uint32(wire.OpSend), ClientMsgId: clientMsgID, Cseq: cseq, ConvId: conv}, false)
}
