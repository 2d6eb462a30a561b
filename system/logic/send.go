package logic

import (
	"fmt"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

type sendState uint8

const (
	stateNew       sendState = iota
	stateHeld                // waiting for its turn in cseq order
	stateAppending           // an attempt is in flight at das
	stateBackoff             // waiting to retry after an unknown outcome
	stateFinished            // answered
)

// waiter is one client request a send answers.
type waiter struct {
	origin *wire.Origin
	user   string
	reqID  uint32
	// deadline: the request must be answered by then (arrival plus
	// AnswerWithin, on this node's clock).
	deadline time.Time
}

// sendOp is one message on its way to the store.
type sendOp struct {
	sess      *session
	item      *wire.AppendItem // what every attempt appends (never modified once sent)
	convID    string
	peer      string
	cseq      uint64
	waiters   []waiter
	fifo      bool // the session's in-flight append (blocks the next cseq)
	state     sendState
	attempts  int
	lastSlot  int
	holdTimer node.TimerID
	deadline  time.Time // the latest of its waiters' deadlines

	// itemBuf and waiterBuf back item and the first waiters, so a send is
	// one allocation rather than three.
	itemBuf   wire.AppendItem
	waiterBuf [1]waiter
}

// addWaiter makes w, a resend of op's cseq, the request op answers. The
// requests it supersedes are answered TIMEOUT now: their client has moved
// on to w (a resend opens a new go-back-N round, and the client drops an
// answer to an abandoned round), but each one's entry keeps it pending
// until answered, and an entry that waits past its attempt timeout takes
// this logic for dead and moves every session it routes here. Dropping the
// oldest unanswered (as a bound once did) did exactly that under overload,
// when five resends of one send met in one hold. The same request arriving
// again (one origin, one id) takes its own place unanswered.
func (l *Logic) addWaiter(env node.Env, op *sendOp, w waiter) {
	for _, old := range op.waiters {
		if old.reqID == w.reqID && sameOrigin(old.origin, w.origin) {
			continue
		}
		l.stats.SupersededRequests++
		l.respondSendError(env, old, op.convID, op.item.ClientMsgId, op.cseq, wire.ErrorCode_TIMEOUT,
			"send: superseded by a newer resend of this send, which gets its answer")
	}
	clear(op.waiters)
	op.waiters = append(op.waiters[:0], w)
	op.deadline = w.deadline // a resend: its client waits anew
}

func sameOrigin(a, b *wire.Origin) bool {
	return a.GetEntry() == b.GetEntry() && a.GetConn() == b.GetConn() && a.GetEntryIncarnation() == b.GetEntryIncarnation()
}

// onSend validates a SEND and hands it to the FIFO rules.
func (l *Logic) onSend(env node.Env, w waiter, req *wire.ClientRequest, m *wire.Send) {
	fail := func(code wire.ErrorCode, format string, args ...any) {
		l.respondSendError(env, w, m.ConvId, m.ClientMsgId, m.Cseq, code, fmt.Sprintf(format, args...))
	}
	conv, err := wire.ParseConvID(m.ConvId)
	if err != nil {
		fail(wire.ErrorCode_BAD_REQUEST, "send: %v", err)
		return
	}
	// The sender is the session's user, whatever m.SenderId says.
	peer, ok := conv.Participant(req.UserId)
	if !ok || conv.Kind != wire.ConvPair {
		// System and broadcast conversations are written by the platform only.
		fail(wire.ErrorCode_FORBIDDEN, "send: %s may not write to %s", req.UserId, m.ConvId)
		return
	}
	if err := wire.ValidClientMsgID(m.ClientMsgId); err != nil {
		fail(wire.ErrorCode_BAD_REQUEST, "send: %v", err)
		return
	}
	if len(m.Body) > wire.MessageBodySizeMax {
		fail(wire.ErrorCode_TOO_LARGE, "send: body of %d bytes exceeds %d", len(m.Body), wire.MessageBodySizeMax)
		return
	}
	if err := wire.ValidBody(m.Body); err != nil {
		fail(wire.ErrorCode_BAD_REQUEST, "send: %v", err)
		return
	}
	if m.Cseq == 0 {
		fail(wire.ErrorCode_BAD_REQUEST, "send: cseq must start at 1")
		return
	}
	s := l.session(sessionKey{user: req.UserId, device: req.DeviceId})
	if s == nil {
		fail(wire.ErrorCode_OVERLOADED, "send: %d sessions busy", len(l.sessions))
		return
	}
	l.stats.Sends++
	op := &sendOp{
		sess:     s,
		convID:   m.ConvId,
		peer:     peer,
		cseq:     m.Cseq,
		deadline: w.deadline,
	}
	op.waiterBuf[0] = w
	op.waiters = op.waiterBuf[:]
	it := &op.itemBuf
	it.ConvId, it.SenderId, it.ClientMsgId, it.Cseq = m.ConvId, req.UserId, m.ClientMsgId, m.Cseq
	it.Body, it.CreatedAtMs, it.PeerId, it.ListingId = m.Body, env.Now().UnixMilli(), peer, conv.Listing
	op.item = it
	l.admitSend(env, s, op, m.AckFloor)
}

// startAppend makes op's first attempt. The session bookkeeping (fifo or
// side) is the caller's.
func (l *Logic) startAppend(env node.Env, op *sendOp) {
	if !l.room() {
		// Nothing was sent: a definite rejection.
		l.finishRejected(env, op, wire.ErrorCode_OVERLOADED, fmt.Sprintf("send: %d das requests in flight", l.cfg.PendingMax))
		return
	}
	l.attempt(env, op)
}

// attempt sends op to the das that serves its conversation now.
func (l *Logic) attempt(env node.Env, op *sendOp) {
	slot, ok := l.pickDas(op.convID)
	if !ok {
		l.finishRejected(env, op, wire.ErrorCode_UNAVAILABLE, "send: no das configured")
		return
	}
	left := op.deadline.Sub(env.Now())
	if left < attemptMin {
		if op.attempts == 0 {
			// Nothing was sent: a definite rejection.
			l.finishRejected(env, op, wire.ErrorCode_OVERLOADED,
				fmt.Sprintf("send: waited past %s behind this session's earlier sends; resend", l.cfg.AnswerWithin))
		} else {
			l.finishRejected(env, op, wire.ErrorCode_TIMEOUT, l.unknownText(op))
		}
		return
	}
	if op.attempts > 0 {
		l.stats.Retries++
		if slot != op.lastSlot {
			l.stats.Failovers++
		}
	}
	op.attempts++
	op.lastSlot = slot
	op.state = stateAppending
	l.callDas(env, slot, dasOp{business: wire.Business_BUSINESS_MESSAGE, append: op.item}, l.attemptTimeout(left), dasCall{send: op})
}

func (l *Logic) onAppendReply(env node.Env, op *sendOp, r *wire.StoreReply) {
	switch {
	case r != nil && r.Outcome == wire.Outcome_OUTCOME_OK && r.Append != nil:
		l.onCommitted(env, op, r.Append)
	case r != nil && r.Outcome == wire.Outcome_OUTCOME_FAILED:
		l.finishRejected(env, op, r.Code, "send: das: "+r.Error)
	default:
		// UNKNOWN, a timeout, a link down (or an OK without a result, which
		// tells nothing): it may or may not have committed.
		l.onAppendUnknown(env, op)
	}
}

// onAppendUnknown retries the same message until its outcome is definite;
// the session's next cseq waits meanwhile.
func (l *Logic) onAppendUnknown(env node.Env, op *sendOp) {
	l.stats.Unknown++
	if op.attempts >= l.cfg.AppendRetryMax {
		l.finishRejected(env, op, wire.ErrorCode_TIMEOUT, l.unknownText(op))
		return
	}
	d := l.backoff(env, op.attempts)
	if op.deadline.Sub(env.Now())-d < attemptMin {
		// No retry fits in the request's budget: answer now rather than
		// after the backoff; the client's resend retries it (dedup).
		l.finishRejected(env, op, wire.ErrorCode_TIMEOUT, l.unknownText(op))
		return
	}
	op.state = stateBackoff
	l.reserved++ // keeps this send's call slot through the backoff
	env.After(d, retryTag{op: op})
}

func (l *Logic) unknownText(op *sendOp) string {
	return fmt.Sprintf("send: outcome unknown after %d attempts; resend (sends are idempotent)", op.attempts)
}

// backoff is retryBackoffBase<<(attempts-1), capped at retryBackoffMax,
// jittered into [d/2, d) so retries from many sessions spread out.
func (l *Logic) backoff(env node.Env, attempts int) time.Duration {
	d := retryBackoffMax
	if shift := attempts - 1; shift < 6 {
		d = min(retryBackoffBase<<shift, retryBackoffMax)
	}
	return d/2 + time.Duration(env.Rand().Int64N(int64(d/2)))
}

func (l *Logic) onRetryTimer(env node.Env, op *sendOp) {
	if op.state != stateBackoff {
		return
	}
	l.reserved--
	l.attempt(env, op)
}

// onCommitted: the store holds op with res.Seq (first commit or duplicate).
func (l *Logic) onCommitted(env node.Env, op *sendOp, res *wire.AppendResult) {
	op.state = stateFinished
	if res.Duplicate {
		l.stats.Duplicates++ // an unknown outcome resolved by dedup (the exercised counter)
	}
	seq := res.Seq
	if l.cfg.Bugs.On(bugs.LogicLocalSeq) {
		// Bug: a seq from this instance's memory instead of the store's transaction.
		seq = l.nextLocalSeq(op.convID)
	}
	msg := &wire.ChatMessage{
		ConvId: op.convID, Seq: seq, SenderId: op.item.SenderId, ClientMsgId: op.item.ClientMsgId,
		Cseq: op.cseq, Body: op.item.Body, CreatedAtMs: res.CreatedAtMs,
	}
	l.stats.Acks++
	ack := &wire.SendAck{ConvId: op.convID, ClientMsgId: op.item.ClientMsgId, Cseq: op.cseq, Seq: seq, CreatedAtMs: res.CreatedAtMs}
	for _, w := range op.waiters {
		l.respond(env, w, ack, false)
	}
	l.sessionCommitted(env, op)
	l.afterCommit(env, op, msg)
}

func (l *Logic) nextLocalSeq(conv string) uint64 {
	if _, ok := l.localSeq[conv]; !ok && len(l.localSeq) >= localSeqMax {
		clear(l.localSeq)
	}
	l.localSeq[conv]++
	return l.localSeq[conv]
}

// finishRejected answers op's waiters with code and applies go-back-N.
func (l *Logic) finishRejected(env node.Env, op *sendOp, code wire.ErrorCode, text string) {
	l.rejectSend(env, op, code, text)
	l.sessionRejected(env, op)
}

// rejectSend answers op's waiters with an error; session state is the caller's.
func (l *Logic) rejectSend(env node.Env, op *sendOp, code wire.ErrorCode, text string) {
	op.state = stateFinished
	if code == wire.ErrorCode_OUT_OF_ORDER {
		l.stats.RejectedOutOfOrder++
	} else {
		l.stats.Rejected++
	}
	for _, w := range op.waiters {
		l.respondSendError(env, w, op.convID, op.item.ClientMsgId, op.cseq, code, text)
	}
}
