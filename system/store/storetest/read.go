package storetest

import (
	"fmt"
	"testing"

	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

func testReadMarks(t *testing.T, s store.Store) {
	c := newClock()
	for i := range 3 {
		mustAppend(t, s, c.req(convAB, "alice", "bob", "lst1", fmt.Sprintf("a-%d", i), "hi"))
	}
	summary := func(peer string, last, read uint64) []store.ConvSummary {
		return []store.ConvSummary{{ConvID: convAB, PeerID: peer, ListingID: "lst1", LastSeq: last, ReadSeq: read, Unread: last - read}}
	}
	checkSummaries(t, "alice after sending 3", mustConvList(t, s, "alice", 0), summary("bob", 3, 3))
	checkSummaries(t, "bob after receiving 3", mustConvList(t, s, "bob", 0), summary("alice", 3, 0))

	steps := []struct {
		mark, want uint64
	}{
		{mark: 2, want: 2},
		{mark: 1, want: 2}, // never lowered
		{mark: 0, want: 2},
		{mark: 100, want: 3}, // capped at last_seq
		{mark: 3, want: 3},
	}
	for _, st := range steps {
		if got := mustMarkRead(t, s, "bob", convAB, st.mark); got != st.want {
			t.Errorf("bob marks %d: got read_seq %d, want %d", st.mark, got, st.want)
		}
	}
	checkSummaries(t, "bob after reading", mustConvList(t, s, "bob", 0), summary("alice", 3, 3))

	// Bob replies: his read_seq follows his own message; alice has one unread.
	mustAppend(t, s, c.req(convAB, "bob", "alice", "lst1", "b-0", "reply"))
	checkSummaries(t, "bob after replying", mustConvList(t, s, "bob", 0), summary("alice", 4, 4))
	checkSummaries(t, "alice after the reply", mustConvList(t, s, "alice", 0), summary("bob", 4, 3))

	// A resend changes nothing, and the cap moved with last_seq.
	mustAppend(t, s, c.req(convAB, "alice", "bob", "lst1", "a-0", "hi"))
	if got := mustMarkRead(t, s, "alice", convAB, 100); got != 4 {
		t.Errorf("alice marks 100: got read_seq %d, want 4", got)
	}
}

func testConvList(t *testing.T, s store.Store) {
	c := newClock()
	mustAppend(t, s, c.req(convAB, "alice", "bob", "lst1", "a-0", "about lst1"))
	mustAppend(t, s, c.req(convCB, "carol", "bob", "lst2", "c-0", "about lst2"))
	mustAppend(t, s, c.req(convCB, "carol", "bob", "lst2", "c-1", "still lst2"))
	mustAppend(t, s, c.req(convAB, "bob", "alice", "lst1", "b-0", "bob answers alice"))

	bobAB := store.ConvSummary{ConvID: convAB, PeerID: "alice", ListingID: "lst1", LastSeq: 2, ReadSeq: 2}
	bobCB := store.ConvSummary{ConvID: convCB, PeerID: "carol", ListingID: "lst2", LastSeq: 2, Unread: 2}
	checkSummaries(t, "bob", mustConvList(t, s, "bob", 0), []store.ConvSummary{bobAB, bobCB})
	checkSummaries(t, "bob limit 1", mustConvList(t, s, "bob", 1), []store.ConvSummary{bobAB})
	checkSummaries(t, "alice", mustConvList(t, s, "alice", 0), []store.ConvSummary{
		{ConvID: convAB, PeerID: "bob", ListingID: "lst1", LastSeq: 2, ReadSeq: 1, Unread: 1},
	})
	checkSummaries(t, "carol", mustConvList(t, s, "carol", 0), []store.ConvSummary{
		{ConvID: convCB, PeerID: "bob", ListingID: "lst2", LastSeq: 2, ReadSeq: 2},
	})
	checkSummaries(t, "stranger", mustConvList(t, s, "stranger", 0), nil)

	// Activity moves a conversation to the front.
	mustAppend(t, s, c.req(convCB, "carol", "bob", "lst2", "c-2", "again"))
	bobCB.LastSeq, bobCB.Unread = 3, 3
	checkSummaries(t, "bob after carol writes", mustConvList(t, s, "bob", 0), []store.ConvSummary{bobCB, bobAB})
}

func testSystemNotice(t *testing.T, s store.Store) {
	c := newClock()
	conv := wire.SystemConvID("alice")
	for i := range 2 {
		res := mustAppend(t, s, c.req(conv, store.SystemSender, "alice", "", fmt.Sprintf("notice-%d", i), "your listing sold"))
		checkResults(t, res, []uint64{uint64(i + 1)}, []bool{false})
	}
	want := []store.ConvSummary{{ConvID: conv, PeerID: store.SystemSender, LastSeq: 2, Unread: 2}}
	checkSummaries(t, "alice", mustConvList(t, s, "alice", 0), want)
	checkSummaries(t, "system sender", mustConvList(t, s, store.SystemSender, 0), nil)
	if got := mustMarkRead(t, s, "alice", conv, 1); got != 1 {
		t.Errorf("alice marks 1: got read_seq %d, want 1", got)
	}
	want[0].ReadSeq, want[0].Unread = 1, 1
	checkSummaries(t, "alice after reading one", mustConvList(t, s, "alice", 0), want)
}

func testBroadcast(t *testing.T, s store.Store) {
	c := newClock()
	mustAppend(t, s, c.req(convAB, "alice", "bob", "lst1", "a-0", "before any broadcast"))
	checkSummaries(t, "bob before any broadcast", mustConvList(t, s, "bob", 0), []store.ConvSummary{
		{ConvID: convAB, PeerID: "alice", ListingID: "lst1", LastSeq: 1, Unread: 1},
	})
	for i := range 3 {
		res := mustAppend(t, s, c.req(wire.BroadcastConvID, store.SystemSender, "", "", fmt.Sprintf("bc-%d", i), "sale!"))
		checkResults(t, res, []uint64{uint64(i + 1)}, []bool{false})
	}
	bc := func(read uint64) store.ConvSummary {
		return store.ConvSummary{ConvID: wire.BroadcastConvID, LastSeq: 3, ReadSeq: read, Unread: 3 - read}
	}
	bobAB := store.ConvSummary{ConvID: convAB, PeerID: "alice", ListingID: "lst1", LastSeq: 1, Unread: 1}
	checkSummaries(t, "never-seen user", mustConvList(t, s, "newcomer", 0), []store.ConvSummary{bc(0)})
	checkSummaries(t, "bob", mustConvList(t, s, "bob", 0), []store.ConvSummary{bc(0), bobAB})

	if got := mustMarkRead(t, s, "bob", wire.BroadcastConvID, 2); got != 2 {
		t.Errorf("bob marks 2: got read_seq %d, want 2", got)
	}
	if got := mustMarkRead(t, s, "bob", wire.BroadcastConvID, 1); got != 2 {
		t.Errorf("bob marks 1: got read_seq %d, want 2 (never lowered)", got)
	}
	checkSummaries(t, "bob after reading two", mustConvList(t, s, "bob", 0), []store.ConvSummary{bc(2), bobAB})
	checkSummaries(t, "newcomer unaffected", mustConvList(t, s, "newcomer", 0), []store.ConvSummary{bc(0)})
	if got := mustMarkRead(t, s, "newcomer", wire.BroadcastConvID, 9); got != 3 {
		t.Errorf("newcomer marks 9: got read_seq %d, want 3 (capped)", got)
	}
	checkSummaries(t, "newcomer after reading", mustConvList(t, s, "newcomer", 0), []store.ConvSummary{bc(3)})

	mustAppend(t, s, c.req(convAB, "alice", "bob", "lst1", "a-1", "after the broadcast"))
	bobAB.LastSeq, bobAB.Unread = 2, 2
	checkSummaries(t, "bob after alice writes", mustConvList(t, s, "bob", 0), []store.ConvSummary{bobAB, bc(2)})
}

func testContacts(t *testing.T, s store.Store) {
	touch := func(user, peer, conv string, ms int64) {
		t.Helper()
		if err := s.Touch(t.Context(), store.TouchReq{UserID: user, PeerID: peer, ConvID: conv, LastActiveMs: ms}); err != nil {
			t.Fatalf("touch %s %s: got error %v, want nil", user, peer, err)
		}
	}
	check := func(what, user string, want []store.Contact) {
		t.Helper()
		got, err := s.Contacts(t.Context(), user)
		if err != nil {
			t.Fatalf("contacts %s: got error %v, want nil", user, err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: contact %d: got %+v, want %+v", what, i, got[i], want[i])
			}
		}
	}
	check("no contacts yet", "bob", nil)
	touch("bob", "alice", convAB, 100)
	touch("bob", "carol", convCB, 200)
	check("two peers", "bob", []store.Contact{
		{UserID: "bob", PeerID: "carol", ConvID: convCB, LastActiveMs: 200},
		{UserID: "bob", PeerID: "alice", ConvID: convAB, LastActiveMs: 100},
	})
	check("touch writes only the user's row", "alice", nil)

	const convAB2 = "p:alice:bob:lst9"
	touch("bob", "alice", convAB2, 300)
	touch("bob", "alice", convAB, 150) // a late redelivery
	check("latest activity wins", "bob", []store.Contact{
		{UserID: "bob", PeerID: "alice", ConvID: convAB2, LastActiveMs: 300},
		{UserID: "bob", PeerID: "carol", ConvID: convCB, LastActiveMs: 200},
	})
}
