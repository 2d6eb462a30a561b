package extlogic

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

const dasSlots = 3

// harness drives one ExtLogic with a scripted Env. The test completes every
// request by hand; fakeStore is a minimal idempotent append log so "stored
// once" is checked against contents, not against what extlogic claims.
type harness struct {
	t      *testing.T
	env    *nodetest.Env
	x      *ExtLogic
	notes  []Notification
	nextID node.DeliveryID
	store  *fakeStore
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, env: nodetest.New(node.Addr{Role: node.RoleExtLogic, Slot: 0}), store: newFakeStore()}
	if cfg.Topology == nil {
		cfg.Topology = map[node.Role]int{node.RoleDas: dasSlots, node.RoleEntry: 2}
	}
	cfg.Notifier = NotifierFunc(func(n Notification) { h.notes = append(h.notes, n) })
	h.x = New(cfg)
	h.x.Start(h.env)
	h.env.Take() // registration and heartbeat timer
	return h
}

// deliver hands the node a queue delivery and returns its id.
func (h *harness) deliver(subject string, m proto.Message, msgID string, numDelivered int) node.DeliveryID {
	h.t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		h.t.Fatalf("marshal: %v", err)
	}
	return h.deliverRaw(subject, data, msgID, numDelivered)
}

func (h *harness) deliverRaw(subject string, data []byte, msgID string, numDelivered int) node.DeliveryID {
	h.nextID++
	h.x.Handle(h.env, node.Delivery{ID: h.nextID, Subject: subject, Data: data, MsgID: msgID, NumDelivered: numDelivered})
	return h.nextID
}

// storeSent is a StoreRequest the node sent, with its destination.
type storeSent struct {
	to  node.Addr
	req *wire.StoreRequest
}

func storeRequests(effects []any) []storeSent {
	var out []storeSent
	for _, s := range nodetest.Of[nodetest.Sent](effects) {
		if r, ok := s.Msg.(*wire.StoreRequest); ok {
			out = append(out, storeSent{to: s.To, req: r})
		}
	}
	return out
}

func pushRequests(effects []any) []*wire.PushRequest {
	var out []*wire.PushRequest
	for _, s := range nodetest.Of[nodetest.Sent](effects) {
		if r, ok := s.Msg.(*wire.PushRequest); ok {
			out = append(out, r)
		}
	}
	return out
}

// reply answers a store request from the das it was sent to.
func (h *harness) reply(s storeSent, outcome wire.Outcome, code wire.ErrorCode) {
	r := &wire.StoreReply{ReqId: s.req.ReqId, CallerIncarnation: s.req.CallerIncarnation, Outcome: outcome, Code: code}
	if outcome == wire.Outcome_OUTCOME_OK && s.req.Append != nil {
		r.Append = h.store.append(s.req.Append)
	}
	h.x.Handle(h.env, node.Recv{From: s.to, Msg: r})
}

// answerPresence completes a presence request.
func (h *harness) answerPresence(req node.ReqID, res *node.PresenceResult) {
	h.x.Handle(h.env, node.Completion{Req: req, Outcome: node.OK, Presence: res})
}

// one asserts that exactly one T was recorded and returns it.
func one[T any](t *testing.T, effects []any) T {
	t.Helper()
	got := nodetest.Of[T](effects)
	if len(got) != 1 {
		t.Fatalf("got %d %T effects, want 1:\n%s", len(got), *new(T), nodetest.Describe(effects))
	}
	return got[0]
}

type fakeStore struct {
	seqs map[string]map[string]uint64 // conv → client_msg_id → seq
	logs map[string][]*wire.AppendItem
}

func newFakeStore() *fakeStore {
	return &fakeStore{seqs: map[string]map[string]uint64{}, logs: map[string][]*wire.AppendItem{}}
}

func (f *fakeStore) append(a *wire.AppendItem) *wire.AppendResult {
	if f.seqs[a.ConvId] == nil {
		f.seqs[a.ConvId] = map[string]uint64{}
	}
	if seq, ok := f.seqs[a.ConvId][a.ClientMsgId]; ok {
		return &wire.AppendResult{Seq: seq, Duplicate: true}
	}
	f.logs[a.ConvId] = append(f.logs[a.ConvId], a)
	seq := uint64(len(f.logs[a.ConvId]))
	f.seqs[a.ConvId][a.ClientMsgId] = seq
	return &wire.AppendResult{Seq: seq}
}

