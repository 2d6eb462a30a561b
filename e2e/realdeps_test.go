package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/extlogic"
	"github.com/zzim/zzim/system/natsdeps"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store/mysqlstore"
	"github.com/zzim/zzim/web"
)

// expiryWaitMax bounds how long a killed slot may stay alive in the
// registry: its key's TTL (node.RegistryTTLDefault, 6 s) plus the server's
// expiry sweep and a margin for a loaded machine.
const expiryWaitMax = 20 * time.Second

// TestRealDepsUp runs the cluster `zzim up --mysql DSN --redis ADDR --nats
// URL` assembles, in process, against MariaDB, Redis and NATS containers:
// two TCP users exchange messages; an offline user gets its messages by
// sync after reconnecting, the notifier having been called for it through
// JetStream and extlogic; every acked message is in MariaDB once; a killed
// logic slot's registry key expires and a registry watcher reports it dead.
// Skipped without Docker or the zzim/* images (a failure when CI=true).
func TestRealDepsUp(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MariaDB, Redis and NATS containers")
	}
	// Before the first testcontainers call, which reads the environment once;
	// nothing else in this package uses testcontainers.
	testdeps.Setup()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	dsn := testdeps.MariaDB(ctx, t)
	redisAddr := testdeps.Redis(ctx, t)
	natsURL := testdeps.NATS(ctx, t)
	t.Logf("containers up in %s", time.Since(began).Round(time.Millisecond))

	notified := &msgNotes{msgs: map[string]int{}}
	tc := startRealUp(ctx, t, dsn, redisAddr, natsURL, notified)
	if _, ok := tc.deps.Store.(*mysqlstore.Store); !ok {
		t.Fatalf("got store %T, want *mysqlstore.Store", tc.deps.Store)
	}
	if tc.deps.NATSURL != natsURL {
		t.Fatalf("got NATS %s, want the container's %s", tc.deps.NATSURL, natsURL)
	}
	f := newFleet(t)
	entries := tc.front.Entries()
	if len(entries) != 2 {
		t.Fatalf("got entries %v, want 2", entries)
	}
	tcp := func(slot int) client.Config {
		return client.Config{Transport: client.TCP, Entries: []string{entries[slot]}}
	}
	alice := f.start("alice", "alice", tcp(0))
	bob := f.start("bob", "bob", tcp(1))
	waitFor(t, 10*time.Second, "alice and bob online", func() bool { return online(alice) && online(bob) })

	t.Run("exchange", func(t *testing.T) { exchangeTwo(t, f, alice, bob) })
	t.Run("offline", func(t *testing.T) { offlineReal(t, tc, notified, f, alice, tcp(1)) })
	t.Run("stored-once", func(t *testing.T) {
		waitFor(t, 10*time.Second, "every send acknowledged", func() bool { return unacked(alice) == 0 && unacked(bob) == 0 })
		msgs, _ := tc.dump(t)
		assertStoredOnce(t, f, msgs)
		f.mu.Lock()
		acked := len(f.acked)
		f.mu.Unlock()
		// 5 in the exchange and 3 to the offline user, nothing else sent.
		if len(msgs) != acked || acked != 8 {
			t.Errorf("got %d messages in MariaDB and %d acked sends, want 8 and 8", len(msgs), acked)
		}
	})
	t.Run("logic-expiry", func(t *testing.T) { logicExpiry(ctx, t, tc, natsURL) })
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// startRealUp mirrors cmd/zzim runUp: OpenDeps on the three URLs, then one
// StartLocal with every role of the default topology, app and HTTP ports
// chosen by the system, and the web routes on httpentry. The notifier is
// the test's counter instead of the log notifier.
func startRealUp(ctx context.Context, t *testing.T, dsn, redisAddr, natsURL string, n *msgNotes) *testCluster {
	t.Helper()
	tc := &testCluster{notes: &notes{users: map[string]int{}}}
	n.also = tc.notes
	cfg := cluster.Config{
		Topology: cluster.DefaultTopology(), Secret: []byte(testSecret), PlatformKey: "e2e-platform",
		Notifier: n,
	}
	log := logger(t)
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{
		NATS: natsURL, Redis: redisAddr, MySQL: []string{dsn}, NeedStore: true, Name: "zzim-up", Logger: log,
	})
	if err != nil {
		t.Fatalf("dependencies: %v", err)
	}
	tc.deps = deps
	t.Cleanup(deps.Close)
	l, err := cluster.StartLocal(cfg, cluster.LocalOptions{
		Host: "127.0.0.1", Deps: deps.Deps, Logger: log, HTTPExtra: web.Routes(cfg.Secret, true),
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { l.Shutdown(context.Background(), 0) })
	tc.front, tc.back = l, l
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: cluster.OpsHandler(l.Registry(), l.ReadyCheck())}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	tc.opsURL = "http://" + ln.Addr().String()
	waitFor(t, 15*time.Second, "cluster ready", func() bool { return l.ReadyCheck()(ctx) == nil })
	return tc
}

