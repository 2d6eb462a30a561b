package cluster_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/wire"
)

// TestSplitFirstMessage is `zzim up --logic-businesses 0=login,1=msg,2=contact`
// followed by examples/first-message, in one process: with logic split by
// business, alice's message still reaches bob (entry routes LOGIN to the
// login slot, SEND and SYNC to the msg slot).
func TestSplitFirstMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a live cluster")
	}
	split, err := cluster.ParseBusinesses("0=login,1=msg,2=contact")
	if err != nil {
		t.Fatal(err)
	}
	const secret = "split-test-secret"
	entries := startSplitCluster(t, cluster.Config{Topology: cluster.DefaultTopology(), Secret: []byte(secret), LogicBusinesses: split})

	token := func(user string) string { return wire.SignToken([]byte(secret), user, time.Now().Add(time.Hour)) }
	got := make(chan *wire.ChatMessage, 1)
	bob := clientrun.Start(client.Config{
		User: "bob", Device: "phone", Token: token("bob"), Entries: entries,
		OnDeliver: func(_ client.Env, m *wire.ChatMessage, via string) {
			select {
			case got <- m:
			default:
			}
		},
	}, clientrun.Options{})
	defer bob.Stop()
	alice := clientrun.Start(client.Config{User: "alice", Device: "phone", Token: token("alice"), Entries: entries}, clientrun.Options{})
	defer alice.Stop()

	const conv, body = "p:alice:bob:bike-42", "hi bob, is the bike still for sale?"
	alice.Do(func(c *client.Client, env client.Env) {
		if _, err := c.Send(env, conv, body); err != nil {
			t.Errorf("send: %v", err)
		}
	})
	select {
	case m := <-got:
		if m.ConvId != conv || m.Body != body || m.SenderId != "alice" || m.Seq != 1 {
			t.Errorf("got %s seq %d from %s: %q, want %s seq 1 from alice: %q", m.ConvId, m.Seq, m.SenderId, m.Body, conv, body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("got no delivery to bob within 15s, want the message")
	}
}

// startSplitCluster runs cfg in this process on free loopback ports
// (embedded NATS, in-memory store and presence) and returns the entries.
func startSplitCluster(t *testing.T, cfg cluster.Config) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{NATSDir: t.TempDir(), NeedStore: true, Name: "split-test"})
	if err != nil {
		t.Fatalf("deps: %v", err)
	}
	t.Cleanup(deps.Close)
	l, err := cluster.StartLocal(cfg, cluster.LocalOptions{Deps: deps.Deps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { l.Shutdown(context.Background(), 0) })
	for l.ReadyCheck()(ctx) != nil {
		if ctx.Err() != nil {
			t.Fatalf("cluster not ready: %v", l.ReadyCheck()(context.Background()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l.Entries()
}