func dasSlotFor(key string) node.Addr {
	slot, _ := route.Pick(key, []bool{true, true, true})
	return node.Addr{Role: node.RoleDas, Slot: slot}
}

func chat(conv string, seq uint64) *wire.ChatMessage {
	return &wire.ChatMessage{ConvId: conv, Seq: seq, SenderId: "bob", Body: "hi"}
}

func TestOfflineWorkNotifiesOnce(t *testing.T) {
	h := newHarness(t, Config{})
	conv := wire.PairConvID("alice", "bob", "l1")
	work := &wire.OfflineWork{UserId: "alice", Messages: []*wire.ChatMessage{chat(conv, 1), chat(conv, 2)}}

	id := h.deliver(mq.OfflinePrefix+"alice", work, "off:1", 1)
	if got := one[nodetest.Acked](t, h.env.Take()); got.ID != id {
		t.Fatalf("got ack of %d, want %d", got.ID, id)
	}
	if len(h.notes) != 1 || len(h.notes[0].Messages) != 2 || h.notes[0].User != "alice" {
		t.Fatalf("got notifications %+v, want one for alice with 2 messages", h.notes)
	}

	// A redelivery beyond the dedup window: acked, no second notification.
	id = h.deliver(mq.OfflinePrefix+"alice", work, "off:1", 2)
	if got := one[nodetest.Acked](t, h.env.Take()); got.ID != id {
		t.Fatalf("got ack of %d, want %d", got.ID, id)
	}
	if len(h.notes) != 1 {
		t.Fatalf("got %d notifications after redelivery, want 1", len(h.notes))
	}
	// New work mixing a notified and a new message notifies only the new one.
	work2 := &wire.OfflineWork{UserId: "alice", Messages: []*wire.ChatMessage{chat(conv, 2), chat(conv, 3)}}
	h.deliver(mq.OfflinePrefix+"alice", work2, "off:2", 1)
	if len(h.notes) != 2 || len(h.notes[1].Messages) != 1 || h.notes[1].Messages[0].Seq != 3 {
		t.Fatalf("got notifications %+v, want a second one with seq 3 only", h.notes)
	}
	st := h.x.Stats()
	if st.Notifications != 2 || st.Duplicates != 3 || st.Redeliveries != 1 || st.Acks != 3 {
		t.Fatalf("got stats %+v, want 2 notifications, 3 duplicates, 1 redelivery, 3 acks", st)
	}
}

func TestNotificationBoundedMessages(t *testing.T) {
	h := newHarness(t, Config{})
	conv := wire.PairConvID("alice", "bob", "l1")
	work := &wire.OfflineWork{UserId: "alice"}
	for seq := uint64(1); seq <= NotificationMessagesMax+7; seq++ {
		work.Messages = append(work.Messages, chat(conv, seq))
	}
	h.deliver(mq.OfflinePrefix+"alice", work, "off:big", 1)
	if len(h.notes) != 1 || len(h.notes[0].Messages) != NotificationMessagesMax || h.notes[0].Omitted != 7 {
		t.Fatalf("got %d messages, %d omitted, want %d and 7", len(h.notes[0].Messages), h.notes[0].Omitted, NotificationMessagesMax)
	}
}

func TestNotificationLRUBounded(t *testing.T) {
	h := newHarness(t, Config{NotifiedMax: 2})
	conv := wire.PairConvID("alice", "bob", "l1")
	for seq := uint64(1); seq <= 3; seq++ {
		h.deliver(mq.OfflinePrefix+"alice", &wire.OfflineWork{UserId: "alice", Messages: []*wire.ChatMessage{chat(conv, seq)}}, fmt.Sprint("off:", seq), 1)
	}
	if got := h.x.notified.len(); got != 2 {
		t.Fatalf("got LRU size %d, want 2", got)
	}
	// seq 1 was evicted: best effort means it may be notified again.
	h.deliver(mq.OfflinePrefix+"alice", &wire.OfflineWork{UserId: "alice", Messages: []*wire.ChatMessage{chat(conv, 1)}}, "off:1", 2)
	if len(h.notes) != 4 {
		t.Fatalf("got %d notifications, want 4 (seq 1 evicted, so notified again)", len(h.notes))
	}
}

