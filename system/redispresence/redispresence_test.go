package redispresence

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/node"
)

func TestMain(m *testing.M) {
	testdeps.Setup()
	os.Exit(m.Run())
}

func entry(user string, slot int, conn node.ConnID, inc node.Incarnation, device string) node.PresenceEntry {
	return node.PresenceEntry{User: user, Entry: node.Addr{Role: node.RoleEntry, Slot: slot}, Conn: conn, Incarnation: inc, Device: device}
}

// TestPresenceRedis runs every presence operation against a Redis container
// (the zzim/redis:dev image); each subtest starts from an empty database.
// Skipped without Docker or the image (a failure when CI=true).
func TestPresenceRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Redis container")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := New(testdeps.Redis(ctx, t))
	t.Cleanup(func() { p.Close() })
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	tests := []struct {
		name string
		run  func(t *testing.T, p *Presence)
	}{
		{"set-returns-previous", testSetPrevious},
		{"get-aligned", testGetAligned},
		{"delete-only-own-connection", testConditionalDelete},
		{"scan-pages", testScanPages},
		{"ttl-expires", testTTL},
		{"malformed-value-ignored", testMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.rdb.FlushDB(ctx).Err(); err != nil {
				t.Fatalf("flush: %v", err)
			}
			tt.run(t, p)
		})
	}
}

func do(t *testing.T, p *Presence, op node.PresenceOp) node.PresenceResult {
	t.Helper()
	res, err := p.Do(context.Background(), op)
	if err != nil {
		t.Fatalf("presence op %d: %v", op.Kind, err)
	}
	return res
}

func set(t *testing.T, p *Presence, e node.PresenceEntry, ttl time.Duration) *node.PresenceEntry {
	t.Helper()
	return do(t, p, node.PresenceOp{Kind: node.PresenceSet, Entry: e, TTL: ttl}).Previous
}

func get(t *testing.T, p *Presence, users ...string) []node.PresenceEntry {
	t.Helper()
	return do(t, p, node.PresenceOp{Kind: node.PresenceGet, Users: users}).Found
}

func testSetPrevious(t *testing.T, p *Presence) {
	first := entry("alice", 0, 7, 3, "phone")
	if prev := set(t, p, first, time.Minute); prev != nil {
		t.Fatalf("first set: got previous %+v, want none", *prev)
	}
	second := entry("alice", 1, 9, 4, "tablet|with bar") // the device is the last field: a '|' in it survives
	prev := set(t, p, second, time.Minute)
	if prev == nil || *prev != first {
		t.Fatalf("second set: got previous %v, want %+v", prev, first)
	}
	if got := get(t, p, "alice"); got[0] != second {
		t.Fatalf("get: got %+v, want %+v", got[0], second)
	}
}

func testGetAligned(t *testing.T, p *Presence) {
	a, b := entry("alice", 0, 1, 1, "d1"), entry("bob", 1, 2, 1, "d2")
	set(t, p, a, time.Minute)
	set(t, p, b, time.Minute)
	got := get(t, p, "bob", "nobody", "alice")
	want := []node.PresenceEntry{b, {}, a}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := get(t, p); len(got) != 0 {
		t.Errorf("get of no users: got %d entries, want 0", len(got))
	}
}

func testConditionalDelete(t *testing.T, p *Presence) {
	old := entry("alice", 0, 1, 1, "phone")
	newer := entry("alice", 0, 12, 1, "phone") // conn 12 starts with conn 1's digits
	set(t, p, old, time.Minute)
	set(t, p, newer, time.Minute)
	// The old session's close arrives after the newer login: it must not
	// remove the newer entry.
	do(t, p, node.PresenceOp{Kind: node.PresenceDelete, Entry: old})
	if got := get(t, p, "alice"); got[0] != newer {
		t.Fatalf("after the old connection's delete: got %+v, want the newer %+v", got[0], newer)
	}
	otherEntry := entry("alice", 1, 12, 1, "phone") // same conn number on another entry
	do(t, p, node.PresenceOp{Kind: node.PresenceDelete, Entry: otherEntry})
	if got := get(t, p, "alice"); got[0] != newer {
		t.Fatalf("after another entry's delete: got %+v, want %+v", got[0], newer)
	}
	do(t, p, node.PresenceOp{Kind: node.PresenceDelete, Entry: newer})
	if got := get(t, p, "alice"); got[0] != (node.PresenceEntry{}) {
		t.Fatalf("after the owner's delete: got %+v, want none", got[0])
	}
	// Deleting an absent key is not an error.
	do(t, p, node.PresenceOp{Kind: node.PresenceDelete, Entry: newer})
}

