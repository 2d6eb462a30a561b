package logic_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/wire"
)

// The SEND_ACK carries the seq the store's transaction assigned, even when
// another logic instance wrote to the conversation first.
func TestSendAckCarriesCommittedSeq(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bugs    bugs.Set
		wantSeq uint64
	}{
		{"guarded", noBugs, 2},
		{"logic-local-seq", bugs.Set{bugs.LogicLocalSeq: true}, 1}, // logic-0's own counter
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, nil)
			bob := w.entry.Client("bob", "tablet")
			alice := w.entry.Client("alice", "phone")
			rb := send(bob, logic1, 1, 1) // bob writes first, through logic-1
			w.c.Stabilize()
			ra := send(alice, logic0, 1, 1)
			w.c.Stabilize()

			w.sendAcksAgree(bob, rb, 1)
			if got := w.ack(alice, ra).Seq; got != tc.wantSeq {
				t.Fatalf("alice's ack: got seq %d, want %d (stored %q)", got, tc.wantSeq, w.stored())
			}
			if got, want := w.stored(), "1:m1 2:m1"; got != want {
				t.Fatalf("stored: got %q, want %q", got, want)
			}
		})
	}
}

// A send committed through logic-0, which crashed before answering, is
// resent by entry to logic-1: the same seq comes back and nothing is stored
// twice; a second resend after a lost ack changes nothing either.
func TestResendAfterLogicFailover(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		bugs                  bugs.Set
		wantFirst, wantSecond uint64 // seqs in the acks of the two resends
		wantStored            string
	}{
		{"guarded", noBugs, 1, 1, "1:m1"},
		{"logic-local-seq", bugs.Set{bugs.LogicLocalSeq: true}, 1, 2, "1:m1"},
		{"no-dedup", bugs.Set{bugs.NoDedup: true}, 2, 3, "1:m1 2:m1 3:m1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, nil)
			alice := w.entry.Client("alice", "phone")
			body := sendBody(alice, 1, 1)
			r1 := alice.Request(logic0, body)
			w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			w.c.Deliver(appendOf(1))
			w.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreApply) // committed
			w.c.Crash(logic0)                                             // before it hears so
			w.c.Stabilize()
			if r := alice.Response(r1); r != nil {
				t.Fatalf("answer from a crashed logic: got %v, want none", r)
			}

			// Entry fails over: the same request to logic-1.
			alice.Resend(logic1, r1, body)
			w.c.Stabilize()
			if got := w.ack(alice, r1).Seq; got != tc.wantFirst {
				t.Fatalf("resend after failover: got seq %d, want %d", got, tc.wantFirst)
			}
			// Its ack is lost on the way; the client resends once more.
			alice.Resend(logic1, r1, body)
			w.c.Stabilize()
			if got := w.ack(alice, r1).Seq; got != tc.wantSecond {
				t.Errorf("second resend: got seq %d, want %d", got, tc.wantSecond)
			}
			if got := w.stored(); got != tc.wantStored {
				t.Errorf("stored: got %q, want %q", got, tc.wantStored)
			}
		})
	}
}

// A das link going down or a das timeout moves the append to the next das
// slot; the message is stored once and acknowledged with its seq.
func TestDasFailover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(w *world)
	}{
		{"link-down", func(w *world) {
			w.c.Drop(appendOf(1))
			w.c.LinkDown(logic0, dasOf(conv))
		}},
		{"timeout-after-commit", func(w *world) {
			w.c.Deliver(appendOf(1))
			w.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreApply)
			w.c.Drop(nodetest.To[*wire.StoreReply](logic0)) // the answer is lost
			w.c.Advance(logic.DasTimeoutDefault)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, noBugs, nil)
			alice := w.entry.Client("alice", "phone")
			r1 := send(alice, logic0, 1, 1)
			w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			tc.fault(w)
			w.c.Advance(20 * time.Millisecond) // the retry's backoff (at most retryBackoffBase)
			w.c.Stabilize()
			w.sendAcksAgree(alice, r1, 1)
			if got := w.stored(); got != "1:m1" {
				t.Fatalf("stored: got %q, want %q", got, "1:m1")
			}
			st := w.logics[0].Stats()
			if st.Failovers != 1 || st.Unknown != 1 {
				t.Fatalf("stats: got failovers=%d unknown=%d, want 1 and 1", st.Failovers, st.Unknown)
			}
		})
	}
}