// noticeRound delivers a notice and completes it: store as told, presence as found.
func (h *harness) noticeRound(n *wire.PlatformNotice, numDelivered int, online bool) (node.DeliveryID, []any) {
	h.t.Helper()
	id := h.deliver(mq.PlatformNotice, n, "notice:"+n.NoticeId, numDelivered)
	s := storeRequests(h.env.Take())
	if len(s) != 1 {
		h.t.Fatalf("got %d store requests, want 1", len(s))
	}
	h.reply(s[0], wire.Outcome_OUTCOME_OK, 0)
	eff := h.env.Take()
	pr := one[nodetest.PresenceReq](h.t, eff)
	if pr.Op.Kind != node.PresenceGet || len(pr.Op.Users) != 1 || pr.Op.Users[0] != n.UserId {
		h.t.Fatalf("got presence op %+v, want Get of %s", pr.Op, n.UserId)
	}
	res := &node.PresenceResult{Found: []node.PresenceEntry{{}}}
	if online {
		res.Found[0] = node.PresenceEntry{User: n.UserId, Entry: node.Addr{Role: node.RoleEntry, Slot: 1}, Conn: 7, Incarnation: 3}
	}
	h.answerPresence(pr.Req, res)
	return id, h.env.Take()
}

func TestPlatformNoticeStoredOnceUnderRedelivery(t *testing.T) {
	h := newHarness(t, Config{})
	n := &wire.PlatformNotice{NoticeId: "order-42-paid", UserId: "alice", Kind: "order", Body: "your order was paid"}

	// First delivery: the append goes to the das of s:alice, as a system message.
	id := h.deliver(mq.PlatformNotice, n, "notice:x", 1)
	s := storeRequests(h.env.Take())
	if len(s) != 1 {
		t.Fatalf("got %d store requests, want 1", len(s))
	}
	a := s[0].req.Append
	conv := wire.SystemConvID("alice")
	switch {
	case s[0].to != dasSlotFor(conv):
		t.Fatalf("got das %v, want %v", s[0].to, dasSlotFor(conv))
	case s[0].req.Business != wire.Business_BUSINESS_SYSTEM:
		t.Fatalf("got business %v, want SYSTEM", s[0].req.Business)
	case a.ConvId != conv || a.SenderId != store.SystemSender || a.ClientMsgId != n.NoticeId || a.PeerId != "alice":
		t.Fatalf("got append %+v, want conv %s sender %s client_msg_id %s peer alice", a, conv, store.SystemSender, n.NoticeId)
	case s[0].req.ReplyTo != "extlogic-0" || s[0].req.CallerIncarnation != 1:
		t.Fatalf("got reply_to %q incarnation %d, want extlogic-0 and 1", s[0].req.ReplyTo, s[0].req.CallerIncarnation)
	}
	h.reply(s[0], wire.Outcome_OUTCOME_OK, 0)
	pr := one[nodetest.PresenceReq](t, h.env.Take())
	if len(nodetest.Of[nodetest.Acked](h.env.Effects)) != 0 {
		t.Fatal("acked before the presence lookup finished")
	}
	h.answerPresence(pr.Req, &node.PresenceResult{Found: []node.PresenceEntry{{User: "alice", Entry: node.Addr{Role: node.RoleEntry, Slot: 1}, Conn: 7, Incarnation: 3}}})
	eff := h.env.Take()
	sent := one[nodetest.Sent](t, eff)
	push, ok := sent.Msg.(*wire.PushRequest)
	if !ok || sent.To != (node.Addr{Role: node.RoleEntry, Slot: 1}) {
		t.Fatalf("got %T to %v, want PushRequest to entry-1", sent.Msg, sent.To)
	}
	if len(push.Targets) != 1 || push.Targets[0].Conn != 7 || push.Targets[0].EntryIncarnation != 3 || push.ReplyTo != "extlogic-0" {
		t.Fatalf("got push %v, want one target conn 7 incarnation 3, reply_to extlogic-0", push)
	}
	if m := push.Messages[0]; m.Seq != 1 || m.ConvId != conv || m.SenderId != store.SystemSender {
		t.Fatalf("got pushed message %v, want seq 1 of %s from %s", m, conv, store.SystemSender)
	}
	if got := one[nodetest.Acked](t, eff); got.ID != id {
		t.Fatalf("got ack %d, want %d", got.ID, id)
	}

	// Redelivered after the dedup window, twice: the store returns Duplicate,
	// nothing is stored again, and each delivery is acked.
	for i := 2; i <= 3; i++ {
		id, eff := h.noticeRound(n, i, false)
		if got := one[nodetest.Acked](t, eff); got.ID != id {
			t.Fatalf("got ack %d, want %d", got.ID, id)
		}
		if len(pushRequests(eff)) != 0 {
			t.Fatalf("pushed to an offline user:\n%s", nodetest.Describe(eff))
		}
	}
	if got := len(h.store.logs[conv]); got != 1 {
		t.Fatalf("got %d stored notices, want 1", got)
	}
	st := h.x.Stats()
	if st.NoticesStored != 1 || st.Duplicates != 2 || st.Redeliveries != 2 || st.Pushes != 1 {
		t.Fatalf("got stats %+v, want 1 stored, 2 duplicates, 2 redeliveries, 1 push", st)
	}
}

