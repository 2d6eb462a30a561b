package storetest

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

const (
	convAB = "p:alice:bob:lst1"
	convCB = "p:carol:bob:lst2"
)

func testSeqGapFree(t *testing.T, s store.Store) {
	c := newClock()
	var want []store.Message
	for i := range 30 {
		sender, peer := "alice", "bob"
		if i%3 == 2 {
			sender, peer = peer, sender
		}
		req := c.req(convAB, sender, peer, "lst1", fmt.Sprintf("m%d", i), fmt.Sprintf("hello %d", i))
		req.CSeq = uint64(i + 1)
		res := mustAppend(t, s, req)
		checkResults(t, res, []uint64{uint64(i + 1)}, []bool{false})
		if res[0].CreatedAtMs != req.CreatedAtMs {
			t.Errorf("append %d: got created_at_ms %d, want %d", i, res[0].CreatedAtMs, req.CreatedAtMs)
		}
		want = append(want, stored(req, uint64(i+1)))
	}
	got := mustSync(t, s, convAB, 0, store.SyncLimitMax)
	if got.LastSeq != 30 {
		t.Errorf("last_seq: got %d, want 30", got.LastSeq)
	}
	checkMessages(t, "sync", got.Messages, want)

	// Another conversation has its own sequence.
	other := c.req(convCB, "carol", "bob", "lst2", "m0", "hi")
	checkResults(t, mustAppend(t, s, other), []uint64{1}, []bool{false})
}

func testIdempotentResend(t *testing.T, s store.Store) {
	c := newClock()
	m1 := c.req(convAB, "alice", "bob", "lst1", "a-1", "first")
	m2 := c.req(convAB, "alice", "bob", "lst1", "a-2", "second")
	checkResults(t, mustAppend(t, s, m1), []uint64{1}, []bool{false})
	checkResults(t, mustAppend(t, s, m2), []uint64{2}, []bool{false})

	resend := m1
	resend.CreatedAtMs = c.next() // a resend arrives later, maybe with another body
	resend.Body = "first, edited"
	res := mustAppend(t, s, resend)
	checkResults(t, res, []uint64{1}, []bool{true})
	if res[0].CreatedAtMs != m1.CreatedAtMs {
		t.Errorf("resend: got created_at_ms %d, want the original %d", res[0].CreatedAtMs, m1.CreatedAtMs)
	}

	// Others append in between; a late resend still finds its original.
	b1 := c.req(convAB, "bob", "alice", "lst1", "a-1", "same client_msg_id, other sender")
	checkResults(t, mustAppend(t, s, b1), []uint64{3}, []bool{false})
	checkResults(t, mustAppend(t, s, m2), []uint64{2}, []bool{true})
	elsewhere := c.req(convCB, "alice", "bob", "lst2", "a-1", "same client_msg_id, other conversation")
	checkResults(t, mustAppend(t, s, elsewhere), []uint64{1}, []bool{false})
	checkResults(t, mustAppend(t, s, m1, m2), []uint64{1, 2}, []bool{true, true})

	want := []store.Message{stored(m1, 1), stored(m2, 2), stored(b1, 3), stored(elsewhere, 1)}
	sortMessages(want)
	checkMessages(t, "dump", mustDump(t, s), want)
}

func testIdempotentSameBatch(t *testing.T, s store.Store) {
	c := newClock()
	old := c.req(convAB, "alice", "bob", "lst1", "a-0", "stored before")
	mustAppend(t, s, old)
	a := c.req(convAB, "alice", "bob", "lst1", "a-1", "one")
	b := c.req(convAB, "alice", "bob", "lst1", "a-2", "two")
	res := mustAppend(t, s, a, a, old, b, a)
	checkResults(t, res, []uint64{2, 2, 1, 3, 2}, []bool{false, true, true, false, true})
	want := []store.Message{stored(old, 1), stored(a, 2), stored(b, 3)}
	checkMessages(t, "dump", mustDump(t, s), want)
	if got := mustSync(t, s, convAB, 0, 0).LastSeq; got != 3 {
		t.Errorf("last_seq: got %d, want 3", got)
	}
}

