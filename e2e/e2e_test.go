package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// TestEndToEnd: apps on two entries and a long-poll client exchange
// messages; an offline user gets its messages through the queue path on
// reconnect; a logic killed mid-traffic loses and duplicates nothing; the
// metrics endpoint shows the failover. The steps share one cluster and run
// in order.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: real sockets and an embedded NATS server")
	}
	tc := startSplit(t, nil)
	f := newFleet(t)
	entries := tc.front.Entries()
	if len(entries) != 2 || len(tc.front.HTTPEntries()) != 1 {
		t.Fatalf("got entries %v and httpentries %v, want 2 and 1", entries, tc.front.HTTPEntries())
	}
	tcp := func(slot int) client.Config {
		return client.Config{Transport: client.TCP, Entries: []string{entries[slot]}}
	}
	poll := client.Config{Transport: client.LongPoll, HTTP: "http://" + tc.front.HTTPEntries()[0]}
	alice := f.start("alice", "alice", tcp(0))
	bob := f.start("bob", "bob", tcp(1))
	carol := f.start("carol", "carol", poll)
	waitFor(t, 5*time.Second, "alice, bob and carol online", func() bool {
		return online(alice) && online(bob) && online(carol)
	})

	t.Run("exchange", func(t *testing.T) { exchange(t, f, alice, bob, carol) })
	t.Run("offline", func(t *testing.T) { offline(t, tc, f, alice, tcp(1)) })
	t.Run("kill-logic", func(t *testing.T) {
		killLogic(t, tc, f, entries, poll, []*clientrun.Runner{alice, bob, carol})
	})
}

func exchange(t *testing.T, f *fleet, alice, bob, carol *clientrun.Runner) {
	ab, ca, bc := "p:alice:bob:l1", "p:carol:alice:l2", "p:bob:carol:l3"
	sends := []struct {
		from *clientrun.Runner
		conv string
		n    int
	}{{alice, ab, 3}, {bob, ab, 2}, {carol, ca, 2}, {alice, ca, 2}, {bob, bc, 1}, {carol, bc, 1}}
	for _, s := range sends {
		for i := 0; i < s.n; i++ {
			if !f.send(s.from, s.conv, fmt.Sprintf("hello %d", i)) {
				t.Fatalf("send on %s refused", s.conv)
			}
		}
	}
	want := map[string]int{ab: 5, ca: 4, bc: 2}
	holders := map[string][]*clientrun.Runner{ab: {alice, bob}, ca: {carol, alice}, bc: {bob, carol}}
	for conv, rs := range holders {
		for _, r := range rs {
			waitFor(t, 10*time.Second, "every message of "+conv+" at both participants", func() bool {
				return len(held(r, conv)) == want[conv]
			})
			assertSeqs(t, conv, held(r, conv), want[conv])
		}
	}
	if n := f.delivered("bob", "push"); n < 3 {
		t.Errorf("got %d pushes to bob, want at least alice's 3", n)
	}
	if n := f.delivered("carol", "push"); n < 3 {
		t.Errorf("got %d long-poll pushes to carol, want at least 3", n)
	}
}

// assertSeqs checks a client holds seqs 1..n of conv, once each.
func assertSeqs(t *testing.T, conv string, msgs []*wire.ChatMessage, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("%s: got %d messages, want %d", conv, len(msgs), n)
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Fatalf("%s: message %d has seq %d, want %d", conv, i, m.Seq, i+1)
		}
	}
}

func offline(t *testing.T, tc *testCluster, f *fleet, alice *clientrun.Runner, cfg client.Config) {
	dave := f.start("dave1", "dave", cfg)
	waitFor(t, 5*time.Second, "dave online", func() bool { return online(dave) })
	dave.Stop() // the connection closes: entry tells logic, logic clears presence
	waitFor(t, 5*time.Second, "dave's presence cleared", func() bool {
		res, err := tc.deps.Presence.Do(context.Background(), node.PresenceOp{Kind: node.PresenceGet, Users: []string{"dave"}})
		return err == nil && res.Found[0].User == ""
	})
	conv := "p:alice:dave:l4"
	for i := 0; i < 3; i++ {
		f.send(alice, conv, fmt.Sprintf("are you there %d", i))
	}
	waitFor(t, 10*time.Second, "the notifier called for dave", func() bool { return tc.notes.count("dave") > 0 })
	dave2 := f.start("dave2", "dave", cfg)
	waitFor(t, 10*time.Second, "dave's three messages after reconnecting", func() bool { return len(held(dave2, conv)) == 3 })
	assertSeqs(t, conv, held(dave2, conv), 3)
	if n := f.delivered("dave", "sync"); n != 3 {
		t.Errorf("got %d messages to dave by sync, want 3 (none could be pushed)", n)
	}
}