func TestRedeliveryWhileInProgressJoins(t *testing.T) {
	h := newHarness(t, Config{})
	n := &wire.PlatformNotice{NoticeId: "n1", UserId: "alice", Body: "x"}
	first := h.deliver(mq.PlatformNotice, n, "notice:n1", 1)
	s := storeRequests(h.env.Take())
	second := h.deliver(mq.PlatformNotice, n, "notice:n1", 2)
	if eff := h.env.Take(); len(eff) != 0 {
		t.Fatalf("got effects for a delivery already in progress, want none:\n%s", nodetest.Describe(eff))
	}
	h.reply(s[0], wire.Outcome_OUTCOME_OK, 0)
	pr := one[nodetest.PresenceReq](t, h.env.Take())
	h.answerPresence(pr.Req, &node.PresenceResult{Found: []node.PresenceEntry{{}}})
	acked := nodetest.Of[nodetest.Acked](h.env.Take())
	if len(acked) != 2 || acked[0].ID != first || acked[1].ID != second {
		t.Fatalf("got acks %v, want %d and %d", acked, first, second)
	}
	if st := h.x.Stats(); st.Joined != 1 || h.x.inflight != 0 {
		t.Fatalf("got joined %d inflight %d, want 1 and 0", st.Joined, h.x.inflight)
	}
}

// scripted presence: users spread over two entries, paged by cursor = offset.
type fakePresence struct{ users []node.PresenceEntry }

func newFakePresence(n int) *fakePresence {
	p := &fakePresence{}
	for i := range n {
		p.users = append(p.users, node.PresenceEntry{
			User: fmt.Sprintf("u%05d", i), Entry: node.Addr{Role: node.RoleEntry, Slot: i % 2}, Conn: node.ConnID(i + 1), Incarnation: 1,
		})
	}
	return p
}

func (p *fakePresence) scan(op node.PresenceOp) *node.PresenceResult {
	from := int(op.Cursor)
	to := min(from+op.Count, len(p.users))
	res := &node.PresenceResult{Found: p.users[from:to]}
	if to < len(p.users) {
		res.Cursor = uint64(to)
	}
	return res
}

// runBroadcasts answers every store and scan request until nothing is
// pending, checking the bound on pages in flight. It returns every effect.
func (h *harness) runBroadcasts(p *fakePresence, inflightMax int) []any {
	h.t.Helper()
	var all []any
	pending := map[node.ReqID]node.PresenceOp{}
	for round := 0; round < 100_000; round++ {
		eff := h.env.Take()
		all = append(all, eff...)
		for _, s := range storeRequests(eff) {
			h.reply(s, wire.Outcome_OUTCOME_OK, 0)
		}
		for _, pr := range nodetest.Of[nodetest.PresenceReq](eff) {
			pending[pr.Req] = pr.Op
		}
		if len(pending) > inflightMax {
			h.t.Fatalf("got %d presence pages in flight, want at most %d", len(pending), inflightMax)
		}
		if len(pending) == 0 && len(h.env.Effects) == 0 {
			return all
		}
		// Answer the oldest pending page (lowest ReqID: deterministic).
		var oldest node.ReqID
		for id := range pending {
			if oldest == 0 || id < oldest {
				oldest = id
			}
		}
		if oldest != 0 {
			op := pending[oldest]
			delete(pending, oldest)
			h.answerPresence(oldest, p.scan(op))
		}
	}
	h.t.Fatal("broadcast did not finish")
	return nil
}

