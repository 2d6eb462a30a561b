package logic

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// afterCommit delivers a committed message: MessageSent for contact upkeep
// (at most once per conversation per ContactTouchInterval, touch.go), then a push to the recipient if presence finds them, else the offline
// queue. It runs for duplicates too: the first commit's delivery may have
// died with the instance that made it, and clients deduplicate by seq.
func (l *Logic) afterCommit(env node.Env, op *sendOp, msg *wire.ChatMessage) {
	if l.touches.due(msg.ConvId, env.Now()) {
		l.stats.SentEvents++
		l.publish(env, mq.EventSent, &wire.MessageSent{
			ConvId: msg.ConvId, SenderId: msg.SenderId, PeerId: op.peer, Seq: msg.Seq, AtMs: msg.CreatedAtMs,
		}, sentMsgID(msg.ConvId, msg.Seq))
	} else {
		l.stats.SentEventsSkipped++
	}
	if op.peer == "" {
		return // system and broadcast conversations: extlogic fans them out
	}
	l.deliverTo(env, op.peer, msg)
}

// sentMsgID is "sent:<conv>:<seq>", built in one allocation.
func sentMsgID(conv string, seq uint64) string {
	var buf [96]byte
	b := append(buf[:0], "sent:"...)
	b = append(b, conv...)
	b = append(b, ':')
	return string(strconv.AppendUint(b, seq, 10))
}

// offlineMsgID is "off:<conv>:<seq>:<user>", built in one allocation.
func offlineMsgID(conv string, seq uint64, user string) string {
	var buf [128]byte
	b := append(buf[:0], "off:"...)
	b = append(b, conv...)
	b = append(b, ':')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ':')
	return string(append(b, user...))
}

// deliverTo looks user up in presence and pushes msg to their connection,
// or queues it for the offline path.
func (l *Logic) deliverTo(env node.Env, user string, msg *wire.ChatMessage) {
	if len(l.deps) >= depsMax {
		l.offline(env, user, msg) // no room to wait for presence: the queue path is always right
		return
	}
	id := env.Presence(node.PresenceOp{Kind: node.PresenceGet, Users: []string{user}})
	l.deps[id] = func(env node.Env, c node.Completion) {
		if c.Outcome != node.OK || c.Presence == nil || len(c.Presence.Found) != 1 || c.Presence.Found[0].User != user {
			l.offline(env, user, msg) // offline, or presence could not tell
			return
		}
		pe := c.Presence.Found[0]
		l.stats.Pushes++
		l.rememberPush(env, pe.Entry, user, msg)
		p := &push{}
		p.target.UserId, p.target.Conn, p.target.EntryIncarnation = user, uint64(pe.Conn), uint64(pe.Incarnation)
		p.targets[0], p.msgs[0] = &p.target, msg
		p.req.Targets, p.req.Messages, p.req.ReplyTo = p.targets[:], p.msgs[:], l.self.Of(env.Self())
		env.Send(pe.Entry, &p.req)
	}
}

// push is a PushRequest to one target with one message, with what its
// slices point to: one allocation rather than four.
type push struct {
	req     wire.PushRequest
	target  wire.PushTarget
	targets [1]*wire.PushTarget
	msgs    [1]*wire.ChatMessage
}

// onPushFailed takes the offline path for each message entry could not push.
func (l *Logic) onPushFailed(env node.Env, m *wire.PushFailed) {
	if wire.ValidUserID(m.UserId) != nil {
		return
	}
	for _, msg := range m.Messages {
		l.offline(env, m.UserId, msg)
	}
}

// offline publishes msg for user's offline handling. The msgID makes the
// queue store it once however many paths publish it.
func (l *Logic) offline(env node.Env, user string, msg *wire.ChatMessage) {
	l.stats.OfflinePublishes++
	l.publish(env, mq.OfflinePrefix+user, &wire.OfflineWork{UserId: user, Messages: []*wire.ChatMessage{msg}},
		offlineMsgID(msg.ConvId, msg.Seq, user))
}

// publish sends m to subject, retrying a failed or unknown publish up to
// publishAttemptMax times under the same msgID (the queue deduplicates).
func (l *Logic) publish(env node.Env, subject string, m proto.Message, msgID string) {
	data, err := wire.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("logic: marshal %T: %v", m, err)) // a bug in this package
	}
	l.publishAttempt(env, subject, data, msgID, 1)
}

func (l *Logic) publishAttempt(env node.Env, subject string, data []byte, msgID string, attempt int) {
	id := env.Publish(subject, data, msgID)
	if len(l.deps) >= depsMax {
		return // untracked: no retry, but nothing waits on it either
	}
	l.deps[id] = func(env node.Env, c node.Completion) {
		if c.Outcome != node.OK && attempt < publishAttemptMax {
			l.publishAttempt(env, subject, data, msgID, attempt+1)
		}
	}
}
