package client

import (
	"strconv"
	"time"

	"github.com/zzim/zzim/system/wire"
)

// pendingSend is one unacknowledged send.
type pendingSend struct {
	conv        string
	clientMsgID string
	body        string
	cseq        uint64
	call        int64 // when Send was first called
	written     bool  // written in the current round
	everWritten bool
	writtenAt   time.Time
}

// notSent is the error recorded for a send that Finish found never written:
// it cannot have taken effect.
const notSent = "NOT_SENT"

// sendOverhead bounds a SEND body's bytes besides conv and body: field tags,
// lengths, client_msg_id (at most ClientMsgIDSizeMax), cseq and ack_floor.
const sendOverhead = 3*8 + wire.ClientMsgIDSizeMax + 2*11

// Send queues a message for conv and returns its client_msg_id. Sends are
// numbered (cseq) over the client's whole life and reach the server in that
// order; a full queue (PendingSendsMax) is an error, not a block.
func (c *Client) Send(env Env, convID, body string) (string, error) {
	if c.stopped {
		return "", ErrStopped
	}
	if len(c.sends) >= c.cfg.PendingSendsMax {
		return "", ErrPendingFull
	}
	// A body that cannot be framed would block the queue forever; one the
	// server finds too large (over MessageBodySizeMax) is its to reject.
	if len(body)+len(convID)+sendOverhead > wire.BodySizeMax {
		return "", ErrTooLarge
	}
	if c.conv(convID) == nil {
		return "", ErrConvsFull
	}
	c.nextCSeq++
	s := &pendingSend{
		conv:        convID,
		clientMsgID: c.cfg.User + "-" + c.cfg.Device + "-" + strconv.FormatUint(c.nextCSeq, 10), // user-device-cseq
		body:        body,
		cseq:        c.nextCSeq,
		call:        env.Now().UnixNano(),
	}
	c.sends = append(c.sends, s)
	c.stats.Sends++
	c.pump(env)
	return s.clientMsgID, nil
}

// sendWindowRejected is the send window after the server refused a send
// for load (RATE_LIMITED, OVERLOADED): one send probes whether it accepts
// again; each ack then widens the window by one (slow start, doubling per
// round trip) back to the transport's. A full window would be refused
// again behind the first send: logic rejects the later ones OUT_OF_ORDER
// once one is rejected (go-back-N), so it is work for nothing.
const sendWindowRejected = 1

// pump writes the sends in the window that are not yet written in this
// round. Each carries ack_floor = the first unacknowledged cseq.
func (c *Client) pump(env Env) {
	if !c.online || c.paused || c.stopped || len(c.sends) == 0 {
		return
	}
	n := min(len(c.sends), c.tr.window(), c.sendWindow)
	floor := c.sends[0].cseq
	for _, s := range c.sends[:n] {
		if s.written {
			continue
		}
		if s.everWritten {
			c.stats.Resends++
		}
		s.written, s.everWritten = true, true
		s.writtenAt = env.Now()
		c.tr.writeSend(env, s, floor)
	}
}

// restartSends starts a new round from the first unacknowledged send: on a
// new session (no backoff: the new connection is the remedy) and at the end
// of a go-back-N backoff.
func (c *Client) restartSends(env Env) {
	c.round++
	for _, s := range c.sends {
		s.written = false
	}
	c.paused = false
	c.disarm(env, timerResend)
	c.pump(env)
}

// goBackN: a send was rejected with a transient error or went unanswered.
// Logic rejects the later ones too, so after a backoff everything is resent
// from the first unacknowledged, in order. Answers to the abandoned round are
// stale from now on.
func (c *Client) goBackN(env Env) {
	if c.paused {
		return
	}
	c.round++
	for _, s := range c.sends {
		s.written = false
	}
	c.paused = true
	c.stats.GoBackN++
	c.arm(env, timerResend, c.backoff(env, c.resendAttempt))
	c.resendAttempt++
}

func (c *Client) sendIndex(cseq uint64) int {
	for i, s := range c.sends {
		if s.cseq == cseq {
			return i
		}
	}
	return -1
}

func (c *Client) removeSend(i int) *pendingSend {
	s := c.sends[i]
	c.sends = append(c.sends[:i], c.sends[i+1:]...)
	return s
}