// After appendRetryMax unknown outcomes the client hears TIMEOUT, and the
// session's later send waits (rejected OUT_OF_ORDER) rather than overtake.
func TestAppendRetryMaxAnswersTimeout(t *testing.T) {
	w := newWorld(t, noBugs, func(c *logic.Config) { c.AppendRetryMax = 2 })
	alice := w.entry.Client("alice", "phone")
	r1 := send(alice, logic0, 1, 1)
	r2 := send(alice, logic0, 2, 1)
	w.c.HoldStores = nodetest.StoreAppends
	for range 2 {
		w.c.Stabilize()
		for w.c.FindStore(nodetest.StoreAppends) != nil {
			w.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreUnknownLost)
		}
		w.c.Stabilize()
		w.c.Advance(700 * time.Millisecond)
	}
	w.c.Stabilize()
	if got := w.errCode(alice, r1); got != wire.ErrorCode_TIMEOUT {
		t.Fatalf("cseq 1: got %s, want TIMEOUT", got)
	}
	if got := w.errCode(alice, r2); got != wire.ErrorCode_OUT_OF_ORDER {
		t.Fatalf("cseq 2: got %s, want OUT_OF_ORDER", got)
	}
	if got := w.stored(); got != "" {
		t.Fatalf("stored: got %q, want nothing", got)
	}
}

// Delivery after a commit: offline recipients get OfflineWork on the queue,
// online ones a push; a failed push takes the offline path.
func TestDelivery(t *testing.T) {
	w := newWorld(t, noBugs, nil)
	alice := w.entry.Client("alice", "phone")
	bob := w.entry.Client("bob", "tablet")

	send(alice, logic0, 1, 1) // bob is offline
	w.c.Stabilize()
	wantPublished(t, w, mq.OfflinePrefix+"bob", fmt.Sprintf("off:%s:1:bob", conv), 1)
	wantPublished(t, w, mq.EventSent, fmt.Sprintf("sent:%s:1", conv), 1)
	if got := bob.Pushes(); len(got) != 0 {
		t.Fatalf("pushes to offline bob: got %d, want 0", len(got))
	}

	w.login(bob, logic1)
	send(alice, logic0, 2, 2)
	w.c.Stabilize()
	pushes := bob.Pushes()
	if len(pushes) != 1 || pushes[0].Seq != 2 || pushes[0].SenderId != "alice" {
		t.Fatalf("pushes to bob: got %v, want seq 2 from alice", pushes)
	}
	wantPublished(t, w, mq.OfflinePrefix+"bob", fmt.Sprintf("off:%s:2:bob", conv), 0)

	// Entry could not get bob to acknowledge it.
	w.c.Net = append(w.c.Net, &nodetest.Envelope{From: entry0, To: logic0, Msg: &wire.PushFailed{
		UserId: "bob", Messages: pushes, Reason: "push ack timeout",
	}})
	w.c.Stabilize()
	wantPublished(t, w, mq.OfflinePrefix+"bob", fmt.Sprintf("off:%s:2:bob", conv), 1)
	if got := w.logics[0].Stats(); got.Pushes != 1 || got.OfflinePublishes != 2 {
		t.Errorf("stats: got pushes=%d offline=%d, want 1 and 2", got.Pushes, got.OfflinePublishes)
	}
}

// wantPublished checks how many publishes carry msgID on subject, and that
// an OfflineWork names the user of its subject.
func wantPublished(t *testing.T, w *world, subject, msgID string, want int) {
	t.Helper()
	got := 0
	for _, p := range w.c.Published {
		if p.MsgID != msgID {
			continue
		}
		if p.Subject != subject {
			t.Errorf("msgID %s: got subject %s, want %s", msgID, p.Subject, subject)
		}
		got++
	}
	if got != want {
		t.Fatalf("publishes of %s: got %d, want %d", msgID, got, want)
	}
}

