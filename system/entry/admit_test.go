package entry

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Admission control: past the bound, SEND/SYNC/... are answered OVERLOADED
// at once and never reach logic; LOGIN and HEARTBEAT pass; an answer frees
// a place; a slow answer cuts the bound (once per target interval); fast
// answers grow it back; a dropped connection gives its places back.
func TestAdmission(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.AdmitLimitMin, c.AdmitLimitInit, c.AdmitLimitMax = 1, 2, 4
		c.AdmitRTTTarget = 100 * time.Millisecond
	})
	h.login(1, "alice")
	h.login(2, "bob")
	var reqs []*wire.ClientRequest
	for id := uint32(2); id <= 3; id++ {
		eff := h.frame(1, wire.OpSync, id, &wire.Sync{})
		if got := requests(eff); len(got) != 1 {
			t.Fatalf("sync %d: got %d forwarded, want 1", id, len(got))
		} else {
			reqs = append(reqs, got[0].req)
		}
	}
	eff := h.frame(2, wire.OpSend, 4, &wire.Send{})
	fs := framesTo(eff, 2)
	if len(requests(eff)) != 0 || len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_OVERLOADED || fs[0].ReqID != 4 {
		t.Fatalf("send past the bound: got %d forwarded and frames %v, want ERROR OVERLOADED for reqID 4", len(requests(eff)), fs)
	}
	if eff := h.frame(2, wire.OpHeartbeat, 5, nil); len(requests(eff)) != 1 {
		t.Fatalf("heartbeat past the bound: got %d forwarded, want 1 (control ops are not shed)", len(requests(eff)))
	}

	// A fast answer frees a place and does not cut.
	h.respond(0, reqs[0], wire.OpSyncResp, &wire.SyncResp{}, false)
	if eff := h.frame(1, wire.OpSync, 6, &wire.Sync{}); len(requests(eff)) != 1 {
		t.Fatalf("after an answer: got %d forwarded, want 1", len(requests(eff)))
	} else {
		reqs = append(reqs, requests(eff)[0].req)
	}

	// Two slow answers in one target interval cut once.
	h.env.Advance(300 * time.Millisecond)
	h.respond(0, reqs[1], wire.OpSyncResp, &wire.SyncResp{}, false)
	h.respond(0, reqs[2], wire.OpSyncResp, &wire.SyncResp{}, false)
	// The fast answer grew the bound to 2.5; one cut of 0.8 leaves 2.
	st := h.e.Stats()
	if st.AdmitCuts != 1 || h.e.admit.limit != 2 || st.AdmitInflight != 0 || st.AdmitRefused != 1 {
		t.Fatalf("after slow answers: got cuts=%d limit=%g inflight=%d refused=%d, want 1, 2, 0, 1",
			st.AdmitCuts, h.e.admit.limit, st.AdmitInflight, st.AdmitRefused)
	}

	// Fast answers grow the bound back, one place per bound's worth of answers.
	for id := uint32(10); id < 20; id++ {
		eff := h.frame(1, wire.OpSync, id, &wire.Sync{})
		if got := requests(eff); len(got) == 1 {
			h.respond(0, got[0].req, wire.OpSyncResp, &wire.SyncResp{}, false)
		}
	}
	if got := h.e.admit.limit; got < 3 {
		t.Fatalf("after fast answers: got limit %g, want >= 3", got)
	}

	// A dropped connection gives back what it held.
	h.frame(1, wire.OpSync, 30, &wire.Sync{})
	h.handle(node.ClientDisconnect{Conn: 1, Reason: "test"})
	if st := h.e.Stats(); st.AdmitInflight != 0 {
		t.Fatalf("after disconnect: got %d in flight, want 0", st.AdmitInflight)
	}
}

// After a refusal the session sheds: its later requests are refused too
// (the client resends from the refused one), even when places free up,
// until what it had in flight is answered; other sessions are unaffected.
func TestAdmissionShedsTheRestOfARound(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.AdmitLimitMin, c.AdmitLimitInit, c.AdmitLimitMax = 2, 2, 2
	})
	for conn, user := range map[node.ConnID]string{1: "alice", 2: "bob"} {
		login := requests(h.login(conn, user))[0].req
		h.respond(0, login, wire.OpLoginAck, &wire.LoginAck{UserId: user}, false)
	}
	first := requests(h.frame(1, wire.OpSend, 2, &wire.Send{Cseq: 1}))
	bobs := requests(h.frame(2, wire.OpSend, 2, &wire.Send{Cseq: 1}))
	if len(first) != 1 || len(bobs) != 1 {
		t.Fatalf("got %d and %d forwarded, want 1 and 1", len(first), len(bobs))
	}
	if eff := h.frame(1, wire.OpSend, 3, &wire.Send{Cseq: 2}); len(requests(eff)) != 0 {
		t.Fatalf("alice's cseq 2 at the bound: forwarded, want refused")
	}
	h.respond(0, bobs[0].req, wire.OpSendAck, &wire.SendAck{Seq: 1}, false) // a place frees up
	if eff := h.frame(1, wire.OpSend, 4, &wire.Send{Cseq: 3}); len(requests(eff)) != 0 {
		t.Fatalf("alice's cseq 3 while shedding: forwarded, want refused (it would wait in logic for cseq 2)")
	}
	if eff := h.frame(2, wire.OpSend, 3, &wire.Send{Cseq: 2}); len(requests(eff)) != 1 {
		t.Fatalf("bob's next send: got %d forwarded, want 1 (only alice sheds)", len(requests(eff)))
	}
	h.respond(0, first[0].req, wire.OpSendAck, &wire.SendAck{Seq: 1}, false) // alice's round is over
	if eff := h.frame(1, wire.OpSend, 5, &wire.Send{Cseq: 2}); len(requests(eff)) != 1 {
		t.Fatalf("alice's resend after her round ended: got %d forwarded, want 1", len(requests(eff)))
	}
	if got := h.e.Stats().AdmitRefused; got != 2 {
		t.Fatalf("refused: got %d, want 2", got)
	}
}