func testBatchAtomic(t *testing.T, s store.Store) {
	c := newClock()
	first := c.req(convAB, "alice", "bob", "lst1", "a-0", "kept")
	mustAppend(t, s, first)
	before := mustDump(t, s)

	good := func(i int) store.AppendReq {
		return c.req(convCB, "carol", "bob", "lst2", fmt.Sprintf("c-%d", i), "would be stored")
	}
	bad := map[string]func(r *store.AppendReq){
		"empty conv":          func(r *store.AppendReq) { r.ConvID = "" },
		"empty sender":        func(r *store.AppendReq) { r.SenderID = "" },
		"empty client_msg_id": func(r *store.AppendReq) { r.ClientMsgID = "" },
		"body not utf-8":      func(r *store.AppendReq) { r.Body = "ok\xff\xfe" },
		"body oversized":      func(r *store.AppendReq) { r.Body = strings.Repeat("x", wire.MessageBodySizeMax+1) },
	}
	names := make([]string, 0, len(bad))
	for name := range bad {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, at := range []int{0, 2} {
			t.Run(fmt.Sprintf("%s at %d", name, at), func(t *testing.T) {
				reqs := []store.AppendReq{good(0), c.req(convAB, "alice", "bob", "lst1", "a-9", "x"), good(1)}
				bad[name](&reqs[at])
				_, err := s.Append(t.Context(), reqs)
				if !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("got error %v, want ErrInvalid", err)
				}
				checkMessages(t, "dump after rejected batch", mustDump(t, s), before)
				checkSummaries(t, "carol's list after rejected batch", mustConvList(t, s, "carol", 0), nil)
			})
		}
	}

	t.Run("over AppendBatchMax", func(t *testing.T) {
		reqs := make([]store.AppendReq, store.AppendBatchMax+1)
		for i := range reqs {
			reqs[i] = good(i)
		}
		if _, err := s.Append(t.Context(), reqs); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("got error %v, want ErrInvalid", err)
		}
		checkMessages(t, "dump after rejected batch", mustDump(t, s), before)
		res := mustAppend(t, s, reqs[:store.AppendBatchMax]...)
		if last := res[len(res)-1].Seq; last != store.AppendBatchMax {
			t.Errorf("batch of AppendBatchMax: got last seq %d, want %d", last, store.AppendBatchMax)
		}
	})
}

func testGroupAppend(t *testing.T, s store.Store) {
	c := newClock()
	const convDE = "p:dave:erin:lst3"
	mustAppend(t, s, c.req(convAB, "alice", "bob", "lst1", "a-0", "0"), c.req(convAB, "bob", "alice", "lst1", "b-0", "1"))
	reqs := []store.AppendReq{
		c.req(convAB, "alice", "bob", "lst1", "a-1", "ab 3"),
		c.req(convCB, "carol", "bob", "lst2", "c-1", "cb 1"),
		c.req(convAB, "bob", "alice", "lst1", "b-1", "ab 4"),
		c.req(convDE, "dave", "erin", "lst3", "d-1", "de 1"),
		c.req(convCB, "bob", "carol", "lst2", "b-1", "cb 2"),
		c.req(convAB, "alice", "bob", "lst1", "a-2", "ab 5"),
	}
	res := mustAppend(t, s, reqs...)
	wantSeq := []uint64{3, 1, 4, 1, 2, 5}
	checkResults(t, res, wantSeq, make([]bool, len(reqs)))
	for conv, want := range map[string]int{convAB: 5, convCB: 2, convDE: 1} {
		if got := mustSync(t, s, conv, 0, 0); got.LastSeq != uint64(want) || len(got.Messages) != want {
			t.Errorf("%s: got last_seq %d and %d messages, want %d", conv, got.LastSeq, len(got.Messages), want)
		}
	}
	for i, r := range reqs {
		got := mustSync(t, s, r.ConvID, wantSeq[i]-1, 1)
		checkMessages(t, fmt.Sprintf("request %d", i), got.Messages, []store.Message{stored(r, wantSeq[i])})
	}
	for _, user := range []string{"bob", "carol", "dave", "erin"} {
		if got := len(mustConvList(t, s, user, 0)); got == 0 {
			t.Errorf("%s: got no conversations after a group append, want some", user)
		}
	}
}

func testSyncPages(t *testing.T, s store.Store) {
	c := newClock()
	const total = 2*store.SyncLimitMax + 50
	var all []store.Message
	for start := 0; start < total; start += 50 {
		var reqs []store.AppendReq
		for i := start; i < start+50; i++ {
			reqs = append(reqs, c.req(convAB, "alice", "bob", "lst1", fmt.Sprintf("a-%d", i), fmt.Sprintf("body %d", i)))
		}
		for i, r := range mustAppend(t, s, reqs...) {
			all = append(all, stored(reqs[i], r.Seq))
		}
	}
	tests := []struct {
		after          uint64
		limit          int
		wantFirst, len int
	}{
		{after: 0, limit: 0, wantFirst: 1, len: store.SyncLimitDefault},
		{after: 0, limit: -1, wantFirst: 1, len: store.SyncLimitDefault},
		{after: 0, limit: 10, wantFirst: 1, len: 10},
		{after: 0, limit: 1000, wantFirst: 1, len: store.SyncLimitMax},
		{after: 0, limit: store.SyncLimitMax + 1, wantFirst: 1, len: store.SyncLimitMax},
		{after: store.SyncLimitMax, limit: store.SyncLimitMax, wantFirst: store.SyncLimitMax + 1, len: store.SyncLimitMax},
		{after: 2 * store.SyncLimitMax, limit: store.SyncLimitMax, wantFirst: 2*store.SyncLimitMax + 1, len: 50},
		{after: total - 10, limit: 10, wantFirst: total - 9, len: 10},
		{after: total - 1, limit: 5, wantFirst: total, len: 1},
		{after: total, limit: 5, len: 0},
		{after: total + 1000, limit: 5, len: 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after %d limit %d", tt.after, tt.limit), func(t *testing.T) {
			got := mustSync(t, s, convAB, tt.after, tt.limit)
			if got.LastSeq != total {
				t.Errorf("last_seq: got %d, want %d", got.LastSeq, total)
			}
			var want []store.Message
			if tt.len > 0 {
				want = all[tt.wantFirst-1 : tt.wantFirst-1+tt.len]
			}
			checkMessages(t, "page", got.Messages, want)
		})
	}
	t.Run("paging to the end", func(t *testing.T) {
		var got []store.Message
		after := uint64(0)
		for range total + 1 { // bounded: every page but the last has a message
			page := mustSync(t, s, convAB, after, 7)
			if len(page.Messages) == 0 {
				break
			}
			got = append(got, page.Messages...)
			after = page.Messages[len(page.Messages)-1].Seq
		}
		checkMessages(t, "pages", got, all)
	})
	t.Run("unknown conversation", func(t *testing.T) {
		got := mustSync(t, s, "p:nobody:none:x", 0, 0)
		if got.LastSeq != 0 || len(got.Messages) != 0 {
			t.Errorf("got last_seq %d and %d messages, want 0 and 0", got.LastSeq, len(got.Messages))
		}
	})
}