// Unread counts follow reads and sends; sending advances the sender's own read_seq.
func TestUnreadCounts(t *testing.T) {
	w := newWorld(t, noBugs, nil)
	alice := w.entry.Client("alice", "phone")
	bob := w.entry.Client("bob", "tablet")
	for c := uint64(1); c <= 3; c++ {
		send(alice, logic0, c, c)
	}
	w.c.Stabilize()

	unread := func(fc *nodetest.FakeClient, to node.Addr) (last, read, unread uint64) {
		t.Helper()
		r := fc.Request(to, &wire.ConvList{Limit: 10})
		w.c.Stabilize()
		resp, ok := fc.Response(r).(*wire.ConvListResp)
		if !ok || len(resp.Convs) != 1 {
			t.Fatalf("conv list of %s: got %v, want one conversation", fc.User, fc.Response(r))
		}
		c := resp.Convs[0]
		return c.LastSeq, c.ReadSeq, c.Unread
	}
	check := func(what string, fc *nodetest.FakeClient, to node.Addr, wantLast, wantRead, wantUnread uint64) {
		t.Helper()
		last, read, n := unread(fc, to)
		if last != wantLast || read != wantRead || n != wantUnread {
			t.Errorf("%s: got last=%d read=%d unread=%d, want %d %d %d", what, last, read, n, wantLast, wantRead, wantUnread)
		}
	}
	check("bob before reading", bob, logic1, 3, 0, 3)
	check("alice after sending", alice, logic0, 3, 3, 0)

	rr := bob.Request(logic1, &wire.Read{ConvId: conv, Seq: 2})
	w.c.Stabilize()
	if a, ok := bob.Response(rr).(*wire.ReadAck); !ok || a.ReadSeq != 2 {
		t.Fatalf("read: got %v, want ReadAck read_seq 2", bob.Response(rr))
	}
	check("bob after reading 2", bob, logic1, 3, 2, 1)

	send(bob, logic1, 1, 1)
	w.c.Stabilize()
	check("bob after sending", bob, logic1, 4, 4, 0)
	check("alice after bob's reply", alice, logic0, 4, 3, 1)
}

// The sender is the session's user, whatever the Send says; non-participants
// and platform conversations are refused.
func TestSenderIsTheSessionUser(t *testing.T) {
	w := newWorld(t, noBugs, nil)
	alice := w.entry.Client("alice", "phone")
	forged := sendBody(alice, 1, 1)
	forged.SenderId = "bob"
	r := alice.Request(logic0, forged)
	w.c.Stabilize()
	w.ack(alice, r)
	msgs := w.dump()
	if len(msgs) != 1 || msgs[0].SenderID != "alice" {
		t.Fatalf("stored: got %+v, want one message from alice", msgs)
	}
	// The recipient is alice's peer, not alice.
	wantPublished(t, w, mq.OfflinePrefix+"bob", fmt.Sprintf("off:%s:1:bob", conv), 1)

	for _, tc := range []struct {
		name string
		user string
		conv string
		want wire.ErrorCode
	}{
		{"not a participant", "eve", conv, wire.ErrorCode_FORBIDDEN},
		{"system conversation", "alice", wire.SystemConvID("alice"), wire.ErrorCode_FORBIDDEN},
		{"broadcast", "alice", wire.BroadcastConvID, wire.ErrorCode_FORBIDDEN},
		{"garbage conversation", "alice", "p:alice", wire.ErrorCode_BAD_REQUEST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := w.entry.Client(tc.user, "x")
			r := fc.Request(logic0, &wire.Send{ConvId: tc.conv, ClientMsgId: "c1", Cseq: 1, Body: "hi", AckFloor: 1})
			w.c.Stabilize()
			if got := w.errCode(fc, r); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	if got := len(w.dump()); got != 1 {
		t.Fatalf("messages stored: got %d, want 1", got)
	}
}

// bugs.StaleSync: a sync that starts after an ack misses the message.
func TestSyncAfterAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		bugs bugs.Set
		want int
	}{
		{"guarded", noBugs, 1},
		{"stale-sync", bugs.Set{bugs.StaleSync: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, nil)
			alice := w.entry.Client("alice", "phone")
			bob := w.entry.Client("bob", "tablet")
			w.ack(alice, func() uint32 { r := send(alice, logic0, 1, 1); w.c.Stabilize(); return r }())
			r := bob.Request(logic1, &wire.Sync{ConvId: conv})
			w.c.Stabilize()
			resp, ok := bob.Response(r).(*wire.SyncResp)
			if !ok {
				t.Fatalf("sync: got %v, want SyncResp", bob.Response(r))
			}
			if len(resp.Messages) != tc.want {
				t.Fatalf("sync after the ack: got %d messages (last_seq %d), want %d", len(resp.Messages), resp.LastSeq, tc.want)
			}
		})
	}
}

