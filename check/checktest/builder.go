// Package checktest builds small histories by hand for tests of the
// checkers and of anything that records histories.
package checktest

import "github.com/zzim/zzim/check"

// Builder appends ops to a history. Every op is in session 1 unless
// Session changes it; times are nanoseconds on the history clock.
type Builder struct {
	ops     []check.Op
	session int
}

// New returns an empty builder.
func New() *Builder { return &Builder{session: 1} }

// Msg is a message as a client saw it.
func Msg(seq uint64, sender, clientMsgID string) check.MsgRef {
	return check.MsgRef{Seq: seq, Sender: sender, ClientMsgID: clientMsgID}
}

// Session sets the session of the ops added next.
func (b *Builder) Session(s int) *Builder {
	b.session = s
	return b
}

func (b *Builder) add(client int, user, kind, conv string, call int64, ret *int64) *check.Op {
	b.ops = append(b.ops, check.Op{Client: client, Session: b.session, User: user, Kind: kind, Conv: conv, Call: call, Return: ret})
	return &b.ops[len(b.ops)-1]
}

func at(t int64) *int64 { return &t }

// Login records a login that returned at ret.
func (b *Builder) Login(client int, user string, call, ret int64) *Builder {
	b.add(client, user, check.KindLogin, "", call, at(ret))
	return b
}

// Send records a send acknowledged with seq.
func (b *Builder) Send(client int, user, conv, cmid string, cseq uint64, call, ret int64, seq uint64) *Builder {
	op := b.add(client, user, check.KindSend, conv, call, at(ret))
	op.In = check.Input{ClientMsgID: cmid, CSeq: cseq, Body: cmid}
	op.Out.Seq = seq
	return b
}

// SendUnknown records a send whose outcome the client never learned.
func (b *Builder) SendUnknown(client int, user, conv, cmid string, cseq uint64, call int64) *Builder {
	op := b.add(client, user, check.KindSend, conv, call, nil)
	op.In = check.Input{ClientMsgID: cmid, CSeq: cseq, Body: cmid}
	op.Unknown = true
	return b
}

// SendError records a send that failed definitely with code.
func (b *Builder) SendError(client int, user, conv, cmid string, cseq uint64, call, ret int64, code string) *Builder {
	op := b.add(client, user, check.KindSend, conv, call, at(ret))
	op.In = check.Input{ClientMsgID: cmid, CSeq: cseq, Body: cmid}
	op.Error = code
	return b
}

// Sync records a sync after `after` that returned msgs and lastSeq.
func (b *Builder) Sync(client int, user, conv string, after uint64, limit int, call, ret int64, lastSeq uint64, msgs ...check.MsgRef) *Builder {
	op := b.add(client, user, check.KindSync, conv, call, at(ret))
	op.In = check.Input{AfterSeq: after, Limit: limit}
	op.Out = check.Output{Msgs: msgs, LastSeq: lastSeq}
	return b
}

// Read records a read mark up to seq that returned readSeq.
func (b *Builder) Read(client int, user, conv string, seq uint64, call, ret int64, readSeq uint64) *Builder {
	op := b.add(client, user, check.KindRead, conv, call, at(ret))
	op.In.Seq = seq
	op.Out.ReadSeq = readSeq
	return b
}

// Deliver records m handed to the application at t, via "push" or "sync".
func (b *Builder) Deliver(client int, user, conv string, t int64, via string, m check.MsgRef) *Builder {
	op := b.add(client, user, check.KindDeliver, conv, t, at(t))
	op.In.Via = via
	op.Out.Msgs = []check.MsgRef{m}
	return b
}

// Final records what the client holds of conv at the end.
func (b *Builder) Final(client int, user, conv string, t int64, readSeq, unread uint64, msgs ...check.MsgRef) *Builder {
	op := b.add(client, user, check.KindFinal, conv, t, at(t))
	op.Out = check.Output{Msgs: msgs, ReadSeq: readSeq, Unread: unread}
	return b
}

// Op appends op as given, for what the other methods do not cover.
func (b *Builder) Op(op check.Op) *Builder {
	b.ops = append(b.ops, op)
	return b
}

// History returns the ops so far as a history (a copy).
func (b *Builder) History() *check.History {
	ops := make([]check.Op, len(b.ops))
	copy(ops, b.ops)
	return &check.History{Ops: ops}
}
