package logic_test

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/wire"
)

// inCseqOrder reports whether alice's stored messages have seq order equal
// to cseq order (promise 4 among what the store holds).
func (w *world) inCseqOrder() bool {
	var last uint64
	for _, m := range w.dump() {
		if m.ConvID != conv || m.SenderID != "alice" {
			continue
		}
		if m.CSeq <= last {
			return false
		}
		last = m.CSeq
	}
	return true
}

// sendAcksAgree fails unless every SEND_ACK answering req carries seq.
func (w *world) sendAcksAgree(fc *nodetest.FakeClient, req uint32, seq uint64) {
	w.t.Helper()
	rs := fc.Responses(req)
	if len(rs) == 0 {
		w.t.Fatalf("request %d: no answer, want SendAck seq %d", req, seq)
	}
	for _, r := range rs {
		a, ok := r.(*wire.SendAck)
		if !ok || a.Seq != seq {
			w.t.Errorf("request %d: got %v, want SendAck seq %d", req, r, seq)
		}
	}
}

var (
	noBugs       = bugs.Set{}
	unserialised = bugs.Set{bugs.UnserialisedAppends: true}
)

// Per-sender FIFO across a failover and a fail-back, with the old
// instance's append of cseq 1 delayed in the network and arriving last.
func TestFIFOAcrossFailoverAndFailBack(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bugs     bugs.Set
		wantFIFO bool
	}{
		{"guarded", noBugs, true},
		{"unserialised-appends", unserialised, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, nil)
			alice := w.entry.Client("alice", "phone")

			// Alice pipelines two sends to her home logic-0.
			r1 := send(alice, logic0, 1, 1)
			r2 := send(alice, logic0, 2, 1)
			w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			// logic-0's append of cseq 1 is slow: stuck in the network.
			late := w.c.Delay(appendOf(1))
			if got := w.appendsInFlight(2); tc.wantFIFO && got != 0 {
				t.Fatalf("appends of cseq 2 while cseq 1 is unknown: got %d, want 0", got)
			}
			w.c.Stabilize()

			// Entry gives up on logic-0 and resends both, in order, to logic-1.
			alice.Resend(logic1, r1, sendBody(alice, 1, 1))
			alice.Resend(logic1, r2, sendBody(alice, 2, 1))
			w.c.Stabilize()

			// Fail-back: logic-0 is home again; the next send says 1 and 2 are acknowledged.
			r3 := send(alice, logic0, 3, 3)
			w.c.Stabilize()
			// Only now does the old append reach das.
			w.c.DeliverEnvelope(late)
			w.c.Stabilize()

			if got := w.inCseqOrder(); got != tc.wantFIFO {
				t.Fatalf("seq order equals cseq order: got %v, want %v (stored %q)", got, tc.wantFIFO, w.stored())
			}
			if !tc.wantFIFO {
				return
			}
			if got, want := w.stored(), "1:m1 2:m2 3:m3"; got != want {
				t.Fatalf("stored: got %q, want %q", got, want)
			}
			w.sendAcksAgree(alice, r1, 1)
			w.sendAcksAgree(alice, r2, 2)
			w.sendAcksAgree(alice, r3, 3)
		})
	}
}