// bugs.AckBeforeCommit: the client is told seq 1 for a message the store
// never took.
func TestAckOnlyAfterCommit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bugs    bugs.Set
		wantAck bool
	}{
		{"guarded", noBugs, false},
		{"ack-before-commit", bugs.Set{bugs.AckBeforeCommit: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, func(c *logic.Config) { c.AppendRetryMax = 1 })
			alice := w.entry.Client("alice", "phone")
			r := send(alice, logic0, 1, 1)
			w.c.HoldStores = nodetest.StoreAppends
			w.c.Stabilize()
			w.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreUnavailable)
			w.c.Stabilize()
			_, acked := alice.Response(r).(*wire.SendAck)
			if acked != tc.wantAck {
				t.Fatalf("acknowledged: got %v (%v), want %v", acked, alice.Response(r), tc.wantAck)
			}
			if got := w.stored(); got != "" {
				t.Fatalf("stored: got %q, want nothing", got)
			}
		})
	}
}

// The kick names the replacing login's instance and attempt (from its LOGIN
// body), so the entry holding the older session can tell a stale login of
// the same process from a newer one (swarm seed 253).
func TestKickNamesTheLogin(t *testing.T) {
	w := newWorld(t, noBugs, nil)
	live := w.entry.Client("alice", "phone")
	stale := w.entry.Client("alice", "phone")
	w.login(live, logic0)
	req := stale.Request(logic1, &wire.Login{Token: "checked-by-entry", DeviceId: "phone", Instance: "p1", Attempt: 1})
	w.c.Stabilize()
	if _, ok := stale.Response(req).(*wire.LoginAck); !ok {
		t.Fatalf("stale login: got %v, want LoginAck", stale.Response(req))
	}
	k := live.KickRequest()
	if k == nil || k.ByInstance != "p1" || k.ByAttempt != 1 {
		t.Fatalf("kick of the older session: got %v, want by_instance p1 by_attempt 1", k)
	}
}

// A second login of the same user kicks the first connection.
func TestLoginKicksOlderConnection(t *testing.T) {
	w := newWorld(t, noBugs, nil)
	phone := w.entry.Client("alice", "phone")
	laptop := w.entry.Client("alice", "laptop")
	w.login(phone, logic0)
	w.login(laptop, logic1)
	if !phone.Kicked() || laptop.Kicked() {
		t.Fatalf("kicked: got phone=%v laptop=%v, want true false", phone.Kicked(), laptop.Kicked())
	}
	if got := w.c.Presence["alice"].Conn; got != laptop.Conn {
		t.Fatalf("presence: got conn %d, want %d", got, laptop.Conn)
	}
	// The closed phone connection does not remove the laptop's presence.
	phone.Closed(logic0)
	w.c.Stabilize()
	if got, ok := w.c.Presence["alice"]; !ok || got.Conn != laptop.Conn {
		t.Fatalf("presence after the old connection closed: got %+v, want conn %d", got, laptop.Conn)
	}
	laptop.Closed(logic1)
	w.c.Stabilize()
	if _, ok := w.c.Presence["alice"]; ok {
		t.Fatal("presence after the laptop closed: got an entry, want none")
	}
}

