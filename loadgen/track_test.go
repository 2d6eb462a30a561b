package loadgen

import (
	"hash/maphash"
	"strconv"
	"sync/atomic"
	"testing"
)

// TestSendLog: acks and deliveries in any order find their send, writes
// move its written time, finished sends at the front are forgotten (and
// counted out), the log compacts, and a send acknowledged but never
// delivered is forgotten after deliverHorizon once it is the oldest.
func TestSendLog(t *testing.T) {
	var cnt atomic.Int64
	l := &sendLog{cnt: &cnt, seed: maphash.MakeSeed()}
	id := func(i int) string { return "u1-load-" + strconv.Itoa(i) }
	const n = 200
	for i := range n {
		if ok, _ := l.add(id(i), int64(1000+i), 0); !ok {
			t.Fatalf("add %d: refused", i)
		}
	}
	if !l.wrote([]byte(id(5)), 5005) || l.wrote([]byte("nobody"), 1) {
		t.Fatal("wrote: want true for a kept send, false for an unknown one")
	}
	// Acks in order except 1 and 0 swapped; deliveries in reverse order.
	order := []int{1, 0}
	for i := 2; i < n; i++ {
		order = append(order, i)
	}
	now := int64(10_000)
	for _, i := range order {
		intended, written := l.ack(id(i), now)
		if intended != int64(1000+i) {
			t.Fatalf("ack %d: intended %d, want %d", i, intended, 1000+i)
		}
		if want := map[bool]int64{true: 5005, false: 0}[i == 5]; written != want {
			t.Fatalf("ack %d: written %d, want %d", i, written, want)
		}
	}
	if got := cnt.Load(); got != n {
		t.Fatalf("after acks: %d kept, want %d (none delivered)", got, n)
	}
	for i := n - 1; i >= 1; i-- {
		if w := l.deliver(id(i), now); i == 5 && w != 5005 {
			t.Fatalf("deliver 5: written %d, want 5005", w)
		}
	}
	if got := cnt.Load(); got != n {
		t.Fatalf("with send 0 undelivered: %d kept, want %d", got, n)
	}
	l.deliver(id(0), now)
	if got := cnt.Load(); got != 0 || len(l.q)-l.head != 0 {
		t.Fatalf("all finished: %d kept, %d live, want 0", got, len(l.q)-l.head)
	}
	if l.head != 0 || len(l.q) != 0 {
		t.Fatalf("compaction: head %d len %d, want 0 0", l.head, len(l.q))
	}
	// A failed send is forgotten; an acked, undelivered one only past the
	// horizon.
	l.add(id(1000), 1, 0)
	l.add(id(1001), 1, 0)
	l.fail(id(1000), now)
	l.ack(id(1001), now)
	if got := cnt.Load(); got != 1 {
		t.Fatalf("one failed, one acked: %d kept, want 1", got)
	}
	l.add(id(1002), 1, 0)
	l.ack(id(1002), now+int64(deliverHorizon))
	if got := cnt.Load(); got != 1 {
		t.Fatalf("past the horizon: %d kept, want 1 (1001 forgotten, 1002 waits)", got)
	}
	if w := l.deliver(id(1001), now); w != 0 {
		t.Fatalf("deliver of a forgotten send: written %d, want 0", w)
	}
}

// TestSendLogBound: beyond trackedMax sends kept, add refuses.
func TestSendLogBound(t *testing.T) {
	var cnt atomic.Int64
	cnt.Store(trackedMax - 1)
	l := &sendLog{cnt: &cnt, seed: maphash.MakeSeed()}
	okA, _ := l.add("a", 1, 0)
	okB, _ := l.add("b", 1, 0)
	if !okA || okB {
		t.Fatal("want the last slot taken, then a refusal")
	}
	if got := cnt.Load(); got != trackedMax {
		t.Fatalf("count %d, want %d", got, trackedMax)
	}
}

// TestSendLogEarlyDelivery: a delivery that arrives before its send is in
// the log (the receiver's goroutine beat the sender's) is kept, and add
// hands back its time so the raw latency is still measured; the early
// deliveries kept per log are bounded.
func TestSendLogEarlyDelivery(t *testing.T) {
	var cnt atomic.Int64
	l := &sendLog{cnt: &cnt, seed: maphash.MakeSeed()}
	if w := l.deliver("u1-load-1", 5000); w != 0 {
		t.Fatalf("early deliver: written %d, want 0", w)
	}
	ok, at := l.add("u1-load-1", 1000, 4000)
	if !ok || at != 5000 {
		t.Fatalf("add after its delivery: ok %v deliveredAt %d, want true 5000", ok, at)
	}
	if len(l.early) != 0 {
		t.Fatalf("early deliveries kept after the match: %d, want 0", len(l.early))
	}
	// The send counts as delivered: its ack finishes it.
	l.ack("u1-load-1", 6000)
	if got := cnt.Load(); got != 0 {
		t.Fatalf("acked after an early delivery: %d kept, want 0", got)
	}
	if _, at := l.add("u1-load-2", 1000, 4000); at != 0 {
		t.Fatalf("add with no early delivery: deliveredAt %d, want 0", at)
	}
	for i := range earlyMax + 10 {
		l.deliver("other-"+strconv.Itoa(i), 1)
	}
	if len(l.early) != earlyMax {
		t.Fatalf("early deliveries kept: %d, want the bound %d", len(l.early), earlyMax)
	}
}