// An unknown store outcome holds back the session's next append until a
// retry makes it definite.
func TestUnknownOutcomeHoldsNextAppend(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     nodetest.StoreMode
		bugs     bugs.Set
		wantFIFO bool
	}{
		{"committed-but-unknown", nodetest.StoreUnknownApplied, noBugs, true},
		{"lost-and-unknown", nodetest.StoreUnknownLost, noBugs, true},
		{"lost-and-unknown/unserialised-appends", nodetest.StoreUnknownLost, unserialised, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, nil)
			alice := w.entry.Client("alice", "phone")
			r1 := send(alice, logic0, 1, 1)
			r2 := send(alice, logic0, 2, 1)
			w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			w.c.Deliver(appendOf(1))
			w.c.CompleteStore(storeAppendOf(1), tc.mode) // das answers UNKNOWN
			w.c.Deliver(nodetest.To[*wire.StoreReply](logic0))

			held := w.appendsInFlight(2) == 0
			if held != tc.wantFIFO {
				t.Fatalf("cseq 2 held while cseq 1 is unknown: got %v, want %v", held, tc.wantFIFO)
			}
			if r := alice.Response(r1); r != nil {
				t.Fatalf("cseq 1 answered while its outcome is unknown: got %v, want nothing", r)
			}
			w.c.Stabilize()
			w.c.Advance(700 * time.Millisecond) // the retry's backoff
			w.c.Stabilize()

			if got := w.inCseqOrder(); got != tc.wantFIFO {
				t.Fatalf("seq order equals cseq order: got %v, want %v (stored %q)", got, tc.wantFIFO, w.stored())
			}
			if !tc.wantFIFO {
				return
			}
			if got, want := w.stored(), "1:m1 2:m2"; got != want {
				t.Fatalf("stored: got %q, want %q", got, want)
			}
			w.sendAcksAgree(alice, r1, 1)
			w.sendAcksAgree(alice, r2, 2)
			if got := w.logics[0].Stats().Retries; got != 1 {
				t.Errorf("retries: got %d, want 1", got)
			}
		})
	}
}

// A definite rejection rejects the later pipelined sends OUT_OF_ORDER until
// the client resends from the rejected one (go-back-N).
func TestDefiniteRejectionGoBackN(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bugs     bugs.Set
		wantFIFO bool
	}{
		{"guarded", noBugs, true},
		{"unserialised-appends", unserialised, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, nil)
			alice := w.entry.Client("alice", "phone")
			r1 := send(alice, logic0, 1, 1)
			r2 := send(alice, logic0, 2, 1)
			r3 := send(alice, logic0, 3, 1)
			for range 3 {
				w.c.Deliver(nodetest.To[*wire.ClientRequest](logic0))
			}
			w.c.Deliver(appendOf(1))
			w.c.CompleteStore(storeAppendOf(1), nodetest.StoreUnavailable) // definitely not stored
			w.c.Stabilize()

			if !tc.wantFIFO {
				// The bug let 2 and 3 commit although 1 did not.
				if got := w.stored(); got != "1:m2 2:m3" {
					t.Fatalf("stored: got %q, want %q (the broken order)", got, "1:m2 2:m3")
				}
				return
			}
			if got := w.errCode(alice, r1); got != wire.ErrorCode_UNAVAILABLE {
				t.Errorf("cseq 1: got %s, want UNAVAILABLE", got)
			}
			for _, r := range []uint32{r2, r3} {
				if got := w.errCode(alice, r); got != wire.ErrorCode_OUT_OF_ORDER {
					t.Errorf("request %d: got %s, want OUT_OF_ORDER", r, got)
				}
			}
			// A send still in the pipe when the rejection happened is refused too.
			r4 := send(alice, logic0, 4, 1)
			w.c.Stabilize()
			if got := w.errCode(alice, r4); got != wire.ErrorCode_OUT_OF_ORDER {
				t.Errorf("cseq 4: got %s, want OUT_OF_ORDER", got)
			}
			if got := w.stored(); got != "" {
				t.Fatalf("stored after the rejection: got %q, want nothing", got)
			}
			// The client goes back to its first unacknowledged send.
			var again []uint32
			for c := uint64(1); c <= 4; c++ {
				again = append(again, send(alice, logic0, c, 1))
			}
			w.c.Stabilize()
			for i, r := range again {
				w.sendAcksAgree(alice, r, uint64(i+1))
			}
			if got, want := w.stored(), "1:m1 2:m2 3:m3 4:m4"; got != want {
				t.Fatalf("stored: got %q, want %q", got, want)
			}
		})
	}
}