// A process that serves only some businesses refuses the others.
func TestBusinessSplit(t *testing.T) {
	w := newWorld(t, noBugs, func(c *logic.Config) { c.Businesses = []logic.Business{logic.BusinessLogin} })
	alice := w.entry.Client("alice", "phone")
	w.login(alice, logic0)
	r := send(alice, logic0, 1, 1)
	w.c.Stabilize()
	if got := w.errCode(alice, r); got != wire.ErrorCode_UNAVAILABLE {
		t.Fatalf("send at a login-only logic: got %s, want UNAVAILABLE", got)
	}
}

// An entry that dies cannot report PushFailed: logic takes the offline path
// for the pushes it sent there within the window when the link goes down.
func TestPushesLostWithEntryGoOffline(t *testing.T) {
	w := newWorld(t, noBugs, nil)
	alice := w.entry.Client("alice", "phone")
	bob := w.entry.Client("bob", "tablet")
	w.login(bob, logic1)
	send(alice, logic0, 1, 1)
	w.c.Stabilize()
	if got := bob.Pushes(); len(got) != 1 {
		t.Fatalf("pushes to bob: got %d, want 1", len(got))
	}
	wantPublished(t, w, mq.OfflinePrefix+"bob", fmt.Sprintf("off:%s:1:bob", conv), 0)
	w.c.LinkDown(logic0, entry0)
	w.c.Stabilize()
	wantPublished(t, w, mq.OfflinePrefix+"bob", fmt.Sprintf("off:%s:1:bob", conv), 1)
	if got := w.logics[0].Stats().PushesLostWithEntry; got != 1 {
		t.Fatalf("PushesLostWithEntry: got %d, want 1", got)
	}
}

// A das that never answers must not keep a client request in logic past
// AnswerWithin: the retry after the first attempt's timeout gets only what
// is left of the request's budget, and logic answers TIMEOUT (a send's
// outcome is unknown: the client resends) before entry's attempt timer
// (logicTimeout, 2s) would read the wait as a dead logic and fail over.
func TestSlowDasAnsweredWithinBudget(t *testing.T) {
	blackHole := func(w *world, match func(*nodetest.Envelope) bool) {
		for w.c.Drop(match) != nil {
		}
	}
	isSync := func(e *nodetest.Envelope) bool {
		r, ok := e.Msg.(*wire.StoreRequest)
		return ok && r.Sync != nil
	}
	for _, tc := range []struct {
		name    string
		request func(w *world, fc *nodetest.FakeClient) uint32
		match   func(*nodetest.Envelope) bool
	}{
		{"send", func(w *world, fc *nodetest.FakeClient) uint32 { return send(fc, logic0, 1, 1) }, appendOf(1)},
		{"sync", func(w *world, fc *nodetest.FakeClient) uint32 { return fc.Request(logic0, &wire.Sync{ConvId: conv}) }, isSync},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, noBugs, nil)
			alice := w.entry.Client("alice", "phone")
			r := tc.request(w, alice)
			w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			blackHole(w, tc.match)
			w.c.Advance(logic.DasTimeoutDefault) // first attempt times out: retry
			w.c.Advance(20 * time.Millisecond)   // a send's backoff (at most retryBackoffBase)
			blackHole(w, tc.match)
			w.c.Advance(logic.AnswerWithinDefault - logic.DasTimeoutDefault - 20*time.Millisecond)
			blackHole(w, tc.match)
			w.c.Stabilize()
			if got := w.errCode(alice, r); got != wire.ErrorCode_TIMEOUT {
				t.Fatalf("answer at AnswerWithin: got %v, want TIMEOUT", got)
			}
		})
	}
}