func TestBroadcastTo10000OnlineUsers(t *testing.T) {
	const users, batchMax = 10_000, 500
	h := newHarness(t, Config{FanoutBatchMax: batchMax})
	b := &wire.PlatformBroadcast{BroadcastId: "sale-2026", Kind: "promo", Body: "50% off"}
	id := h.deliver(mq.PlatformBroadcast, b, "bcast:sale-2026", 1)
	eff := h.runBroadcasts(newFakePresence(users), FanoutInflightMaxDefault)

	if got := len(h.store.logs[wire.BroadcastConvID]); got != 1 {
		t.Fatalf("got %d broadcast appends stored, want 1", got)
	}
	if got := len(storeRequests(eff)); got != 1 {
		t.Fatalf("got %d store requests, want 1", got)
	}
	for _, pr := range nodetest.Of[nodetest.PresenceReq](eff) {
		if pr.Op.Kind != node.PresenceScan || pr.Op.Count != batchMax {
			t.Fatalf("got presence op %+v, want Scan with Count %d", pr.Op, batchMax)
		}
	}
	seen := map[string]int{}
	for _, p := range pushRequests(eff) {
		if len(p.Targets) == 0 || len(p.Targets) > batchMax {
			t.Fatalf("got a push with %d targets, want 1..%d", len(p.Targets), batchMax)
		}
		if p.Messages[0].ConvId != wire.BroadcastConvID || p.Messages[0].Seq != 1 {
			t.Fatalf("got pushed message %v, want seq 1 of %s", p.Messages[0], wire.BroadcastConvID)
		}
		for _, tg := range p.Targets {
			seen[tg.UserId]++
		}
	}
	if len(seen) != users {
		t.Fatalf("got %d users pushed, want %d", len(seen), users)
	}
	for u, n := range seen {
		if n != 1 {
			t.Fatalf("got %d pushes to %s, want 1", n, u)
		}
	}
	acked := nodetest.Of[nodetest.Acked](eff)
	if len(acked) != 1 || acked[0].ID != id {
		t.Fatalf("got acks %v, want one of %d", acked, id)
	}
	if st := h.x.Stats(); st.Broadcasts != 1 || st.Pushes != users || st.FanoutsDone != 1 {
		t.Fatalf("got stats %+v, want 1 broadcast, %d pushes, 1 fan-out", st, users)
	}
}

func TestBroadcastFanoutsBounded(t *testing.T) {
	const inflightMax = 2
	h := newHarness(t, Config{FanoutBatchMax: 10, FanoutInflightMax: inflightMax})
	for i := range 5 {
		b := &wire.PlatformBroadcast{BroadcastId: fmt.Sprint("b", i), Body: "x"}
		h.deliver(mq.PlatformBroadcast, b, fmt.Sprint("bcast:", i), 1)
	}
	eff := h.runBroadcasts(newFakePresence(95), inflightMax)
	if got := len(nodetest.Of[nodetest.Acked](eff)); got != 5 {
		t.Fatalf("got %d acks, want 5", got)
	}
	if got := len(h.store.logs[wire.BroadcastConvID]); got != 5 {
		t.Fatalf("got %d broadcasts stored, want 5", got)
	}
	// Redelivered broadcast: the append is a duplicate; the fan-out repeats.
	h.deliver(mq.PlatformBroadcast, &wire.PlatformBroadcast{BroadcastId: "b0", Body: "x"}, "bcast:0", 2)
	h.runBroadcasts(newFakePresence(95), inflightMax)
	if got := len(h.store.logs[wire.BroadcastConvID]); got != 5 {
		t.Fatalf("got %d broadcasts stored after redelivery, want 5", got)
	}
	if st := h.x.Stats(); st.Duplicates != 1 || st.Pushes != 6*95 {
		t.Fatalf("got %d duplicates and %d pushes, want 1 and %d", st.Duplicates, st.Pushes, 6*95)
	}
}

