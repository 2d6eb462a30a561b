package logic

import (
	"container/list"
	"fmt"
	"slices"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// sessionKey names a client session for FIFO purposes: (user, device)
// survives reconnects, and cseq counts over the client's whole life.
type sessionKey struct{ user, device string }

// session is the per-sender FIFO state of docs/protocol.md.
type session struct {
	key sessionKey
	// done: every cseq <= done is known committed (own commits, ack_floor).
	done uint64
	// inflight is the append of cseq done+1, if one is running. It blocks
	// the next cseq until its outcome is definite.
	inflight *sendOp
	// held: sends that arrived before their turn, by cseq (at most heldMax).
	held map[uint64]*sendOp
	// side counts appends of cseqs already known committed (resends; dedup
	// answers them). They block nothing but keep the session from eviction.
	side int
	// rejectedAt: a definite rejection of this cseq ended the session's
	// pipeline; later cseqs are rejected OUT_OF_ORDER until the client
	// resends from it (go-back-N). 0: none.
	rejectedAt uint64
	elem       *list.Element
}

func (s *session) idle() bool { return s.inflight == nil && len(s.held) == 0 && s.side == 0 }

// session returns key's session, creating it; nil when sessionsMax is
// reached and no idle session can be evicted.
func (l *Logic) session(key sessionKey) *session {
	if s := l.sessions[key]; s != nil {
		l.lru.MoveToFront(s.elem)
		return s
	}
	if len(l.sessions) >= l.cfg.SessionsMax && !l.evictIdle() {
		return nil
	}
	s := &session{key: key, held: map[uint64]*sendOp{}}
	s.elem = l.lru.PushFront(s)
	l.sessions[key] = s
	return s
}

// evictIdle drops the least recently used idle session. Its done is
// recovered from the client's next ack_floor, so forgetting it is safe.
func (l *Logic) evictIdle() bool {
	e := l.lru.Back()
	for i := 0; e != nil && i < evictScanMax; i++ {
		s := e.Value.(*session)
		if s.idle() {
			l.lru.Remove(e)
			delete(l.sessions, s.key)
			l.stats.SessionsEvicted++
			return true
		}
		e = e.Prev()
	}
	return false
}

// raiseDone records that every cseq <= v is committed.
func raiseDone(s *session, v uint64) {
	if v <= s.done {
		return
	}
	s.done = v
	if s.rejectedAt != 0 && s.rejectedAt <= v {
		s.rejectedAt = 0 // the rejected send committed after all (through another instance)
	}
}

// admitSend applies the FIFO rules to a validated send (protocol.md "Per-sender FIFO").
func (l *Logic) admitSend(env node.Env, s *session, op *sendOp, ackFloor uint64) {
	if l.cfg.Bugs.On(bugs.UnserialisedAppends) {
		// Bug: no hold and no one-in-flight rule: append as soon as it arrives.
		if !l.limiter.allow(s.key.user, env.Now()) {
			l.stats.RateLimited++
			l.rejectSend(env, op, wire.ErrorCode_RATE_LIMITED, l.rateText())
			return
		}
		s.side++
		l.startAppend(env, op)
		return
	}
	if ackFloor > 0 {
		raiseDone(s, ackFloor-1)
	}
	c := op.cseq
	if same := s.find(c); same != nil {
		l.addWaiter(env, same, op.waiters[0]) // a resend of a send already here
		l.pump(env, s)
		return
	}
	// A send already doomed to OUT_OF_ORDER costs no token: it reaches no das.
	doomed := s.rejectedAt != 0 && c > s.rejectedAt
	if !doomed && !l.limiter.allow(s.key.user, env.Now()) {
		l.rateLimited(env, s, op)
		return
	}
	switch {
	case c <= s.done:
		// Known committed: the append only asks the store's dedup for its seq.
		s.side++
		l.startAppend(env, op)
	case s.rejectedAt != 0 && c > s.rejectedAt:
		l.rejectSend(env, op, wire.ErrorCode_OUT_OF_ORDER, "an earlier send of this session was rejected: resend from it")
	case len(s.held) >= l.cfg.HeldMax:
		l.rejectSend(env, op, wire.ErrorCode_OUT_OF_ORDER, "too many sends held for an earlier one")
	default:
		if c <= s.rejectedAt {
			s.rejectedAt = 0 // the client resends from the rejected one
		}
		op.state = stateHeld
		s.held[c] = op
	}
	l.pump(env, s)
	if op.state == stateHeld {
		l.stats.Held++
		op.holdTimer = env.After(l.cfg.HoldTimeout, holdTag{op: op})
	}
}

// find returns the send of cseq c that is in flight or held.
func (s *session) find(c uint64) *sendOp {
	if s.inflight != nil && s.inflight.cseq == c {
		return s.inflight
	}
	return s.held[c]
}

// pump starts what the FIFO rules now allow.
func (l *Logic) pump(env node.Env, s *session) {
	// An in-flight append whose cseq is now known committed blocks nothing.
	if f := s.inflight; f != nil && f.cseq <= s.done {
		f.fifo = false
		s.inflight = nil
		s.side++
	}
	for _, c := range sortedCseqs(s.held) {
		if c > s.done {
			break
		}
		op := s.unhold(env, c)
		s.side++
		l.startAppend(env, op)
	}
	if s.inflight != nil {
		return
	}
	if _, ok := s.held[s.done+1]; ok {
		op := s.unhold(env, s.done+1)
		op.fifo = true
		s.inflight = op
		l.startAppend(env, op)
	}
}

// unhold takes cseq c out of the held set.
func (s *session) unhold(env node.Env, c uint64) *sendOp {
	op := s.held[c]
	delete(s.held, c)
	if op.holdTimer != 0 {
		env.Cancel(op.holdTimer)
		op.holdTimer = 0
	}
	return op
}

// sessionCommitted: op's append committed.
func (l *Logic) sessionCommitted(env node.Env, op *sendOp) {
	s := op.sess
	if op.fifo && s.inflight == op {
		s.inflight = nil
		raiseDone(s, op.cseq)
	} else {
		s.side--
	}
	l.pump(env, s)
}

// sessionRejected: op ended without a known commit (a definite rejection,
// or an unknown outcome past appendRetryMax). done does not move, so
// nothing later may start: held sends are rejected OUT_OF_ORDER and the
// client resends from op (go-back-N).
func (l *Logic) sessionRejected(env node.Env, op *sendOp) {
	s := op.sess
	if !op.fifo || s.inflight != op {
		s.side--
		return
	}
	s.inflight = nil
	s.rejectedAt = op.cseq
	for _, c := range sortedCseqs(s.held) {
		l.rejectSend(env, s.unhold(env, c), wire.ErrorCode_OUT_OF_ORDER, "an earlier send of this session was rejected: resend from it")
	}
}

// rateLimited refuses op: nothing was appended, so it is a definite
// rejection. Like an OVERLOADED append it ends the session's pipeline at
// op: held later cseqs are rejected OUT_OF_ORDER, and so are new ones until
// the client resends from op (go-back-N). A resend of a committed cseq
// (c <= done) blocks nothing.
func (l *Logic) rateLimited(env node.Env, s *session, op *sendOp) {
	l.stats.RateLimited++
	l.rejectSend(env, op, wire.ErrorCode_RATE_LIMITED, l.rateText())
	c := op.cseq
	if c <= s.done {
		return
	}
	if s.rejectedAt == 0 || c < s.rejectedAt {
		s.rejectedAt = c
	}
	for _, held := range sortedCseqs(s.held) {
		if held > c {
			l.rejectSend(env, s.unhold(env, held), wire.ErrorCode_OUT_OF_ORDER, "an earlier send of this session was rate limited: resend from it")
		}
	}
}

func (l *Logic) rateText() string {
	return fmt.Sprintf("send: over %d sends per second (burst %d) for this user: resend later", l.cfg.SendRatePerSecond, l.cfg.SendBurst)
}

func (l *Logic) onHoldTimer(env node.Env, op *sendOp) {
	s := op.sess
	if op.state != stateHeld || s.held[op.cseq] != op {
		return
	}
	op.holdTimer = 0 // it fired
	s.unhold(env, op.cseq)
	l.rejectSend(env, op, wire.ErrorCode_OUT_OF_ORDER, "held past holdTimeout waiting for an earlier send")
}

func sortedCseqs(held map[uint64]*sendOp) []uint64 {
	out := make([]uint64, 0, len(held))
	for c := range held {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}