// sortMessages orders messages as Dump does.
func sortMessages(msgs []store.Message) {
	sort.Slice(msgs, func(i, j int) bool {
		if msgs[i].ConvID != msgs[j].ConvID {
			return msgs[i].ConvID < msgs[j].ConvID
		}
		return msgs[i].Seq < msgs[j].Seq
	})
}

func testDumpOrder(t *testing.T, s store.Store) {
	c := newClock()
	convs := []struct{ id, sender, peer string }{
		{"p:bob:alice:x", "bob", "alice"},
		{wire.BroadcastConvID, store.SystemSender, ""},
		{"s:zed", store.SystemSender, "zed"},
		{"p:alice:bob:x", "alice", "bob"},
		{"p:Alice:bob:x", "Alice", "bob"},
	}
	var want []store.Message
	for i := range 20 {
		cv := convs[i%len(convs)]
		req := c.req(cv.id, cv.sender, cv.peer, "x", fmt.Sprintf("m-%d", i), fmt.Sprintf("%d", i))
		res := mustAppend(t, s, req)
		want = append(want, stored(req, res[0].Seq))
	}
	sortMessages(want)
	checkMessages(t, "dump", mustDump(t, s), want)
}

func testHostileStrings(t *testing.T, s store.Store) {
	c := newClock()
	const (
		sender  = "o'brien\"; --"
		peer    = `back\slash`
		listing = "%_*?"
		conv    = "p:'; DROP TABLE messages; --:" + peer + ":" + listing
	)
	bodies := []string{
		"'; DROP TABLE messages; --",
		`"quoted" 'single' \backslash\ \' \"`,
		"%_ LIKE wildcards * ?",
		"안녕하세요 🙂 ñ é 中文 \u202e rtl",
		"nul\x00byte",
		"new\nline\ttab\rcarriage",
		"trailing spaces   ",
		"",
		strings.Repeat("가", wire.MessageBodySizeMax/3) + strings.Repeat("x", wire.MessageBodySizeMax%3),
		strings.Repeat("🙂", wire.MessageBodySizeMax/4),
	}
	var reqs []store.AppendReq
	for i, body := range bodies {
		reqs = append(reqs, c.req(conv, sender, peer, listing, fmt.Sprintf("'; DROP TABLE user_conversations; -- %d", i), body))
	}
	// Ids differing only in case are different ids: not duplicates, not one conversation.
	upper := c.req("p:Ann:bob:L", "Ann", "bob", "L", "M-1", "upper")
	lower := c.req("p:ann:bob:L", "ann", "bob", "L", "M-1", "lower")
	lowerID := c.req("p:ann:bob:L", "ann", "bob", "L", "m-1", "lower id")
	reqs = append(reqs, upper, lower, lowerID)
	res := mustAppend(t, s, reqs...)
	var want []store.Message
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("append %d: got duplicate, want a new message", i)
		}
		want = append(want, stored(reqs[i], r.Seq))
	}
	sortMessages(want)
	checkMessages(t, "dump", mustDump(t, s), want)
	got := mustSync(t, s, conv, 0, store.SyncLimitMax)
	for i, m := range got.Messages {
		if i < len(bodies) && m.Body != bodies[i] {
			t.Errorf("body %d: got %q (%d bytes), want %q (%d bytes)", i, m.Body, len(m.Body), bodies[i], len(bodies[i]))
		}
	}
	if got.LastSeq != uint64(len(bodies)) {
		t.Errorf("last_seq: got %d, want %d", got.LastSeq, len(bodies))
	}
	checkSummaries(t, "peer's list", mustConvList(t, s, peer, 0), []store.ConvSummary{
		{ConvID: conv, PeerID: sender, ListingID: listing, LastSeq: uint64(len(bodies)), Unread: uint64(len(bodies))},
	})
	checkSummaries(t, "Ann's list", mustConvList(t, s, "Ann", 0), []store.ConvSummary{
		{ConvID: "p:Ann:bob:L", PeerID: "bob", ListingID: "L", LastSeq: 1, ReadSeq: 1},
	})
}
