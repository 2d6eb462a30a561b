package das_test

import (
	"fmt"
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

// The batch size follows the store's time per append: after a group
// commit of 2 that took 100ms (50ms per append), BatchDurationMax 100ms
// allows batches of 2, so 5 waiting appends go as 2, 2, 1.
func TestBatchDurationMax(t *testing.T) {
	b := newBench(t, das.Config{AppendInflightMax: 1, BatchDurationMax: 100 * time.Millisecond, QueueWaitMax: time.Hour})
	b.c.HoldStores = nodetest.StoreAppends
	b.request(appendReq(1)) // in flight alone
	b.request(appendReq(2))
	b.request(appendReq(3))
	b.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreApply) // instant: no timing learnt yet
	b.c.Stabilize()
	if got := len(b.c.Stores); got != 1 || len(b.c.Stores[0].Op.Append) != 2 {
		t.Fatalf("second batch: got %d store ops, want one of 2", got)
	}
	for c := uint64(4); c <= 8; c++ {
		b.request(appendReq(c))
	}
	b.c.Advance(100 * time.Millisecond)
	var sizes []int
	for len(b.c.Stores) > 0 {
		b.c.CompleteStore(nodetest.StoreAppends, nodetest.StoreApply)
		b.c.Stabilize()
		if len(b.c.Stores) > 0 {
			sizes = append(sizes, len(b.c.Stores[0].Op.Append))
		}
	}
	if got := fmt.Sprint(sizes); got != "[2 2 1]" {
		t.Fatalf("batch sizes after a slow commit: got %s, want [2 2 1]", got)
	}
}
