package das_test

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/wire"
)

// A request that waited in its queue longer than QueueWaitMax is answered
// OVERLOADED when its turn comes, and is never stored; one that waited less
// is served as usual.
func TestQueueWaitMax(t *testing.T) {
	b := newBench(t, das.Config{AppendInflightMax: 1, QueueWaitMax: 100 * time.Millisecond})
	b.c.HoldStores = nodetest.StoreAppends
	first := b.request(appendReq(1)) // in flight
	stale := b.request(appendReq(2)) // queued at t0
	b.c.Advance(50 * time.Millisecond)
	fresh := b.request(appendReq(3)) // queued at t0+50ms
	b.c.Advance(70 * time.Millisecond)
	b.c.HoldStores = nil
	b.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreApply)
	b.c.Stabilize()
	if r := b.reply(first); r.GetAppend().GetSeq() != 1 {
		t.Fatalf("first: got %v, want seq 1", r)
	}
	if r := b.reply(stale); r == nil || r.Outcome != wire.Outcome_OUTCOME_FAILED || r.Code != wire.ErrorCode_OVERLOADED {
		t.Fatalf("append queued 120ms: got %v, want FAILED OVERLOADED", r)
	}
	if r := b.reply(fresh); r.GetAppend().GetSeq() != 2 {
		t.Fatalf("append queued 70ms: got %v, want seq 2", r)
	}
	st := b.d.Stats()
	if st.Expired != 1 || st.Rejected[wire.Business_BUSINESS_MESSAGE] != 1 || st.BatchedAppends != 2 {
		t.Fatalf("stats: got expired=%d rejected=%d appended=%d, want 1 1 2", st.Expired, st.Rejected[wire.Business_BUSINESS_MESSAGE], st.BatchedAppends)
	}
}

// commitSizes queues waiting appends, then completes every batch das issues
// after cost(size) of virtual time, topping the queue up to depth after
// each commit, for commits transactions; it returns the batch sizes.
func commitSizes(t *testing.T, b *bench, depth, commits int, cost func(n int) time.Duration) []int {
	t.Helper()
	b.c.HoldStores = nodetest.StoreAppends
	next := uint64(1)
	top := func() {
		for b.d.Stats().QueueDepth[wire.Business_BUSINESS_MESSAGE] < depth {
			b.request(appendReq(next))
			next++
		}
	}
	top()
	var sizes []int
	for range commits {
		if len(b.c.Stores) != 1 {
			t.Fatalf("got %d store ops in flight, want 1", len(b.c.Stores))
		}
		n := len(b.c.Stores[0].Op.Append)
		sizes = append(sizes, n)
		b.c.Advance(cost(n))
		b.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreApply)
		b.c.Stabilize()
		top()
	}
	return sizes
}

// A store whose commit costs a fixed 200ms however many rows it holds (a
// semi-synchronous replica's acknowledgement) is given full batches: the
// cap is set by what one more row costs, not by the time per row, which
// would charge the 200ms to a batch of one and keep it at one.
func TestBatchCapFixedCommitCost(t *testing.T) {
	b := newBench(t, das.Config{AppendInflightMax: 1, BatchDurationMax: 200 * time.Millisecond, QueueWaitMax: time.Hour})
	b.request(appendReq(0)) // the first batch is one append: nothing learnt yet
	sizes := commitSizes(t, b, 300, 40, func(int) time.Duration { return 200 * time.Millisecond })
	if last := sizes[len(sizes)-1]; last < 200 {
		t.Fatalf("batch sizes at a fixed 200ms per commit: got %v, want the last at least 200", sizes)
	}
}

// A store whose commit costs 50ms per row, with BatchDurationMax 100ms,
// settles on batches of 2: the sizes may probe one more, never far.
func TestBatchCapPerRowCost(t *testing.T) {
	b := newBench(t, das.Config{AppendInflightMax: 1, BatchDurationMax: 100 * time.Millisecond, QueueWaitMax: time.Hour})
	b.request(appendReq(0))
	sizes := commitSizes(t, b, 50, 60, func(n int) time.Duration { return 5*time.Millisecond + time.Duration(n)*50*time.Millisecond })
	// The first batch is the whole queue (nothing learnt); then the cap
	// follows the measurements.
	for i, n := range sizes[10:] {
		if n < 1 || n > 3 {
			t.Fatalf("batch %d: got size %d (sizes %v), want 1..3 at 50ms per row and a 100ms budget", i+10, n, sizes)
		}
	}
	twos := 0
	for _, n := range sizes[10:] {
		if n == 2 {
			twos++
		}
	}
	if twos < len(sizes[10:])/2 {
		t.Fatalf("sizes %v: want mostly batches of 2", sizes)
	}
	if st := b.d.Stats(); st.BatchCap < 1 || st.BatchCap > 3 {
		t.Fatalf("BatchCap: got %d, want 1..3", st.BatchCap)
	}
}