// onSendAck: the send with cseq committed at seq. A duplicate answer (a
// resend's) is ignored, but a different seq breaks idempotency: it is
// logged, and the checker sees both answers' effects in the history.
func (c *Client) onSendAck(env Env, cseq, seq uint64) {
	if seq == 0 {
		env.Log().Warn("client: SEND_ACK without seq", "user", c.cfg.User, "cseq", cseq)
		return
	}
	i := c.sendIndex(cseq)
	if i < 0 {
		if first, known := c.acked.get(cseq); known && first != seq {
			env.Log().Error("client: duplicate SEND_ACK with a different seq",
				"user", c.cfg.User, "cseq", cseq, "first_seq", first, "seq", seq)
		}
		return
	}
	s := c.removeSend(i)
	c.acked.add(cseq, seq)
	c.stats.Acks++
	c.resendAttempt = 0
	c.sendWindow = min(c.sendWindow+1, c.tr.window())
	c.recordSendAck(env, s, seq)
	c.holdOwn(env, s, seq)
	if c.cfg.OnSendDone != nil {
		c.cfg.OnSendDone(env, s.clientMsgID, seq, "")
	}
	c.pump(env)
}

// onSendError handles an ERROR (or HTTP error) answering the send with
// cseq, written in round.
func (c *Client) onSendError(env Env, cseq uint64, code wire.ErrorCode, round uint64) {
	i := c.sendIndex(cseq)
	if i < 0 {
		return // already acked or failed: a stale answer
	}
	switch code {
	case wire.ErrorCode_BAD_REQUEST, wire.ErrorCode_FORBIDDEN, wire.ErrorCode_TOO_LARGE:
		c.failSend(env, i, code.String())
	default:
		// OUT_OF_ORDER, OVERLOADED, RATE_LIMITED, TIMEOUT, UNAVAILABLE, and
		// anything unexpected: resending is safe, sends are idempotent.
		if code == wire.ErrorCode_RATE_LIMITED || code == wire.ErrorCode_OVERLOADED {
			// Refused for load, in this round or an abandoned one: resend
			// little until acks show the server takes sends again.
			c.cutWindow()
		}
		if round != c.round {
			return // this round was already abandoned
		}
		c.goBackN(env)
	}
}

// cutWindow shrinks the send window to sendWindowRejected.
func (c *Client) cutWindow() {
	if c.sendWindow > sendWindowRejected {
		c.sendWindow = sendWindowRejected
		c.stats.WindowCuts++
	}
}

// failSend: the send failed definitively and will never be stored. It
// leaves the queue, so the floor moves past it.
func (c *Client) failSend(env Env, i int, code string) {
	s := c.removeSend(i)
	c.acked.add(s.cseq, 0)
	c.stats.SendErrors++
	c.recordSendError(env, s, code)
	if c.cfg.OnSendDone != nil {
		c.cfg.OnSendDone(env, s.clientMsgID, 0, code)
	}
	c.pump(env)
}

// ackMemory remembers the seq of the last ackedRememberMax acknowledged
// cseqs (0 for definitively failed ones), to check duplicate answers.
// A cseq is added once (its send leaves the queue when added), so a ring
// searched from the newest end answers as a map would; adding, which every
// ack does, costs no hashing, and get runs only for duplicate answers,
// which are mostly of recent cseqs.
type ackMemory struct {
	ring []ackedSeq // oldest at next once full
	next int
}

type ackedSeq struct{ cseq, seq uint64 }

func (a *ackMemory) add(cseq, seq uint64) {
	if len(a.ring) < ackedRememberMax {
		a.ring = append(a.ring, ackedSeq{cseq, seq})
		return
	}
	a.ring[a.next] = ackedSeq{cseq, seq}
	a.next = (a.next + 1) % ackedRememberMax
}

func (a *ackMemory) get(cseq uint64) (uint64, bool) {
	// Newest first: ring[next-1] down to ring[0], then the wrapped part.
	for i := a.next - 1; i >= 0; i-- {
		if a.ring[i].cseq == cseq {
			return a.ring[i].seq, true
		}
	}
	for i := len(a.ring) - 1; i >= a.next; i-- {
		if a.ring[i].cseq == cseq {
			return a.ring[i].seq, true
		}
	}
	return 0, false
}
