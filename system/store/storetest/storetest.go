// Package storetest is the conformance suite of store.Store. Every
// implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
//	}
//
// An implementation whose Store values can share one database (two das
// processes on one MySQL) also runs RunShared with a pair of them.
//
// Beyond the doc comments of package store, the suite pins down:
//   - a conversation list orders by the CreatedAtMs of each conversation's
//     last message, newest first (the suite's clock only moves forward);
//   - a user's row of a system-notice conversation names store.SystemSender
//     as peer;
//   - Touch writes the row of UserID only, one row per (user, peer), and
//     never moves last_active back (a late redelivery changes nothing);
//     Contacts lists most recently active first;
//   - Dump orders conversations by the bytes of their ids;
//   - ids that differ only in letter case are different ids.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/zzim/zzim/system/store"
)

// NewStore returns an empty store for one subtest.
type NewStore func(t *testing.T) store.Store

// NewPair returns two Store values on one empty database, as two das
// processes would hold them.
type NewPair func(t *testing.T) (store.Store, store.Store)

// Run runs the whole suite; newStore is called once per subtest.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"SeqGapFree", testSeqGapFree},
		{"IdempotentResend", testIdempotentResend},
		{"IdempotentSameBatch", testIdempotentSameBatch},
		{"BatchAtomic", testBatchAtomic},
		{"GroupAppend", testGroupAppend},
		{"SyncPages", testSyncPages},
		{"ReadMarks", testReadMarks},
		{"ConvList", testConvList},
		{"SystemNotice", testSystemNotice},
		{"Broadcast", testBroadcast},
		{"Contacts", testContacts},
		{"DumpOrder", testDumpOrder},
		{"HostileStrings", testHostileStrings},
		{"TwoWriters", func(t *testing.T, s store.Store) { testTwoWriters(t, s, s) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore(t)) })
	}
}

// RunShared runs the tests that need two Store values on one database.
func RunShared(t *testing.T, newPair NewPair) {
	tests := []struct {
		name string
		run  func(t *testing.T, a, b store.Store)
	}{
		{"TwoWriters", testTwoWriters},
		{"Visibility", testVisibility},
		{"ResendThroughOther", testResendThroughOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newPair(t)
			tt.run(t, a, b)
		})
	}
}

// clock hands out strictly increasing CreatedAtMs values.
type clock struct{ ms int64 }

func newClock() *clock { return &clock{ms: 1_700_000_000_000} }

func (c *clock) next() int64 { c.ms++; return c.ms }

// req builds an append of one message from sender to peer.
func (c *clock) req(conv, sender, peer, listing, clientMsgID, body string) store.AppendReq {
	return store.AppendReq{
		ConvID: conv, SenderID: sender, PeerID: peer, ListingID: listing,
		ClientMsgID: clientMsgID, Body: body, CreatedAtMs: c.next(),
	}
}

func mustAppend(t *testing.T, s store.Store, reqs ...store.AppendReq) []store.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), reqs)
	if err != nil {
		t.Fatalf("append %d: got error %v, want nil", len(reqs), err)
	}
	if len(res) != len(reqs) {
		t.Fatalf("append %d: got %d results, want %d", len(reqs), len(res), len(reqs))
	}
	return res
}

func mustSync(t *testing.T, s store.Store, conv string, after uint64, limit int) store.SyncResult {
	t.Helper()
	res, err := s.Sync(t.Context(), store.SyncReq{ConvID: conv, AfterSeq: after, Limit: limit})
	if err != nil {
		t.Fatalf("sync %s after %d limit %d: got error %v, want nil", conv, after, limit, err)
	}
	return res
}

func mustMarkRead(t *testing.T, s store.Store, user, conv string, seq uint64) uint64 {
	t.Helper()
	res, err := s.MarkRead(t.Context(), store.MarkReadReq{UserID: user, ConvID: conv, Seq: seq})
	if err != nil {
		t.Fatalf("mark read %s %s %d: got error %v, want nil", user, conv, seq, err)
	}
	return res.ReadSeq
}

func mustConvList(t *testing.T, s store.Store, user string, limit int) []store.ConvSummary {
	t.Helper()
	res, err := s.ConvList(t.Context(), store.ConvListReq{UserID: user, Limit: limit})
	if err != nil {
		t.Fatalf("conv list %s: got error %v, want nil", user, err)
	}
	return res
}

func mustDump(t *testing.T, s store.Store) []store.Message {
	t.Helper()
	res, err := s.Dump(t.Context())
	if err != nil {
		t.Fatalf("dump: got error %v, want nil", err)
	}
	return res
}

// stored is the message req becomes at seq.
func stored(req store.AppendReq, seq uint64) store.Message {
	return store.Message{
		ConvID: req.ConvID, Seq: seq, SenderID: req.SenderID, ClientMsgID: req.ClientMsgID,
		CSeq: req.CSeq, Body: req.Body, CreatedAtMs: req.CreatedAtMs,
	}
}

// checkResults compares append results with the seqs and duplicate flags wanted.
func checkResults(t *testing.T, got []store.AppendResult, wantSeq []uint64, wantDup []bool) {
	t.Helper()
	for i := range got {
		if got[i].Seq != wantSeq[i] || got[i].Duplicate != wantDup[i] {
			t.Errorf("result %d: got seq %d duplicate %v, want seq %d duplicate %v",
				i, got[i].Seq, got[i].Duplicate, wantSeq[i], wantDup[i])
		}
	}
}

// checkMessages compares two message lists, nil and empty alike.
func checkMessages(t *testing.T, what string, got, want []store.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d messages, want %d", what, len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			t.Errorf("%s: message %d: got %+v, want %+v", what, i, got[i], want[i])
			return
		}
	}
}

func checkSummaries(t *testing.T, what string, got, want []store.ConvSummary) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// retryable reports whether an append may be tried again as it is: the
// store either did nothing or may have committed, and dedup settles which.
func retryable(err error) bool {
	return errors.Is(err, store.ErrDeadlock) || errors.Is(err, store.ErrUnknownOutcome) ||
		errors.Is(err, store.ErrUnavailable)
}

// appendRetryMax bounds the tries of one append in the concurrent tests.
const appendRetryMax = 20

// appendRetrying appends, trying again on a retryable error.
func appendRetrying(ctx context.Context, s store.Store, reqs []store.AppendReq) ([]store.AppendResult, error) {
	var err error
	for range appendRetryMax {
		var res []store.AppendResult
		res, err = s.Append(ctx, reqs)
		if err == nil {
			if len(res) != len(reqs) {
				return nil, fmt.Errorf("got %d results for %d appends", len(res), len(reqs))
			}
			return res, nil
		}
		if !retryable(err) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%d tries: %w", appendRetryMax, err)
}
