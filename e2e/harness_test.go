// Package e2e runs zzim end to end over real loopback sockets: apps on TCP
// entries, long-poll clients on HTTP, internal links over TCP between two
// live processes, embedded NATS for the queue and the registry.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/extlogic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

const testSecret = "e2e-secret"

// testCluster is a zzim cluster split over two live processes of this test
// binary: front (entries, httpentry) and back (logic, extlogic, das). Their
// internal links are TCP on loopback, so a killed logic looks to entry
// exactly as a dead process does: its connections close.
type testCluster struct {
	front, back *cluster.Local
	deps        *cluster.Deps
	notes       *notes
	opsURL      string // front's /metrics
}

// notes records the users extlogic's notifier was called for.
type notes struct {
	mu    sync.Mutex
	users map[string]int
}

func (n *notes) Notify(x extlogic.Notification) {
	n.mu.Lock()
	n.users[x.User]++
	n.mu.Unlock()
}

func (n *notes) count(user string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.users[user]
}

func logger(t testing.TB) *slog.Logger {
	if os.Getenv("ZZIM_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// freeAddr returns a loopback address nothing listens on (now).
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startSplit starts the two-process cluster.
func startSplit(t testing.TB, tweak func(*cluster.Config)) *testCluster {
	t.Helper()
	tc := &testCluster{notes: &notes{users: map[string]int{}}}
	cfg := cluster.Config{
		Topology: cluster.DefaultTopology(), Secret: []byte(testSecret), PlatformKey: "e2e-platform",
		Notifier: tc.notes, LogicTimeout: 500 * time.Millisecond, DasTimeout: 500 * time.Millisecond,
	}
	// ZZIM_E2E_BUGS=logic-local-seq,... shows the test catching a broken guard.
	bs, err := bugs.Parse(os.Getenv("ZZIM_E2E_BUGS"))
	if err != nil {
		t.Fatalf("ZZIM_E2E_BUGS: %v", err)
	}
	cfg.Bugs = bs
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{NATSDir: t.TempDir(), NeedStore: true, Name: "e2e"})
	if err != nil {
		t.Fatalf("deps: %v", err)
	}
	tc.deps = deps
	t.Cleanup(deps.Close)
	internal := map[node.Addr]string{}
	for _, a := range cluster.Addrs(cfg.Topology) {
		internal[a] = freeAddr(t)
	}
	isFront := func(a node.Addr) bool { return a.Role == node.RoleEntry || a.Role == node.RoleHTTPEntry }
	log := logger(t)
	for _, side := range []struct {
		dst  **cluster.Local
		only func(node.Addr) bool
		name string
	}{
		{&tc.back, func(a node.Addr) bool { return !isFront(a) }, "back"},
		{&tc.front, isFront, "front"},
	} {
		l, err := cluster.StartLocal(cfg, cluster.LocalOptions{
			Only: side.only, Internal: internal, Deps: deps.Deps, Logger: log.With("process", side.name),
		})
		if err != nil {
			t.Fatalf("start %s: %v", side.name, err)
		}
		*side.dst = l
		t.Cleanup(func() { l.Shutdown(context.Background(), 0) })
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: cluster.OpsHandler(tc.front.Registry(), tc.front.ReadyCheck())}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	tc.opsURL = "http://" + ln.Addr().String()
	waitFor(t, 10*time.Second, "both processes ready", func() bool {
		return tc.front.ReadyCheck()(ctx) == nil && tc.back.ReadyCheck()(ctx) == nil
	})
	return tc
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fleet runs reference clients and remembers what they sent and got acked.
type fleet struct {
	t       testing.TB
	clock   *clientrun.Clock
	rec     *clientrun.Recorder
	mu      sync.Mutex
	runners map[string]*clientrun.Runner // by user/device name
	conv    map[string]string            // client_msg_id → conv
	acked   map[string]uint64            // client_msg_id → seq
	failed  map[string]string            // client_msg_id → error code
	via     map[string]map[string]int    // user → via → deliveries
	num     int
}

func newFleet(t testing.TB) *fleet {
	return &fleet{
		t: t, clock: clientrun.NewClock(), rec: &clientrun.Recorder{},
		runners: map[string]*clientrun.Runner{}, conv: map[string]string{}, acked: map[string]uint64{},
		failed: map[string]string{}, via: map[string]map[string]int{},
	}
}

// start runs a client for user; cfg's Transport, Entries and HTTP are the caller's.
func (f *fleet) start(name, user string, cfg client.Config) *clientrun.Runner {
	f.mu.Lock()
	f.num++
	cfg.ClientNum = f.num
	f.mu.Unlock()
	cfg.User = user
	if cfg.Device == "" {
		cfg.Device = "d" + name
	}
	cfg.Token = wire.SignToken([]byte(testSecret), user, time.Now().Add(time.Hour))
	cfg.BackoffMin = 20 * time.Millisecond
	cfg.BackoffMax = 500 * time.Millisecond
	cfg.RequestTimeout = 2 * time.Second
	cfg.SyncIntervalMax = 3 * time.Second
	if cfg.PollWait == 0 {
		cfg.PollWait = 2 * time.Second
	}
	cfg.OnSendDone = func(_ client.Env, id string, seq uint64, code string) {
		f.mu.Lock()
		if code == "" {
			f.acked[id] = seq
		} else {
			f.failed[id] = code
		}
		f.mu.Unlock()
	}
	cfg.OnDeliver = func(_ client.Env, m *wire.ChatMessage, via string) {
		f.mu.Lock()
		if f.via[user] == nil {
			f.via[user] = map[string]int{}
		}
		f.via[user][via]++
		f.mu.Unlock()
	}
	r := clientrun.Start(cfg, clientrun.Options{Clock: f.clock, Recorder: f.rec})
	f.mu.Lock()
	f.runners[name] = r
	f.mu.Unlock()
	f.t.Cleanup(r.Stop)
	return r
}

// send queues one message; false when the client's queue is full.
func (f *fleet) send(r *clientrun.Runner, conv, body string) bool {
	var id string
	var err error
	r.Do(func(c *client.Client, env client.Env) { id, err = c.Send(env, conv, body) })
	if err != nil {
		return false
	}
	f.mu.Lock()
	f.conv[id] = conv
	f.mu.Unlock()
	return true
}

func online(r *clientrun.Runner) bool {
	var ok bool
	r.Do(func(c *client.Client, _ client.Env) { ok = c.Online() })
	return ok
}

func unacked(r *clientrun.Runner) int {
	n := -1
	r.Do(func(c *client.Client, _ client.Env) { n = c.Unacked() })
	return n
}

func held(r *clientrun.Runner, conv string) []*wire.ChatMessage {
	var out []*wire.ChatMessage
	r.Do(func(c *client.Client, _ client.Env) { out = c.Held(conv) })
	return out
}

func (f *fleet) delivered(user, via string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.via[user][via]
}

// dump is the store's content by conversation.
func (tc *testCluster) dump(t testing.TB) ([]store.Message, map[string][]store.Message) {
	t.Helper()
	all, err := tc.deps.Store.Dump(context.Background())
	if err != nil {
		t.Fatalf("store dump: %v", err)
	}
	by := map[string][]store.Message{}
	for _, m := range all {
		by[m.ConvID] = append(by[m.ConvID], m)
	}
	return all, by
}

// metric sums the samples of name in front's /metrics text.
func (tc *testCluster) metric(t testing.TB, name string) (float64, string) {
	t.Helper()
	resp, err := http.Get(tc.opsURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	var sum float64
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			var v float64
			if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v); err == nil {
				sum += v
				lines = append(lines, line)
			}
		}
	}
	sort.Strings(lines)
	return sum, strings.Join(lines, "; ")
}
