package client

import (
	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/wire"
)

// The history (check/history.go) is written only here. What is recorded:
//   - send: when acknowledged (out seq), when failed definitively (error),
//     and at Finish when still unacknowledged (return null, unknown; or
//     error NOT_SENT if it was never written, so it cannot have happened).
//     call is when Send was first called.
//   - sync, conv_list, read: when answered, exactly as answered. A request
//     that got an error or no answer observed nothing and is not recorded.
//   - login: each session established; a refused login or a KICK is a
//     login op with error UNAUTHENTICATED / KICKED (the session ended).
//   - deliver: each message handed to the application.
//   - final: at Finish, one per conversation.
//
// session is the client's session when the op is recorded.

func (c *Client) op(kind, conv string, call int64) check.Op {
	return check.Op{Client: c.cfg.ClientNum, Session: c.session, User: c.cfg.User, Kind: kind, Conv: conv, Call: call}
}

func (c *Client) returned(env Env, op *check.Op) {
	now := env.Now().UnixNano()
	if now < op.Call {
		now = op.Call // a driver clock that stepped back must not make the op invalid
	}
	// Every recorded op but an unfinished send has a return time: they are
	// carved from a small block instead of one allocation each.
	if len(c.returns) == 0 {
		c.returns = make([]int64, returnsBlock)
	}
	r := &c.returns[0]
	c.returns = c.returns[1:]
	*r = now
	op.Return = r
}

// returnsBlock is how many return times one block holds.
const returnsBlock = 64

func ref(m *wire.ChatMessage) check.MsgRef {
	return check.MsgRef{Seq: m.Seq, Sender: m.SenderId, ClientMsgID: m.ClientMsgId}
}

func sendInput(s *pendingSend) check.Input {
	return check.Input{ClientMsgID: s.clientMsgID, CSeq: s.cseq, Body: s.body}
}

func (c *Client) recordSendAck(env Env, s *pendingSend, seq uint64) {
	op := c.op(check.KindSend, s.conv, s.call)
	op.In = sendInput(s)
	op.Out.Seq = seq
	c.returned(env, &op)
	env.Record(op)
}

func (c *Client) recordSendError(env Env, s *pendingSend, code string) {
	op := c.op(check.KindSend, s.conv, s.call)
	op.In = sendInput(s)
	op.Error = code
	c.returned(env, &op)
	env.Record(op)
}

func (c *Client) recordSendUnfinished(env Env, s *pendingSend) {
	if !s.everWritten {
		c.recordSendError(env, s, notSent)
		return
	}
	op := c.op(check.KindSend, s.conv, s.call)
	op.In = sendInput(s)
	op.Unknown = true
	env.Record(op)
}

func (c *Client) recordSync(env Env, sc syncCall, resp *wire.SyncResp) {
	op := c.op(check.KindSync, sc.conv, sc.call)
	op.In = check.Input{AfterSeq: sc.after, Limit: sc.limit}
	op.Out.LastSeq = resp.LastSeq
	if len(resp.Messages) > 0 {
		op.Out.Msgs = make([]check.MsgRef, 0, len(resp.Messages))
	}
	for _, m := range resp.Messages {
		op.Out.Msgs = append(op.Out.Msgs, ref(m))
	}
	c.returned(env, &op)
	env.Record(op)
}

func (c *Client) recordConvList(env Env, call int64, resp *wire.ConvListResp) {
	op := c.op(check.KindConvList, "", call)
	if len(resp.Convs) > 0 {
		op.Out.Convs = make([]check.ConvView, 0, len(resp.Convs))
	}
	for _, row := range resp.Convs {
		op.Out.Convs = append(op.Out.Convs, check.ConvView{
			Conv: row.ConvId, LastSeq: row.LastSeq, ReadSeq: row.ReadSeq, Unread: row.Unread,
		})
	}
	c.returned(env, &op)
	env.Record(op)
}

func (c *Client) recordRead(env Env, call int64, convID string, seq, readSeq uint64) {
	op := c.op(check.KindRead, convID, call)
	op.In.Seq = seq
	op.Out.ReadSeq = readSeq
	c.returned(env, &op)
	env.Record(op)
}

func (c *Client) recordLogin(env Env, call int64, code string) {
	op := c.op(check.KindLogin, "", call)
	op.Error = code
	c.returned(env, &op)
	env.Record(op)
}

func (c *Client) recordDeliver(env Env, m *wire.ChatMessage, via string) {
	op := c.op(check.KindDeliver, m.ConvId, env.Now().UnixNano())
	op.In.Via = via
	op.Out.Msgs = []check.MsgRef{ref(m)}
	c.returned(env, &op)
	env.Record(op)
}

func (c *Client) recordFinal(env Env, cv *conv) {
	op := c.op(check.KindFinal, cv.id, env.Now().UnixNano())
	if len(cv.held) > 0 {
		op.Out.Msgs = make([]check.MsgRef, 0, len(cv.held))
	}
	for _, m := range cv.held {
		op.Out.Msgs = append(op.Out.Msgs, ref(m))
	}
	op.Out.ReadSeq = cv.readSeq
	op.Out.Unread = cv.unread
	c.returned(env, &op)
	env.Record(op)
}
