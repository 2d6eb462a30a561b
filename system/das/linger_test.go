package das_test

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// trickleResult is what a trickle of appends came to.
type trickleResult struct {
	stats   das.Stats
	ok      int           // appends answered OK
	latency time.Duration // longest time from request to answer
}

// trickle sends n appends gap apart to a das built with cfg, whose store
// commits at once (Stabilize), then lets time run until all are answered.
// It returns the stats, the count of OK answers and the longest wait.
func trickle(t *testing.T, cfg das.Config, n int, gap time.Duration) trickleResult {
	t.Helper()
	b := newBench(t, cfg)
	var now time.Duration // virtual time since the first request
	sent := map[uint64]time.Duration{}
	answered := map[uint64]bool{}
	var res trickleResult
	collect := func() {
		b.c.Stabilize()
		for _, m := range b.caller.Inbox {
			r, ok := m.(*wire.StoreReply)
			if !ok || answered[r.ReqId] {
				continue
			}
			answered[r.ReqId] = true
			if r.Outcome == wire.Outcome_OUTCOME_OK && r.GetAppend() != nil {
				res.ok++
			}
			res.latency = max(res.latency, now-sent[r.ReqId])
		}
	}
	for i := range n {
		if i > 0 {
			b.c.Advance(gap)
			now += gap
			collect()
		}
		id := b.request(appendReq(uint64(i + 1)))
		sent[id] = now
		collect()
	}
	for step := 0; len(answered) < n && step < 1000; step++ {
		b.c.Advance(time.Millisecond)
		now += time.Millisecond
		collect()
	}
	if len(answered) != n {
		t.Fatalf("%d of %d appends answered", len(answered), n)
	}
	res.stats = b.d.Stats()
	return res
}

// Appends arriving one at a time, 1ms apart, each commit taking no time:
// without a linger each goes in a transaction of its own; with a 5ms
// linger they share transactions, and none waits much over the linger.
func TestLingerTrickleFewerTransactions(t *testing.T) {
	const n = 100
	off := trickle(t, das.Config{}, n, time.Millisecond)
	on := trickle(t, das.Config{AppendLinger: 5 * time.Millisecond}, n, time.Millisecond)
	if off.ok != n || on.ok != n {
		t.Fatalf("OK answers: got %d without linger, %d with, want %d", off.ok, on.ok, n)
	}
	if off.stats.Batches != n {
		t.Fatalf("without linger: got %d transactions, want %d", off.stats.Batches, n)
	}
	if on.stats.Batches > n/4 {
		t.Fatalf("5ms linger: got %d transactions for %d appends 1ms apart, want at most %d", on.stats.Batches, n, n/4)
	}
	// The linger's own timer is due at oldest+5ms; the test's clock moves
	// by 1ms steps, so the answer comes at most one step later.
	if on.latency > 6*time.Millisecond {
		t.Fatalf("5ms linger: longest wait %s, want at most 6ms", on.latency)
	}
	if on.latency < 4*time.Millisecond {
		t.Fatalf("5ms linger: longest wait %s, want the linger to have held appends", on.latency)
	}
}

// A full batch (the batch cap) goes at once, without waiting out the linger.
func TestLingerFullBatchGoesAtOnce(t *testing.T) {
	b := newBench(t, das.Config{AppendInflightMax: 1, AppendLinger: das.AppendLingerMax})
	b.c.HoldStores = nodetest.StoreAppends
	for i := range store.AppendBatchMax - 1 {
		b.request(appendReq(uint64(i + 1)))
	}
	if got := len(b.c.Stores); got != 0 {
		t.Fatalf("%d appends (under a batch): got %d transactions started, want 0 while lingering", store.AppendBatchMax-1, got)
	}
	b.request(appendReq(store.AppendBatchMax))
	if got := len(b.c.Stores); got != 1 || len(b.c.Stores[0].Op.Append) != store.AppendBatchMax {
		t.Fatalf("full batch: got %d transactions (%v), want 1 of %d at once", got, b.c.Stores, store.AppendBatchMax)
	}
	// The batch went: no linger timer is left to wake das for nothing.
	if fired := b.c.Advance(das.AppendLingerMax); fired != 0 {
		t.Fatalf("after the full batch went: %d timers fired, want 0", fired)
	}
}

// AppendLinger is capped at AppendLingerMax and at QueueWaitMax/2, and the
// capped linger is what holds a batch.
func TestLingerCapped(t *testing.T) {
	if got := das.New(das.Config{AppendLinger: time.Second}).Linger(); got != das.AppendLingerMax {
		t.Fatalf("AppendLinger 1s: got %s, want AppendLingerMax %s", got, das.AppendLingerMax)
	}
	if got := das.New(das.Config{AppendLinger: -time.Second}).Linger(); got != 0 {
		t.Fatalf("AppendLinger -1s: got %s, want 0", got)
	}
	b := newBench(t, das.Config{AppendLinger: 40 * time.Millisecond, QueueWaitMax: 20 * time.Millisecond})
	if got := b.d.Linger(); got != 10*time.Millisecond {
		t.Fatalf("AppendLinger 40ms, QueueWaitMax 20ms: got %s, want 10ms", got)
	}
	b.c.HoldStores = nodetest.StoreAppends
	b.request(appendReq(1))
	b.c.Advance(9 * time.Millisecond)
	if got := len(b.c.Stores); got != 0 {
		t.Fatalf("after 9ms: got %d transactions, want 0 (lingering)", got)
	}
	b.c.Advance(time.Millisecond)
	if got := len(b.c.Stores); got != 1 {
		t.Fatalf("after 10ms (QueueWaitMax/2): got %d transactions, want 1", got)
	}
}

// A linger asked for longer than QueueWaitMax allows never makes a request
// expire: every append of a trickle is committed, the linger held them
// (fewer transactions than appends), and none waited over QueueWaitMax/2
// plus the test clock's step.
func TestLingerNeverExpires(t *testing.T) {
	const n = 100
	cfg := das.Config{AppendLinger: time.Second, QueueWaitMax: 20 * time.Millisecond, AppendInflightMax: 1}
	r := trickle(t, cfg, n, time.Millisecond)
	if r.ok != n || r.stats.Expired != 0 || r.stats.RejectedTotal != 0 {
		t.Fatalf("got %d OK, %d expired, %d rejected of %d, want all OK", r.ok, r.stats.Expired, r.stats.RejectedTotal, n)
	}
	if r.stats.Batches > n/5 {
		t.Fatalf("got %d transactions for %d appends, want at most %d (a 10ms linger)", r.stats.Batches, n, n/5)
	}
	if r.latency > 11*time.Millisecond {
		t.Fatalf("longest wait %s, want at most 11ms (QueueWaitMax/2 and a 1ms step)", r.latency)
	}
}