// killLogic runs traffic from ten TCP users and a long-poll one, kills
// (no goodbye) the logic that is home to the most of them, and checks what
// everyone holds against the store and the history checkers.
func killLogic(t *testing.T, tc *testCluster, f *fleet, entries []string, poll client.Config, old []*clientrun.Runner) {
	const users = 10
	runners := map[string]*clientrun.Runner{}
	homes := make([]int, tc.front.Config.Topology[node.RoleLogic])
	for i := 0; i < users; i++ {
		u := fmt.Sprintf("u%d", i)
		runners[u] = f.start(u, u, client.Config{Transport: client.TCP, Entries: []string{entries[i%2], entries[(i+1)%2]}})
		homes[route.Home(u, len(homes))]++
	}
	runners["erin"] = f.start("erin", "erin", poll)
	victim := 0
	for s := range homes {
		if homes[s] > homes[victim] {
			victim = s
		}
	}
	for name, r := range runners {
		waitFor(t, 5*time.Second, name+" online", func() bool { return online(r) })
	}
	convsOf := func(i int) []string {
		u, v, w := fmt.Sprintf("u%d", i), fmt.Sprintf("u%d", (i+1)%users), fmt.Sprintf("u%d", (i+3)%users)
		return []string{"p:" + u + ":" + v + ":k", "p:" + w + ":" + u + ":k", "p:" + u + ":erin:k"}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	traffic := func(r *clientrun.Runner, convs []string, every time.Duration) {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			f.send(r, convs[n%len(convs)], fmt.Sprintf("m%d", n))
		}
	}
	for i := 0; i < users; i++ {
		wg.Add(1)
		// 60ms: under logic's per-user limit of 20 sends/s (a product
		// limit since this test was written); at 4ms each user's backlog
		// took longer to be accepted than the test waits.
		go traffic(runners[fmt.Sprintf("u%d", i)], convsOf(i), 60*time.Millisecond)
	}
	wg.Add(1)
	go traffic(runners["erin"], []string{"p:u0:erin:k", "p:u1:erin:k"}, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	victimAddr := node.Addr{Role: node.RoleLogic, Slot: victim}
	tc.back.Kill(victimAddr)
	t.Logf("killed %s (home of %d of %d users) mid-traffic", victimAddr, homes[victim], users)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	all := append([]*clientrun.Runner{}, old...)
	for _, r := range runners {
		all = append(all, r)
	}
	waitFor(t, 15*time.Second, "every send acknowledged", func() bool {
		for _, r := range all {
			if unacked(r) != 0 {
				return false
			}
		}
		return true
	})
	msgs, byConv := tc.dump(t)
	assertStoredOnce(t, f, msgs)
	// Final sync: every participant must end up holding every stored
	// message of its conversations, once.
	for _, r := range all {
		r.Do(func(c *client.Client, env client.Env) {
			for _, conv := range c.Convs() {
				_ = c.Sync(env, conv)
			}
		})
	}
	waitFor(t, 10*time.Second, "every client holding every stored message", func() bool {
		return len(missing(all, byConv)) == 0
	})
	for _, r := range all {
		r.Do(func(c *client.Client, env client.Env) { c.Finish(env) })
	}
	verdict, err := check.Check(&check.History{Ops: f.rec.Ops()}, check.Options{Dump: msgs, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	t.Log(verdict.Line())
	if !verdict.Pass {
		for i, v := range verdict.Violations {
			if i == 10 {
				break
			}
			t.Errorf("violation of promise %d (%s) in %s: %s", v.Promise, v.Name, v.Conv, v.Message)
		}
		t.Fatalf("got verdict %s, want pass", verdict.Word())
	}
	failovers, lines := tc.metric(t, "zzim_entry_failovers")
	t.Logf("metrics: %s", lines)
	if failovers <= 0 {
		t.Errorf("got zzim_entry_failovers %v in /metrics, want > 0 after killing %s", failovers, victimAddr)
	}
}

// assertStoredOnce: every acknowledged send is stored with its acked seq,
// and no send is stored twice.
func assertStoredOnce(t *testing.T, f *fleet, msgs []store.Message) {
	t.Helper()
	stored := map[string]store.Message{}
	for _, m := range msgs {
		key := m.ConvID + "/" + m.ClientMsgID
		if prev, dup := stored[key]; dup {
			t.Errorf("send %s stored twice: seqs %d and %d", key, prev.Seq, m.Seq)
		}
		stored[key] = m
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.acked) == 0 {
		t.Fatalf("no send acknowledged")
	}
	for id, seq := range f.acked {
		m, ok := stored[f.conv[id]+"/"+id]
		if !ok {
			t.Errorf("acked send %s (seq %d) not in the store", id, seq)
			continue
		}
		if m.Seq != seq {
			t.Errorf("acked send %s: got seq %d in the store, want the acked %d", id, m.Seq, seq)
		}
	}
	t.Logf("%d sends acked, %d failed definitely, %d messages stored", len(f.acked), len(f.failed), len(msgs))
}

// missing lists (client, conv, seq) a participant does not hold.
func missing(rs []*clientrun.Runner, byConv map[string][]store.Message) []string {
	var out []string
	for _, r := range rs {
		var user string
		r.Do(func(c *client.Client, _ client.Env) {
			if !c.Stopped() {
				user = c.Config().User
			}
		})
		for conv, want := range byConv {
			if !participant(conv, user) {
				continue
			}
			got := map[uint64]bool{}
			for _, m := range held(r, conv) {
				got[m.Seq] = true
			}
			for _, m := range want {
				if !got[m.Seq] {
					out = append(out, fmt.Sprintf("%s %s %d", user, conv, m.Seq))
				}
			}
		}
	}
	return out
}

func participant(conv, user string) bool {
	c, err := wire.ParseConvID(conv)
	if err != nil || user == "" {
		return false
	}
	_, ok := c.Participant(user)
	return ok
}