func testScanPages(t *testing.T, p *Presence) {
	const users = 25
	want := map[string]node.PresenceEntry{}
	for i := 0; i < users; i++ {
		e := entry(fmt.Sprintf("u%02d", i), i%2, node.ConnID(i+1), 1, "d")
		set(t, p, e, time.Minute)
		want[e.User] = e
	}
	// A key outside the presence prefix must not be reported.
	if err := p.rdb.Set(context.Background(), "other:u99", "entry-0|1|1|d", time.Minute).Err(); err != nil {
		t.Fatalf("set other key: %v", err)
	}
	got := map[string]node.PresenceEntry{}
	var cursor uint64
	pages := 0
	for {
		res := do(t, p, node.PresenceOp{Kind: node.PresenceScan, Cursor: cursor, Count: 4})
		pages++
		for _, e := range res.Found { // SCAN may repeat a key: keep one
			got[e.User] = e
		}
		cursor = res.Cursor
		if cursor == 0 {
			break
		}
		if pages > 1000 {
			t.Fatalf("scan did not finish after %d pages", pages)
		}
	}
	if pages < 2 {
		t.Errorf("got %d scan page(s) for %d keys at count 4, want several", pages, users)
	}
	if len(got) != len(want) {
		t.Errorf("got %d users scanned, want %d", len(got), len(want))
	}
	for u, e := range want {
		if got[u] != e {
			t.Errorf("scan %s: got %+v, want %+v", u, got[u], e)
		}
	}
}

func testTTL(t *testing.T, p *Presence) {
	const ttl = 300 * time.Millisecond
	e := entry("alice", 0, 1, 1, "phone")
	set(t, p, e, ttl)
	left, err := p.rdb.PTTL(context.Background(), keyPrefix+"alice").Result()
	if err != nil {
		t.Fatalf("pttl: %v", err)
	}
	if left <= 0 || left > ttl {
		t.Fatalf("got TTL %s on the key, want in (0, %s]", left, ttl)
	}
	if got := get(t, p, "alice"); got[0] != e {
		t.Fatalf("before expiry: got %+v, want %+v", got[0], e)
	}
	deadline := time.Now().Add(5 * time.Second)
	for get(t, p, "alice")[0] != (node.PresenceEntry{}) {
		if time.Now().After(deadline) {
			t.Fatalf("entry with TTL %s still present after 5s", ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A heartbeat is a Set: the expired entry is no previous.
	if prev := set(t, p, e, time.Minute); prev != nil {
		t.Errorf("set after expiry: got previous %+v, want none", *prev)
	}
}

func testMalformed(t *testing.T, p *Presence) {
	if err := p.rdb.Set(context.Background(), keyPrefix+"alice", "garbage", time.Minute).Err(); err != nil {
		t.Fatalf("set raw: %v", err)
	}
	if got := get(t, p, "alice"); got[0] != (node.PresenceEntry{}) {
		t.Fatalf("get of a malformed value: got %+v, want none", got[0])
	}
	// Set over it succeeds and reports no (undecodable) previous entry.
	if prev := set(t, p, entry("alice", 0, 1, 1, "d"), time.Minute); prev != nil {
		t.Errorf("set over a malformed value: got previous %+v, want none", *prev)
	}
}