func exchangeTwo(t *testing.T, f *fleet, alice, bob *clientrun.Runner) {
	conv := "p:alice:bob:r1"
	for i, from := range []*clientrun.Runner{alice, alice, bob, alice, bob} {
		if !f.send(from, conv, fmt.Sprintf("hello %d", i)) {
			t.Fatalf("send %d refused", i)
		}
	}
	for name, r := range map[string]*clientrun.Runner{"alice": alice, "bob": bob} {
		waitFor(t, 10*time.Second, "all five messages at "+name, func() bool { return len(held(r, conv)) == 5 })
		assertSeqs(t, conv, held(r, conv), 5)
	}
	// Each side sent some and must have had the other's pushed.
	if n := f.delivered("bob", "push"); n < 3 {
		t.Errorf("got %d pushes to bob, want at least alice's 3", n)
	}
	if n := f.delivered("alice", "push"); n < 2 {
		t.Errorf("got %d pushes to alice, want at least bob's 2", n)
	}
}

// msgNotes counts the messages notified per user (a notification may carry
// several) and passes each notification on to also.
type msgNotes struct {
	mu   sync.Mutex
	msgs map[string]int
	also *notes
}

func (n *msgNotes) Notify(x extlogic.Notification) {
	n.mu.Lock()
	n.msgs[x.User] += len(x.Messages) + x.Omitted
	n.mu.Unlock()
	n.also.Notify(x)
}

func (n *msgNotes) count(user string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.msgs[user]
}

// offlineReal: dave disconnects (Redis presence cleared), alice sends him
// three messages, which take the offline path (JetStream, extlogic, the
// notifier); only once all three are acked and notified does dave come
// back, so he can get them by sync alone, never by push.
func offlineReal(t *testing.T, tc *testCluster, n *msgNotes, f *fleet, alice *clientrun.Runner, cfg client.Config) {
	dave := f.start("dave1", "dave", cfg)
	waitFor(t, 10*time.Second, "dave online", func() bool { return online(dave) })
	dave.Stop()
	waitFor(t, 10*time.Second, "dave's presence cleared in Redis", func() bool {
		res, err := tc.deps.Presence.Do(context.Background(), node.PresenceOp{Kind: node.PresenceGet, Users: []string{"dave"}})
		return err == nil && res.Found[0].User == ""
	})
	conv := "p:alice:dave:r2"
	for i := 0; i < 3; i++ {
		if !f.send(alice, conv, fmt.Sprintf("are you there %d", i)) {
			t.Fatalf("send %d refused", i)
		}
	}
	waitFor(t, 10*time.Second, "alice's three sends acked", func() bool { return unacked(alice) == 0 })
	waitFor(t, 15*time.Second, "the notifier called for dave's three messages", func() bool { return n.count("dave") >= 3 })
	if got := n.count("dave"); got != 3 {
		t.Errorf("got %d messages notified for dave, want 3", got)
	}
	dave2 := f.start("dave2", "dave", cfg)
	waitFor(t, 10*time.Second, "dave's three messages after reconnecting", func() bool { return len(held(dave2, conv)) == 3 })
	assertSeqs(t, conv, held(dave2, conv), 3)
	if got := f.delivered("dave", "sync"); got != 3 {
		t.Errorf("got %d messages to dave by sync, want 3 (none could be pushed)", got)
	}
}

// logicExpiry kills logic slot 1 (no deregistration: its key is left to
// expire) and waits for a registry watcher of its own, on the NATS
// container, to report the slot dead; the cluster's view metric must then
// count one logic slot fewer.
func logicExpiry(ctx context.Context, t *testing.T, tc *testCluster, natsURL string) {
	topo := tc.front.Config.Topology
	victim := node.Addr{Role: node.RoleLogic, Slot: 1}
	nd, err := natsdeps.Connect(ctx, natsURL, natsdeps.Options{Name: "e2e-watcher"})
	if err != nil {
		t.Fatalf("watcher connect: %v", err)
	}
	defer nd.Close()
	var mu sync.Mutex
	var logic []bool // the latest logic view
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = nd.Watch(wctx, topo, func(v node.View) {
			if v.Role == node.RoleLogic {
				mu.Lock()
				logic = v.Alive
				mu.Unlock()
			}
		})
	}()
	alive := func(slot int) (known, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if slot >= len(logic) {
			return false, false
		}
		return true, logic[slot]
	}
	waitFor(t, 10*time.Second, "the watcher seeing every logic slot alive", func() bool {
		for s := 0; s < topo[node.RoleLogic]; s++ {
			if known, ok := alive(s); !known || !ok {
				return false
			}
		}
		return true
	})
	before, _ := tc.metric(t, "zzim_registry_alive_slots")
	killed := time.Now()
	tc.back.Kill(victim)
	waitFor(t, expiryWaitMax, victim.String()+" reported dead by the registry watcher", func() bool {
		_, ok := alive(victim.Slot)
		return !ok
	})
	t.Logf("%s reported dead %s after the kill", victim, time.Since(killed).Round(time.Millisecond))
	for s := 0; s < topo[node.RoleLogic]; s++ {
		if _, ok := alive(s); s != victim.Slot && !ok {
			t.Errorf("logic slot %d reported dead, want alive (only %s was killed)", s, victim)
		}
	}
	// The cluster's own watch sees it too (views repeat every 5 s).
	waitFor(t, 10*time.Second, "zzim_registry_alive_slots one lower", func() bool {
		now, _ := tc.metric(t, "zzim_registry_alive_slots")
		return now == before-1
	})
}
