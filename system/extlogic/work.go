package extlogic

import (
	"fmt"
	"slices"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// presCall is one presence request in flight.
type presCall struct {
	job  *job
	then func(env node.Env, c node.Completion)
}

func (x *ExtLogic) onPresence(env node.Env, c node.Completion) {
	p, ok := x.presence[c.Req]
	if !ok {
		return // a registry completion, or nothing we wait for
	}
	delete(x.presence, c.Req)
	p.then(env, c)
}

func (x *ExtLogic) askPresence(env node.Env, j *job, op node.PresenceOp, then func(node.Env, node.Completion)) {
	id := env.Presence(op)
	x.presence[id] = &presCall{job: j, then: then}
}

// --- offline notifications -------------------------------------------------

type notifyKey struct {
	user, conv string
	seq        uint64
}

// startOffline notifies the user of the messages not notified before. A
// notification is best effort, so the delivery is acked at once; the LRU
// keeps a redelivery (or a second PushFailed path) from notifying twice.
func (x *ExtLogic) startOffline(env node.Env, j *job, w *wire.OfflineWork) error {
	if err := wire.ValidUserID(w.UserId); err != nil {
		return fmt.Errorf("offline work: %w", err)
	}
	n := Notification{User: w.UserId}
	for _, m := range w.Messages {
		k := notifyKey{user: w.UserId, conv: m.GetConvId(), seq: m.GetSeq()}
		if x.notified.contains(k) {
			x.stats.Duplicates++
			continue
		}
		x.notified.add(k)
		if len(n.Messages) == NotificationMessagesMax {
			n.Omitted++
			continue
		}
		n.Messages = append(n.Messages, m)
	}
	if len(n.Messages) > 0 {
		x.stats.Notifications++
		if x.cfg.Notifier != nil {
			x.cfg.Notifier.Notify(n)
		}
	}
	x.complete(env, j, true)
	return nil
}

// --- platform notices ------------------------------------------------------

// startNotice appends the notice to the user's system conversation with the
// notice id as client_msg_id, so a redelivery beyond the queue's dedup window
// stores nothing twice, then pushes it if the user is online.
func (x *ExtLogic) startNotice(env node.Env, j *job, n *wire.PlatformNotice) error {
	if err := validNotice(n.UserId, n.NoticeId, n.Body); err != nil {
		return fmt.Errorf("platform notice: %w", err)
	}
	item := &wire.AppendItem{
		ConvId:      wire.SystemConvID(n.UserId),
		SenderId:    store.SystemSender,
		PeerId:      n.UserId,
		ClientMsgId: n.NoticeId,
		Body:        n.Body,
		CreatedAtMs: env.Now().UnixMilli(),
	}
	req := &wire.StoreRequest{Business: wire.Business_BUSINESS_SYSTEM, Append: item}
	x.callDas(env, j, item.ConvId, req, func(env node.Env, r *wire.StoreReply) {
		if r == nil {
			x.complete(env, j, false)
			return
		}
		x.countAppend(r, &x.stats.NoticesStored)
		msg := chatMessage(item, r.GetAppend())
		// Push even after a duplicate: the earlier delivery may have stored
		// the notice and died before pushing. Clients deduplicate by seq.
		x.askPresence(env, j, node.PresenceOp{Kind: node.PresenceGet, Users: []string{n.UserId}},
			func(env node.Env, c node.Completion) {
				if c.Outcome == node.OK && c.Presence != nil {
					x.pushTo(env, c.Presence.Found, msg)
				}
				// Stored is what the ack promises; offline users read it by sync.
				x.complete(env, j, true)
			})
	})
	return nil
}

func validNotice(user, id, body string) error {
	if user != "" {
		if err := wire.ValidUserID(user); err != nil {
			return err
		}
	}
	if err := wire.ValidClientMsgID(id); err != nil {
		return err
	}
	return wire.ValidBody(body)
}

// countAppend counts an OK append as stored or duplicate.
func (x *ExtLogic) countAppend(r *wire.StoreReply, stored *uint64) {
	if r.GetAppend().GetDuplicate() {
		x.stats.Duplicates++
		return
	}
	*stored++
}

func chatMessage(item *wire.AppendItem, res *wire.AppendResult) *wire.ChatMessage {
	created := item.CreatedAtMs
	if res.GetCreatedAtMs() != 0 {
		created = res.GetCreatedAtMs() // a duplicate keeps its original time
	}
	return &wire.ChatMessage{
		ConvId:      item.ConvId,
		Seq:         res.GetSeq(),
		SenderId:    item.SenderId,
		ClientMsgId: item.ClientMsgId,
		Body:        item.Body,
		CreatedAtMs: created,
	}
}

// pushTo sends msg to the found users' connections: one PushRequest per
// entry instance, at most FanoutBatchMax targets each. reply_to is this
// instance, which ignores PushFailed: the message is stored and the user
// gets it by sync.
func (x *ExtLogic) pushTo(env node.Env, found []node.PresenceEntry, msg *wire.ChatMessage) {
	byEntry := map[node.Addr][]*wire.PushTarget{}
	var entries []node.Addr
	for _, e := range found {
		if e.User == "" || e.Entry.IsZero() {
			continue // absent
		}
		if _, ok := byEntry[e.Entry]; !ok {
			entries = append(entries, e.Entry)
		}
		byEntry[e.Entry] = append(byEntry[e.Entry], &wire.PushTarget{
			UserId:           e.User,
			Conn:             uint64(e.Conn),
			EntryIncarnation: uint64(e.Incarnation),
		})
	}
	slices.SortFunc(entries, func(a, b node.Addr) int {
		if a.Role != b.Role {
			if a.Role < b.Role {
				return -1
			}
			return 1
		}
		return a.Slot - b.Slot
	})
	self := x.self.Of(env.Self())
	for _, entry := range entries {
		targets := byEntry[entry]
		for len(targets) > 0 {
			n := min(len(targets), x.cfg.FanoutBatchMax)
			env.Send(entry, &wire.PushRequest{Targets: targets[:n:n], Messages: []*wire.ChatMessage{msg}, ReplyTo: self})
			x.stats.PushRequests++
			x.stats.Pushes += uint64(n)
			targets = targets[n:]
		}
	}
}

// --- broadcasts ------------------------------------------------------------

// startBroadcast appends the broadcast once to wire.BroadcastConvID (the
// broadcast id is the client_msg_id), then fans out pushes to online users.
// A redelivery repeats the fan-out after a Duplicate append: that only
// re-pushes, and clients deduplicate by seq.
func (x *ExtLogic) startBroadcast(env node.Env, j *job, b *wire.PlatformBroadcast) error {
	if err := validNotice("", b.BroadcastId, b.Body); err != nil {
		return fmt.Errorf("platform broadcast: %w", err)
	}
	item := &wire.AppendItem{
		ConvId:      wire.BroadcastConvID,
		SenderId:    store.SystemSender,
		ClientMsgId: b.BroadcastId,
		Body:        b.Body,
		CreatedAtMs: env.Now().UnixMilli(),
	}
	req := &wire.StoreRequest{Business: wire.Business_BUSINESS_SYSTEM, Append: item}
	x.callDas(env, j, item.ConvId, req, func(env node.Env, r *wire.StoreReply) {
		if r == nil {
			x.complete(env, j, false)
			return
		}
		x.countAppend(r, &x.stats.Broadcasts)
		j.pushMsg = chatMessage(item, r.GetAppend())
		if x.fanoutActive < x.cfg.FanoutInflightMax {
			x.fanoutActive++
			x.scan(env, j)
			return
		}
		x.fanoutWaiting = append(x.fanoutWaiting, j)
	})
	return nil
}

// scan asks presence for the next page of online users. One fan-out has at
// most one page in flight (the next cursor comes with the page), so
// fanoutActive is the number of pages in flight.
func (x *ExtLogic) scan(env node.Env, j *job) {
	op := node.PresenceOp{Kind: node.PresenceScan, Cursor: j.cursor, Count: x.cfg.FanoutBatchMax}
	x.askPresence(env, j, op, func(env node.Env, c node.Completion) {
		if c.Outcome != node.OK || c.Presence == nil {
			j.scanAttempts++
			if j.scanAttempts < x.cfg.RetryMax {
				x.scan(env, j)
				return
			}
			x.endFanout(env, j, false)
			return
		}
		j.scanAttempts = 0
		x.pushTo(env, c.Presence.Found, j.pushMsg)
		j.cursor = c.Presence.Cursor
		if j.cursor == 0 {
			x.stats.FanoutsDone++
			x.endFanout(env, j, true)
			return
		}
		x.scan(env, j)
	})
}

// endFanout answers the broadcast's deliveries and starts a waiting fan-out.
func (x *ExtLogic) endFanout(env node.Env, j *job, ok bool) {
	x.fanoutActive--
	x.complete(env, j, ok)
	if len(x.fanoutWaiting) > 0 {
		next := x.fanoutWaiting[0]
		x.fanoutWaiting = x.fanoutWaiting[1:]
		x.fanoutActive++
		x.scan(env, next)
	}
}

// --- contact upkeep --------------------------------------------------------

// touchRequest is one contact touch and the das request carrying it.
type touchRequest struct {
	op  wire.TouchContactOp
	req wire.StoreRequest
}

// startTouch records last_active for both participants; the delivery is
// acked when both touches are done and nakked if either failed (a touch is
// idempotent, so redoing the one that succeeded is harmless).
func (x *ExtLogic) startTouch(env node.Env, j *job, m *wire.MessageSent) error {
	if err := wire.ValidUserID(m.SenderId); err != nil {
		return fmt.Errorf("message sent: %w", err)
	}
	if err := wire.ValidUserID(m.PeerId); err != nil {
		return fmt.Errorf("message sent: %w", err)
	}
	if _, err := wire.ParseConvID(m.ConvId); err != nil {
		return fmt.Errorf("message sent: %w", err)
	}
	pairs := [2][2]string{{m.SenderId, m.PeerId}, {m.PeerId, m.SenderId}}
	j.pending = len(pairs)
	for _, p := range pairs {
		// The op and its request in one allocation: they are made and
		// dropped together.
		t := &touchRequest{}
		t.op.UserId, t.op.PeerId, t.op.ConvId, t.op.LastActiveMs = p[0], p[1], m.ConvId, m.AtMs
		req := &t.req
		req.Business, req.TouchContact = wire.Business_BUSINESS_CONTACT, &t.op
		x.callDas(env, j, p[0], req, func(env node.Env, r *wire.StoreReply) {
			if r == nil {
				j.failed = true
			} else {
				x.stats.ContactTouches++
			}
			j.pending--
			if j.pending == 0 {
				x.complete(env, j, !j.failed)
			}
		})
	}
	return nil
}
