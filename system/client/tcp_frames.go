package client

import (
	"sort"
	"time"

	"github.com/zzim/zzim/system/wire"
)

// onFrame dispatches one frame from entry.
func (t *tcp) onFrame(env Env, f wire.Frame) {
	m, err := wire.DecodeBody(f)
	if err != nil {
		env.Log().Warn("client: bad frame body", "user", t.c.cfg.User, "op", f.Op, "err", err)
		return
	}
	// Answers to requests no longer outstanding (expired, or written on an
	// abandoned round) find no tcpReq; SEND_ACK is matched by cseq anyway.
	req := t.reqs[f.ReqID]
	if f.ReqID != 0 {
		delete(t.reqs, f.ReqID)
	}
	switch m := m.(type) {
	case *wire.LoginAck:
		if req != nil && req.op == wire.OpLogin && t.state == connLogin {
			t.onLoginAck(env, req)
		}
	case *wire.SendAck:
		cseq := m.Cseq
		if req != nil && req.op == wire.OpSend {
			cseq = req.cseq
		}
		t.c.onSendAck(env, cseq, m.Seq)
	case *wire.Push:
		t.onPush(env, m)
	case *wire.SyncResp:
		if req != nil && req.op == wire.OpSync {
			t.c.onSyncResp(env, req.sync, m)
		}
	case *wire.ConvListResp:
		if req != nil && req.op == wire.OpConvList {
			t.c.onConvList(env, req.call, m)
		}
	case *wire.ReadAck:
		if req != nil && req.op == wire.OpRead {
			t.c.onReadAck(env, req.call, req.conv, req.seq, m)
		}
	case *wire.Heartbeat:
	case *wire.Kick:
		t.c.onKick(env)
	case *wire.Notice:
		env.Log().Debug("client: notice", "user", t.c.cfg.User, "kind", m.Kind)
	case *wire.Error:
		t.onError(env, req, m)
	default:
		env.Log().Warn("client: unexpected frame", "user", t.c.cfg.User, "op", f.Op)
	}
}

func (t *tcp) onLoginAck(env Env, req *tcpReq) {
	t.state = connUp
	t.attempt = 0
	t.lastBeat = env.Now() // the login set presence
	t.c.arm(env, timerHeartbeat, t.c.cfg.HeartbeatInterval)
	t.c.onLogin(env, req.call)
}

// onPush acknowledges the push first (the server moves an unacknowledged
// push to the offline path; the ack waits at most PushAckDelay for a
// write to ride on), then takes its messages.
func (t *tcp) onPush(env Env, p *wire.Push) {
	t.c.stats.Pushes++
	t.ackPush(env, p.PushId)
	for _, m := range p.Messages {
		t.c.accept(env, m, viaPush)
	}
}

func (t *tcp) onError(env Env, req *tcpReq, e *wire.Error) {
	op := wire.Op(e.Op)
	if req != nil {
		op = req.op
	}
	switch {
	case e.Code == wire.ErrorCode_KICKED:
		t.c.onKick(env)
	case e.Code == wire.ErrorCode_UNAUTHENTICATED:
		call := env.Now().UnixNano()
		if req != nil {
			call = req.call
		}
		t.c.onLoginRejected(env, call, e.Code.String())
	case op == wire.OpLogin:
		// A login the server could not serve now (presence down, overloaded,
		// too many connections): record it, hang up, and the reconnect
		// path backs off and tries again. Only a refused token is final.
		call := env.Now().UnixNano()
		if req != nil {
			call = req.call
		}
		t.c.recordLogin(env, call, e.Code.String())
		t.hangup(env)
	case op == wire.OpSend:
		if req != nil {
			t.c.onSendError(env, req.cseq, e.Code, req.round)
		} else {
			// Not matched to a request of this round: only a definite
			// failure still means something (round 0 is never current).
			t.c.onSendError(env, e.Cseq, e.Code, 0)
		}
	case op == wire.OpSync && req != nil:
		t.c.onSyncFailed(env, req.sync, e.Code)
	case op == wire.OpConvList && req != nil:
		t.c.onConvListFailed(env, e.Code)
	default:
		env.Log().Debug("client: request failed", "user", t.c.cfg.User, "op", op, "code", e.Code)
	}
}

// onRequestDeadline handles requests unanswered for RequestTimeout. If
// nothing at all arrived since the oldest of them was written, the
// connection is presumed dead and hung up (reconnect resends everything);
// otherwise the server lost them: sends go back to the first unacknowledged,
// syncs are retried.
func (t *tcp) onRequestDeadline(env Env) {
	now := env.Now()
	ids := make([]uint32, 0, len(t.reqs))
	for id := range t.reqs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var expired []uint32
	var nextDeadline time.Time
	for _, id := range ids {
		deadline := t.reqs[id].at.Add(t.c.cfg.RequestTimeout)
		if !deadline.After(now) {
			expired = append(expired, id)
		} else if nextDeadline.IsZero() || deadline.Before(nextDeadline) {
			nextDeadline = deadline
		}
	}
	if !nextDeadline.IsZero() {
		t.c.arm(env, timerRequest, nextDeadline.Sub(now))
	}
	if len(expired) == 0 {
		return
	}
	t.c.stats.Timeouts += len(expired)
	oldest := t.reqs[expired[0]].at
	if !t.lastFrameIn.After(oldest) {
		t.hangup(env)
		return
	}
	for _, id := range expired {
		r := t.reqs[id]
		delete(t.reqs, id)
		switch r.op {
		case wire.OpSend:
			if r.round == t.c.round && t.c.sendIndex(r.cseq) >= 0 {
				t.c.goBackN(env)
			}
		case wire.OpSync:
			t.c.onSyncFailed(env, r.sync, wire.ErrorCode_ERROR_CODE_UNSPECIFIED)
		case wire.OpConvList:
			t.c.onConvListFailed(env, wire.ErrorCode_ERROR_CODE_UNSPECIFIED)
		case wire.OpLogin:
			t.hangup(env)
		}
	}
}