// A send that arrives before its turn is held, released when the earlier
// one commits, and rejected OUT_OF_ORDER when holdTimeout passes first.
func TestHeldSend(t *testing.T) {
	t.Run("released", func(t *testing.T) {
		w := newWorld(t, noBugs, nil)
		alice := w.entry.Client("alice", "phone")
		r2 := send(alice, logic0, 2, 1)
		w.c.Stabilize()
		if r := alice.Response(r2); r != nil || w.stored() != "" {
			t.Fatalf("cseq 2 before cseq 1: got answer %v, stored %q; want it held", r, w.stored())
		}
		r1 := send(alice, logic0, 1, 1)
		w.c.Stabilize()
		w.sendAcksAgree(alice, r1, 1)
		w.sendAcksAgree(alice, r2, 2)
		if got := w.logics[0].Stats().Held; got != 1 {
			t.Errorf("held: got %d, want 1", got)
		}
	})
	for _, tc := range []struct {
		name     string
		bugs     bugs.Set
		wantHeld bool
	}{
		{"timed-out", noBugs, true},
		{"timed-out/unserialised-appends", unserialised, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.bugs, nil)
			alice := w.entry.Client("alice", "phone")
			r2 := send(alice, logic0, 2, 1)
			w.c.Stabilize()
			w.c.Advance(logic.HoldTimeoutDefault)
			w.c.Stabilize()
			if !tc.wantHeld {
				if got := w.stored(); got != "1:m2" {
					t.Fatalf("stored: got %q, want %q (appended without waiting for cseq 1)", got, "1:m2")
				}
				return
			}
			if got := w.errCode(alice, r2); got != wire.ErrorCode_OUT_OF_ORDER {
				t.Fatalf("cseq 2 after holdTimeout: got %s, want OUT_OF_ORDER", got)
			}
			if got := w.stored(); got != "" {
				t.Fatalf("stored: got %q, want nothing", got)
			}
		})
	}
}

// heldMax bounds what one session may park; the overflow is refused.
func TestHeldMax(t *testing.T) {
	w := newWorld(t, noBugs, func(c *logic.Config) { c.HeldMax = 2 })
	alice := w.entry.Client("alice", "phone")
	send(alice, logic0, 2, 1)
	send(alice, logic0, 3, 1)
	r4 := send(alice, logic0, 4, 1)
	w.c.Stabilize()
	if got := w.errCode(alice, r4); got != wire.ErrorCode_OUT_OF_ORDER {
		t.Fatalf("third held send: got %s, want OUT_OF_ORDER", got)
	}
}

// Every request a send collects is answered: resends of a held cseq each
// supersede the one before, which is answered TIMEOUT at once (its client
// has moved on to the resend), and the last one gets the SEND_ACK. An
// unanswered request keeps its entry waiting until the entry's attempt
// timer takes this logic for dead and moves every session it routes here.
func TestResendsOfAHeldSendAreAllAnswered(t *testing.T) {
	w := newWorld(t, noBugs, nil)
	alice := w.entry.Client("alice", "phone")
	var resends []uint32
	for range 6 {
		resends = append(resends, send(alice, logic0, 2, 1))
		w.c.Stabilize()
	}
	for _, r := range resends[:len(resends)-1] {
		if got := w.errCode(alice, r); got != wire.ErrorCode_TIMEOUT {
			t.Fatalf("superseded request %d: got %s, want TIMEOUT", r, got)
		}
	}
	last := resends[len(resends)-1]
	if r := alice.Response(last); r != nil {
		t.Fatalf("the newest resend answered while cseq 1 is missing: %v", r)
	}
	r1 := send(alice, logic0, 1, 1)
	w.c.Stabilize()
	w.sendAcksAgree(alice, r1, 1)
	w.sendAcksAgree(alice, last, 2)
	if got, want := w.logics[0].Stats().SupersededRequests, uint64(len(resends)-1); got != want {
		t.Errorf("superseded requests: got %d, want %d", got, want)
	}
}