func TestBroadcastScanFailureNaks(t *testing.T) {
	h := newHarness(t, Config{RetryMax: 2})
	id := h.deliver(mq.PlatformBroadcast, &wire.PlatformBroadcast{BroadcastId: "b", Body: "x"}, "bcast:b", 1)
	h.reply(storeRequests(h.env.Take())[0], wire.Outcome_OUTCOME_OK, 0)
	for range 2 {
		pr := one[nodetest.PresenceReq](t, h.env.Take())
		h.x.Handle(h.env, node.Completion{Req: pr.Req, Outcome: node.Unknown})
	}
	if got := one[nodetest.Nakked](t, h.env.Take()); got.ID != id {
		t.Fatalf("got nak of %d, want %d", got.ID, id)
	}
	if h.x.fanoutActive != 0 {
		t.Fatalf("got %d fan-outs active, want 0", h.x.fanoutActive)
	}
}

func TestContactTouchForBothUsers(t *testing.T) {
	h := newHarness(t, Config{})
	conv := wire.PairConvID("alice", "bob", "l1")
	ev := &wire.MessageSent{ConvId: conv, SenderId: "alice", PeerId: "bob", Seq: 4, AtMs: 1234}
	id := h.deliver(mq.EventSent, ev, "sent:"+conv+":4", 1)
	s := storeRequests(h.env.Take())
	if len(s) != 2 {
		t.Fatalf("got %d store requests, want 2", len(s))
	}
	want := [][2]string{{"alice", "bob"}, {"bob", "alice"}}
	for i, w := range want {
		op := s[i].req.TouchContact
		switch {
		case op == nil || op.UserId != w[0] || op.PeerId != w[1] || op.ConvId != conv || op.LastActiveMs != 1234:
			t.Fatalf("got touch %v, want user %s peer %s conv %s at 1234", op, w[0], w[1], conv)
		case s[i].req.Business != wire.Business_BUSINESS_CONTACT:
			t.Fatalf("got business %v, want CONTACT", s[i].req.Business)
		case s[i].to != dasSlotFor(w[0]):
			t.Fatalf("got das %v for %s, want %v (routed by user)", s[i].to, w[0], dasSlotFor(w[0]))
		}
	}
	h.reply(s[0], wire.Outcome_OUTCOME_OK, 0)
	if eff := h.env.Take(); len(nodetest.Of[nodetest.Acked](eff)) != 0 {
		t.Fatal("acked after one of two touches")
	}
	h.reply(s[1], wire.Outcome_OUTCOME_OK, 0)
	if got := one[nodetest.Acked](t, h.env.Take()); got.ID != id {
		t.Fatalf("got ack %d, want %d", got.ID, id)
	}
	if st := h.x.Stats(); st.ContactTouches != 2 {
		t.Fatalf("got %d touches, want 2", st.ContactTouches)
	}
}

func TestContactTouchOneFailsNaks(t *testing.T) {
	h := newHarness(t, Config{})
	conv := wire.PairConvID("alice", "bob", "l1")
	id := h.deliver(mq.EventSent, &wire.MessageSent{ConvId: conv, SenderId: "alice", PeerId: "bob", Seq: 1}, "sent:1", 1)
	s := storeRequests(h.env.Take())
	h.reply(s[0], wire.Outcome_OUTCOME_FAILED, wire.ErrorCode_OVERLOADED)
	if eff := h.env.Take(); len(nodetest.Of[nodetest.Nakked](eff)) != 0 {
		t.Fatal("nakked before the other touch finished")
	}
	h.reply(s[1], wire.Outcome_OUTCOME_OK, 0)
	if got := one[nodetest.Nakked](t, h.env.Take()); got.ID != id || got.Delay != NakDelayBaseDefault {
		t.Fatalf("got nak %+v, want %d after %v", got, id, NakDelayBaseDefault)
	}
}

