package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/zzim/zzim/system/store"
)

// writerStepsMax is how many steps each concurrent writer takes; every step
// appends one or more new messages, and some resend older ones.
const writerStepsMax = 150

const convShared = "p:w0:w1:lst"

// writer is one side of testTwoWriters: a sender appending to convShared
// through two Store values in turn, as a failed-over sender would.
type writer struct {
	sender, peer string
	via          [2]store.Store
	seqOf        map[string]uint64 // client_msg_id → seq first answered
	sent         []string          // client_msg_ids of new messages, in send order
	errs         []error
}

func (w *writer) run(ctx context.Context, createdAtMs int64) {
	for step := range writerStepsMax {
		reqs := w.step(step, createdAtMs+int64(step))
		res, err := appendRetrying(ctx, w.via[step%2], reqs)
		if err != nil {
			w.errs = append(w.errs, fmt.Errorf("%s step %d: %w", w.sender, step, err))
			return
		}
		for i, r := range res {
			id := reqs[i].ClientMsgID
			if seq, ok := w.seqOf[id]; ok {
				if r.Seq != seq || !r.Duplicate {
					w.errs = append(w.errs, fmt.Errorf("%s step %d: resend of %s: got seq %d duplicate %v, want seq %d duplicate true",
						w.sender, step, id, r.Seq, r.Duplicate, seq))
				}
				continue
			}
			if r.Duplicate {
				w.errs = append(w.errs, fmt.Errorf("%s step %d: new %s: got duplicate of seq %d, want a new message", w.sender, step, id, r.Seq))
			}
			w.seqOf[id] = r.Seq
			w.sent = append(w.sent, id)
		}
	}
}

// step builds the appends of one step: a new message, on every third step a
// batch of three with a resend inside, on every fourth a lone resend before.
func (w *writer) step(step int, createdAtMs int64) []store.AppendReq {
	next := len(w.seqOf)
	msg := func(n int) store.AppendReq {
		return store.AppendReq{
			ConvID: convShared, SenderID: w.sender, PeerID: w.peer, ListingID: "lst",
			ClientMsgID: fmt.Sprintf("%s-%d", w.sender, n), CSeq: uint64(n + 1),
			Body: fmt.Sprintf("%s says %d", w.sender, n), CreatedAtMs: createdAtMs,
		}
	}
	switch {
	case step%3 == 2 && next >= 2:
		return []store.AppendReq{msg(next), msg(next - 2), msg(next + 1), msg(next)}
	case step%4 == 3:
		return []store.AppendReq{msg(next - 1)}
	}
	return []store.AppendReq{msg(next)}
}

// testTwoWriters: two goroutines append to one conversation at once, each
// through a and b in turn, resending as they go. The log must end gap-free
// with every message exactly once, at the seq its sender was told.
func testTwoWriters(t *testing.T, a, b store.Store) {
	writers := []*writer{
		{sender: "w0", peer: "w1", via: [2]store.Store{a, b}, seqOf: map[string]uint64{}},
		{sender: "w1", peer: "w0", via: [2]store.Store{b, a}, seqOf: map[string]uint64{}},
	}
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(t.Context(), 1_700_000_000_000+int64(i)*writerStepsMax)
		}()
	}
	wg.Wait()
	for _, w := range writers {
		for _, err := range w.errs {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}

	dump := mustDump(t, a)
	seen := map[[2]string]bool{}
	for i, m := range dump {
		if m.Seq != uint64(i+1) || m.ConvID != convShared {
			t.Fatalf("dump %d: got %s seq %d, want %s seq %d (gap-free)", i, m.ConvID, m.Seq, convShared, i+1)
		}
		key := [2]string{m.SenderID, m.ClientMsgID}
		if seen[key] {
			t.Errorf("dump: %s/%s stored twice (second at seq %d)", m.SenderID, m.ClientMsgID, m.Seq)
		}
		seen[key] = true
	}
	total := 0
	for _, w := range writers {
		total += len(w.sent)
		checkWriter(t, w, dump)
	}
	if len(dump) != total {
		t.Errorf("dump: got %d messages, want %d", len(dump), total)
	}
	if got := mustSync(t, b, convShared, 0, store.SyncLimitMax); got.LastSeq != uint64(total) {
		t.Errorf("sync through b: got last_seq %d, want %d", got.LastSeq, total)
	}
}

// checkWriter: each message of w is in dump at the seq w was told, w's own
// messages are in the order w sent them, and w's read_seq is its last seq.
func checkWriter(t *testing.T, w *writer, dump []store.Message) {
	t.Helper()
	var prev uint64
	for _, id := range w.sent {
		seq := w.seqOf[id]
		if seq == 0 || seq > uint64(len(dump)) {
			t.Errorf("%s/%s: told seq %d, dump has %d messages", w.sender, id, seq, len(dump))
			continue
		}
		if m := dump[seq-1]; m.SenderID != w.sender || m.ClientMsgID != id {
			t.Errorf("seq %d: got %s/%s, want %s/%s", seq, m.SenderID, m.ClientMsgID, w.sender, id)
		}
		if seq <= prev {
			t.Errorf("%s/%s: got seq %d after %d, want increasing in send order", w.sender, id, seq, prev)
		}
		prev = seq
	}
	list := mustConvList(t, w.via[0], w.sender, 0)
	if len(list) != 1 || list[0].ConvID != convShared || list[0].PeerID != w.peer || list[0].ReadSeq != prev {
		t.Errorf("%s's list: got %+v, want one row of %s with peer %s and read_seq %d", w.sender, list, convShared, w.peer, prev)
	}
}

// testVisibility: what one Store value writes, the other reads.
func testVisibility(t *testing.T, a, b store.Store) {
	c := newClock()
	mustAppend(t, a, c.req(convAB, "alice", "bob", "lst1", "a-0", "through a"))
	res := mustAppend(t, b, c.req(convAB, "bob", "alice", "lst1", "b-0", "through b"))
	checkResults(t, res, []uint64{2}, []bool{false})
	if got := mustSync(t, b, convAB, 0, 0); got.LastSeq != 2 || len(got.Messages) != 2 {
		t.Errorf("sync through b: got last_seq %d and %d messages, want 2 and 2", got.LastSeq, len(got.Messages))
	}
	if got := mustMarkRead(t, b, "alice", convAB, 2); got != 2 {
		t.Errorf("mark read through b: got %d, want 2", got)
	}
	checkSummaries(t, "alice through a", mustConvList(t, a, "alice", 0), []store.ConvSummary{
		{ConvID: convAB, PeerID: "bob", ListingID: "lst1", LastSeq: 2, ReadSeq: 2},
	})
	if err := a.Touch(t.Context(), store.TouchReq{UserID: "alice", PeerID: "bob", ConvID: convAB, LastActiveMs: 5}); err != nil {
		t.Fatalf("touch through a: got error %v, want nil", err)
	}
	got, err := b.Contacts(t.Context(), "alice")
	if err != nil || len(got) != 1 || got[0].PeerID != "bob" {
		t.Errorf("contacts through b: got %+v, %v, want one contact bob", got, err)
	}
}

// testResendThroughOther: a resend that reaches the other das is still a duplicate.
func testResendThroughOther(t *testing.T, a, b store.Store) {
	c := newClock()
	m := c.req(convAB, "alice", "bob", "lst1", "a-0", "once")
	checkResults(t, mustAppend(t, a, m), []uint64{1}, []bool{false})
	checkResults(t, mustAppend(t, b, m), []uint64{1}, []bool{true})
	checkMessages(t, "dump", mustDump(t, b), []store.Message{stored(m, 1)})
}
