package natsdeps

import (
	"context"
	"testing"
	"time"

	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
)

func start(t *testing.T, o Options) *Deps {
	t.Helper()
	s, url, err := StartEmbedded(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := Connect(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// Dedup within the window, and redelivery of an unacked message after AckWait.
func TestQueueDedupAndRedelivery(t *testing.T) {
	d := start(t, Options{AckWait: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		if err := d.Publish(ctx, mq.OfflinePrefix+"u1", []byte("m1"), "off:c:1:u1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Publish(ctx, mq.OfflinePrefix+"u2", []byte("m2"), "off:c:2:u2"); err != nil {
		t.Fatal(err)
	}
	got := make(chan live.QueueDelivery, 16)
	go d.Consume(ctx, mq.Consumers[0], func(qd live.QueueDelivery) { got <- qd })
	seen := map[string]int{}
	deadline := time.After(10 * time.Second)
	for seen["off:c:1:u1"] < 2 {
		select {
		case qd := <-got:
			seen[qd.MsgID]++
			if qd.MsgID == "off:c:2:u2" {
				_ = qd.Ack()
			}
			// m1 is never acked: it must come back with NumDelivered 2.
			if qd.MsgID == "off:c:1:u1" && seen[qd.MsgID] == 2 && qd.NumDelivered != 2 {
				t.Fatalf("redelivery NumDelivered = %d, want 2", qd.NumDelivered)
			}
		case <-deadline:
			t.Fatalf("no redelivery of the unacked message; seen %v", seen)
		}
	}
	if seen["off:c:2:u2"] != 1 {
		t.Fatalf("acked message delivered %d times, want 1", seen["off:c:2:u2"])
	}
}

// A slot that stops heartbeating expires, and the watcher sees it.
func TestRegistryExpiryIsWatched(t *testing.T) {
	d := start(t, Options{RegistryTTL: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := node.Addr{Role: node.RoleLogic, Slot: 1}
	if err := d.Put(ctx, a, time.Second); err != nil {
		t.Fatal(err)
	}
	views := make(chan node.View, 64)
	go d.Watch(ctx, map[node.Role]int{node.RoleLogic: 3}, func(v node.View) { views <- v })
	sawAlive, sawDead := false, false
	for !sawDead {
		select {
		case v := <-views:
			if v.Role != node.RoleLogic {
				continue
			}
			if v.Alive[1] {
				sawAlive = true
			} else if sawAlive {
				sawDead = true
			}
		case <-ctx.Done():
			t.Fatalf("expiry not seen (alive seen: %v)", sawAlive)
		}
	}
}
