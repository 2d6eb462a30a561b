package natsdeps

import (
	"context"
	"strconv"
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

// PublishAsync: every publish's done is called exactly once with its
// outcome, dedup by msgID still holds, and a subject no stream takes fails.
func TestPublishAsync(t *testing.T) {
	d := start(t, Options{})
	const n = 500
	done := make(chan error, 2*n+1)
	for i := 0; i < n; i++ {
		id := "off:c:" + strconv.Itoa(i) + ":u1"
		for k := 0; k < 2; k++ { // each twice: the second is a duplicate
			if err := d.PublishAsync(mq.OfflinePrefix+"u1", []byte("m"), id, func(err error) { done <- err }); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	if err := d.PublishAsync("nobody.listens", []byte("m"), "x", func(err error) { done <- err }); err != nil {
		t.Fatalf("publish to no stream: %v", err)
	}
	var failed int
	for i := 0; i < 2*n+1; i++ {
		select {
		case err := <-done:
			if err != nil {
				failed++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d completions, want %d", i, 2*n+1)
		}
	}
	if failed != 1 {
		t.Fatalf("failed publishes: got %d, want 1 (the subject no stream takes)", failed)
	}
	select {
	case err := <-done:
		t.Fatalf("an extra completion: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := d.js.Stream(ctx, mq.StreamOffline)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Msgs; got != n {
		t.Fatalf("stored messages: got %d, want %d (duplicates stored once)", got, n)
	}
}

// Unchanged views are repeated, so a caller's own dead marks are corrected.
func TestRegistryViewsRepeat(t *testing.T) {
	d := start(t, Options{RegistryTTL: 10 * time.Second, ViewRefresh: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Put(ctx, node.Addr{Role: node.RoleLogic, Slot: 0}, time.Second); err != nil {
		t.Fatal(err)
	}
	views := make(chan node.View, 64)
	go d.Watch(ctx, map[node.Role]int{node.RoleLogic: 1}, func(v node.View) { views <- v })
	alive := 0
	for alive < 3 {
		select {
		case v := <-views:
			if v.Role == node.RoleLogic && v.Alive[0] {
				alive++
			}
		case <-ctx.Done():
			t.Fatalf("got %d views of the alive slot, want 3 (repeated)", alive)
		}
	}
}

func TestReplicasFor(t *testing.T) {
	tests := []struct {
		url  string
		want int
	}{
		{"nats://127.0.0.1:4222", 1},
		{"nats://a:4222,nats://b:4222", 1},
		{"nats://a:4222,nats://b:4222,nats://c:4222", 3},
		{"nats://a:4222, nats://b:4222 ,nats://c:4222,nats://d:4222", 3},
		{"nats://a:4222,,", 1},
	}
	for _, tc := range tests {
		if got := ReplicasFor(tc.url); got != tc.want {
			t.Errorf("ReplicasFor(%q): got %d, want %d", tc.url, got, tc.want)
		}
	}
}