func TestDasRetriesOnNextSlot(t *testing.T) {
	conv := wire.SystemConvID("alice")
	home := route.Home(conv, dasSlots)
	next := (home + 1) % dasSlots
	tests := []struct {
		name string
		fail func(h *harness, s storeSent)
	}{
		{"unknown outcome", func(h *harness, s storeSent) { h.reply(s, wire.Outcome_OUTCOME_UNKNOWN, 0) }},
		{"timeout", func(h *harness, s storeSent) {
			for _, tm := range h.env.Advance(StoreTimeoutDefault) {
				h.x.Handle(h.env, tm)
			}
		}},
		{"link down", func(h *harness, s storeSent) { h.x.Handle(h.env, node.LinkDown{Peer: s.to}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			id := h.deliver(mq.PlatformNotice, &wire.PlatformNotice{NoticeId: "n1", UserId: "alice", Body: "x"}, "notice:n1", 1)
			first := storeRequests(h.env.Take())[0]
			if first.to.Slot != home {
				t.Fatalf("got das slot %d, want home %d", first.to.Slot, home)
			}
			tt.fail(h, first)
			s := storeRequests(h.env.Take())
			if len(s) != 1 || s[0].to.Slot != next {
				t.Fatalf("got retries %v, want one to das-%d", s, next)
			}
			if s[0].req.ReqId == first.req.ReqId || s[0].req.Append.ClientMsgId != "n1" {
				t.Fatalf("got retry req_id %d client_msg_id %q, want a new id and n1", s[0].req.ReqId, s[0].req.Append.ClientMsgId)
			}
			// A late answer to the first attempt is ignored.
			h.reply(first, wire.Outcome_OUTCOME_OK, 0)
			if eff := h.env.Take(); len(eff) != 0 {
				t.Fatalf("got effects from a late reply, want none:\n%s", nodetest.Describe(eff))
			}
			h.reply(s[0], wire.Outcome_OUTCOME_OK, 0)
			pr := one[nodetest.PresenceReq](t, h.env.Take())
			h.answerPresence(pr.Req, &node.PresenceResult{Found: []node.PresenceEntry{{}}})
			if got := one[nodetest.Acked](t, h.env.Take()); got.ID != id {
				t.Fatalf("got ack %d, want %d", got.ID, id)
			}
			if st := h.x.Stats(); st.StoreRetries != 1 {
				t.Fatalf("got %d retries, want 1", st.StoreRetries)
			}
		})
	}
}

func TestNakWhenDasFails(t *testing.T) {
	tests := []struct {
		name         string
		outcomes     []wire.Outcome
		numDelivered int
		wantDelay    time.Duration
	}{
		{"unknown until retries run out", []wire.Outcome{wire.Outcome_OUTCOME_UNKNOWN, wire.Outcome_OUTCOME_UNKNOWN, wire.Outcome_OUTCOME_UNKNOWN}, 1, NakDelayBaseDefault},
		{"definite failure at once", []wire.Outcome{wire.Outcome_OUTCOME_FAILED}, 1, NakDelayBaseDefault},
		{"backoff grows with deliveries", []wire.Outcome{wire.Outcome_OUTCOME_FAILED}, 3, 4 * NakDelayBaseDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			id := h.deliver(mq.PlatformNotice, &wire.PlatformNotice{NoticeId: "n1", UserId: "alice", Body: "x"}, "notice:n1", tt.numDelivered)
			slots := map[int]bool{}
			for _, o := range tt.outcomes {
				s := storeRequests(h.env.Take())
				if len(s) != 1 {
					t.Fatalf("got %d store requests, want 1", len(s))
				}
				slots[s[0].to.Slot] = true
				h.reply(s[0], o, wire.ErrorCode_OVERLOADED)
			}
			if len(slots) != len(tt.outcomes) {
				t.Fatalf("got attempts on %d distinct das slots, want %d", len(slots), len(tt.outcomes))
			}
			eff := h.env.Take()
			if got := one[nodetest.Nakked](t, eff); got.ID != id || got.Delay != tt.wantDelay {
				t.Fatalf("got nak %+v, want %d after %v", got, id, tt.wantDelay)
			}
			if len(nodetest.Of[nodetest.Acked](eff)) != 0 || h.x.inflight != 0 {
				t.Fatalf("got acks or %d deliveries in flight after a nak", h.x.inflight)
			}
		})
	}
}

func TestInflightMaxNaks(t *testing.T) {
	h := newHarness(t, Config{InflightMax: 2})
	for i := range 3 {
		h.deliver(mq.PlatformNotice, &wire.PlatformNotice{NoticeId: fmt.Sprint("n", i), UserId: "alice", Body: "x"}, fmt.Sprint("notice:", i), 1)
	}
	eff := h.env.Take()
	if got := len(storeRequests(eff)); got != 2 {
		t.Fatalf("got %d store requests, want 2", got)
	}
	if got := one[nodetest.Nakked](t, eff); got.ID != 3 || got.Delay != OverloadNakDelayDefault {
		t.Fatalf("got nak %+v, want delivery 3 after %v", got, OverloadNakDelayDefault)
	}
	if st := h.x.Stats(); st.Overloaded != 1 {
		t.Fatalf("got %d overloaded, want 1", st.Overloaded)
	}
}

func TestPoisonAndStaleReplies(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name    string
		subject string
		data    []byte
	}{
		{"garbage payload", mq.PlatformNotice, []byte{0xff, 0xff, 0xff}},
		{"unknown subject", "zzim.nothing", nil},
		{"invalid notice id", mq.PlatformNotice, mustMarshal(t, &wire.PlatformNotice{NoticeId: "bad id!", UserId: "alice"})},
		{"invalid user", mq.OfflinePrefix + "x", mustMarshal(t, &wire.OfflineWork{UserId: ""})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := h.deliverRaw(tt.subject, tt.data, "", 1)
			if got := one[nodetest.Acked](t, h.env.Take()); got.ID != id {
				t.Fatalf("got ack %d, want %d", got.ID, id)
			}
		})
	}
	if st := h.x.Stats(); st.Poison != uint64(len(tests)) {
		t.Fatalf("got %d poison, want %d", st.Poison, len(tests))
	}
	// A reply addressed to another incarnation, and a PushFailed: no effects.
	h.x.Handle(h.env, node.Recv{From: node.Addr{Role: node.RoleDas}, Msg: &wire.StoreReply{ReqId: 1, CallerIncarnation: 99}})
	h.x.Handle(h.env, node.Recv{From: node.Addr{Role: node.RoleEntry}, Msg: &wire.PushFailed{UserId: "alice"}})
	if eff := h.env.Take(); len(eff) != 0 {
		t.Fatalf("got effects, want none:\n%s", nodetest.Describe(eff))
	}
	if st := h.x.Stats(); st.PushFailures != 1 {
		t.Fatalf("got %d push failures, want 1", st.PushFailures)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBackoff(t *testing.T) {
	x := New(Config{NakDelayBase: time.Second, NakDelayMax: 10 * time.Second})
	tests := []struct {
		n    int
		want time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {60, 10 * time.Second}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			if got := x.backoff(tt.n); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNextSlot(t *testing.T) {
	tests := []struct {
		name       string
		home, slot int
		alive      []bool
		want       int
	}{
		{"next alive", 0, 0, []bool{true, true, true}, 1},
		{"skips dead", 0, 0, []bool{true, false, true}, 2},
		{"wraps", 1, 2, []bool{true, true, true}, 0},
		{"only itself alive", 0, 1, []bool{false, true, false}, 1},
		{"none alive walks the ring", 0, 1, []bool{false, false, false}, 2},
		{"view shrank below home", 4, 4, []bool{true, true}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextSlot(tt.home, tt.slot, tt.alive); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// Redis SCAN's COUNT is a hint: a page may hold more users than asked for.
// Pushes must still respect fanoutBatchMax.
func TestBroadcastOversizedPageIsSplit(t *testing.T) {
	h := newHarness(t, Config{FanoutBatchMax: 500})
	h.deliver(mq.PlatformBroadcast, &wire.PlatformBroadcast{BroadcastId: "b", Body: "x"}, "bcast:b", 1)
	h.reply(storeRequests(h.env.Take())[0], wire.Outcome_OUTCOME_OK, 0)
	pr := one[nodetest.PresenceReq](t, h.env.Take())
	var found []node.PresenceEntry
	for i := range 1200 {
		found = append(found, node.PresenceEntry{User: fmt.Sprint("u", i), Entry: node.Addr{Role: node.RoleEntry, Slot: 0}, Conn: node.ConnID(i + 1)})
	}
	h.answerPresence(pr.Req, &node.PresenceResult{Found: found})
	var sizes []int
	for _, p := range pushRequests(h.env.Effects) {
		sizes = append(sizes, len(p.Targets))
	}
	if fmt.Sprint(sizes) != "[500 500 200]" {
		t.Fatalf("got push sizes %v, want [500 500 200]", sizes)
	}
}
